"""The tenant's local mirror of its WeCom departments and members.

The contact-change callbacks apply one change at a time through :func:`apply_contact_change`, or a
worker's batch of them inside :func:`contact_batch` (the members they name read and locked in one
query, new and changed members written in one statement each when the batch ends); the contact sync
reuses the pieces: :func:`user_fields_from_api` / :func:`department_fields_from_api` turn
WeCom's JSON into model fields, :func:`fingerprint` tells whether a member changed since the last
sync, :func:`apply_user_fields` writes fields onto a row in memory, and :func:`mark_user_left`
deactivates what a member who left had in the tenant.

Rules (https://developer.work.weixin.qq.com/document/path/90970, 90971, 90972):

- an event only touches the fields it carries (``update_user`` carries the changed ones);
- rows are never deleted: a deleted member or department is marked ``removed``; a system user is
  never deleted either, only their binding (and, if ``DEACTIVATE_MEMBERSHIP_ON_LEAVE``, their tenant
  membership) is deactivated;
- callbacks can arrive out of order (a task redelivered after a worker died runs late), so each row
  keeps the CreateTime of the newest event applied (``last_event_time``) and, per field, of the event
  that set it (``field_times``): a late event only sets the fields no newer event set, so a
  ``create_user`` handled after its ``update_user`` still brings the departments; nothing older than a
  delete brings a member back, and an ``update_user`` never does (WeCom sends ``create_user`` when a
  userid is used again).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Iterable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache

import msgspec
from django.db import connection, connections, router
from django.db.models.functions import Upper
from django.utils import timezone

from wecom_integration import bulk
from wecom_integration.conf import wecom_settings
from wecom_integration.events import ContactPartyEvent, ContactTagEvent, ContactUserEvent
from wecom_integration.extension import get_adapter
from wecom_integration.models import AuditLog, Binding, Department, WeComUser

logger = logging.getLogger("wecom_integration.directory")

#: The WeComUser fields that mirror WeCom; :func:`fingerprint` hashes exactly these.
USER_FIELDS = (
    "name",
    "departments",
    "main_department",
    "is_leader_in_dept",
    "position",
    "mobile",
    "email",
    "avatar",
    "gender",
    "status",
)
#: The Department fields that mirror WeCom.
DEPARTMENT_FIELDS = ("name", "name_en", "parent_id", "order", "leaders")

#: WeCom member statuses that count as having left: their binding and membership are deactivated.
LEAVING_STATUSES = frozenset({WeComUser.Status.DISABLED, WeComUser.Status.QUIT})
# Built once: user_fields_from_api runs for each of a sync's 100,000 members, user_fields_from_event for each
# contact event (Status.values builds its list on every read).
_STATUSES = frozenset(WeComUser.Status.values)


@dataclass(frozen=True, slots=True)
class ContactChange:
    """What :func:`apply_contact_change` did: ``applied`` is False for an event that was ignored
    (older than what the row already reflects, or about nothing)."""

    applied: bool
    wecom_user: WeComUser | None = None
    department: Department | None = None


IGNORED = ContactChange(applied=False)


# Field mapping ------------------------------------------------------------------------------------


def _int_list(values) -> list[int]:
    out = []
    for value in values or ():
        try:
            out.append(int(value))
        except (TypeError, ValueError):
            continue
    return out


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _clean(model, fields: dict) -> dict:
    """Cut strings to their column's size so a long value from WeCom cannot fail the write."""
    limits = _max_lengths(model)
    for name, value in fields.items():
        if isinstance(value, str):
            max_length = limits.get(name)
            if max_length and len(value) > max_length:
                fields[name] = value[:max_length]
    return fields


@cache
def _max_lengths(model) -> dict:
    return {field.name: field.max_length for field in model._meta.concrete_fields}


def user_fields_from_api(data: dict) -> dict:
    """WeComUser fields from a member as ``user/get`` or ``user/list`` return it; only the keys
    present in ``data`` (newer apps get no mobile, email or avatar: those stay untouched).

    https://developer.work.weixin.qq.com/document/path/90196
    """
    fields = {}
    if "name" in data:
        fields["name"] = str(data["name"] or "")
    if "department" in data:
        fields["departments"] = _int_list(data["department"])
    if "main_department" in data:
        fields["main_department"] = _int_or_none(data["main_department"])
    if "is_leader_in_dept" in data:
        fields["is_leader_in_dept"] = _int_list(data["is_leader_in_dept"])
    for key in ("position", "mobile", "avatar"):
        if key in data:
            fields[key] = str(data[key] or "")
    if data.get("email"):
        fields["email"] = str(data["email"])
    elif "biz_mail" in data or "email" in data:
        fields["email"] = str(data.get("biz_mail") or data.get("email") or "")
    if "gender" in data:
        fields["gender"] = str(data["gender"] if data["gender"] is not None else "")
    if "status" in data:
        status = _int_or_none(data["status"])
        if status in _STATUSES:
            fields["status"] = status
    return _clean(WeComUser, fields)


