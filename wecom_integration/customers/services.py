"""The tenant's customers (external contacts) and the members who follow them.

The customer-change callbacks (https://developer.work.weixin.qq.com/document/path/92130) say *that*
a relation changed; what the customer looks like now is fetched with ``externalcontact/get``
(https://developer.work.weixin.qq.com/document/path/92114) when the event is handled, so a late or
repeated event still leaves the current state. A WeCom error fails the event, which Celery retries.

Deletions are recorded, never lost: a follow relation that ended keeps its row with ``removed`` and
``removed_at`` (the event's time), and a customer nobody follows any more is marked removed the same
way. :func:`upsert_contact` is shared with the customer sync.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils import timezone

from wecom_integration.client import WeComError, client_for
from wecom_integration.events import ExternalChatEvent, ExternalContactEvent
from wecom_integration.models import (
    CustomerGroup,
    CustomerGroupMember,
    ExternalContact,
    FollowUser,
    WeComConfig,
)

logger = logging.getLogger("wecom_integration.customers")

#: Change types after which the customer is fetched again.
REFRESH_CHANGE_TYPES = frozenset(
    {"add_external_contact", "edit_external_contact", "add_half_external_contact"}
)
#: Change types that end one member's relation with the customer: del_external_contact (the member
#: deleted the customer) and del_follow_user (the customer deleted the member).
REMOVE_CHANGE_TYPES = frozenset({"del_external_contact", "del_follow_user"})
#: externalcontact/get errcodes meaning the corp no longer has that customer: 84061 (not an external contact,
#: doc 92114) and 40096 (invalid external userid), which a deleted customer answers too (WxJava PR #2591).
#: Either ends the contact; retrying would only meet the same answer.
CUSTOMER_GONE = frozenset({84061, 40096})
#: groupchat/get of a group the corp no longer has, or the app cannot see (chatid not found).
GROUP_GONE = frozenset({40050})
# follow_user is paged beyond 500 members; a customer followed by 25,000 members is past any real corp.
_MAX_PAGES = 50

CONTACT_FIELDS = ("name", "type", "avatar", "gender", "corp_name", "unionid")


@dataclass(frozen=True, slots=True)
class CustomerChange:
    """What :func:`apply_customer_change` did; ``applied`` is False for an event that was ignored."""

    applied: bool
    external_contact: ExternalContact | None = None
    follow_user: FollowUser | None = None
    group: CustomerGroup | None = None


def _as_datetime(create_time: int):
    if create_time and create_time > 0:
        try:
            return datetime.fromtimestamp(create_time, tz=UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return timezone.now()


def _cut(model, name: str, value) -> str:
    text = "" if value is None else str(value)
    max_length = model._meta.get_field(name).max_length
    return text[:max_length] if max_length else text


def _small_int(value, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if 0 <= number <= 32767 else default


def _big_int(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return number if 0 <= number < 2**63 else 0


def contact_fields_from_api(data: dict) -> dict:
    """ExternalContact fields from WeCom's ``external_contact`` object (only the keys present)."""
    fields = {}
    for name in ("name", "avatar", "corp_name", "unionid"):
        if name in data:
            fields[name] = _cut(ExternalContact, name, data[name])
    if "type" in data:
        fields["type"] = _small_int(data["type"], 1)
    if "gender" in data:
        fields["gender"] = _small_int(data["gender"], 0)
    return fields


def follow_fields_from_api(data: dict) -> dict:
    """FollowUser fields from one entry of ``follow_user`` (``follow_info`` in batch answers)."""
    fields = {}
    if "remark" in data:
        fields["remark"] = _cut(FollowUser, "remark", data["remark"])
    if "createtime" in data:
        fields["add_time"] = _big_int(data["createtime"])
    if "state" in data:
        fields["state"] = _cut(FollowUser, "state", data["state"])
    if isinstance(data.get("tags"), list):
        # externalcontact/get: corp tags (type 1) by id; a member's personal tags (type 2) have none to mirror.
        fields["tag_ids"] = list(dict.fromkeys(
            str(t["tag_id"]) for t in data["tags"] if isinstance(t, dict) and t.get("tag_id") and t.get("type", 1) == 1
        ))
    elif isinstance(data.get("tag_id"), list):
        # batch/get_by_user's follow_info: the ids alone.
        fields["tag_ids"] = list(dict.fromkeys(str(t) for t in data["tag_id"] if t))
    return fields


