"""Fetching the organisation: the department tree and every member, in the old world or the 2022 one
(ids from the contact-sync secret, details from the app's), in parallel within the rate budget."""


from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from wecom_integration.client import (
    WeComConfigError,
    WeComError,
    WeComNotConfigured,
)
from wecom_integration.directory.services import (
    department_fields_from_api,
    user_fields_from_api,
)
from wecom_integration.directory.sync.state import (
    DEFAULT_WORKERS,
    DEPARTMENT_NOT_FOUND,
    FORBIDDEN_API,
    NOT_VISIBLE,
    SUBTREE_DEPARTMENTS,
    USER_NOT_FOUND,
    Phase,
    Progress,
)
from wecom_integration.models import (
    Department,
    WeComUser,
)

logger = logging.getLogger("wecom_integration.sync")

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
    children = _children(departments)
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


def _children(departments: dict[int, dict]) -> dict:
    children = defaultdict(list)
    for dept_id, fields in departments.items():
        children[fields.get("parent_id")].append(dept_id)
    return children


def _subtree(children: dict, top: int) -> list[int]:
    """The departments below ``top`` (``children`` as :func:`_children` makes it, once per sync: rebuilt
    per answer it cost 3 s of a 100,000-member sync's 5,000 departments)."""
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
    children = _children(departments)
    unproven = []

    def fetch(call):
        dept_id, recursive = call
        return client.user.list_members(dept_id, fetch_child=recursive)

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
            progress.advance(len(_subtree(children, dept_id)) + 1 if recursive else 1)

    # The first call alone: a 48009 is then one refused call, not one per worker.
    collect(calls[0], fetch(calls[0]))
    run_pool(fetch, calls[1:], workers, collect)
    below = [(dept_id, False) for top in unproven for dept_id in _subtree(children, top)]
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