def user_fields_from_event(event: ContactUserEvent) -> dict:
    """WeComUser fields from a ``create_user`` / ``update_user`` event: only those it carries."""
    fields = {}
    for attr, field in (
        ("name", "name"),
        ("departments", "departments"),
        ("main_department", "main_department"),
        ("is_leader_in_dept", "is_leader_in_dept"),
        ("position", "position"),
        ("mobile", "mobile"),
        ("avatar", "avatar"),
        ("gender", "gender"),
    ):
        value = getattr(event, attr)
        if value is not None:
            fields[field] = list(value) if isinstance(value, list) else value
    if event.email is not None:
        fields["email"] = event.email or event.biz_mail or ""
    elif event.biz_mail is not None:
        fields["email"] = event.biz_mail
    if event.status is not None and event.status in _STATUSES:
        fields["status"] = event.status
    return _clean(WeComUser, fields)


def department_fields_from_api(data: dict) -> dict:
    """Department fields from an entry of ``department/list`` (or ``simplelist``, without names).

    https://developer.work.weixin.qq.com/document/path/90208
    """
    fields = {}
    if "name" in data:
        fields["name"] = str(data["name"] or "")
    if "name_en" in data:
        fields["name_en"] = str(data["name_en"] or "")
    if "parentid" in data:
        fields["parent_id"] = _int_or_none(data["parentid"])
    if "order" in data:
        fields["order"] = _int_or_none(data["order"]) or 0
    if "department_leader" in data:
        fields["leaders"] = [str(leader) for leader in data["department_leader"] or ()]
    return _clean(Department, fields)


def department_fields_from_event(event: ContactPartyEvent) -> dict:
    """Department fields from a ``create_party`` / ``update_party`` event: only those it carries."""
    fields = {}
    if event.name is not None:
        fields["name"] = event.name
    if event.parent_id is not None:
        fields["parent_id"] = event.parent_id
    if event.order is not None:
        fields["order"] = event.order
    return _clean(Department, fields)


def fingerprint(fields: dict) -> str:
    """A 40-character digest of a member's mirrored fields (missing ones count as empty), so an
    unchanged member can be recognised without comparing field by field."""
    payload = {name: fields.get(name) for name in USER_FIELDS}
    try:
        # The same bytes as the json.dumps below for what the mirrored fields hold (str, int, None,
        # lists of ints), three times faster: a sync computes one per member.
        text = _FINGERPRINT_ENCODER.encode(payload)
    except (TypeError, ValueError, OverflowError):  # a lone surrogate, an int past 64 bits …
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                          default=str).encode("utf-8", "surrogatepass")
    return hashlib.sha1(text).hexdigest()


_FINGERPRINT_ENCODER = msgspec.json.Encoder(order="sorted")


def user_fingerprint(wecom_user: WeComUser) -> str:
    """:func:`fingerprint` of a row's current fields."""
    return fingerprint({name: getattr(wecom_user, name) for name in USER_FIELDS})


def apply_user_fields(wecom_user: WeComUser, fields: dict) -> list[str]:
    """Set ``fields`` on ``wecom_user`` in memory and refresh its fingerprint; returns the names of
    the fields that changed (with ``fingerprint`` among them when any did), ready for ``save`` or
    ``bulk_update``."""
    changed = [name for name, value in fields.items() if getattr(wecom_user, name) != value]
    for name in changed:
        setattr(wecom_user, name, fields[name])
    if changed:
        wecom_user.fingerprint = user_fingerprint(wecom_user)
        changed.append("fingerprint")
    return changed


# Members -------------------------------------------------------------------------------------------


