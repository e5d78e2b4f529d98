"""Applying a fetched snapshot to the mirror: upserts in batches, unchanged rows left unwritten, what WeCom
no longer lists marked removed (never what the sync could not see)."""


from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from wecom_integration import tenancy
from wecom_integration.directory.services import (
    DEPARTMENT_FIELDS,
    LEAVING_STATUSES,
    USER_FIELDS,
    fingerprint,
    mark_user_left,
)
from wecom_integration.directory.sync.fetching import Snapshot
from wecom_integration.directory.sync.state import BATCH_SIZE, OUTSIDE_RANGE_LISTED
from wecom_integration.extension import get_adapter
from wecom_integration.models import (
    Binding,
    Department,
    WeComUser,
)

logger = logging.getLogger("wecom_integration.sync")

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
