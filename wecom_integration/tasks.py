"""Celery tasks: thin wrappers around the services, with the retry policy.

``handle_callback_event`` runs on the "callbacks" queue (settings.CELERY_TASK_ROUTES) so a bulk sync
never delays it. A failed handling is stored on the event (status "failed", error, attempts) and
retried with exponential backoff, ``HANDLER_RETRY_BACKOFF`` × 2ⁿ seconds, at most
``HANDLER_MAX_RETRIES`` times; after 45009/45033 the wait is the limit's ``retry_after`` instead. An
error only the tenant's admin can fix (a wrong Secret, an untrusted IP) is not retried: the admin
fixes it and uses the event log's "retry" action.
"""

import logging

from celery import shared_task

from .client import WeComConfigError, WeComRateLimited
from .conf import wecom_settings
from .services import callbacks

logger = logging.getLogger("wecom_integration.tasks")


@shared_task(
    bind=True,
    name="wecom_integration.tasks.handle_callback_event",
    acks_late=True,
    max_retries=None,
    # The outcome is on the CallbackEvent row; keeping it in the result backend too only costs time.
    ignore_result=True,
)
def handle_callback_event(self, event_id):
    """Handle one stored callback event (idempotent: an event already handled is left alone)."""
    try:
        return callbacks.handle_event(event_id)
    except WeComConfigError:
        # Retrying cannot help until the admin changes the configuration; the event shows the error.
        return "failed"
    except WeComRateLimited as exc:
        countdown = exc.retry_after
        failure = exc
    except Exception as exc:
        countdown = wecom_settings.HANDLER_RETRY_BACKOFF * (2**self.request.retries)
        failure = exc
    if self.request.retries >= wecom_settings.HANDLER_MAX_RETRIES:
        logger.error(
            "WeCom callback event %s failed after %s retries; left failed", event_id, self.request.retries
        )
        return "failed"
    raise self.retry(exc=failure, countdown=countdown)


@shared_task(name="wecom_integration.tasks.requeue_stale_callback_events")
def requeue_stale_callback_events(older_than=600):
    """Queue again events still waiting ``older_than`` seconds after they arrived (for celery beat)."""
    return callbacks.requeue_stale_events(older_than=older_than)


def retry_event(event_id):
    """Queue a stored event's handling again; False if it was handled already (the admin's action)."""
    return callbacks.retry_event(event_id)