def apply_contact_change(tenant_id: int, event) -> ContactChange:
    """Apply one contact-change event to the tenant's mirror (inside the caller's transaction).

    Inside :func:`contact_batch` the members it reads come from the batch and its writes wait for the
    batch's end; what it returns is the same.
    """
    if isinstance(event, ContactUserEvent):
        return apply_user_change(tenant_id, event)
    if isinstance(event, ContactPartyEvent):
        return apply_party_change(tenant_id, event)
    if isinstance(event, ContactTagEvent):
        # Applied to the mirror of tags by the handler (directory/tags.py); nothing of the members changes.
        return ContactChange(applied=True)
    return IGNORED


class _Members:
    """The members a batch of contact events names: read and locked in one query per tenant before the
    first event, then created and changed in memory by :func:`apply_user_change` as each event comes,
    and written by :meth:`flush` (one INSERT of the new members, one UPDATE per set of changed fields).

    ``_rows`` maps (tenant, the userid upper-cased) to what :func:`_locked_user` would find now: the
    lowest id among the rows matching it ignoring case, a member created earlier in the batch, or None.
    Only ASCII userids are read ahead (the database's UPPER and Python's agree on those; WeCom's
    userids are ASCII); an event naming another one, or renaming a member, runs as it would alone,
    after what the batch holds is written (:meth:`alone`).
    """

    def __init__(self):
        self._rows: dict[tuple[int, str], WeComUser | None] = {}
        self._new: list[WeComUser] = []
        self._changed: dict[int, tuple[WeComUser, set[str]]] = {}
        # Members an earlier event of the batch returned (to its signal): a later event changes a copy.
        self._returned: set[int] = set()
        self._copies: list[tuple[WeComUser, WeComUser]] = []

    def read(self, tenant_id: int, userids: Iterable[str]) -> None:
        keys = {userid.upper() for userid in userids if userid and userid.isascii()}
        keys -= {key for (tenant, key) in self._rows if tenant == tenant_id}
        if not keys:
            return
        # Locked in id order, as every batch locks them, so two workers' batches cannot deadlock on members.
        if connection.vendor == "postgresql":
            # Runs once per batch: one SQL text with the keys as one array costs less than building the query.
            found = bulk.fetch_instances(
                WeComUser, _members_statement(), [tenant_id, sorted(keys)], using=connection.alias
            )
        else:
            found = (
                WeComUser.objects.select_for_update(of=("self",))
                .annotate(userid_upper=Upper("userid"))
                .filter(tenant_id=tenant_id, userid_upper__in=keys)
                .order_by("pk")
            )
        for user in found:
            self._rows.setdefault((tenant_id, user.userid.upper()), user)
        for key in keys:
            self._rows.setdefault((tenant_id, key), None)

    def can_apply(self, tenant_id: int, userid: str, new_userid: str = "") -> bool:
        """Whether an event about ``userid`` (renaming it to ``new_userid``, if given) can be applied
        within the batch: both were read ahead, and a rename finds no member under the old userid (it
        then creates or updates the new one, as a create would; moving a member and its bindings runs
        alone)."""
        key = (tenant_id, userid.upper())
        if key not in self._rows:
            return False
        return not new_userid or ((tenant_id, new_userid.upper()) in self._rows and self._rows[key] is None)

    def get(self, tenant_id: int, userid: str) -> WeComUser | None:
        key = (tenant_id, userid.upper())
        user = self._rows[key]
        if user is not None and id(user) in self._returned:
            # The earlier event's signal keeps the member as that event left it; this one changes a copy.
            twin = copy.copy(user)
            self._rows[key] = twin
            if user.pk is None:
                self._new[self._new.index(user)] = twin
                self._copies.append((user, twin))
            elif id(user) in self._changed:
                self._changed[id(twin)] = (twin, self._changed.pop(id(user))[1])
            self._returned.discard(id(user))
            user = twin
        return user

    def insert(self, user: WeComUser) -> None:
        self._new.append(user)
        self._rows[(user.tenant_id, user.userid.upper())] = user

    def update(self, user: WeComUser, fields: Iterable[str]) -> None:
        if user.pk is None:
            return  # not written yet: its INSERT carries every field
        self._changed.setdefault(id(user), (user, set()))[1].update(fields)

    def returned(self, user: WeComUser | None) -> None:
        if user is not None:
            self._returned.add(id(user))

    def flush(self) -> None:
        if self._new:
            _create_members(self._new)
            # Latest first: a member three events changed is a chain (first, copy), (copy, copy of the copy),
            # and only the last copy was written; each earlier one takes what its successor now has.
            for earlier, twin in reversed(self._copies):
                earlier.pk, earlier.updated_at = twin.pk, twin.updated_at
                earlier._state.adding, earlier._state.db = False, twin._state.db
            self._new, self._copies = [], []
        if self._changed:
            now = timezone.now()
            by_fields: dict[frozenset, list[WeComUser]] = {}
            for user, fields in self._changed.values():
                user.updated_at = now
                by_fields.setdefault(frozenset(fields | {"updated_at"}), []).append(user)
            self._changed = {}
            for fields, users in by_fields.items():
                if len(users) == 1:
                    users[0].save(update_fields=sorted(fields))
                else:
                    WeComUser.objects.bulk_update(users, sorted(fields))

    @contextmanager
    def alone(self, tenant_id: int, userids: Iterable[str]):
        """Run one event as it would run outside a batch: what the batch holds is written first, and the
        members it names are read again afterwards."""
        self.flush()
        token = _batch.set(None)
        try:
            yield
        finally:
            _batch.reset(token)
        for userid in userids:
            if userid:
                self._rows.pop((tenant_id, userid.upper()), None)
        self.read(tenant_id, userids)


