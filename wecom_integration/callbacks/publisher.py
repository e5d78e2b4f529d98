"""Queue work on Celery in batches: one broker message for many items, sent from a background thread.

A callback must be stored and answered quickly; publishing one Celery message costs more CPU than the
rest of the request (about 0.6 ms, most of it in Celery and kombu, not in Redis). :class:`BatchPublisher`
takes the stored event's id in a few microseconds and a thread of the process sends what has gathered
as one message: at once when ``max_batch`` items are waiting, else ``linger`` seconds after the first
of them arrived, but no sooner than ``interval`` seconds after the previous message. When idle an id
waits at most ``linger``; under load the process sends one message per ``interval``, so each carries
more ids, and a worker's cost per message (a task, a transaction, its fixed queries) is shared by more
events (issue 19).

What is waiting here is not durable. That is fine for callbacks because the rows are committed before
their ids get here: if the process dies first, they stay "received" and the requeue sweep
(:func:`wecom_integration.callbacks.services.requeue_stale_events`) queues them again. A failed
publish is logged and left to that sweep too. :meth:`flush` sends what is waiting in the calling
thread; it runs at interpreter exit and in gunicorn's ``worker_exit``.

Each process has its own thread, started on the first :meth:`submit` and again after a fork.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger("wecom_integration.publisher")


class BatchPublisher:
    """Gather items and hand them to ``publish(items)`` in batches of at most ``max_batch``.

    ``max_batch`` and ``linger`` may be callables, read at each batch, so they can follow settings.
    """

    def __init__(
        self,
        publish: Callable[[list], object],
        *,
        max_batch: int | Callable[[], int] = 100,
        linger: float | Callable[[], float] = 0.02,
        interval: float | Callable[[], float] = 0.0,
        name: str = "publisher",
    ):
        self._publish = publish
        self._max_batch = max_batch
        self._linger = linger
        self._interval = interval
        self.name = name
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    def _reset(self) -> None:
        # After a fork the parent's thread does not exist here and its lock may be held: start afresh.
        # Items the parent had not sent stay the parent's to send.
        self._cond = threading.Condition()
        self._pending: list = []
        self._thread: threading.Thread | None = None
        # When the thread last started sending a batch (monotonic seconds); minus infinity: never.
        self._last_send = float("-inf")
        self.published_batches = 0
        self.published_items = 0
        self.failed_batches = 0

    # The two knobs, as numbers --------------------------------------------------------------------

    def max_batch(self) -> int:
        value = self._max_batch() if callable(self._max_batch) else self._max_batch
        return max(1, int(value))

    def linger(self) -> float:
        value = self._linger() if callable(self._linger) else self._linger
        return max(0.0, float(value))

    def interval(self) -> float:
        value = self._interval() if callable(self._interval) else self._interval
        return max(0.0, float(value))

    # Use ------------------------------------------------------------------------------------------

    def submit(self, item) -> None:
        """Queue ``item``; it is published within ``linger`` seconds (sooner when a batch fills)."""
        with self._cond:
            self._pending.append(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"wecom-{self.name}", daemon=True)
                self._thread.start()
            if len(self._pending) == 1 or len(self._pending) >= self.max_batch():
                self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def flush(self) -> int:
        """Publish everything waiting now, in the calling thread; returns how many items were sent."""
        with self._cond:
            items, self._pending = self._pending, []
        size = self.max_batch()
        sent = 0
        for start in range(0, len(items), size):
            sent += self._send(items[start : start + size])
        return sent

    # The thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                size = self.max_batch()
                deadline = max(time.monotonic() + self.linger(), self._last_send + self.interval())
                while len(self._pending) < size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._pending[:size]
                del self._pending[:size]
                self._last_send = time.monotonic()
            if batch:
                self._send(batch)

    def _send(self, batch: Sequence) -> int:
        try:
            self._publish(list(batch))
        except Exception:
            self.failed_batches += 1
            # The items' rows are stored: the requeue sweep queues them again.
            logger.exception("Could not publish a batch of %s item(s) (%s); left to the sweep", len(batch), self.name)
            return 0
        self.published_batches += 1
        self.published_items += len(batch)
        return len(batch)
