"""The contact sync: fetch the tenant's WeCom organisation, mirror it, propose bindings, confirm them.

The flow (issue 5, seed 001's "Synchronize user departments to local"):

1. :func:`create_run` records a pending :class:`SyncRun`; the database allows one pending or running run
   per tenant and kind, so a second start raises :class:`SyncAlreadyRunning`.
2. :func:`execute_contact_run` (the Celery task calls it) fetches *everything* first — the department
   tree and every member — saving the run's phase and done/total as it goes, each save its own short
   autocommitted UPDATE so the admin's progress page sees it while the task runs. Two worlds:

   * the old one (corps and IPs set up before the 2022 rules): the contact-sync secret reads
     everything, ``department/list`` + ``user/list`` per department (subtrees at once);
   * since 2022 the contact-sync secret called from a new IP may only list ids, and answers 48009 "api
     forbidden for contact assistant" to every read of details (wecom-facts.md; the 48009 page). On the
     first 48009 the sync takes the ids from the contact secret (``department/simplelist``,
     ``user/list_id``, https://developer.work.weixin.qq.com/document/path/96067) and the names,
     departments and positions from the app secret, in bulk (``department/list``, ``user/list`` per
     department), with ``user/get`` only for the members no list gave. The app sees its visible range
     (可见范围) only: members and departments outside it are *not visible*, kept as they were and listed
     on the review screen with what to change in the WeCom admin, never ended nor created nameless.

   Both secrets' clients spend the same per-corp rate budget (``client/ratelimit.py``).
3. Then, in one transaction, the mirror is brought up to date: new and changed rows are upserted in
   batches, unchanged members are recognised by their fingerprint and not written at all, and what
   WeCom no longer lists is marked removed, never deleted; what the sync could not see is never marked
   removed. A fetch that fails half-way therefore leaves the mirror as it was, and the run failed with
   its error.
4. Matching (seed 001): unbound WeCom members are matched by name with the tenant's unbound accounts;
   names are compared after NFKC, trimming, collapsing whitespace and case folding, and a name held by
   more than one person on either side is never matched automatically. The result is a
   :class:`SyncProposal` per unbound member, reviewed by an admin.
5. :func:`confirm_run` applies the reviewed proposals and/or explicit decisions in one transaction:
   bind matched pairs, create accounts named house number + userid with an unusable password, make
   existing non-members pending members (审核中), update existing members' names. Any invalid decision
   fails the whole confirm and changes nothing.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from wecom_integration import queueing, tenancy
from wecom_integration.client import (
    WeComConfigError,
    WeComError,
    WeComNotConfigured,
    WeComRateLimited,
    client_for,
)
from wecom_integration.conf import wecom_settings
from wecom_integration.directory import bindings
from wecom_integration.directory.services import (
    DEPARTMENT_FIELDS,
    LEAVING_STATUSES,
    USER_FIELDS,
    department_fields_from_api,
    fingerprint,
    mark_user_left,
    user_fields_from_api,
)
from wecom_integration.extension import get_adapter
from wecom_integration.models import (
    AuditLog,
    Binding,
    Department,
    SyncProposal,
    SyncRun,
    WeComConfig,
    WeComUser,
)
from wecom_integration.operations import observability

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


# Runs and progress ---------------------------------------------------------------------------------


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


# Work no worker has picked up (issue 24) --------------------------------------------------------------

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
    run.errors = [*run.errors, entry]
    run.status = SyncRun.Status.PENDING
    run.save(update_fields=["errors", "status"])


def fail_stale_runs(older_than_seconds: float) -> int:
    """Fail runs left pending or running longer than ``older_than_seconds`` (a worker died mid-run),
    so that the tenant can start a new one; returns how many."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = SyncRun.objects.filter(status__in=SyncRun.ACTIVE_STATUSES, created_at__lt=cutoff)
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


# Fetching ------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """Everything fetched from WeCom, before any of it is written.

    ``users`` maps userid to the fields :func:`directory.user_fields_from_api` made of the member: only
    the keys WeCom gave (fields withheld under the 2022 rules are absent, and stay as stored).
    ``hidden_users`` / ``hidden_departments`` exist in WeCom but the app may not read them (outside its
    visible range): they are kept as stored and marked not visible. ``complete`` is False when the ids
    came from the app's lists only (no contact Secret): then what is absent may merely be out of range,
    and :func:`probe_unseen` asks about each stored one before anything is marked removed.
    """

    departments: dict[int, dict] = field(default_factory=dict)
    users: dict[str, dict] = field(default_factory=dict)
    hidden_users: set[str] = field(default_factory=set)
    hidden_departments: set[int] = field(default_factory=set)
    fallback: bool = False
    complete: bool = True
    vanished: int = 0


def run_pool(func: Callable, items: Iterable, workers: int, on_result: Callable) -> None:
    """Call ``func(item)`` for every item on ``workers`` threads, and ``on_result(item, result)`` in the
    calling thread as each finishes. At most a few calls per worker are queued, so a long ``items``
    iterator is never turned into as many futures at once. The first exception cancels what is
    queued and is raised here."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wecom-sync")
    in_flight = {}
    items = iter(items)
    exhausted = False
    try:
        while True:
            while not exhausted and len(in_flight) < workers * 4:
                try:
                    item = next(items)
                except StopIteration:
                    exhausted = True
                    break
                in_flight[pool.submit(func, item)] = item
            if not in_flight:
                return
            finished, _pending = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                item = in_flight.pop(future)
                on_result(item, future.result())
    finally:
        # Running calls finish on their own (each has a timeout); queued ones are dropped.
        pool.shutdown(wait=True, cancel_futures=True)


