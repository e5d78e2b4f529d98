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

The package follows those steps: ``state`` (runs, progress, clients), ``fetching``, ``applying``,
``matching``, ``runs`` (the run end to end) and ``confirming``; everything public is re-exported here.
"""

from wecom_integration.directory.sync.applying import (
    apply_snapshot,
    chunks,
    deactivate_leavers,
    refresh_bound_names,
)
from wecom_integration.directory.sync.confirming import (
    Decision,
    confirm_run,
    default_username,
    plan_from_proposals,
    update_proposals,
)
from wecom_integration.directory.sync.fetching import (
    Snapshot,
    fetch_directory,
    plan_user_lists,
    probe_unseen,
    run_pool,
)
from wecom_integration.directory.sync.matching import (
    Match,
    build_proposals,
    match_names,
    normalize_name,
    user_name_keys,
)
from wecom_integration.directory.sync.runs import (
    execute_contact_run,
)
from wecom_integration.directory.sync.state import (
    BATCH_SIZE,
    BINDABLE_STATUSES,
    DEFAULT_WORKERS,
    DEPARTMENT_NOT_FOUND,
    FORBIDDEN_API,
    MAX_RATE_LIMIT_RETRIES,
    NOT_VISIBLE,
    OUTSIDE_RANGE_LISTED,
    SUBTREE_DEPARTMENTS,
    SYNC_TASK_NAMES,
    TASKS,
    USER_NOT_FOUND,
    ConfirmError,
    IntegrationDisabled,
    Phase,
    Progress,
    SyncAlreadyRunning,
    active_run,
    app_client_factory,
    cancel_runs,
    contacts_client,
    create_run,
    error_entry,
    fail_run,
    fail_stale_runs,
    is_waiting_for_worker,
    outside_range_help,
    queue_of,
    requeue_run,
    run_with_retries,
    start_sync,
    sync_client,
    sync_config,
    waiting_for_worker_q,
)

__all__ = [
    "BATCH_SIZE",
    "BINDABLE_STATUSES",
    "ConfirmError",
    "DEFAULT_WORKERS",
    "DEPARTMENT_NOT_FOUND",
    "Decision",
    "FORBIDDEN_API",
    "IntegrationDisabled",
    "MAX_RATE_LIMIT_RETRIES",
    "Match",
    "NOT_VISIBLE",
    "OUTSIDE_RANGE_LISTED",
    "Phase",
    "Progress",
    "SUBTREE_DEPARTMENTS",
    "SYNC_TASK_NAMES",
    "Snapshot",
    "SyncAlreadyRunning",
    "TASKS",
    "USER_NOT_FOUND",
    "active_run",
    "app_client_factory",
    "apply_snapshot",
    "build_proposals",
    "cancel_runs",
    "chunks",
    "confirm_run",
    "contacts_client",
    "create_run",
    "deactivate_leavers",
    "default_username",
    "error_entry",
    "execute_contact_run",
    "fail_run",
    "fail_stale_runs",
    "fetch_directory",
    "is_waiting_for_worker",
    "match_names",
    "normalize_name",
    "outside_range_help",
    "plan_from_proposals",
    "plan_user_lists",
    "probe_unseen",
    "queue_of",
    "refresh_bound_names",
    "requeue_run",
    "run_with_retries",
    "run_pool",
    "start_sync",
    "sync_client",
    "sync_config",
    "update_proposals",
    "user_name_keys",
    "waiting_for_worker_q",
]
