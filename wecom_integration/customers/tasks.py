"""The customer sync's Celery task (registered under ``wecom_integration.tasks``); queue "bulk" like the
contact sync's, with the same handling of WeCom's frequency limit."""

from celery import shared_task

from wecom_integration.customers import sync as customer_sync
from wecom_integration.directory import sync
from wecom_integration.models import SyncRun


@shared_task(bind=True, name=sync.TASKS[SyncRun.Kind.CUSTOMERS], max_retries=sync.MAX_RATE_LIMIT_RETRIES)
def run_customer_sync(self, run_id):
    """Execute customer SyncRun ``run_id`` (see ``customers.sync.execute_customer_run``)."""
    return sync.run_with_retries(self, run_id, customer_sync.execute_customer_run)
