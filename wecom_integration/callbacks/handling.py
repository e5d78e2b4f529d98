"""Handling stored callback events, in the worker: at most once each, through the rooms' table.

:func:`handle_events` locks a batch of stored events, runs each one's handler from
:mod:`wecom_integration.callbacks.registry` in a savepoint of its own (or, for a kind whose room handles
many at once, the batch's events of that kind together in one savepoint, one by one only if that fails),
marks them handled in one UPDATE and sends the signals of :mod:`wecom_integration.signals` once that has
committed, in the events' order. Which room handles which
kind of event is the registry's business; this module imports none.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from functools import lru_cache, partial

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from wecom_integration import bulk, observability, signals
from wecom_integration.callbacks import registry
from wecom_integration.events import Event, parse_event
from wecom_integration.models import CallbackEvent

logger = logging.getLogger("wecom_integration.callbacks")

# An event's last error is kept this long (a traceback's first lines; the full one is in the worker's log).
_MAX_ERROR_CHARS = 4000

HANDLED = "handled"
ALREADY_HANDLED = "already_handled"
BUSY = "busy"
MISSING = "missing"


def handle_event(event_id: int) -> str:
    """Handle one stored event, at most once: returns ``"handled"``, ``"already_handled"``, ``"busy"``
    (another worker holds it right now) or ``"missing"``.

    The row is locked for the duration, so two workers never both handle it. A failing handler rolls
    back its own writes, leaves the event "failed" with the error and one more attempt counted, and
    its exception is raised again for the Celery task to retry.
    """
    outcome = handle_events([event_id])[event_id]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def handle_events(event_ids) -> dict[int, str | Exception]:
    """Handle stored events, in the order given, in one transaction, so that a failing one rolls back only
    its own writes. Returns, per id, the outcome :func:`handle_event` would return, or the exception of a
    failed handler (the event is then stored "failed" with the error, for the caller to retry).

    The rows are locked together (``SELECT … FOR UPDATE SKIP LOCKED``): an event another worker holds
    is "busy" and left to it. Each event's handler runs in a savepoint of its own, except where its room
    registered a handler for many (:func:`registry.handles_many`): the batch's events of that kind then
    go to it at once, in one savepoint, when the first of them comes, and only if it raises does each
    of them run alone in its own savepoint. Kinds no room handles write nothing and need no savepoint.
    One transaction and one status UPDATE per batch instead of per event is what makes a batch cheaper
    than its events one by one. An error that breaks the transaction itself (a lost connection) is
    raised, and nothing of the batch is kept.
    """
    ids = list(dict.fromkeys(int(event_id) for event_id in event_ids))
    outcomes: dict[int, str | Exception] = {}
    if not ids:
        return outcomes
    started = time.monotonic()
    handled: list[CallbackEvent] = []
    failed: list[CallbackEvent] = []
    with transaction.atomic():
        rows = {row.pk: row for row in _locked(ids)}
        batch = [rows[event_id] for event_id in ids if event_id in rows]
        for row in batch:
            row.attempts += 1
        results = _apply_all(batch)
        for row in batch:
            result = results[row.pk]
            if isinstance(result, Exception):
                outcomes[row.pk] = result
                row.status = CallbackEvent.Status.FAILED
                row.error = _describe(result)
                # Its retry is queued now (or never, past the limit): the sweep's clock starts here.
                row.queued_at = timezone.now()
                row.save(update_fields=["status", "error", "attempts", "queued_at"])
                failed.append(row)
            else:
                outcomes[row.pk] = HANDLED
                handled.append(row)
                _signal_after_commit(row, *result)
        if handled:
            now = timezone.now()
            for row in handled:  # as the signals' receivers will see them, after the commit
                row.status, row.error, row.handled_at = CallbackEvent.Status.HANDLED, "", now
            _mark_handled([row.pk for row in handled], now)
    absent = [event_id for event_id in ids if event_id not in rows]
    if absent:
        statuses = dict(CallbackEvent.objects.filter(pk__in=absent).values_list("pk", "status"))
        for event_id in absent:
            status = statuses.get(event_id)
            outcomes[event_id] = (
                MISSING if status is None else ALREADY_HANDLED if status == CallbackEvent.Status.HANDLED else BUSY
            )
    for row in failed:
        observability.record_callback_failed(row.kind)
        with _in_request_of(row):
            observability.log_event(
                logger,
                "callback.failed",
                level=logging.WARNING,
                tenant=row.tenant_id,
                kind=row.kind,
                event_id=row.pk,
                attempt=row.attempts,
                error=row.error.splitlines()[0],
            )
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    observability.record_callbacks_handled(handled)
    if handled and logger.isEnabledFor(logging.INFO):
        for row in handled:
            with _in_request_of(row):
                observability.log_event(
                    logger,
                    "callback.handled",
                    tenant=row.tenant_id,
                    kind=row.kind,
                    event_id=row.pk,
                    attempt=row.attempts,
                    outcome="ok",
                    batch=len(ids),
                    duration_ms=duration_ms,
                )
    return outcomes


def _locked(ids: list[int]):
    """The events of ``ids`` not handled yet, locked (``FOR UPDATE SKIP LOCKED``: one another worker holds
    is left out), in id order. On PostgreSQL one prepared SQL text with the ids as one array, for it runs
    once per batch and building the ORM's query cost more than running it."""
    if connection.vendor == "postgresql":
        return bulk.fetch_instances(
            CallbackEvent, _statements()[0], [ids, CallbackEvent.Status.HANDLED], using=connection.alias
        )
    locking = CallbackEvent.objects.select_for_update(
        skip_locked=connection.features.has_select_for_update_skip_locked, of=("self",)
    )
    return locking.filter(pk__in=ids).exclude(status=CallbackEvent.Status.HANDLED).order_by("pk")


