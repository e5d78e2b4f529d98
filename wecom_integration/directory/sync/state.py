"""A sync run's state: creating, queueing, progress, failing and cancelling runs, and which client a
run uses (the contact-sync secret, or the app's since 2022)."""


from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from wecom_integration import observability, queueing
from wecom_integration.client import (
    WeComConfigError,
    WeComError,
    WeComNotConfigured,
    WeComRateLimited,
    client_for,
)
from wecom_integration.conf import wecom_settings
from wecom_integration.models import (
    AuditLog,
    SyncRun,
    WeComConfig,
    WeComUser,
)

logger = logging.getLogger("wecom_integration.sync")

#: Threads calling ``user/get`` (or ``user/list``) at once. The client's per-corp budget, not this,
#: sets the pace; a few threads are enough to hide each call's round trip.
DEFAULT_WORKERS = 4
#: Rows per INSERT/UPDATE batch (the database backend may lower it, e.g. SQLite to fit 999 parameters).
BATCH_SIZE = 1000
#: Largest subtree (in departments) asked for in one ``user/list?fetch_child=1`` call.
SUBTREE_DEPARTMENTS = 200
#: WeCom answers 48009 when the caller may not use ``user/list`` / ``department/list`` (2022 rules).
FORBIDDEN_API = 48009
#: ``user/get`` of a userid that no longer exists (the member left between list_id and get).
USER_NOT_FOUND = 60111
#: A member or department outside the app's visible range ("no privilege to access/modify
#: contact/party/agent", https://developer.work.weixin.qq.com/document/path/90313).
NOT_VISIBLE = 60011
#: ``department/get`` of a department that no longer exists (60003 department not found; 60123 invalid
#: party id on some WeCom versions).
DEPARTMENT_NOT_FOUND = frozenset({60003, 60123})
#: How many userids of members outside the app's visible range a run keeps for the review screen.
OUTSIDE_RANGE_LISTED = 200
#: Statuses of members that may be bound or get an account (active, not yet activated).
BINDABLE_STATUSES = (WeComUser.Status.ACTIVE, WeComUser.Status.NOT_ACTIVATED)


class Phase:
    """The values of ``SyncRun.phase``, in the order a run goes through them."""

    QUEUED = "queued"
    DEPARTMENTS = "departments"
    USERS = "users"
    USER_IDS = "user_ids"
    DETAILS = "details"
    SAVING = "saving"
    MATCHING = "matching"
    DONE = "done"


class SyncAlreadyRunning(Exception):
    """A sync of this kind is already pending or running for the tenant; ``run`` is that run."""

    def __init__(self, run):
        super().__init__(run)
        self.run = run


class ConfirmError(Exception):
    """The confirm was refused and nothing was changed; ``errors`` is a list of
    ``{"wecom_userid", "username", "code", "message"}`` dicts, one per offending decision."""

    def __init__(self, errors, code="invalid"):
        super().__init__(errors)
        self.errors = errors
        self.code = code




def create_run(tenant, kind=SyncRun.Kind.CONTACTS, actor=None) -> SyncRun:
    """Record a pending run; raises SyncAlreadyRunning when one of this kind is pending or running."""
    try:
        with transaction.atomic():
            return SyncRun.objects.create(
                tenant=tenant,
                kind=kind,
                status=SyncRun.Status.PENDING,
                phase=Phase.QUEUED,
                started_by=actor if actor is not None and actor.is_authenticated else None,
            )
    except IntegrityError:
        active = SyncRun.objects.filter(tenant=tenant, kind=kind, status__in=SyncRun.ACTIVE_STATUSES).first()
        raise SyncAlreadyRunning(active) from None



SYNC_TASK_NAMES = {
    SyncRun.Kind.CONTACTS: "wecom_integration.tasks.run_contact_sync",
    SyncRun.Kind.CUSTOMERS: "wecom_integration.tasks.run_customer_sync",
}


