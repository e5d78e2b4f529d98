"""The Celery task of the contact sync and the periodic one (registered under ``wecom_integration.tasks``;
the customer sync's is in ``customers.tasks``).

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

from wecom_integration.directory import sync
from wecom_integration.models import SyncRun, WeComConfig

logger = logging.getLogger("wecom_integration.directory.tasks")

@shared_task(bind=True, name=sync.TASKS[SyncRun.Kind.CONTACTS], max_retries=sync.MAX_RATE_LIMIT_RETRIES)
def run_contact_sync(self, run_id):
    """Execute contact SyncRun ``run_id`` (see ``services.sync.execute_contact_run``); returns its status."""
    return sync.run_with_retries(self, run_id, sync.execute_contact_run)


def stale_after_seconds():
    """How long a run may stay pending or running before it is presumed dead: past Celery's hard time
    limit plus the longest rate-limit wait, it can no longer be alive."""
    limit = current_app.conf.task_time_limit or 3600
    return limit + sync.MAX_RATE_LIMIT_RETRIES * 120


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