def _mark_handled(ids: list[int], now) -> None:
    """One UPDATE of the handled events: status, error cleared, one more attempt, the time."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_statements()[1], [CallbackEvent.Status.HANDLED, now, ids])
        return
    CallbackEvent.objects.filter(pk__in=ids).update(
        status=CallbackEvent.Status.HANDLED, error="", attempts=F("attempts") + 1, handled_at=now
    )


@lru_cache(maxsize=1)
def _statements() -> tuple[str, str]:
    """PostgreSQL's lock and status statements of :func:`handle_events` (ids passed as one array)."""
    opts = CallbackEvent._meta
    quote = connection.ops.quote_name
    table, pk = quote(opts.db_table), quote(opts.pk.column)
    status, attempts = quote(opts.get_field("status").column), quote(opts.get_field("attempts").column)
    columns = ", ".join(quote(field.column) for field in opts.concrete_fields)
    lock = (
        f"SELECT {columns} FROM {table} WHERE {pk} = ANY(%s) AND {status} <> %s "
        f"ORDER BY {pk} FOR UPDATE OF {table} SKIP LOCKED"
    )
    update = (
        f"UPDATE {table} SET {status} = %s, {quote(opts.get_field('error').column)} = '', "
        f"{attempts} = {attempts} + 1, {quote(opts.get_field('handled_at').column)} = %s WHERE {pk} = ANY(%s)"
    )
    return lock, update


def _apply_all(rows: list[CallbackEvent]) -> dict[int, tuple | Exception]:
    """Run the handlers of ``rows`` (locked, in order): per row's id, (event, route, result) or the
    exception that rolled its writes back."""
    results: dict[int, tuple | Exception] = {}
    parsed: dict[int, tuple] = {}
    together: dict[str, list[tuple[CallbackEvent, Event]]] = {}
    for row in rows:
        try:
            event = parse_event(row.xml)
        except Exception as exc:  # stored XML that no longer parses (written around receive): that event fails
            results[row.pk] = exc
            continue
        route = registry.route_for(event.kind)
        parsed[row.pk] = (event, route)
        if route is not None and route.many is not None:
            together.setdefault(route.kind, []).append((row, event))
    for row in rows:
        if row.pk in results:
            continue
        event, route = parsed[row.pk]
        if route is None:
            # Kinds no room handles are kept as stored, and only reach host code through ``event_handled``.
            results[row.pk] = (event, None, None)
        elif route.many is None:
            results[row.pk] = _apply_alone(row, event, route)
        elif route.kind in together:
            items = together.pop(route.kind)
            try:
                with transaction.atomic():
                    outcome = route.many(items)
            except Exception:
                logger.info("A batch of %s %s event(s) failed; handling them one by one", len(items), route.kind)
                outcome = None
            if outcome is None:
                for item_row, item_event in items:
                    results[item_row.pk] = _apply_alone(item_row, item_event, route)
            else:
                for (item_row, item_event), result in zip(items, outcome, strict=True):
                    results[item_row.pk] = (item_event, route, result)
    return results