def _create_members(users: list[WeComUser]) -> None:
    """INSERT the new members of a batch, leaving on each instance what ``bulk_create`` would: its pk, the
    time stamps of ``auto_now`` fields (``updated_at``) and ``_state`` (saved, in the database written to).

    As plain rows (:func:`bulk.insert_rows`) when nothing in the model needs an instance to be written and
    the database returns the rows' ids: ``bulk_create`` prepares every field of every instance through the
    SQL compiler, and on PostgreSQL psycopg quotes its arrays value by value in Python: ~72 µs of Python
    per member against ~37 as plain rows (a batch of 35 created members; ~67 against ~36 on SQLite), of
    which encrypting the mobile and email is ~10. The ids come back in no promised order;
    each is matched to its instance by (tenant, userid), the model's unique constraint. Otherwise, and if
    two instances share that key (the INSERT then fails as ``bulk_create``'s would), ``bulk_create``."""
    using = router.db_for_write(WeComUser)
    tenant_key = WeComUser._meta.get_field("tenant").target_field.to_python
    by_key = {(tenant_key(user.tenant_id), user.userid): user for user in users}
    fields = _insert_fields()
    if (
        fields is None
        or len(by_key) != len(users)
        or not connections[using].features.can_return_rows_from_bulk_insert
        or not bulk.plain_model(WeComUser)
    ):
        WeComUser.objects.bulk_create(users)
        return
    written, stamped = fields
    # The time bulk_create's pre_save would stamp, on the rows and on the instances alike.
    now = timezone.now()
    returned = bulk.insert_rows(
        WeComUser,
        [field.name for field in written],
        [[getattr(user, field.attname) for field in written] for user in users],
        constants={field.name: now for field in stamped},
        returning=("pk", "tenant", "userid"),
        using=using,
    )
    if returned is None or len(returned) != len(users):
        raise RuntimeError("The INSERT of a batch's new members did not return one row per member")
    for pk, tenant_id, userid in returned:
        user = by_key.pop((tenant_key(tenant_id), userid), None)
        if user is None:
            raise RuntimeError("The INSERT of a batch's new members returned a member it was not given")
        user.pk = pk
        for field in stamped:
            setattr(user, field.attname, now)
        user._state.adding = False
        user._state.db = using


@cache
def _insert_fields() -> tuple[tuple, tuple] | None:
    """What :func:`_create_members` writes of each instance: (the fields read from it, the ``auto_now`` /
    ``auto_now_add`` fields stamped with the time of the INSERT); the id is the database's. None when a
    field's value comes from the database (``db_default``, generated): ``bulk_create`` writes those."""
    written, stamped = [], []
    for field in WeComUser._meta.concrete_fields:
        if field.primary_key:
            continue
        if field.has_db_default() or getattr(field, "generated", False):
            return None
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            stamped.append(field)
        else:
            written.append(field)
    return tuple(written), tuple(stamped)


@lru_cache(maxsize=1)
def _members_statement() -> str:
    """PostgreSQL's read of a batch's members: the (tenant, UPPER(userid)) index, FOR UPDATE of the rows."""
    opts = WeComUser._meta
    quote = connection.ops.quote_name
    table, userid = quote(opts.db_table), quote(opts.get_field("userid").column)
    columns = ", ".join(quote(field.column) for field in opts.concrete_fields)
    return (
        f"SELECT {columns} FROM {table} WHERE {quote(opts.get_field('tenant').column)} = %s "
        f"AND UPPER({userid}) = ANY(%s) ORDER BY {quote(opts.pk.column)} FOR UPDATE OF {table}"
    )