def contact_fingerprint(fields: dict) -> str:
    """A digest of a customer's mirrored fields, so an unchanged customer is recognised cheaply."""
    payload = {name: fields.get(name) for name in CONTACT_FIELDS}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def upsert_contact(
    tenant_id: int,
    external_contact: dict,
    follow_users: list[dict],
    *,
    complete: bool,
    when=None,
) -> ExternalContact:
    """Create or update a customer and the given follow relations.

    ``complete`` says ``follow_users`` is every member who follows the customer now: the relations
    stored but absent from it are marked removed at ``when`` (default now). A customer with no
    remaining relation is marked removed; one with a relation again is no longer removed.
    """
    when = when or timezone.now()
    external_userid = str(external_contact.get("external_userid") or "")
    if not external_userid:
        raise ValueError("external_contact has no external_userid")
    fields = contact_fields_from_api(external_contact)
    contact = (
        ExternalContact.objects.select_for_update(of=("self",))
        .filter(tenant_id=tenant_id, external_userid=external_userid)
        .order_by()
        .first()
    )
    if contact is None:
        contact = ExternalContact(tenant_id=tenant_id, external_userid=external_userid, **fields)
        # From the row as saved (defaults included), as an update computes it: a replayed event must
        # find the same fingerprint.
        contact.fingerprint = contact_fingerprint({name: getattr(contact, name) for name in CONTACT_FIELDS})
        contact.save(force_insert=True)
    else:
        for name, value in fields.items():
            setattr(contact, name, value)
        contact.fingerprint = contact_fingerprint({name: getattr(contact, name) for name in CONTACT_FIELDS})

    existing = {follow.userid: follow for follow in contact.follow_users.select_for_update(of=("self",)).order_by()}
    seen = set()
    new, changed = [], []
    for entry in follow_users:
        userid = _cut(FollowUser, "userid", entry.get("userid"))
        if not userid or userid in seen:
            continue
        seen.add(userid)
        values = follow_fields_from_api(entry)
        follow = existing.get(userid)
        if follow is None:
            new.append(FollowUser(contact=contact, userid=userid, **values))
            continue
        for name, value in values.items():
            setattr(follow, name, value)
        follow.removed, follow.removed_at = False, None
        changed.append(follow)
    if complete:
        for userid, follow in existing.items():
            if userid not in seen and not follow.removed:
                follow.removed, follow.removed_at = True, when
                changed.append(follow)
    FollowUser.objects.bulk_create(new)
    FollowUser.objects.bulk_update(changed, ["remark", "add_time", "state", "tag_ids", "removed", "removed_at"])

    active = any(not follow.removed for follow in existing.values()) or bool(new)
    _set_removed(contact, not active, when)
    contact.save()
    return contact


def _set_removed(contact: ExternalContact, removed: bool, when) -> None:
    if removed and not contact.removed:
        contact.removed, contact.removed_at = True, when
    elif not removed and contact.removed:
        contact.removed, contact.removed_at = False, None


def fetch_contact(config: WeComConfig, external_userid: str) -> dict | None:
    """The customer as ``externalcontact/get`` returns it, every page of ``follow_user`` joined; None
    when the corp no longer has that customer (84061 or 40096). Other WeCom errors are raised.

    https://developer.work.weixin.qq.com/document/path/92114
    """
    api = client_for(config, "customers").externalcontact
    follow_users: list[dict] = []
    cursor = None
    seen = set()
    data: dict = {}
    for _ in range(_MAX_PAGES):
        try:
            data = api.get(external_userid, cursor=cursor)
        except WeComError as exc:
            if exc.errcode in CUSTOMER_GONE:
                return None
            raise
        follow_users.extend(data.get("follow_user") or [])
        cursor = data.get("next_cursor")
        if not cursor or cursor in seen:
            break
        seen.add(cursor)
    return {"external_contact": data.get("external_contact") or {}, "follow_user": follow_users}


