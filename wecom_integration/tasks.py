"""Every Celery task of the app, under the names running deployments know (``wecom_integration.tasks.*``).

Each room keeps its tasks in its own ``tasks`` module (``callbacks.tasks``, ``directory.tasks``,
``customers.tasks``, ``messaging.tasks``); the names stay here, a contract with the routes, the beat schedule and the
messages already queued when a deployment upgrades. Importing this module registers them all, which is
what a host's ``autodiscover_tasks()`` does and what :meth:`WeComIntegrationConfig.ready` does for
projects that don't autodiscover.
"""

from wecom_integration.approvals.tasks import reconcile_approvals, submit_membership_approvals
from wecom_integration.callbacks.tasks import (
    handle_callback_event,
    handle_callback_events,
    requeue_stale_callback_events,
    retry_event,
)
from wecom_integration.customers.tasks import run_customer_sync
from wecom_integration.directory.tasks import periodic_sync, run_contact_sync, start_sync
from wecom_integration.messaging.tasks import send_message, update_template_card
from wecom_integration.operations.tasks import purge_old_rows

__all__ = [
    "handle_callback_event",
    "handle_callback_events",
    "periodic_sync",
    "purge_old_rows",
    "reconcile_approvals",
    "requeue_stale_callback_events",
    "retry_event",
    "run_contact_sync",
    "run_customer_sync",
    "send_message",
    "start_sync",
    "submit_membership_approvals",
    "update_template_card",
]