def waiting_for_worker_q(now=None) -> Q:
    """Runs queued longer than ``WECOM["QUEUED_JOB_STALE_AFTER"]`` that no worker has started: pending and
    never started (a rate-limited run put back to pending was started, and waits for its retry)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=wecom_settings.QUEUED_JOB_STALE_AFTER)
    return Q(status=SyncRun.Status.PENDING, started_at__isnull=True, created_at__lte=cutoff)


def is_waiting_for_worker(run: SyncRun, now=None) -> bool:
    cutoff = (now or timezone.now()) - timedelta(seconds=wecom_settings.QUEUED_JOB_STALE_AFTER)
    return run.status == SyncRun.Status.PENDING and run.started_at is None and run.created_at <= cutoff


def queue_of(run: SyncRun) -> str:
    """The Celery queue the run's task was sent to (the host's routes, else the app's)."""
    from wecom_integration.celery_config import queue_for

    return queue_for(SYNC_TASK_NAMES[run.kind])


def cancel_runs(runs, actor=None) -> int:
    """Cancel the runs of ``runs`` (a queryset) that no worker has started yet, whatever their age;
    returns how many. Each is audit-logged; a worker that picks up a cancelled run's task does nothing,
    and the tenant may start a new sync at once (the one-active-sync constraint no longer holds it)."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            runs.filter(status=SyncRun.Status.PENDING, started_at__isnull=True)
            .select_for_update(of=("self",))
            .values_list("pk", "tenant_id", "kind")
        )
        # The status condition again: a worker may have started one between the read and the lock.
        SyncRun.objects.filter(pk__in=[pk for pk, _t, _k in ids], status=SyncRun.Status.PENDING,
                               started_at__isnull=True).update(
            status=SyncRun.Status.CANCELLED, finished_at=now, phase=""
        )
        actor_id = actor.pk if actor is not None and actor.is_authenticated else None
        AuditLog.objects.bulk_create(
            AuditLog(tenant_id=tenant_id, actor_id=actor_id, action=AuditLog.Action.CANCEL_SYNC,
                     detail={"run": pk, "kind": kind, "source": "admin"})
            for pk, tenant_id, kind in ids
        )
    for pk, tenant_id, kind in ids:
        observability.log_event(logger, "sync.cancelled", tenant=tenant_id, kind=kind, run=pk)
    return len(ids)


def active_run(tenant, kind=SyncRun.Kind.CONTACTS):
    """The tenant's pending or running run of ``kind``, or None."""
    return SyncRun.objects.filter(tenant=tenant, kind=kind, status__in=SyncRun.ACTIVE_STATUSES).first()


