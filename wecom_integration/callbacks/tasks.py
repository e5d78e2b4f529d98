"""Celery tasks: thin wrappers around the services, with the retry policy.

``handle_callback_events`` (a batch of stored events, as web processes and the sweep send them) and
``handle_callback_event`` (one event: its retries and the admin's "retry") run on the "callbacks"
queue (celery_config.TASK_ROUTES) so a bulk sync never delays them. A failed handling is stored on
the event (status "failed", error, attempts) and retried with exponential backoff,
``HANDLER_RETRY_BACKOFF`` × 2ⁿ seconds, at most ``HANDLER_MAX_RETRIES`` times; after 45009/45033 the
wait is the limit's ``retry_after`` instead. An error only the tenant's admin can fix (a wrong Secret,
an untrusted IP) is not retried by Celery: the admin fixes it and uses the event log's "retry" action
(the requeue sweep also tries such an event again, at most that many times, every ``older_than``).
"""

import logging
from collections import Counter

from celery import shared_task

from wecom_integration.callbacks import handling
from wecom_integration.callbacks import services as callbacks
from wecom_integration.client import WeComConfigError, WeComRateLimited
from wecom_integration.conf import wecom_settings

logger = logging.getLogger("wecom_integration.tasks")


def _retry_countdown(exc, retries):
    """Seconds before the next attempt after ``exc`` on attempt ``retries`` + 1, or None: not retried."""
    if isinstance(exc, WeComConfigError):
        # Retrying cannot help until the admin changes the configuration; the event shows the error.
        return None
    if retries >= wecom_settings.HANDLER_MAX_RETRIES:
        return None
    if isinstance(exc, WeComRateLimited):
        return exc.retry_after
    return wecom_settings.HANDLER_RETRY_BACKOFF * (2**retries)


@shared_task(
    bind=True,
    name=callbacks.HANDLE_EVENT_TASK,
    acks_late=True,
    max_retries=None,
    # The outcome is on the CallbackEvent row; keeping it in the result backend too only costs time.
    ignore_result=True,
)
def handle_callback_event(self, event_id):
    """Handle one stored callback event (idempotent: an event already handled is left alone)."""
    try:
        return handling.handle_event(event_id)
    except Exception as exc:
        countdown = _retry_countdown(exc, self.request.retries)
        if countdown is None:
            if not isinstance(exc, WeComConfigError):
                logger.error(
                    "WeCom callback event %s failed after %s retries; left failed", event_id, self.request.retries
                )
            return "failed"
        raise self.retry(exc=exc, countdown=countdown) from None


@shared_task(
    bind=True,
    name=callbacks.HANDLE_EVENTS_TASK,
    acks_late=True,
    max_retries=None,
    ignore_result=True,
)
def handle_callback_events(self, event_ids):
    """Handle stored callback events in the order given, in one transaction with a savepoint each
    (services.callbacks.handle_events); what web processes send (one message per batch, see
    services/publisher.py) and what the sweep sends.

    A failed event is retried on its own, as ``handle_callback_event`` with the usual backoff, so one
    bad event never holds back or repeats the others. If the worker dies half-way, nothing of the batch
    is kept and the message is delivered again; if the database fails the batch as a whole, the batch
    is retried with the same backoff.
    """
    try:
        outcomes = handling.handle_events(event_ids)
    except Exception as exc:
        countdown = _retry_countdown(exc, self.request.retries)
        if countdown is None:
            # Still "received": the requeue sweep queues these events again later.
            logger.exception("A batch of %s WeCom callback events failed; left to the sweep", len(event_ids))
            return {"failed": len(event_ids)}
        raise self.retry(exc=exc, countdown=countdown) from None
    summary = Counter()
    for event_id, outcome in outcomes.items():
        if not isinstance(outcome, Exception):
            summary[outcome] += 1
            continue
        countdown = _retry_countdown(outcome, 0)
        if countdown is None:
            summary["failed"] += 1
            continue
        try:
            handle_callback_event.apply_async((event_id,), countdown=countdown, retries=1)
        except Exception:
            # The event is stored as failed with retries left: the requeue sweep queues it again.
            logger.exception("Could not queue the retry of WeCom callback event %s", event_id)
        summary["retrying"] += 1
    return dict(summary)


@shared_task(name="wecom_integration.tasks.requeue_stale_callback_events")
def requeue_stale_callback_events(older_than=600):
    """Queue again events still waiting ``older_than`` seconds after they arrived (for celery beat)."""
    return callbacks.requeue_stale_events(older_than=older_than)


def retry_event(event_id):
    """Queue a stored event's handling again; False if it was handled already (the admin's action)."""
    return callbacks.retry_event(event_id)