def apply_customer_change(tenant_id: int, event) -> CustomerChange:
    """Apply one customer-change event (inside the caller's transaction).

    Group-chat events update the mirror of customer groups (created and updated groups are read again
    with ``groupchat/get``: the callback carries only what changed); customer-tag events are kept as
    stored events only; ``transfer_fail`` changes nothing here either (the customer stays with its
    member), the signal tells host projects.
    """
    if isinstance(event, ExternalChatEvent):
        return _apply_chat_change(tenant_id, event)
    if not isinstance(event, ExternalContactEvent):
        return CustomerChange(applied=True)
    external_userid = (event.external_user_id or "").strip()
    if not external_userid:
        logger.warning("Customer event without ExternalUserID ignored (tenant %s)", tenant_id)
        return CustomerChange(applied=False)
    change_type = event.change_type
    if change_type in REFRESH_CHANGE_TYPES:
        return _refresh(tenant_id, event, external_userid)
    if change_type in REMOVE_CHANGE_TYPES:
        return _remove_follow(tenant_id, event, external_userid)
    contact = ExternalContact.objects.filter(tenant_id=tenant_id, external_userid=external_userid).first()
    return CustomerChange(applied=True, external_contact=contact, follow_user=_follow_of(contact, event))


def _follow_of(contact: ExternalContact | None, event: ExternalContactEvent) -> FollowUser | None:
    if contact is None or not event.user_id:
        return None
    return contact.follow_users.filter(userid__iexact=event.user_id).first()


def _refresh(tenant_id: int, event: ExternalContactEvent, external_userid: str) -> CustomerChange:
    config = WeComConfig.objects.get(tenant_id=tenant_id)
    when = _as_datetime(event.create_time)
    data = fetch_contact(config, external_userid)
    if data is None:
        # Gone again before we looked: every relation ended, which is what the customer list must show.
        contact = upsert_contact(
            tenant_id, {"external_userid": external_userid}, [], complete=True, when=when
        )
    else:
        external = dict(data["external_contact"])
        external.setdefault("external_userid", external_userid)
        contact = upsert_contact(tenant_id, external, data["follow_user"], complete=True, when=when)
        link_members(tenant_id, [contact.pk])
        contact.refresh_from_db(fields=["linked_user"])
    follow = _follow_of(contact, event)
    if follow is not None and event.state is not None and not follow.state and event.state:
        # The "state" of the contact-me button the customer used: the event has it even when get omits it.
        follow.state = _cut(FollowUser, "state", event.state)
        follow.save(update_fields=["state"])
    return CustomerChange(applied=True, external_contact=contact, follow_user=follow)


def _remove_follow(tenant_id: int, event: ExternalContactEvent, external_userid: str) -> CustomerChange:
    when = _as_datetime(event.create_time)
    contact = (
        ExternalContact.objects.select_for_update(of=("self",))
        .filter(tenant_id=tenant_id, external_userid=external_userid)
        .order_by()
        .first()
    )
    if contact is None:
        # First news of this customer is its deletion: keep a row so the deletion is not lost.
        contact = ExternalContact.objects.create(
            tenant_id=tenant_id, external_userid=external_userid, removed=True, removed_at=when
        )
    userid = _cut(FollowUser, "userid", event.user_id)
    follow = None
    if userid:
        follow = (
            contact.follow_users.select_for_update(of=("self",)).filter(userid__iexact=userid).order_by().first()
        )
        if (
            follow is not None
            and follow.add_time
            and event.create_time
            and follow.add_time > event.create_time
        ):
            # Added again after this deletion (the add was handled first): the deletion is old news.
            logger.info("Stale %s for %s/%s ignored", event.change_type, external_userid, userid)
            return CustomerChange(applied=False)
        if follow is None:
            follow = FollowUser.objects.create(contact=contact, userid=userid, removed=True, removed_at=when)
        elif not follow.removed:
            follow.removed, follow.removed_at = True, when
            follow.save(update_fields=["removed", "removed_at"])
    still_followed = contact.follow_users.filter(removed=False).exists()
    _set_removed(contact, not still_followed, when)
    contact.save(update_fields=["removed", "removed_at", "updated_at"])
    return CustomerChange(applied=True, external_contact=contact, follow_user=follow)


# Customer groups -----------------------------------------------------------------------------------------


