"""The Celery tasks of the contact and customer syncs (registered under ``wecom_integration.tasks``).

Both run on the "bulk" queue (``CELERY_TASK_ROUTES``) so a sync of a large corp never delays the
callbacks. A run hit by WeCom's frequency limit (45009/45033, or the client's budget running dry) goes
back to pending and is retried after the error's ``retry_after``; past ``MAX_RATE_LIMIT_RETRIES`` it is
failed. ``periodic_sync`` is meant for celery beat, e.g. every five minutes::

    CELERY_BEAT_SCHEDULE = {
        "wecom-periodic-sync": {"task": "wecom_integration.tasks.periodic_sync", "schedule": 300},
    }

It starts the contact sync of each tenant whose WeComConfig has ``periodic_sync`` on, once its
``sync_interval_minutes`` have passed since its last run, and fails runs a dead worker left behind.
"""

import logging
from datetime import timedelta

from celery import current_app, shared_task
from django.db.models import Max, Q
from django.utils import timezone

from wecom_integration.client import WeComRateLimited
from wecom_integration.customers import sync as customer_sync
from wecom_integration.directory import sync
from wecom_integration.models import SyncRun, WeComConfig

logger = logging.getLogger("wecom_integration.directory.tasks")

# WeCom blocks a corp for 60 s after a minute limit: ten retries ride out ten minutes of limits. Past
# that the corp is over its hourly limit and the admin is better told than the sync silently delayed.
MAX_RATE_LIMIT_RETRIES = 10

RUNNERS = {
    SyncRun.Kind.CONTACTS: sync.execute_contact_run,
    SyncRun.Kind.CUSTOMERS: customer_sync.execute_customer_run,
}


def _run(task, run_id, kind):
    try:
        run = RUNNERS[kind](run_id)
    except SyncRun.DoesNotExist:
        logger.warning("sync run %s no longer exists", run_id)
        return None
    except WeComRateLimited as exc:
        if task.request.retries >= task.max_retries:
            sync.fail_run(run_id, exc)
            return SyncRun.Status.FAILED
        raise task.retry(countdown=exc.retry_after, exc=exc) from None
    return run.status


@shared_task(bind=True, name=sync.TASKS[SyncRun.Kind.CONTACTS], max_retries=MAX_RATE_LIMIT_RETRIES)
def run_contact_sync(self, run_id):
    """Execute contact SyncRun ``run_id`` (see ``services.sync.execute_contact_run``); returns its status."""
    return _run(self, run_id, SyncRun.Kind.CONTACTS)


@shared_task(bind=True, name=sync.TASKS[SyncRun.Kind.CUSTOMERS], max_retries=MAX_RATE_LIMIT_RETRIES)
def run_customer_sync(self, run_id):
    """Execute customer SyncRun ``run_id`` (see ``services.customer_sync.execute_customer_run``)."""
    return _run(self, run_id, SyncRun.Kind.CUSTOMERS)


def stale_after_seconds():
    """How long a run may stay pending or running before it is presumed dead: past Celery's hard time
    limit plus the longest rate-limit wait, it can no longer be alive."""
    limit = current_app.conf.task_time_limit or 3600
    return limit + MAX_RATE_LIMIT_RETRIES * 120


@shared_task(name="wecom_integration.tasks.periodic_sync")
def periodic_sync():
    """Start the due periodic contact syncs (celery beat); returns the ids of the runs started."""
    sync.fail_stale_runs(stale_after_seconds())
    now = timezone.now()
    configs = (
        WeComConfig.objects.filter(enabled=True, periodic_sync=True)
        .select_related("tenant")
        .annotate(
            last_run=Max(
                "tenant__wecom_sync_runs__created_at",
                filter=Q(tenant__wecom_sync_runs__kind=SyncRun.Kind.CONTACTS),
            )
        )
    )
    started = []
    for config in configs:
        due = config.last_run is None or now - config.last_run >= timedelta(
            minutes=max(1, config.sync_interval_minutes)
        )
        if not due:
            continue
        try:
            run = sync.start_sync(config.tenant, SyncRun.Kind.CONTACTS)
        except sync.SyncAlreadyRunning:
            continue
        started.append(run.pk)
    if started:
        logger.info("periodic contact sync started: runs %s", started)
    return started


# Where host code found it before the rooms (wecom_integration.sync_tasks.start_sync); the service owns it.
start_sync = sync.start_sync