_batch: ContextVar[_Members | None] = ContextVar("wecom_contact_batch", default=None)


@contextmanager
def contact_batch(changes: Iterable[tuple[int, object]]):
    """Apply the contact-change events of ``changes`` ((tenant id, event) pairs) as a batch: the
    members they name are read and locked in one query per tenant, and the members that
    :func:`apply_contact_change` calls inside the block create or change are written when it ends (one
    INSERT, one UPDATE per set of fields). Inside a transaction; if the block raises, nothing is written
    and the caller rolls back (the handling task then applies the events one by one)."""
    members = _Members()
    userids: dict[int, list[str]] = {}
    for tenant_id, event in changes:
        if isinstance(event, ContactUserEvent):
            userids.setdefault(tenant_id, []).extend(((event.user_id or "").strip(), (event.new_user_id or "").strip()))
    for tenant_id, names in userids.items():
        members.read(tenant_id, names)
    token = _batch.set(members)
    try:
        yield
        members.flush()
    finally:
        _batch.reset(token)


def canonical_userids(tenant_id: int, userids) -> dict[str, str]:
    """Each of ``userids`` → the userid the tenant's mirror stores for that member, matched ignoring case
    as WeCom does (doc 90236); ids the mirror does not know map to themselves. One query per 1,000 ids,
    through the (tenant, UPPER(userid)) index. https://developer.work.weixin.qq.com/document/path/90236
    """
    userids = [u for u in dict.fromkeys(userids) if u]
    stored: dict[str, str] = {}
    for start in range(0, len(userids), 1000):
        chunk = {u.upper() for u in userids[start : start + 1000]}
        rows = (
            WeComUser.objects.annotate(userid_upper=Upper("userid"))
            .filter(tenant_id=tenant_id, userid_upper__in=chunk)
            .order_by("removed", "-updated_at")
            .values_list("userid", flat=True)
        )
        for userid in rows:
            stored.setdefault(userid.upper(), userid)
    return {u: stored.get(u.upper(), u) for u in userids}


def canonical_userid(tenant_id: int, userid: str) -> str:
    """``canonical_userids`` for one id."""
    return canonical_userids(tenant_id, [userid]).get(userid, userid) if userid else userid


def _locked_user(tenant_id: int, userid: str) -> WeComUser | None:
    members = _batch.get()
    if members is not None:
        return members.get(tenant_id, userid)
    # of=self and no ordering: the model orders by tenant, and ordering through the foreign key would join
    # and lock the tenant's row too, which blocks every INSERT that references the tenant (FOR KEY SHARE).
    return (
        WeComUser.objects.select_for_update(of=("self",))
        .filter(tenant_id=tenant_id, userid__iexact=userid)
        .order_by()
        .first()
    )


def apply_user_change(tenant_id: int, event: ContactUserEvent) -> ContactChange:
    """``create_user``, ``update_user`` (renames through NewUserID included) and ``delete_user``.

    https://developer.work.weixin.qq.com/document/path/90970
    """
    userid = (event.user_id or "").strip()
    if not userid:
        logger.warning("Contact event without UserID ignored (tenant %s)", tenant_id)
        return IGNORED
    when = event.create_time
    change_type = event.change_type
    new_userid = (event.new_user_id or "").strip()
    renames = change_type == "update_user" and new_userid and new_userid != userid
    members = _batch.get()
    if members is not None and not members.can_apply(tenant_id, userid, new_userid if renames else ""):
        with members.alone(tenant_id, (userid, new_userid)):
            return apply_user_change(tenant_id, event)
    if change_type == "delete_user":
        change = _delete_user(tenant_id, userid, when)
    elif renames:
        change = _rename_user(tenant_id, userid, new_userid, user_fields_from_event(event), when)
    else:
        revive = change_type == "create_user"
        change = _upsert_user(tenant_id, userid, user_fields_from_event(event), when, revive=revive)
    if members is not None:
        members.returned(change.wecom_user)
    return change


def _insert_user(user: WeComUser) -> None:
    members = _batch.get()
    if members is None:
        user.save(force_insert=True)
    else:
        members.insert(user)