def _is_forbidden(exc: WeComError) -> bool:
    return isinstance(exc, WeComConfigError) and exc.errcode == FORBIDDEN_API


def fetch_directory(client, progress: Progress, workers: int = DEFAULT_WORKERS,
                    app_client: Callable | None = None) -> Snapshot:
    """Fetch the department tree and every member the client may see; nothing is written here.

    ``client`` is the contact Secret's (else the app Secret's); ``app_client`` builds the app Secret's
    client, called only in the 2022 world (the first 48009).
    """
    snapshot = Snapshot(complete=client.kind != "app")
    progress.start(Phase.DEPARTMENTS)
    try:
        raw_departments = client.department.list()
    except WeComError as exc:
        if not _is_forbidden(exc):
            raise
        logger.info("department/list forbidden (48009): ids from the contact Secret, details from the app")
        return _fetch_2022(client, app_client, snapshot, progress, workers)
    for item in raw_departments:
        try:
            dept_id = int(item["id"])
        except (KeyError, TypeError, ValueError):
            continue
        snapshot.departments[dept_id] = department_fields_from_api(item)
    del raw_departments
    progress.set_total(len(snapshot.departments))
    progress.advance(len(snapshot.departments))
    try:
        _fetch_user_lists(client, snapshot, progress, workers)
    except WeComError as exc:
        if not _is_forbidden(exc):
            raise
        logger.info("user/list forbidden (48009): ids from the contact Secret, details from the app")
        snapshot = Snapshot(complete=snapshot.complete)
        return _fetch_2022(client, app_client, snapshot, progress, workers)
    return snapshot


def _fetch_2022(ids_client, app_client: Callable | None, snapshot: Snapshot, progress: Progress,
                workers: int) -> Snapshot:
    """The 2022 world: every id from the contact Secret, the details from the app Secret.

    ``department/simplelist`` and ``user/list_id`` (contact Secret) say what exists; ``department/list``
    and ``user/list`` per department (app Secret, https://developer.work.weixin.qq.com/document/path/90201)
    give names, departments and positions of what the app's visible range holds; ``user/get`` is asked
    only for members no list gave (members put in the range one by one): 60011 means outside the range.
    """
    snapshot.fallback = True
    if app_client is None:
        raise WeComNotConfigured("app", "secret")
    details = app_client()
    ids = {}
    for item in ids_client.department.simplelist():
        try:
            ids[int(item["id"])] = item
        except (KeyError, TypeError, ValueError):
            continue
    try:
        named = details.department.list()
    except WeComConfigError as exc:
        if exc.errcode != NOT_VISIBLE:
            raise
        named = []
    for item in named:
        try:
            dept_id = int(item["id"])
        except (KeyError, TypeError, ValueError):
            continue
        if dept_id in ids and str(item.get("name") or "").strip():
            snapshot.departments[dept_id] = department_fields_from_api(item)
    snapshot.hidden_departments = set(ids) - set(snapshot.departments)
    del named
    progress.set_total(len(ids))
    progress.advance(len(ids))

    progress.start(Phase.USER_IDS)
    userids = {}
    for entry in ids_client.user.iter_list_id():
        userid = entry.get("userid")
        if userid and userid not in userids:
            userids[userid] = None
            progress.advance()

    _fetch_user_lists(details, snapshot, progress, workers)
    # Listed by user/list but not by list_id: left meanwhile (list_id came first) or a race; keep
    # only what both agree exists.
    for userid in [u for u in snapshot.users if u not in userids]:
        del snapshot.users[userid]
    _fetch_user_details(details, snapshot, [u for u in userids if u not in snapshot.users], progress, workers)
    return snapshot
def plan_user_lists(departments: dict[int, dict], subtree_limit: int | None = None) -> list[tuple[int, bool]]:
    """The ``user/list`` calls that cover every department: ``(dept_id, recursive)``.

    A subtree of at most ``subtree_limit`` departments is asked for in one call with ``fetch_child=1``;
    the departments above such subtrees are asked for one by one (their own members only). That keeps
    each answer small while a 5,000-department corp takes a few dozen calls instead of 5,000.
    """
    subtree_limit = subtree_limit or SUBTREE_DEPARTMENTS
    children = defaultdict(list)
    for dept_id, fields in departments.items():
        children[fields.get("parent_id")].append(dept_id)
    roots = [d for d, fields in departments.items() if fields.get("parent_id") not in departments]
    order, seen, stack = [], set(), list(roots)
    while stack:
        dept_id = stack.pop()
        if dept_id in seen:
            continue
        seen.add(dept_id)
        order.append(dept_id)
        stack.extend(children.get(dept_id, ()))
    size = {}
    for dept_id in reversed(order):
        size[dept_id] = 1 + sum(size.get(child, 0) for child in children.get(dept_id, ()) if child in seen)
    calls, stack = [], list(roots)
    while stack:
        dept_id = stack.pop()
        if size[dept_id] <= subtree_limit:
            calls.append((dept_id, size[dept_id] > 1))
        else:
            calls.append((dept_id, False))
            stack.extend(children[dept_id])
    # A parent cycle (not a tree) leaves departments unreached from any root: ask for them one by one.
    calls.extend((dept_id, False) for dept_id in departments if dept_id not in seen)
    return calls


def _subtree(departments: dict[int, dict], top: int) -> list[int]:
    children = defaultdict(list)
    for dept_id, fields in departments.items():
        children[fields.get("parent_id")].append(dept_id)
    out, seen, stack = [], set(), list(children.get(top, ()))
    while stack:
        dept_id = stack.pop()
        if dept_id not in seen and dept_id != top:
            seen.add(dept_id)
            out.append(dept_id)
            stack.extend(children.get(dept_id, ()))
    return out


