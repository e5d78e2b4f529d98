"""Group commit: the rows that request threads of one process want stored at the same moment go to the
database together, in one statement and one commit, and each thread waits for its own row's outcome.

Storing a callback is one INSERT and its commit, and on a busy web node that round trip, the commit and
the thread switches around it cost more CPU, in the web process and in PostgreSQL, than verifying and
decrypting the callback. :class:`GroupInserter` keeps one writer thread per process with its own
database connection. A request thread hands over its row and blocks until the writer has committed it
(nothing is answered before the row is durable, exactly as with its own INSERT); the writer takes every
row waiting at that moment, up to ``max_batch``. There is no waiting on purpose: alone, a row goes at
once; under load, the rows that arrive while one statement runs make the next one.

Each process has its own thread, started on the first :meth:`submit` and again after a fork.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

logger = logging.getLogger("wecom_integration.group_insert")


class GroupInserter:
    """Hand items to ``write(items) -> results`` (one result per item, in order) from one thread, in
    groups of at most ``max_batch``. :meth:`submit` blocks for the item's result, or raises what
    ``write`` raised for its group, or the item's result if that is an exception."""

    def __init__(
        self,
        write: Callable[[list], Sequence],
        *,
        max_batch: int = 100,
        name: str = "group-insert",
        finish: Callable[[], object] | None = None,
    ):
        self._write = write
        self._finish = finish
        self.max_batch = max(1, int(max_batch))
        self.name = name
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[tuple[object, Future]] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self.groups = 0
        self.items = 0

    def submit(self, item, timeout: float | None = None):
        """Store ``item`` with whatever else is waiting; its result, once committed."""
        future: Future = Future()
        with self._cond:
            self._pending.append((item, future))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"wecom-{self.name}", daemon=True)
                self._thread.start()
            self._cond.notify()
        return future.result(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread once nothing is waiting, after ``finish`` (closing its database connection)
        ran in it; the next :meth:`submit` starts a new one."""
        with self._cond:
            thread = self._thread
            if thread is None or not thread.is_alive():
                return
            self._closing = True
            self._cond.notify()
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    self._closing = False
                    self._thread = None
                    if self._finish is not None:
                        try:
                            self._finish()
                        except Exception:
                            logger.exception("%s: finishing failed", self.name)
                    return
                group = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
            items = [item for item, _ in group]
            try:
                results = self._write(items)
                if len(results) != len(items):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
            except BaseException as exc:  # every waiting request must hear of it, whatever it is
                for _, future in group:
                    future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.groups += 1
            self.items += len(items)
            for (_, future), result in zip(group, results, strict=True):
                if isinstance(result, Exception):  # this item alone failed
                    future.set_exception(result)
                else:
                    future.set_result(result)