def _update_user(user: WeComUser, fields: list[str]) -> None:
    members = _batch.get()
    if members is None:
        user.save(update_fields=fields)
    else:
        members.update(user, fields)


def _is_stale(row, when: int) -> bool:
    # Equal times are applied in arrival order: create_user then update_user often share a second.
    return row is not None and when < row.last_event_time


def _newer_fields(user, fields: dict, when: int) -> dict:
    """The part of ``fields`` that no event newer than ``when`` has set on ``user`` (last writer wins,
    field by field); the field times are advanced in memory."""
    times = dict(user.field_times or {})
    fresh = {name: value for name, value in fields.items() if when >= times.get(name, 0)}
    for name in fresh:
        times[name] = when
    user.field_times = times
    return fresh


def _upsert_user(tenant_id: int, userid: str, fields: dict, when: int, *, revive: bool) -> ContactChange:
    user = _locked_user(tenant_id, userid)
    if user is not None and user.removed and _is_stale(user, when):
        # Older than the delete (or a later create): it must not bring the member back.
        logger.info("Stale contact event for %s ignored (tenant %s)", userid, tenant_id)
        return IGNORED
    if user is not None and user.removed and not revive:
        # Only create_user brings a userid back; an update for a removed member is older news.
        logger.info("Update of removed WeCom user %s ignored (tenant %s)", userid, tenant_id)
        return IGNORED
    if user is None:
        user = WeComUser(tenant_id=tenant_id, userid=userid)
        if not apply_user_fields(user, _newer_fields(user, fields, when)):
            user.fingerprint = user_fingerprint(user)  # apply_user_fields refreshes it only when a field changed
        user.last_event_time = when
        _insert_user(user)
    else:
        fresh = _newer_fields(user, fields, when)
        if not fresh and _is_stale(user, when):
            logger.info("Stale contact event for %s ignored (tenant %s)", userid, tenant_id)
            return IGNORED
        changed = apply_user_fields(user, fresh)
        if user.removed:
            user.removed = False
            changed.append("removed")
        user.last_event_time = max(user.last_event_time, when)
        _update_user(user, [*changed, "last_event_time", "field_times", "updated_at"])
    if user.status in LEAVING_STATUSES:
        mark_user_left(tenant_id, user, reason=f"status_{user.status}")
    return ContactChange(applied=True, wecom_user=user)


def _rename_user(tenant_id: int, old: str, new: str, fields: dict, when: int) -> ContactChange:
    user = _locked_user(tenant_id, old)
    target = _locked_user(tenant_id, new)
    if target is not None and target.pk == getattr(user, "pk", None):
        target = None  # a change of case only (WeCom ids ignore case): the same row takes the new spelling
    if _is_stale(user, when) or _is_stale(target, when):
        logger.info("Stale rename %s -> %s ignored (tenant %s)", old, new, tenant_id)
        return IGNORED
    if user is not None and user.removed:
        logger.info("Rename of removed WeCom user %s ignored (tenant %s)", old, tenant_id)
        return IGNORED
    if user is None:
        return _upsert_user(tenant_id, new, fields, when, revive=False)
    if target is None:
        # The same row under its new userid: bindings point at the row, so they follow the rename.
        user.userid = new
        changed = apply_user_fields(user, fields)
        user.last_event_time = when
        user.save(update_fields=["userid", *changed, "last_event_time", "updated_at"])
        if user.status in LEAVING_STATUSES:
            mark_user_left(tenant_id, user, reason=f"status_{user.status}")
        return ContactChange(applied=True, wecom_user=user)
    # Both exist (a sync saw the new userid before this event arrived): keep the new row, hand it the
    # old row's binding if it has none, and retire the old row.
    if not Binding.objects.filter(tenant_id=tenant_id, wecom_user=target).exists():
        Binding.objects.filter(tenant_id=tenant_id, wecom_user=user).update(
            wecom_user=target, updated_at=timezone.now()
        )
    user.removed = True
    user.last_event_time = when
    user.save(update_fields=["removed", "last_event_time", "updated_at"])
    mark_user_left(tenant_id, user, reason="renamed")
    return _upsert_user(tenant_id, new, fields, when, revive=True)