def _fetch_user_lists(client, snapshot: Snapshot, progress: Progress, workers: int) -> None:
    """``user/list`` over the whole tree (see :func:`plan_user_lists`); a member in several departments
    is listed in each and kept once.

    ``fetch_child`` is deprecated by WeCom, so a recursive answer is trusted only when it proves it
    recursed (a member placed below the department asked for); otherwise the departments below are
    asked for one by one. https://developer.work.weixin.qq.com/document/path/90201
    """
    departments = snapshot.departments
    calls = plan_user_lists(departments)
    progress.start(Phase.USERS, len(departments))
    if not calls:
        return
    users = snapshot.users
    unproven = []

    def fetch(call):
        dept_id, recursive = call
        params = {"department_id": dept_id, "fetch_child": 1} if recursive else {"department_id": dept_id}
        return client.get("user/list", params).get("userlist") or []

    def collect(call, userlist):
        dept_id, recursive = call
        recursed = False
        for data in userlist:
            userid = data.get("userid")
            if recursive and not recursed and dept_id not in (data.get("department") or ()):
                recursed = True
            if userid and userid not in users:
                users[userid] = user_fields_from_api(data)
        if recursive and not recursed:
            unproven.append(dept_id)
            progress.advance()
        else:
            progress.advance(len(_subtree(departments, dept_id)) + 1 if recursive else 1)

    # The first call alone: a 48009 is then one refused call, not one per worker.
    collect(calls[0], fetch(calls[0]))
    run_pool(fetch, calls[1:], workers, collect)
    below = [(dept_id, False) for top in unproven for dept_id in _subtree(departments, top)]
    if below:
        run_pool(fetch, below, workers, collect)


def _fetch_user_details(client, snapshot: Snapshot, userids: list[str], progress: Progress,
                        workers: int) -> None:
    """``user/get`` of each of ``userids`` (those no bulk list gave): a member outside the app's
    visible range (60011) is noted in ``hidden_users``, one who left meanwhile (60111) is counted."""
    progress.start(Phase.DETAILS, len(userids))
    users = snapshot.users

    def get(userid):
        try:
            return client.user.get(userid)
        except WeComError as exc:
            if exc.errcode in (USER_NOT_FOUND, NOT_VISIBLE):
                return exc.errcode
            raise

    def collect(userid, data):
        if data == USER_NOT_FOUND:
            snapshot.vanished += 1
        elif data == NOT_VISIBLE:
            snapshot.hidden_users.add(userid)
        else:
            users[userid] = user_fields_from_api(data)
        progress.advance()

    run_pool(get, userids, workers, collect)


def probe_unseen(client, tenant, snapshot: Snapshot, progress: Progress, workers: int = DEFAULT_WORKERS) -> None:
    """When only the app's lists were read (no contact Secret), a stored member or department missing
    from them may have left or may merely be outside the app's visible range: ask about each (a
    ``user/get`` / ``department/get``) so only what WeCom says is gone gets marked removed."""
    if snapshot.complete:
        return
    stored = WeComUser.objects.filter(tenant=tenant, removed=False).values_list("userid", flat=True)
    missing = [u for u in stored.iterator(chunk_size=5000) if u not in snapshot.users]
    _fetch_user_details(client, snapshot, missing, progress, workers)
    stored_departments = Department.objects.filter(tenant=tenant, removed=False).values_list("dept_id", flat=True)
    for dept_id in [d for d in stored_departments if d not in snapshot.departments]:
        try:
            data = client.get("department/get", {"id": dept_id}).get("department") or {}
        except WeComError as exc:
            if exc.errcode == NOT_VISIBLE:
                snapshot.hidden_departments.add(dept_id)
                continue
            if exc.errcode in DEPARTMENT_NOT_FOUND:
                continue
            raise
        if str(data.get("name") or "").strip():
            snapshot.departments[dept_id] = department_fields_from_api(data)
    snapshot.complete = True


# Applying ------------------------------------------------------------------------------------------


def _user_defaults() -> dict:
    return {name: WeComUser._meta.get_field(name).get_default() for name in USER_FIELDS}