def upsert_group(tenant_id: int, data: dict, now=None) -> CustomerGroup:
    """Write one group as ``groupchat/get`` returns it, its members replaced by WeCom's list."""
    group, _created = CustomerGroup.objects.update_or_create(
        tenant_id=tenant_id,
        chat_id=data["chat_id"],
        defaults={
            "name": _cut(CustomerGroup, "name", data.get("name") or ""),
            "owner": _cut(CustomerGroup, "owner", data.get("owner") or ""),
            "notice": data.get("notice") or "",
            "created": _as_datetime(_big_int(data.get("create_time"))),
            "dismissed": False,
            "dismissed_at": None,
        },
    )
    members = {}
    for item in data.get("member_list") or []:
        userid = str(item.get("userid") or "")
        if userid:
            members[userid] = CustomerGroupMember(
                group=group, userid=_cut(CustomerGroupMember, "userid", userid),
                type=_small_int(item.get("type"), 1), name=_cut(CustomerGroupMember, "name", item.get("name") or ""),
                join_time=_big_int(item.get("join_time")), join_scene=_small_int(item.get("join_scene"), 0),
                invitor=_cut(CustomerGroupMember, "invitor", (item.get("invitor") or {}).get("userid") or ""),
            )
    group.members.all().delete()
    CustomerGroupMember.objects.bulk_create(members.values())
    return group


def fetch_group(config: WeComConfig, chat_id: str) -> dict | None:
    """``groupchat/get`` of one group; None when WeCom no longer has it (or the app cannot see it)."""
    try:
        return client_for(config, "customers").externalcontact.groupchat_get(chat_id)
    except WeComError as exc:
        if exc.errcode in GROUP_GONE:
            return None
        raise


def _apply_chat_change(tenant_id: int, event: ExternalChatEvent) -> CustomerChange:
    chat_id = (event.chat_id or "").strip()
    if not chat_id:
        return CustomerChange(applied=False)
    if event.change_type == "dismiss":
        group = CustomerGroup.objects.filter(tenant_id=tenant_id, chat_id=chat_id).first()
        if group is not None and not group.dismissed:
            group.dismissed, group.dismissed_at = True, timezone.now()
            group.save(update_fields=["dismissed", "dismissed_at", "updated_at"])
        return CustomerChange(applied=True, group=group)
    config = WeComConfig.objects.get(tenant_id=tenant_id)
    data = fetch_group(config, chat_id)
    if data is None:
        return CustomerChange(applied=False)
    return CustomerChange(applied=True, group=upsert_group(tenant_id, data))


# Members linked by unionid (会员同步注册, seed 002) -------------------------------------------------------------


def link_members(tenant_id: int, contact_ids=None) -> dict:
    """Link customers with a unionid and no member account yet, as the tenant's ``customer_member_link``
    says: to the host's account for that unionid (the adapter's ``account_for_unionid``), or, with
    "create", a new member account when there is none (``create_customer_account``). Each link is written
    to the audit log. Returns {"linked": n, "created": n}."""
    from wecom_integration.directory.bindings import audit
    from wecom_integration.extension import get_adapter
    from wecom_integration.models import AuditLog

    config = WeComConfig.objects.filter(tenant_id=tenant_id).select_related("tenant").first()
    mode = getattr(config, "customer_member_link", "") if config else ""
    counts = {"linked": 0, "created": 0}
    if not mode:
        return counts
    adapter = get_adapter()
    contacts = ExternalContact.objects.filter(tenant_id=tenant_id, linked_user__isnull=True, removed=False).exclude(
        unionid=""
    )
    if contact_ids is not None:
        contacts = contacts.filter(pk__in=list(contact_ids))
    for contact in contacts.order_by("pk"):
        user = adapter.account_for_unionid(config.tenant, contact.unionid)
        created = False
        if user is None and mode == WeComConfig.CustomerMemberLink.CREATE:
            user, created = adapter.create_customer_account(config.tenant, contact), True
        if user is None:
            continue
        contact.linked_user = user
        contact.save(update_fields=["linked_user", "updated_at"])
        counts["created" if created else "linked"] += 1
        audit(tenant_id, AuditLog.Action.LINK_CUSTOMER, target_user=user, external_userid=contact.external_userid,
              unionid=contact.unionid, created=created)
    return counts
