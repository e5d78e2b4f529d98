"""Contact tags (通讯录标签): the tenant's mirror of its corp's tags, kept by the contact sync and the
``update_tag`` callbacks, changed from the admin through WeCom, and consulted before a message goes to tags.

Reading: the contact-sync secret sees every tag and member; under WeCom's 2022 rules it may no longer read
details (48009), and tags are then read with the app's secret, which sees the members inside the app's
visible range only (https://developer.work.weixin.qq.com/document/path/90213). Writing: the contact-sync
secret may change every tag; an app's secret only the tags that app created
(https://developer.work.weixin.qq.com/document/path/90210), so a change WeCom refuses says so.

Every change the admin makes goes to WeCom first and reaches the mirror only with WeCom's answer (members
WeCom reported invalid are not added), in one transaction with its audit record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from wecom_integration.client import WeComError, WeComNotConfigured, client_for
from wecom_integration.client.api.tag import MAX_PARTIES_PER_CALL, MAX_USERS_PER_CALL
from wecom_integration.directory.bindings import audit
from wecom_integration.models import AuditLog, ContactTag, ContactTagMember, WeComConfig

logger = logging.getLogger("wecom_integration.tags")

FORBIDDEN_FOR_CONTACT_SECRET = 48009
BATCH = 1000


@dataclass(frozen=True)
class FetchedTag:
    tagid: int
    name: str
    userids: tuple[str, ...]
    departments: tuple[int, ...]


def tag_client(config: WeComConfig):
    """The client tags are read and changed with: the contact secret (every tag), else the app's (the tags
    it created, the members it sees)."""
    try:
        return client_for(config, "contacts")
    except WeComNotConfigured as exc:
        if exc.field != "secret":
            raise
        return client_for(config, "app")


def _app_client_factory(config: WeComConfig):
    return lambda: client_for(config, "app")


def fetch_contact_tags(client, app_client=None) -> list[FetchedTag]:
    """Every tag with its members and departments (``tag/list``, then ``tag/get`` for each). When the
    contact secret may not read details (48009, the 2022 rules), ``app_client`` (a callable building the app
    secret's client) reads them instead."""
    reader = client
    tags = []
    for entry in client.tag.list():
        tagid = int(entry["tagid"])
        try:
            data = reader.tag.get(tagid)
        except WeComError as exc:
            if exc.errcode != FORBIDDEN_FOR_CONTACT_SECRET or app_client is None or reader is not client:
                raise
            reader = app_client()
            data = reader.tag.get(tagid)
        tags.append(_fetched(tagid, data, entry.get("tagname")))
    return tags


def _fetched(tagid: int, data: dict, listed_name=None) -> FetchedTag:
    users = (str(u["userid"])[:64] for u in data.get("userlist") or () if isinstance(u, dict) and u.get("userid"))
    return FetchedTag(
        tagid=tagid,
        name=str(data.get("tagname") or listed_name or "")[:64],
        userids=tuple(dict.fromkeys(users)),
        departments=tuple(dict.fromkeys(int(p) for p in data.get("partylist") or ())),
    )


def apply_contact_tags(tenant_id: int, fetched: list[FetchedTag]) -> dict:
    """Make the mirror equal to ``fetched`` (inside the caller's transaction): tags created, renamed and
    deleted, members added and removed. Returns counts."""
    existing = {t.tagid: t for t in ContactTag.objects.filter(tenant_id=tenant_id)}
    counts = {"tags": len(fetched), "created": 0, "updated": 0, "deleted": 0, "members_added": 0,
              "members_removed": 0}
    seen = set()
    for item in fetched:
        seen.add(item.tagid)
        tag = existing.get(item.tagid)
        if tag is None:
            tag = ContactTag.objects.create(
                tenant_id=tenant_id, tagid=item.tagid, name=item.name, departments=list(item.departments)
            )
            counts["created"] += 1
        elif tag.name != item.name or tag.departments != list(item.departments):
            tag.name, tag.departments = item.name, list(item.departments)
            tag.save(update_fields=["name", "departments", "updated_at"])
            counts["updated"] += 1
        added, removed = _set_members(tag, item.userids)
        counts["members_added"] += added
        counts["members_removed"] += removed
    gone = [t.pk for tagid, t in existing.items() if tagid not in seen]
    if gone:
        counts["deleted"] = len(gone)
        ContactTag.objects.filter(pk__in=gone).delete()
    return counts


def _set_members(tag: ContactTag, userids) -> tuple[int, int]:
    wanted = set(userids)
    current = set(tag.members.values_list("userid", flat=True))
    to_add = sorted(wanted - current)
    to_remove = sorted(current - wanted)
    ContactTagMember.objects.bulk_create([ContactTagMember(tag=tag, userid=u) for u in to_add], batch_size=BATCH)
    for start in range(0, len(to_remove), BATCH):
        tag.members.filter(userid__in=to_remove[start : start + BATCH]).delete()
    return len(to_add), len(to_remove)


def sync_contact_tags(tenant) -> dict:
    """Read the corp's tags and replace the tenant's mirror with them, all or nothing."""
    config = WeComConfig.objects.get(tenant=tenant)
    fetched = fetch_contact_tags(tag_client(config), _app_client_factory(config))
    with transaction.atomic():
        return apply_contact_tags(tenant.pk, fetched)


def apply_tag_event(tenant_id: int, event) -> ContactTag | None:
    """An ``update_tag`` callback (inside the caller's transaction): its added and removed members and
    departments applied to the mirrored tag. A tag the mirror does not know yet is read from WeCom whole;
    when it cannot be read the event's additions are kept under its id, and the next sync names it."""
    if event.tag_id is None:
        return None
    tag = ContactTag.objects.select_for_update().filter(tenant_id=tenant_id, tagid=event.tag_id).first()
    if tag is None:
        fetched = _fetch_one(tenant_id, event.tag_id)
        tag = ContactTag.objects.create(
            tenant_id=tenant_id,
            tagid=event.tag_id,
            name=fetched.name if fetched else "",
            departments=list(fetched.departments) if fetched else [],
        )
        if fetched is not None:
            _set_members(tag, fetched.userids)
            return tag
    add_users = [u[:64] for u in event.add_user_items or () if u]
    del_users = [u for u in event.del_user_items or () if u]
    departments = [d for d in tag.departments if d not in set(event.del_party_items or ())]
    departments += [d for d in event.add_party_items or () if d not in departments]
    if departments != tag.departments:
        tag.departments = departments
        tag.save(update_fields=["departments", "updated_at"])
    ContactTagMember.objects.bulk_create(
        [ContactTagMember(tag=tag, userid=u) for u in dict.fromkeys(add_users)], ignore_conflicts=True
    )
    if del_users:
        tag.members.filter(userid__in=del_users).delete()
    return tag


def _fetch_one(tenant_id: int, tagid: int) -> FetchedTag | None:
    try:
        config = WeComConfig.objects.get(tenant_id=tenant_id)
        client = tag_client(config)
        try:
            data = client.tag.get(tagid)
        except WeComError as exc:
            if exc.errcode != FORBIDDEN_FOR_CONTACT_SECRET:
                raise
            data = _app_client_factory(config)().tag.get(tagid)
    except (WeComConfig.DoesNotExist, WeComNotConfigured, WeComError) as exc:
        logger.warning("Tag %s of tenant %s could not be read: %s", tagid, tenant_id, exc)
        return None
    return _fetched(tagid, data)


# Changes from the admin ------------------------------------------------------------------------------


@dataclass
class TagChange:
    """What WeCom did with a change of members: who it refused (``invalid_users``, ``invalid_parties``)."""

    tag: ContactTag
    invalid_users: list[str]
    invalid_parties: list[int]


def create_tag(tenant, name: str, *, actor=None) -> ContactTag:
    """Create a tag in WeCom and in the mirror. WeComError (e.g. 40071, the name is taken) is raised."""
    config = WeComConfig.objects.get(tenant=tenant)
    tagid = tag_client(config).tag.create(name)
    with transaction.atomic():
        tag, _ = ContactTag.objects.update_or_create(tenant=tenant, tagid=int(tagid), defaults={"name": name})
        audit(tenant.pk, AuditLog.Action.CHANGE_TAG, actor=actor, change="create", tagid=tag.tagid, name=name)
    return tag


def rename_tag(tag: ContactTag, name: str, *, actor=None) -> ContactTag:
    config = WeComConfig.objects.get(tenant_id=tag.tenant_id)
    tag_client(config).tag.update(tag.tagid, name)
    with transaction.atomic():
        old, tag.name = tag.name, name
        tag.save(update_fields=["name", "updated_at"])
        audit(tag.tenant_id, AuditLog.Action.CHANGE_TAG, actor=actor, change="rename", tagid=tag.tagid,
              old_name=old, name=name)
    return tag


def delete_tag(tag: ContactTag, *, actor=None) -> None:
    config = WeComConfig.objects.get(tenant_id=tag.tenant_id)
    try:
        tag_client(config).tag.delete(tag.tagid)
    except WeComError as exc:
        if exc.errcode != 40068:  # already gone in WeCom: the mirror follows
            raise
    with transaction.atomic():
        audit(tag.tenant_id, AuditLog.Action.CHANGE_TAG, actor=actor, change="delete", tagid=tag.tagid,
              name=tag.name)
        tag.delete()


def change_tag_members(tag: ContactTag, *, add_users=(), remove_users=(), add_parties=(), remove_parties=(),
                       actor=None) -> TagChange:
    """Add and remove members and departments in WeCom (in calls of WeCom's size), then in the mirror, as
    WeCom answered: refused ids are reported back, not mirrored."""
    config = WeComConfig.objects.get(tenant_id=tag.tenant_id)
    client = tag_client(config)
    invalid_users: list[str] = []
    invalid_parties: list[int] = []
    applied = {"add": ([], []), "remove": ([], [])}
    for key, users, parties, call in (
        ("add", list(dict.fromkeys(add_users)), list(dict.fromkeys(add_parties)), client.tag.add_users),
        ("remove", list(dict.fromkeys(remove_users)), list(dict.fromkeys(remove_parties)), client.tag.del_users),
    ):
        calls = max(-(-len(users) // MAX_USERS_PER_CALL), -(-len(parties) // MAX_PARTIES_PER_CALL))
        for i in range(calls):
            u = users[i * MAX_USERS_PER_CALL : (i + 1) * MAX_USERS_PER_CALL]
            p = parties[i * MAX_PARTIES_PER_CALL : (i + 1) * MAX_PARTIES_PER_CALL]
            try:
                answer = call(tag.tagid, u, p)
            except WeComError as exc:
                if exc.errcode not in (40070, 40031):  # every id of this call refused
                    raise
                answer = {"invalidlist": "|".join(u), "invalidparty": p}
            bad_users = {x.lower() for x in str(answer.get("invalidlist") or "").split("|") if x}
            bad_parties = {int(x) for x in answer.get("invalidparty") or ()}
            invalid_users += [x for x in u if x.lower() in bad_users]
            invalid_parties += [x for x in p if int(x) in bad_parties]
            applied[key][0].extend(x for x in u if x.lower() not in bad_users)
            applied[key][1].extend(int(x) for x in p if int(x) not in bad_parties)
    with transaction.atomic():
        tag = ContactTag.objects.select_for_update().get(pk=tag.pk)
        added_users, added_parties = applied["add"]
        removed_users, removed_parties = applied["remove"]
        ContactTagMember.objects.bulk_create(
            [ContactTagMember(tag=tag, userid=u) for u in added_users], ignore_conflicts=True, batch_size=BATCH
        )
        if removed_users:
            tag.members.filter(userid__in=removed_users).delete()
        departments = [d for d in tag.departments if d not in set(removed_parties)]
        departments += [d for d in added_parties if d not in departments]
        if departments != tag.departments:
            tag.departments = departments
            tag.save(update_fields=["departments", "updated_at"])
        audit(tag.tenant_id, AuditLog.Action.CHANGE_TAG, actor=actor, change="members", tagid=tag.tagid,
              added_users=added_users[:200], removed_users=removed_users[:200], added_parties=added_parties,
              removed_parties=removed_parties, invalid_users=invalid_users[:200], invalid_parties=invalid_parties)
    return TagChange(tag, invalid_users, invalid_parties)


def unknown_tags(tenant_id: int, tagids) -> list[str]:
    """The ids among ``tagids`` the tenant's mirror does not hold (a message to them would reach nobody)."""
    wanted = {str(t) for t in tagids}
    known = {str(t) for t in ContactTag.objects.filter(
        tenant_id=tenant_id, tagid__in=[int(t) for t in wanted if str(t).isdigit()]
    ).values_list("tagid", flat=True)}
    return sorted(wanted - known, key=lambda t: (len(t), t))


def tags_of_members(tenant_id: int, userids) -> dict[str, list[str]]:
    """Each of ``userids`` → the names of its tags (for pages that show members)."""
    out: dict[str, list[str]] = {}
    rows = ContactTagMember.objects.filter(tag__tenant_id=tenant_id, userid__in=list(userids)).values_list(
        "userid", "tag__name"
    )
    for userid, name in rows:
        out.setdefault(userid, []).append(name)
    return out