def chunks(items: list, size: int = BATCH_SIZE):
    """``items`` in lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def apply_snapshot(tenant, snapshot: Snapshot, since: int) -> dict:
    """Bring the tenant's mirror up to date with ``snapshot`` (inside the caller's transaction).

    ``since`` is when the fetch began (Unix time): a row a contact callback changed after that holds
    newer news than the snapshot and is left alone. Returns counts, including ``rows_written``.
    """
    departments = _apply_departments(tenant, snapshot.departments, since, snapshot.hidden_departments)
    users, changed = _apply_users(tenant, snapshot.users, since, snapshot.hidden_users)
    left = deactivate_leavers(tenant)
    renamed = refresh_bound_names(tenant, changed)
    hidden = sorted(snapshot.hidden_users)
    return {
        "departments": departments,
        "users": users,
        "left": left,
        "accounts_renamed": renamed,
        # For the review screen: who exists in WeCom but could not be read (outside the app's range).
        "outside_range": {
            "users": len(hidden),
            "userids": hidden[:OUTSIDE_RANGE_LISTED],
            "departments": len(snapshot.hidden_departments),
        },
        "rows_written": departments["written"] + users["written"] + left["rows_written"] + renamed,
    }


def refresh_bound_names(tenant, userids: list[str]) -> int:
    """Give the accounts bound to these (changed) members their WeCom name, when they are active
    members of the tenant (seed 001: an existing member is updated directly). Returns how many."""
    User = get_user_model()
    first_max = User._meta.get_field("first_name").max_length
    renamed = []
    for chunk in chunks(userids):
        rows = (
            Binding.objects.filter(tenant=tenant, is_active=True, wecom_user__userid__in=chunk)
            .filter(user_id__in=get_adapter().member_user_ids(tenant, (tenancy.ACTIVE,)))
            .exclude(wecom_user__name="")
            .values_list("user_id", "wecom_user__name", "user__first_name", "user__last_name")
        )
        for user_id, name, first, last in rows:
            if f"{first} {last}".strip() != name:
                renamed.append(User(pk=user_id, first_name=name[:first_max], last_name=""))
    User.objects.bulk_update(renamed, ["first_name", "last_name"], batch_size=BATCH_SIZE)
    return len(renamed)


def _apply_departments(tenant, fetched: dict[int, dict], since: int, hidden: set[int] = frozenset()) -> dict:
    """Upsert the fetched departments; a department WeCom lists but the app may not read (``hidden``) is
    kept as stored and marked not visible, and one not stored yet is not created (it has no name)."""
    existing = {row.dept_id: row for row in Department.objects.filter(tenant=tenant)}
    created, changed_rows, changed_fields = [], [], set()
    unchanged = skipped = 0
    for dept_id, fields in fetched.items():
        row = existing.pop(dept_id, None)
        if row is None:
            created.append(Department(tenant=tenant, dept_id=dept_id, last_event_time=since, **fields))
            continue
        if row.last_event_time > since:
            skipped += 1
            continue
        changed = [name for name, value in fields.items() if getattr(row, name) != value]
        if row.removed:
            row.removed = False
            changed.append("removed")
        if not row.visible:
            row.visible = True
            changed.append("visible")
        if not changed:
            unchanged += 1
            continue
        for name in changed:
            if name not in ("removed", "visible"):
                setattr(row, name, fields[name])
        row.last_event_time = since
        changed_rows.append(row)
        changed_fields.update(changed)
    unseen = [row.pk for dept_id, row in existing.items() if dept_id in hidden and row.visible]
    gone = [row.pk for dept_id, row in existing.items()
            if dept_id not in hidden and not row.removed and row.last_event_time <= since]
    Department.objects.bulk_create(created, batch_size=BATCH_SIZE)
    if changed_rows:
        _bulk_update_departments(changed_rows, changed_fields)
    for chunk in chunks(gone):
        Department.objects.filter(pk__in=chunk).update(removed=True, updated_at=timezone.now())
    for chunk in chunks(unseen):
        Department.objects.filter(pk__in=chunk).update(visible=False, updated_at=timezone.now())
    return {
        "created": len(created),
        "updated": len(changed_rows),
        "removed": len(gone),
        "not_visible": len(hidden),
        "unchanged": unchanged,
        "skipped_newer": skipped,
        "written": len(created) + len(changed_rows) + len(gone) + len(unseen),
    }


def _bulk_update_departments(rows, fields):
    now = timezone.now()
    for row in rows:
        row.updated_at = now
    names = [name for name in (*DEPARTMENT_FIELDS, "removed", "visible") if name in fields]
    Department.objects.bulk_update(rows, [*names, "last_event_time", "updated_at"], batch_size=BATCH_SIZE)


def _apply_users(tenant, fetched: dict[str, dict], since: int, hidden: set[str] = frozenset()) -> dict:
    """Upsert the fetched members; a member WeCom lists but the app may not read (``hidden``) is kept as
    stored and marked not visible (never removed, so never deactivated), and one not stored yet is not
    created: it has no name to show or match."""
    all_fields = set(USER_FIELDS)
    # Fields WeCom withheld from some members (2022 rules: mobile, email, avatar …): for those the
    # stored value stands, so it has to be read to compute the fingerprint the row will have.
    withheld = set()
    for fields in fetched.values():
        if len(fields) < len(all_fields):
            withheld |= all_fields - fields.keys()
    withheld = sorted(withheld)
    defaults = _user_defaults()
    existing = {}
    rows = WeComUser.objects.filter(tenant=tenant).values_list(
        "userid", "fingerprint", "removed", "last_event_time", "visible", *withheld
    )
    for row in rows.iterator(chunk_size=5000):
        existing[row[0]] = row[1:]
    created = updated = unchanged = skipped = 0
    batch, changed = [], []
    upsert_fields = [*USER_FIELDS, "fingerprint", "removed", "visible", "last_event_time", "updated_at"]

    def flush():
        WeComUser.objects.bulk_create(
            batch,
            batch_size=BATCH_SIZE,
            update_conflicts=True,
            unique_fields=["tenant", "userid"],
            update_fields=upsert_fields,
        )
        batch.clear()

    for userid, fields in fetched.items():
        old = existing.pop(userid, None)
        if len(fields) < len(all_fields):
            full = dict(defaults)
            if old is not None:
                full.update(zip(withheld, old[4:], strict=True))
            full.update(fields)
        else:
            full = fields
        digest = fingerprint(full)
        if old is None:
            created += 1
        elif old[2] > since:
            skipped += 1
            continue
        elif old[0] == digest and not old[1] and old[3]:
            unchanged += 1
            continue
        else:
            updated += 1
            changed.append(userid)
        batch.append(
            WeComUser(tenant=tenant, userid=userid, removed=False, visible=True, fingerprint=digest,
                      last_event_time=since, **full)
        )
        if len(batch) >= BATCH_SIZE:
            flush()
    if batch:
        flush()
    gone = [userid for userid, old in existing.items() if userid not in hidden and not old[1] and old[2] <= since]
    unseen = [userid for userid, old in existing.items() if userid in hidden and old[3]]
    del existing
    for chunk in chunks(gone):
        WeComUser.objects.filter(tenant=tenant, userid__in=chunk).update(removed=True, updated_at=timezone.now())
    for chunk in chunks(unseen):
        WeComUser.objects.filter(tenant=tenant, userid__in=chunk).update(visible=False, updated_at=timezone.now())
    counts = {
        "created": created,
        "updated": updated,
        "removed": len(gone),
        "not_visible": len(hidden),
        "unchanged": unchanged,
        "skipped_newer": skipped,
        "written": created + updated + len(gone) + len(unseen),
    }
    return counts, changed


def deactivate_leavers(tenant) -> dict:
    """Deactivate the bindings (and, per settings, memberships) of members who left WeCom, were
    disabled or removed; the system users are kept. Returns counts."""
    leaving = (
        Binding.objects.filter(tenant=tenant, is_active=True)
        .filter(Q(wecom_user__removed=True) | Q(wecom_user__status__in=LEAVING_STATUSES))
        .select_related("wecom_user")
    )
    bindings = memberships = 0
    for binding in leaving:
        user = binding.wecom_user
        reason = "removed" if user.removed else f"status_{user.status}"
        b, m = mark_user_left(tenant.pk, user, reason=reason)
        bindings += b
        memberships += m
    # Each deactivated binding also writes one audit row.
    return {"bindings": bindings, "memberships": memberships, "rows_written": 2 * bindings + memberships}


# Matching ------------------------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
# Whitespace between two CJK characters carries no meaning (王 明 is 王明); between Latin words it does.
_CJK = r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]"
_CJK_GAP = re.compile(rf"(?<={_CJK}) (?={_CJK})")


def normalize_name(name: str) -> str:
    """A person's name as matching compares it: NFKC (full-width → half-width), trimmed, inner
    whitespace collapsed to one space and removed between CJK characters, case-folded."""
    text = unicodedata.normalize("NFKC", name or "")
    text = _SPACES.sub(" ", text).strip()
    text = _CJK_GAP.sub("", text)
    return text.casefold()


def user_name_keys(first_name: str, last_name: str) -> set[str]:
    """The names a system user may go by: ``get_full_name()`` ("first last"), and surname first with
    no space, as Chinese names are written (last_name 王 + first_name 明 → 王明)."""
    keys = {normalize_name(f"{first_name or ''} {last_name or ''}")}
    if first_name and last_name:
        keys.add(normalize_name(f"{last_name}{first_name}"))
    keys.discard("")
    return keys


@dataclass(frozen=True)
class Match:
    """The outcome of matching one WeCom member: ``user_id`` when matched, else the candidates."""

    user_id: int | None
    ambiguous: bool
    candidates: tuple[int, ...] = ()
    same_name_members: int = 1


def match_names(wecom_users: Iterable[tuple[int, str]], users: Iterable[tuple[int, str, str]]) -> dict:
    """Match WeCom members ``(id, name)`` with system users ``(id, first_name, last_name)`` by name.

    Returns ``{wecom_id: Match}``. A pair is matched only when the name is held by exactly one member
    and exactly one user, and that user matches no other member; anything else is ambiguous and left
    to the admin.
    """
    members_by_key = defaultdict(list)
    member_key = {}
    for wecom_id, name in wecom_users:
        key = normalize_name(name)
        member_key[wecom_id] = key
        if key:
            members_by_key[key].append(wecom_id)
    users_by_key = defaultdict(set)
    for user_id, first_name, last_name in users:
        for key in user_name_keys(first_name, last_name):
            if key in members_by_key:
                users_by_key[key].add(user_id)
    result = {}
    claimed = defaultdict(list)
    for wecom_id, key in member_key.items():
        candidates = tuple(sorted(users_by_key.get(key, ()))) if key else ()
        same_name = len(members_by_key.get(key, ())) if key else 1
        if len(candidates) == 1 and same_name == 1:
            result[wecom_id] = Match(candidates[0], False, candidates, same_name)
            claimed[candidates[0]].append(wecom_id)
        else:
            result[wecom_id] = Match(None, same_name > 1 or len(candidates) > 1, candidates, same_name)
    # One user matching two members under different spellings (王明 and 明王): neither is certain.
    for user_id, wecom_ids in claimed.items():
        if len(wecom_ids) > 1:
            for wecom_id in wecom_ids:
                result[wecom_id] = Match(None, True, (user_id,), 1)
    return result


def build_proposals(run: SyncRun) -> dict:
    """Replace the run's proposals: one per unbound, bindable WeCom member. Returns counts."""
    tenant = run.tenant
    User = get_user_model()
    bound = Binding.objects.filter(tenant=tenant)
    members = list(
        WeComUser.objects.filter(tenant=tenant, removed=False, visible=True, status__in=BINDABLE_STATUSES)
        .exclude(name="")
        .exclude(pk__in=bound.values("wecom_user_id"))
        .values_list("pk", "name")
    )
    accounts = list(
        User.objects.filter(pk__in=get_adapter().member_user_ids(tenant, tenancy.BINDABLE))
        .exclude(pk__in=bound.values("user_id"))
        # Staff and superuser accounts are bound only by a superuser or their holder (issue 16), never
        # proposed: a tenant admin accepting the proposals would otherwise have the confirm refused.
        .exclude(Q(is_staff=True) | Q(is_superuser=True))
        .values_list("pk", "first_name", "last_name")
        .distinct()
    )
    matches = match_names(members, accounts)
    usernames = {}
    wanted = {uid for match in matches.values() if match.ambiguous for uid in match.candidates[:5]}
    if wanted:
        usernames = dict(User.objects.filter(pk__in=wanted).values_list("pk", User.USERNAME_FIELD))
    counts = {"bind": 0, "create": 0, "skip": 0, "ambiguous": 0}
    SyncProposal.objects.filter(run=run).delete()
    batch = []
    for wecom_id, _name in members:
        match = matches[wecom_id]
        if match.user_id is not None:
            action, note = SyncProposal.Action.BIND, ""
        elif match.candidates:
            action = SyncProposal.Action.SKIP
            names = ", ".join(usernames.get(uid, str(uid)) for uid in match.candidates[:5])
            if len(match.candidates) == 1:
                note = _("Matches %(users)s, who also matches another WeCom member.") % {"users": names}
            else:
                note = _("Several accounts have this name: %(users)s") % {"users": names}
        else:
            action = SyncProposal.Action.CREATE
            note = (
                _("%(count)s WeCom members share this name.") % {"count": match.same_name_members}
                if match.same_name_members > 1
                else ""
            )
        counts[action] += 1
        counts["ambiguous"] += int(match.ambiguous)
        batch.append(
            SyncProposal(
                run=run,
                wecom_user_id=wecom_id,
                user_id=match.user_id,
                action=action,
                ambiguous=match.ambiguous,
                note=note[:255],
            )
        )
        if len(batch) >= BATCH_SIZE:
            SyncProposal.objects.bulk_create(batch, batch_size=BATCH_SIZE)
            batch.clear()
    SyncProposal.objects.bulk_create(batch, batch_size=BATCH_SIZE)
    return counts