def _delete_user(tenant_id: int, userid: str, when: int) -> ContactChange:
    user = _locked_user(tenant_id, userid)
    if _is_stale(user, when):
        logger.info("Stale delete of %s ignored (tenant %s)", userid, tenant_id)
        return IGNORED
    if user is None:
        # Remembered as removed, so that a create_user older than this delete cannot resurrect it.
        user = WeComUser(
            tenant_id=tenant_id,
            userid=userid,
            removed=True,
            last_event_time=when,
            fingerprint=fingerprint({}),
        )
        _insert_user(user)
        return ContactChange(applied=True, wecom_user=user)
    user.removed = True
    user.last_event_time = when
    _update_user(user, ["removed", "last_event_time", "updated_at"])
    mark_user_left(tenant_id, user, reason="delete_user")
    return ContactChange(applied=True, wecom_user=user)


def mark_user_left(tenant_id: int, wecom_user: WeComUser, *, reason: str = "left") -> tuple[int, int]:
    """Deactivate the active bindings of a member who left WeCom (deleted, quit or disabled) and,
    if ``DEACTIVATE_MEMBERSHIP_ON_LEAVE``, the bound users' active memberships of this tenant.

    The system users themselves are never deleted or deactivated: they may belong to other tenants.
    Each deactivated binding gets an audit record. Returns (bindings, memberships) deactivated.
    """
    if wecom_user.pk is None:
        return 0, 0  # a member a batch of contact events created and has not written yet: nothing binds it
    now = timezone.now()
    bindings = list(
        Binding.objects.select_for_update(of=("self",))
        .filter(tenant_id=tenant_id, wecom_user=wecom_user, is_active=True)
        .order_by()
    )
    if not bindings:
        return 0, 0
    user_ids = [binding.user_id for binding in bindings]
    Binding.objects.filter(pk__in=[binding.pk for binding in bindings]).update(
        is_active=False, updated_at=now
    )
    memberships = 0
    deactivate_membership = wecom_settings.DEACTIVATE_MEMBERSHIP_ON_LEAVE
    if deactivate_membership:
        memberships = get_adapter().deactivate_memberships(tenant_id, user_ids)
    AuditLog.objects.bulk_create(
        AuditLog(
            tenant_id=tenant_id,
            action=AuditLog.Action.DEACTIVATE,
            target_user_id=user_id,
            wecom_userid=wecom_user.userid,
            detail={"reason": reason, "membership_deactivated": deactivate_membership, "source": "wecom"},
        )
        for user_id in user_ids
    )
    logger.info(
        "WeCom user %s left (%s): %s binding(s), %s membership(s) deactivated (tenant %s)",
        wecom_user.userid,
        reason,
        len(bindings),
        memberships,
        tenant_id,
    )
    return len(bindings), memberships


# Departments ---------------------------------------------------------------------------------------


def apply_party_change(tenant_id: int, event: ContactPartyEvent) -> ContactChange:
    """``create_party``, ``update_party`` and ``delete_party``.

    https://developer.work.weixin.qq.com/document/path/90971
    """
    if event.id is None:
        logger.warning("Department event without Id ignored (tenant %s)", tenant_id)
        return IGNORED
    when = event.create_time
    department = (
        Department.objects.select_for_update(of=("self",))
        .filter(tenant_id=tenant_id, dept_id=event.id)
        .order_by()
        .first()
    )
    if _is_stale(department, when):
        logger.info("Stale department event for %s ignored (tenant %s)", event.id, tenant_id)
        return IGNORED
    if event.change_type == "delete_party":
        if department is None:
            department = Department.objects.create(
                tenant_id=tenant_id, dept_id=event.id, name="", removed=True, last_event_time=when
            )
        else:
            department.removed = True
            department.last_event_time = when
            department.save(update_fields=["removed", "last_event_time", "updated_at"])
        return ContactChange(applied=True, department=department)
    if department is not None and department.removed and event.change_type != "create_party":
        logger.info("Update of removed department %s ignored (tenant %s)", event.id, tenant_id)
        return IGNORED
    fields = department_fields_from_event(event)
    if department is None:
        department = Department(tenant_id=tenant_id, dept_id=event.id, last_event_time=when, **fields)
        department.save(force_insert=True)
        return ContactChange(applied=True, department=department)
    changed = [name for name, value in fields.items() if getattr(department, name) != value]
    for name in changed:
        setattr(department, name, fields[name])
    if department.removed:
        department.removed = False
        changed.append("removed")
    department.last_event_time = when
    department.save(update_fields=[*changed, "last_event_time", "updated_at"])
    return ContactChange(applied=True, department=department)