class Progress:
    """Saves a run's phase and done/total while it works.

    Each save is one UPDATE of the run row outside any transaction (the fetch runs in autocommit), so
    it is visible to the admin's progress page at once. Saves are spaced out by count — about 200 per
    phase — so progress costs a few hundred queries at most, whatever the size of the organisation.
    """

    STEPS = 200
    #: Items between saves while the total is not known yet (e.g. paging through user/list_id).
    UNKNOWN_TOTAL_STEP = 1000

    def __init__(self, run_id: int, kind: str = "contacts"):
        self.run_id = run_id
        self.kind = kind
        self._phase_clock = time.monotonic()
        self.phase = ""
        self.done = 0
        self.total = 0
        self._saved = 0
        self._step = 1

    def start(self, phase: str, total: int = 0) -> None:
        """Enter ``phase`` with ``total`` items to do (0 when unknown yet)."""
        if self.phase:
            seconds = time.monotonic() - self._phase_clock
            observability.record_sync_phase(self.kind, self.phase, seconds)
            observability.log_event(
                logger, "sync.phase", run=self.run_id, kind=self.kind, phase=self.phase, done=self.done,
                total=self.total, duration_ms=round(seconds * 1000, 1),
            )
        self._phase_clock = time.monotonic()
        self.phase, self.done, self.total, self._saved = phase, 0, total, 0
        self._step = self._step_for(total)
        self._save()

    def set_total(self, total: int) -> None:
        self.total = total
        self._step = self._step_for(total)
        self._save()

    def _step_for(self, total: int) -> int:
        return max(1, total // self.STEPS) if total else self.UNKNOWN_TOTAL_STEP

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.done - self._saved >= self._step or (self.total and self.done >= self.total):
            self._save()

    def _save(self) -> None:
        self._saved = self.done
        SyncRun.objects.filter(pk=self.run_id).update(phase=self.phase, done=self.done, total=max(self.total, 0))


def error_entry(exc: BaseException, phase: str = "") -> dict:
    """How an error is kept in ``SyncRun.errors``: what the admin must know, never a secret."""
    entry = {"at": timezone.now().isoformat(), "phase": phase}
    if isinstance(exc, WeComConfigError):
        entry.update(errcode=exc.errcode, path=exc.path, message=str(exc.admin_message))
    elif isinstance(exc, IntegrationDisabled):
        entry.update(errcode=None, path="", message=exc.errmsg)
    elif isinstance(exc, WeComError):
        entry.update(errcode=exc.errcode, path=exc.path, message=str(exc))
    else:
        entry.update(errcode=None, path="", message=_("Internal error (%(type)s); see the server log.")
                     % {"type": type(exc).__name__})
    return entry


def fail_run(run_id: int, exc: BaseException, phase: str = "") -> None:
    """Mark a run failed with ``exc`` as its last error."""
    run = SyncRun.objects.get(pk=run_id)
    run.errors = [*run.errors, error_entry(exc, phase or run.phase)]
    run.status = SyncRun.Status.FAILED
    run.finished_at = timezone.now()
    run.save(update_fields=["errors", "status", "finished_at"])
    observability.record_sync_run(run.kind, "failed", run.duration)
    observability.log_event(
        logger, "sync.finished", level=logging.WARNING, tenant=run.tenant_id, kind=run.kind, run=run.pk,
        outcome="failed", phase=phase or run.phase, error=type(exc).__name__,
    )


def requeue_run(run_id: int, exc: WeComRateLimited) -> None:
    """Put a rate-limited run back to pending with the error noted; its task retries later."""
    run = SyncRun.objects.get(pk=run_id)
    entry = error_entry(exc, run.phase)
    entry["retry_after"] = exc.retry_after
    run.status = SyncRun.Status.PENDING
    if getattr(exc, "scope", None) in HOURLY_SCOPES:
        # Not an error: the run waits for the hour's budget, and the progress page says until when.
        run.waiting_until = timezone.now() + timedelta(seconds=exc.retry_after)
        run.save(update_fields=["status", "waiting_until"])
        return
    run.errors = [*run.errors, entry]
    run.save(update_fields=["errors", "status"])


#: The budget windows whose exhaustion makes a sync wait (an hour at most) instead of failing.
HOURLY_SCOPES = ("hour", "ip-hour")


def check_hourly_budget(run: SyncRun, corp_id: str) -> None:
    """Before fetching: when the tenant's last contact sync had to ask for each member (``user/get``, the
    fallback), this one will too; if the hour's budget cannot take that many calls now, raise
    WeComRateLimited (scope "hour") with the wait, so the run waits instead of WeCom blocking the corp."""
    from wecom_integration.client.ratelimit import hourly_wait

    last = (
        SyncRun.objects.filter(tenant_id=run.tenant_id, kind=run.kind, fallback_mode=True)
        .exclude(pk=run.pk)
        .exclude(finished_at__isnull=True)
        .order_by("-finished_at")
        .first()
    )
    if last is None:
        return
    needed = int(last.counts.get("fetched_users", 0)) + int(last.counts.get("fetched_departments", 0)) + 10
    wait = hourly_wait(corp_id, needed)
    if wait is None or wait <= wecom_settings.RATE_BUDGET_MAX_WAIT:
        # None: more than an hour's budget; it runs, and waits in the middle when the hour is spent.
        return
    raise WeComRateLimited(None, "waiting for WeCom's hourly call budget", "", None,
                           retry_after=int(wait) + 1, scope="hour")


def fail_stale_runs(older_than_seconds: float) -> int:
    """Fail runs left pending or running longer than ``older_than_seconds`` (a worker died mid-run),
    so that the tenant can start a new one; returns how many."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    # A run that waited for the hour's budget is stale only that long after its wait ended.
    stale = SyncRun.objects.filter(status__in=SyncRun.ACTIVE_STATUSES, created_at__lt=cutoff).exclude(
        waiting_until__gt=cutoff
    )
    count = 0
    for run in stale:
        run.errors = [
            *run.errors,
            {"at": timezone.now().isoformat(), "phase": run.phase, "errcode": None, "path": "",
             "message": _("The sync stopped without finishing (the worker was stopped or timed out).")},
        ]
        run.status = SyncRun.Status.FAILED
        run.finished_at = timezone.now()
        run.save(update_fields=["errors", "status", "finished_at"])
        count += 1
    return count


class IntegrationDisabled(WeComError):
    """The tenant's WeCom configuration is switched off: nothing is fetched."""

    def __init__(self):
        super().__init__(
            None, _("The WeCom integration is switched off for this tenant (WeCom configuration → enabled).")
        )
        # Rebuilt as cls(*args) when unpickled.
        self.args = ()


def sync_config(tenant, kind: str) -> WeComConfig:
    """The tenant's WeCom configuration for a sync; WeComNotConfigured or IntegrationDisabled if unusable."""
    config = WeComConfig.objects.filter(tenant=tenant).first()
    if config is None:
        raise WeComNotConfigured(kind, "corp_id")
    if not config.enabled:
        raise IntegrationDisabled()
    return config


def sync_client(config: WeComConfig, kind: str, **kwargs):
    """A client for a bulk sync with the secret of ``kind`` (the client's default budget keeps it under
    WeCom's per-minute limit in any minute)."""
    return client_for(config, kind, **kwargs)


def contacts_client(config: WeComConfig, **kwargs):
    """The client the sync reads contacts with: the contact Secret, else the app Secret (which sees
    the app's visible range only)."""
    try:
        return sync_client(config, "contacts", **kwargs)
    except WeComNotConfigured as exc:
        if exc.field != "secret":
            raise
        return sync_client(config, "app", **kwargs)


def app_client_factory(config: WeComConfig, **kwargs) -> Callable:
    """Build the app Secret's client only when the 2022 world needs it (WeComNotConfigured then if the
    app Secret is empty: the admin is told to fill it in)."""
    return lambda: sync_client(config, "app", **kwargs)


def outside_range_help() -> str:
    """What the admin must change in WeCom for members outside the app's visible range."""
    return _(
        "This WeCom member is outside the app's visible range, so the app cannot read their name. In the "
        "WeCom admin console open App Management → this app → Visible Range (应用管理 → 应用 → 可见范围) "
        "and add the member or their department, then sync again."
    )

# The sync tasks' names, a contract with running deployments (routes and queued messages name them).
TASKS = {
    SyncRun.Kind.CONTACTS: "wecom_integration.tasks.run_contact_sync",
    SyncRun.Kind.CUSTOMERS: "wecom_integration.tasks.run_customer_sync",
}


def start_sync(tenant, kind=SyncRun.Kind.CONTACTS, actor=None):
    """Record a pending run and queue its task once the run is committed; returns the run.

    Raises :class:`SyncAlreadyRunning` when one of this kind is pending or running.
    """
    run = create_run(tenant, kind, actor)
    # After commit: a worker must find the run when it picks the task up.
    transaction.on_commit(lambda: queueing.delay(TASKS[kind], run.pk))
    return run


# WeCom blocks a corp for 60 s after a minute limit: ten retries ride out ten minutes of limits. Past
# that the corp is over its hourly limit and the admin is better told than the sync silently delayed.
MAX_RATE_LIMIT_RETRIES = 10


def run_with_retries(task, run_id, execute):
    """Run ``execute(run_id)`` for a sync task: a run gone is logged, WeCom's frequency limit retries the
    task after its ``retry_after`` until ``max_retries``, then fails the run. Returns the run's status.
    The customers room's task runs through this too."""
    try:
        run = execute(run_id)
    except SyncRun.DoesNotExist:
        logger.warning("sync run %s no longer exists", run_id)
        return None
    except WeComRateLimited as exc:
        if getattr(exc, "scope", None) in HOURLY_SCOPES and queueing.is_eager():
            # No broker to hold the retry for an hour (the embedded default): the run stays pending with
            # its waiting_until, and the admin starts it again then.
            return SyncRun.Status.PENDING
        if task.request.retries >= task.max_retries:
            fail_run(run_id, exc)
            return SyncRun.Status.FAILED
        raise task.retry(countdown=exc.retry_after, exc=exc) from None
    return run.status