def _supersede_reviews(run: SyncRun) -> None:
    """Older runs still waiting for review are replaced by this one: their proposals are stale."""
    older = SyncRun.objects.filter(tenant=run.tenant, kind=run.kind, status=SyncRun.Status.REVIEW).exclude(pk=run.pk)
    for old in older:
        SyncProposal.objects.filter(run=old).delete()
        old.status = SyncRun.Status.SUCCEEDED
        old.counts = {**old.counts, "superseded_by": run.pk}
        old.save(update_fields=["status", "counts"])


# The run -------------------------------------------------------------------------------------------


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
        snapshot = fetch_directory(client, progress, workers, app_client)
        probe_unseen(client, run.tenant, snapshot, progress, workers)
        fetch_seconds = time.monotonic() - clock
        progress.start(Phase.SAVING)
        with transaction.atomic():
            counts = apply_snapshot(run.tenant, snapshot, since)
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


# Confirming ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The admin's decision for one WeCom member: ``bind`` to ``username``, ``create`` an account
    (named ``username``, by default house number + userid) or ``skip``."""

    wecom_userid: str
    action: str
    username: str = ""


def default_username(tenant, wecom_user: WeComUser) -> str:
    """Seed 001: an account created by the sync is named the tenant's house number + the userid (the
    adapter's ``username_for``, so sign-up at sign-in names accounts the same way)."""
    return get_adapter().username_for(tenant, wecom_user)


