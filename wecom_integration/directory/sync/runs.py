"""The contact run from start to end: fetch everything, then mirror and propose in one transaction."""


from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from wecom_integration import observability
from wecom_integration.client import (
    WeComError,
    WeComRateLimited,
)
from wecom_integration.directory.sync.applying import apply_snapshot
from wecom_integration.directory.sync.fetching import fetch_directory, probe_unseen
from wecom_integration.directory.sync.matching import _supersede_reviews, build_proposals
from wecom_integration.directory.sync.state import (
    DEFAULT_WORKERS,
    Phase,
    Progress,
    app_client_factory,
    check_hourly_budget,
    contacts_client,
    fail_run,
    requeue_run,
    sync_config,
)
from wecom_integration.directory.tags import apply_contact_tags, fetch_contact_tags
from wecom_integration.models import (
    SyncRun,
)

logger = logging.getLogger("wecom_integration.sync")


def _fetch_tags(client, app_client):
    """The corp's contact tags, or the error that kept them from being read: a tag the secret may not
    read leaves the mirror of tags as it was, never the members' sync undone."""
    try:
        return fetch_contact_tags(client, app_client), ""
    except WeComRateLimited:
        raise
    except WeComError as exc:
        logger.warning("Contact tags not read: %s", exc)
        return [], f"{exc.errcode} {exc.errmsg}"[:200]

def execute_contact_run(run_id: int, *, client=None, app_client: Callable | None = None,
                        workers: int = DEFAULT_WORKERS) -> SyncRun:
    """Run a pending contact sync to its end: fetch, apply, match. Returns the run.

    The outcome is recorded on the run (``review`` when there are proposals, else ``succeeded``;
    ``failed`` with the error). WeComRateLimited is re-raised after the run is put back to pending, for
    the task to retry after ``retry_after`` seconds. A run that is no longer pending or running (a
    redelivered task) is returned untouched. ``client`` / ``app_client`` (a callable building the app
    Secret's client) replace the tenant's own, e.g. in benchmarks.
    """
    run = SyncRun.objects.select_related("tenant").get(pk=run_id)
    started = timezone.now()
    # Only a run still pending or running is started: a cancelled one (issue 24) or a finished one
    # (a redelivered task) is left as it is, in the same UPDATE that starts it (no race with a cancel).
    if not SyncRun.objects.filter(pk=run.pk, status__in=SyncRun.ACTIVE_STATUSES).update(
        status=SyncRun.Status.RUNNING, started_at=run.started_at or started, finished_at=None
    ):
        run.refresh_from_db()
        return run
    progress = Progress(run.pk, run.kind)
    since = int(time.time())
    clock = time.monotonic()
    try:
        if client is None:
            config = sync_config(run.tenant, "contacts")
            client = contacts_client(config)
            app_client = app_client or app_client_factory(config)
        check_hourly_budget(run, client.corp_id)
        snapshot = fetch_directory(client, progress, workers, app_client)
        probe_unseen(client, run.tenant, snapshot, progress, workers)
        fetched_tags, tag_error = _fetch_tags(client, app_client)
        fetch_seconds = time.monotonic() - clock
        progress.start(Phase.SAVING)
        with transaction.atomic():
            counts = apply_snapshot(run.tenant, snapshot, since)
            counts["tags"] = (
                {"error": tag_error} if tag_error else apply_contact_tags(run.tenant.pk, fetched_tags)
            )
            waiting = (
                SyncRun.objects.filter(tenant=run.tenant, kind=run.kind, status=SyncRun.Status.REVIEW)
                .exclude(pk=run.pk)
                .values_list("pk", flat=True)
                .first()
            )
            if run.started_by_id is None and waiting is not None:
                # A periodic run keeps the mirror current but leaves an admin's review (and the edits
                # made on it) alone; a sync the admin starts replaces it.
                proposals = {"bind": 0, "create": 0, "skip": 0, "ambiguous": 0}
                counts["review_left_to"] = waiting
            else:
                proposals = build_proposals(run)
                _supersede_reviews(run)
            pending_review = proposals["bind"] + proposals["create"] + proposals["skip"]
            counts.update(
                proposals=proposals,
                vanished=snapshot.vanished,
                fetched_users=len(snapshot.users),
                fetched_departments=len(snapshot.departments),
                fetch_seconds=round(fetch_seconds, 3),
                seconds=round(time.monotonic() - clock, 3),
            )
            SyncRun.objects.filter(pk=run.pk).update(
                status=SyncRun.Status.REVIEW if pending_review else SyncRun.Status.SUCCEEDED,
                phase=Phase.DONE,
                done=len(snapshot.users),
                total=len(snapshot.users),
                counts=counts,
                fallback_mode=snapshot.fallback,
                finished_at=timezone.now(),
            )
        outcome = "review" if pending_review else "succeeded"
        observability.record_sync_run(run.kind, outcome, time.monotonic() - clock)
        observability.log_event(
            logger, "sync.finished", tenant=run.tenant_id, kind=run.kind, run=run.pk, outcome=outcome,
            fallback=snapshot.fallback, users=len(snapshot.users),
            duration_ms=round((time.monotonic() - clock) * 1000, 1),
        )
    except WeComRateLimited as exc:
        logger.warning("Contact sync %s rate limited; retry in %ss", run.pk, exc.retry_after)
        requeue_run(run.pk, exc)
        raise
    except WeComError as exc:
        logger.warning("Contact sync %s failed: %s", run.pk, exc)
        fail_run(run.pk, exc, progress.phase)
    except Exception as exc:
        logger.exception("Contact sync %s failed", run.pk)
        fail_run(run.pk, exc, progress.phase)
    return SyncRun.objects.get(pk=run.pk)