def _apply_alone(row: CallbackEvent, event: Event, route) -> tuple | Exception:
    try:
        with _in_request_of(row), transaction.atomic():
            return event, route, route.handler(row, event)
    except Exception as exc:
        return exc


@contextmanager
def _in_request_of(row: CallbackEvent):
    """The request id of the web request that stored ``row`` as the current one (a batch's task carries
    none of its own events'), so the event's log lines, here and in its handlers, share that id."""
    request_id = observability.clean_request_id(row.request_id)
    if not request_id:
        yield
        return
    token = observability.set_request_id(request_id)
    try:
        yield
    finally:
        observability.reset_request_id(token)


def _describe(exc: Exception) -> str:
    # Client errors are scrubbed of secrets and tokens when built (client/errors.py); ours hold none.
    text = f"{type(exc).__name__}: {exc}"
    return text[:_MAX_ERROR_CHARS]


def _signal_after_commit(row: CallbackEvent, event: Event, route, result, *, replay: bool = False) -> None:
    """Send the route's signal (when its handler changed something) and ``event_handled`` once the
    transaction commits; registered after the event's savepoint was released."""
    signal = route.signal if route is not None else None
    if result is not None and signal is not None:
        transaction.on_commit(partial(_send, signal, row, event, {**result, "replay": replay}), robust=True)
    transaction.on_commit(
        partial(_send, signals.event_handled, row, event, {"kind": row.kind, "replay": replay}), robust=True
    )


def _dispatch(row: CallbackEvent, *, replay: bool = False) -> None:
    event = parse_event(row.xml)
    route = registry.route_for(event.kind)
    result = route.handler(row, event) if route is not None else None
    # Registered inside the handler's savepoint: dropped if it rolls back, sent after the commit.
    _signal_after_commit(row, event, route, result, replay=replay)


def redispatch_events(queryset, limit: int = 500) -> tuple[int, int]:
    """Handle stored events again, whatever their status (the admin's "Dispatch again"): each runs its
    built-in handler once more, in its own savepoint, and the signals are sent again with
    ``replay=True`` on ``event_handled``. The handlers are idempotent (an event already applied
    changes nothing in the mirror, the inbox keeps one row per event, passive replies are never sent
    again), so this is safe on handled events. At most ``limit`` events, oldest first; returns
    (dispatched, failed)."""
    dispatched = failed = 0
    with transaction.atomic():
        rows = list(queryset.select_for_update(of=("self",)).order_by("pk")[:limit])
        handled = []
        for row in rows:
            try:
                with _in_request_of(row), transaction.atomic():
                    _dispatch(row, replay=True)
            except Exception as exc:
                failed += 1
                row.error = _describe(exc)
                row.save(update_fields=["error"])
                logger.warning("Dispatching WeCom event %s again failed: %s", row.pk, row.error.splitlines()[0])
            else:
                dispatched += 1
                handled.append(row.pk)
        if handled:
            CallbackEvent.objects.filter(pk__in=handled).update(
                status=CallbackEvent.Status.HANDLED, error="", handled_at=timezone.now()
            )
    return dispatched, failed


def _send(signal, row: CallbackEvent, event: Event, arguments: dict) -> None:
    with _in_request_of(row):
        responses = signal.send_robust(
            sender=type(event), tenant_id=row.tenant_id, event=event, callback_event=row, **arguments
        )
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "Receiver %r of a WeCom signal failed on event %s",
                receiver,
                row.pk,
                exc_info=(type(response), response, response.__traceback__),
            )