def plan_from_proposals(run: SyncRun, *, accept_proposals: bool, create_unmatched: bool) -> list[Decision]:
    """Decisions taking the run's proposals as they stand (as reviewed in the admin)."""
    if not (accept_proposals or create_unmatched):
        return []
    User = get_user_model()
    decisions = []
    rows = run.proposals.values_list("wecom_user__userid", "action", f"user__{User.USERNAME_FIELD}")
    for userid, action, username in rows.iterator(chunk_size=5000):
        if action == SyncProposal.Action.BIND and accept_proposals and username:
            decisions.append(Decision(userid, "bind", username))
        elif action == SyncProposal.Action.CREATE and create_unmatched:
            decisions.append(Decision(userid, "create", username or ""))
    return decisions


def confirm_run(
    run: SyncRun,
    *,
    actor=None,
    decisions: Iterable[Decision] = (),
    accept_proposals: bool = False,
    create_unmatched: bool = False,
) -> dict:
    """Apply a reviewed contact sync in one transaction; returns counts.

    The proposals are taken first (``accept_proposals``: matched pairs; ``create_unmatched``: members
    proposed for a new account), then ``decisions`` override them member by member. Raises
    ConfirmError, with one entry per bad decision, and changes nothing, when any decision is invalid.
    """
    with transaction.atomic():
        run = SyncRun.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=run.pk)
        if run.kind != SyncRun.Kind.CONTACTS or run.status != SyncRun.Status.REVIEW:
            raise ConfirmError(
                [{"wecom_userid": "", "username": "", "code": "not_in_review",
                  "message": _("This sync is not waiting for review.")}],
                code="not_in_review",
            )
        plan = {}
        for decision in plan_from_proposals(run, accept_proposals=accept_proposals, create_unmatched=create_unmatched):
            plan[decision.wecom_userid] = decision
        for decision in decisions:
            plan[decision.wecom_userid] = decision
        try:
            with transaction.atomic():
                counts = _apply_plan(run, list(plan.values()), actor)
        except IntegrityError as exc:
            logger.info("Confirm of sync %s hit a constraint: %s", run.pk, exc)
            raise ConfirmError(
                [{"wecom_userid": "", "username": "", "code": "conflict",
                  "message": _("Another change bound one of these accounts meanwhile; review and confirm again.")}],
                code="conflict",
            ) from None
        run.status = SyncRun.Status.CONFIRMED
        run.counts = {**run.counts, "confirm": counts}
        run.save(update_fields=["status", "counts"])
    return counts


def _error(decision: Decision, code: str, message: str, username: str = "") -> dict:
    return {"wecom_userid": decision.wecom_userid, "username": username or decision.username, "code": code,
            "message": message}


@dataclass(frozen=True, slots=True)
class _Member:
    pk: int
    userid: str
    name: str
    email: str
    left: bool
    visible: bool = True


@dataclass(frozen=True, slots=True)
class _Account:
    pk: int
    username: str
    full_name: str
    privileged: bool = False


def _apply_plan(run: SyncRun, plan: list[Decision], actor) -> dict:
    """Check every decision, then write them all; ConfirmError (nothing written) if any is bad.

    Rows are read as small tuples and written in chunks, so confirming 100,000 members does not hold
    100,000 model instances of each kind at once.
    """
    tenant = run.tenant
    User = get_user_model()
    username_field = User.USERNAME_FIELD
    username_max = User._meta.get_field(username_field).max_length
    validators = User._meta.get_field(username_field).validators
    active = [d for d in plan if d.action != "skip"]
    counts = {"bound": 0, "created": 0, "pending": 0, "updated": 0, "skipped": len(plan) - len(active)}
    if not active:
        return counts
    members = {}
    for chunk in chunks([d.wecom_userid for d in active]):
        rows = WeComUser.objects.filter(tenant=tenant, userid__in=chunk).values_list(
            "pk", "userid", "name", "email", "status", "removed", "visible"
        )
        for pk, userid, name, email, status, removed, visible in rows:
            members[userid] = _Member(pk, userid, name, email, removed or status in LEAVING_STATUSES, visible)
    bound_members = set()
    for chunk in chunks([m.pk for m in members.values()]):
        bound_members.update(
            Binding.objects.filter(tenant=tenant, wecom_user_id__in=chunk).values_list("wecom_user_id", flat=True)
        )
    errors = []
    wanted, defaulted = {}, {}
    adapter = get_adapter()
    for decision in active:
        if decision.action not in ("bind", "create"):
            errors.append(_error(decision, "invalid_action", _("The action must be bind, create or skip.")))
            continue
        username = decision.username.strip() if decision.username else ""
        member = members.get(decision.wecom_userid)
        if decision.action == "create" and not username and member is not None:
            defaulted[decision.wecom_userid] = adapter.username_for(
                tenant, WeComUser(tenant=tenant, userid=member.userid, name=member.name)
            )
        wanted[decision.wecom_userid] = username
    # A default name already in use gets a unique variant: "create" never binds an existing account.
    wanted.update(bindings.available_usernames(defaulted, reserved={u for u in wanted.values() if u}))
    accounts = {}
    for chunk in chunks([u for u in wanted.values() if u]):
        rows = User.objects.filter(**{f"{username_field}__in": chunk}).values_list(
            "pk", username_field, "first_name", "last_name", "is_staff", "is_superuser"
        )
        for pk, username, first, last, staff, superuser in rows:
            accounts[username] = _Account(pk, username, f"{first} {last}".strip(), staff or superuser)
    bound_accounts = set()
    for chunk in chunks([a.pk for a in accounts.values()]):
        bound_accounts.update(
            Binding.objects.filter(tenant=tenant, user_id__in=chunk).values_list("user_id", flat=True)
        )
    steps = []  # (member, existing account or None, username)
    taken = {}
    for decision in active:
        if decision.wecom_userid not in wanted:
            continue
        username = wanted[decision.wecom_userid]
        member = members.get(decision.wecom_userid)
        if member is None:
            errors.append(_error(decision, "unknown_wecom_user", _("No such WeCom member in this tenant.")))
            continue
        if member.left:
            errors.append(_error(decision, "wecom_user_left", _("This WeCom member has left or is disabled.")))
            continue
        if member.pk in bound_members:
            errors.append(_error(decision, "wecom_user_bound", _("This WeCom member is already bound.")))
            continue
        if decision.action == "create" and (not member.visible or not member.name.strip()):
            # An account is never named after a userid: the app must be able to read the member's name.
            errors.append(_error(decision, "wecom_user_not_visible", outside_range_help()))
            continue
        account = accounts.get(username) if username else None
        if decision.action == "bind" and account is None:
            code = "username_required" if not username else "unknown_user"
            message = _("Choose the account to bind.") if not username else _("No account has this username.")
            errors.append(_error(decision, code, message, username))
            continue
        if decision.action == "create" and account is not None:
            errors.append(_error(decision, "username_taken", _(
                "An account already has this username: choose another name, or bind that account."), username))
            continue
        if account is None:
            problem = _username_problem(username, username_max, validators)
            if problem:
                errors.append(_error(decision, "invalid_username", problem, username))
                continue
        elif account.privileged and not bindings.may_bind_privileged(account, actor):
            errors.append(_error(decision, "privileged_account", _(
                "This is a staff or superuser account: only a superuser may bind it to a WeCom member."), username))
            continue
        elif account.pk in bound_accounts:
            errors.append(
                _error(decision, "user_bound", _("This account is already bound to a WeCom member."), username)
            )
            continue
        if username in taken:
            errors.append(
                _error(
                    decision,
                    "duplicate_user",
                    _("The same account was chosen for %(userid)s too.") % {"userid": taken[username]},
                    username,
                )
            )
            continue
        taken[username] = decision.wecom_userid
        steps.append((member, account, username))
    if errors:
        raise ConfirmError(errors)
    for chunk in chunks(steps):
        _write_steps(tenant, run, chunk, actor, counts)
    return counts


def _username_problem(username: str, max_length: int, validators) -> str:
    if max_length and len(username) > max_length:
        return _("The username is longer than %(max)s characters.") % {"max": max_length}
    for validator in validators:
        try:
            validator(username)
        except ValidationError as exc:
            return " ".join(str(message) for message in exc.messages)
    return ""


def _unusable_password() -> str:
    # What make_password(None) stores ("!" + 40 random characters), from one urandom read instead of
    # 40 secrets.choice calls: it matters when a confirm creates 100,000 accounts.
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(30)


def _write_steps(tenant, run, steps, actor, counts) -> None:
    """Write one chunk of checked steps: accounts, memberships, bindings, audit records."""
    User = get_user_model()
    username_field = User.USERNAME_FIELD
    first_max = User._meta.get_field("first_name").max_length
    email_max = User._meta.get_field("email").max_length
    new_users = [
        User(
            **{username_field: username},
            first_name=member.name[:first_max],
            last_name="",
            email=(member.email or "")[:email_max],
            password=_unusable_password(),
            is_active=True,
        )
        for member, account, username in steps
        if account is None
    ]
    User.objects.bulk_create(new_users, batch_size=BATCH_SIZE)
    if any(u.pk is None for u in new_users):
        # Backends that cannot return ids from a bulk insert: read them back.
        ids = dict(
            User.objects.filter(**{f"{username_field}__in": [getattr(u, username_field) for u in new_users]})
            .values_list(username_field, "pk")
        )
        for user in new_users:
            user.pk = ids[getattr(user, username_field)]
    created = {getattr(u, username_field): u.pk for u in new_users}
    existing_ids = [account.pk for _member, account, _username in steps if account is not None]
    adapter = get_adapter()
    memberships = adapter.membership_statuses(tenant, existing_ids)
    membership_changes, renamed, bound, audits = {}, [], [], []
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None

    def audit(action, user_id, member, **detail):
        # Ids rather than instances: a model instance per record costs more than the insert.
        return AuditLog(tenant_id=tenant.pk, actor_id=actor_id, action=action, target_user_id=user_id,
                        wecom_userid=member.userid, detail={"source": "sync", "run": run.pk, **detail})

    for member, account, username in steps:
        if account is None:
            user_id = created[username]
            membership_changes[user_id] = status = tenancy.ACTIVE
            audits.append(audit(AuditLog.Action.CREATE_ACCOUNT, user_id, member))
            counts["created"] += 1
        else:
            user_id = account.pk
            status = memberships.get(user_id)
            newly_pending = status not in (tenancy.ACTIVE, tenancy.PENDING)
            if newly_pending:
                # No membership, or a rejected or ended one: pending until a tenant admin approves.
                membership_changes[user_id] = status = tenancy.PENDING
            if status == tenancy.PENDING:
                counts["pending"] += 1
                if newly_pending:
                    audits.append(audit(AuditLog.Action.PENDING, user_id, member))
            elif status == tenancy.ACTIVE and member.name and account.full_name != member.name:
                # An existing member takes their WeCom name (seed 001: "update it directly"); only
                # members of this tenant, as the account may belong to other tenants too.
                renamed.append(User(pk=user_id, first_name=member.name[:first_max], last_name=""))
        bound.append(Binding(tenant=tenant, user_id=user_id, wecom_user_id=member.pk))
        audits.append(audit(AuditLog.Action.BIND, user_id, member, membership=status))
        counts["bound"] += 1
    adapter.set_memberships(tenant, membership_changes)
    User.objects.bulk_update(renamed, ["first_name", "last_name"], batch_size=BATCH_SIZE)
    counts["updated"] += len(renamed)
    Binding.objects.bulk_create(bound, batch_size=BATCH_SIZE)
    AuditLog.objects.bulk_create(audits, batch_size=BATCH_SIZE)


# Review (admin) ------------------------------------------------------------------------------------


def update_proposals(run: SyncRun, rows: Iterable[dict]) -> None:
    """Save the admin's edits of the review screen: each row ``{"proposal", "action", "username",
    "wecom_userid"}``. A row whose WeCom member was changed moves its account to that member's
    proposal (the first member's proposal is then skipped). Raises ConfirmError; saves nothing then."""
    User = get_user_model()
    rows = list(rows)
    with transaction.atomic():
        proposals = {p.pk: p for p in run.proposals.filter(pk__in=[r["proposal"] for r in rows]).select_related(
            "wecom_user")}
        targets = {r.get("wecom_userid") for r in rows if r.get("wecom_userid")}
        by_member = {p.wecom_user.userid: p for p in run.proposals.filter(wecom_user__userid__in=targets)
                     .select_related("wecom_user")}
        by_member.update({p.wecom_user.userid: p for p in proposals.values()})
        accounts = User.objects.in_bulk([r["username"] for r in rows if r.get("username")],
                                        field_name=User.USERNAME_FIELD)
        errors, changed = [], {}
        for row in rows:
            proposal = proposals.get(row["proposal"])
            if proposal is None:
                continue
            decision = Decision(row.get("wecom_userid") or proposal.wecom_user.userid, row.get("action", "skip"),
                                row.get("username") or "")
            if decision.action not in SyncProposal.Action.values:
                errors.append(_error(decision, "invalid_action", _("The action must be bind, create or skip.")))
                continue
            user = accounts.get(decision.username) if decision.username else None
            if decision.username and user is None:
                errors.append(_error(decision, "unknown_user", _("No account has this username.")))
                continue
            target = by_member.get(decision.wecom_userid)
            if target is None:
                errors.append(_error(decision, "unknown_wecom_user",
                                     _("This WeCom member has no proposal in this sync (already bound?).")))
                continue
            if target.pk != proposal.pk:
                proposal.user, proposal.action = None, SyncProposal.Action.SKIP
                changed[proposal.pk] = proposal
            target.user = user
            target.action = decision.action
            if decision.action == SyncProposal.Action.BIND and user is None:
                target.action = SyncProposal.Action.SKIP
            changed[target.pk] = target
        if errors:
            raise ConfirmError(errors)
        SyncProposal.objects.bulk_update(list(changed.values()), ["user", "action"], batch_size=BATCH_SIZE)


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
