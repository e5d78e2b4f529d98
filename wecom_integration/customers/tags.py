"""Customer tags (企业客户标签): the corp's library of tags in groups, mirrored by the customer sync and the
``change_external_tag`` callbacks, changed from the admin through WeCom, and put on customers (``mark_tag``).

Which tags a member put on a customer is kept on the relation (``FollowUser.tag_ids``), from
``externalcontact/get`` and ``batch/get_by_user``; names come from this library.

Pages: https://developer.work.weixin.qq.com/document/path/92117 (the library),
https://developer.work.weixin.qq.com/document/path/92118 (mark_tag),
https://developer.work.weixin.qq.com/document/path/92130 (change_external_tag).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import transaction

from wecom_integration.client import client_for
from wecom_integration.directory.bindings import audit
from wecom_integration.models import AuditLog, CustomerTag, FollowUser, WeComConfig

logger = logging.getLogger("wecom_integration.customers")

FIELDS = ("name", "order", "group_id", "group_name", "group_order", "created")


def _client(tenant_id: int):
    return client_for(WeComConfig.objects.get(tenant_id=tenant_id), "customers")


def _rows(groups: list[dict]) -> dict[str, dict]:
    """tag_id → CustomerTag fields, from get_corp_tag_list's ``tag_group``."""
    rows = {}
    for group in groups:
        if not isinstance(group, dict) or group.get("deleted"):
            continue
        for tag in group.get("tag") or ():
            if not isinstance(tag, dict) or not tag.get("id") or tag.get("deleted"):
                continue
            created = tag.get("create_time")
            rows[str(tag["id"])[:64]] = {
                "name": str(tag.get("name") or "")[:64],
                "order": max(int(tag.get("order") or 0), 0),
                "group_id": str(group.get("group_id") or "")[:64],
                "group_name": str(group.get("group_name") or "")[:64],
                "group_order": max(int(group.get("order") or 0), 0),
                "created": datetime.fromtimestamp(int(created), UTC) if created else None,
            }
    return rows


def apply_corp_tags(tenant_id: int, groups: list[dict], *, within=None) -> dict:
    """Write the fetched groups' tags (inside the caller's transaction). ``within`` bounds what the fetch
    covered: None for the whole library (a tag it did not list is deleted), else ("group", ids) or
    ("tag", ids). Returns counts."""
    fetched = _rows(groups)
    existing = {t.tag_id: t for t in CustomerTag.objects.filter(tenant_id=tenant_id)}
    created, updated = [], []
    for tag_id, fields in fetched.items():
        tag = existing.get(tag_id)
        if tag is None:
            created.append(CustomerTag(tenant_id=tenant_id, tag_id=tag_id, **fields))
        elif any(getattr(tag, k) != v for k, v in fields.items()):
            for k, v in fields.items():
                setattr(tag, k, v)
            updated.append(tag)
    CustomerTag.objects.bulk_create(created)
    CustomerTag.objects.bulk_update(updated, [*FIELDS, "updated_at"])
    if within is None:
        gone = [t.pk for tag_id, t in existing.items() if tag_id not in fetched]
    elif within[0] == "group":
        gone = [t.pk for tag_id, t in existing.items() if t.group_id in within[1] and tag_id not in fetched]
    else:
        gone = [t.pk for tag_id, t in existing.items() if tag_id in within[1] and tag_id not in fetched]
    CustomerTag.objects.filter(pk__in=gone).delete()
    return {"tags": len(fetched), "created": len(created), "updated": len(updated), "deleted": len(gone)}


def sync_corp_tags(tenant, client=None) -> dict:
    """Read the whole library and make the mirror equal to it."""
    client = client or _client(tenant.pk)
    groups = client.externalcontact.get_corp_tag_list()
    with transaction.atomic():
        return apply_corp_tags(tenant.pk, groups)


def apply_tag_event(tenant_id: int, event) -> None:
    """A ``change_external_tag`` callback (inside the caller's transaction): the tag or group read again
    from WeCom (create, update), removed (delete), or the whole library read again (shuffle)."""
    change, ident, kind = event.change_type, (event.id or "")[:64], event.tag_type
    if change == "delete":
        if kind == "tag_group":
            CustomerTag.objects.filter(tenant_id=tenant_id, group_id=ident).delete()
        else:
            CustomerTag.objects.filter(tenant_id=tenant_id, tag_id=ident).delete()
        return
    client = _client(tenant_id)
    if change == "shuffle" or not ident:
        apply_corp_tags(tenant_id, client.externalcontact.get_corp_tag_list())
    elif kind == "tag_group":
        groups = client.externalcontact.get_corp_tag_list(group_ids=[ident])
        apply_corp_tags(tenant_id, groups, within=("group", {ident}))
    else:
        groups = client.externalcontact.get_corp_tag_list(tag_ids=[ident])
        apply_corp_tags(tenant_id, groups, within=("tag", {ident}))


# Changes from the admin ------------------------------------------------------------------------------


def add_corp_tags(tenant, names: list[str], *, group_id: str = "", group_name: str = "", actor=None) -> list:
    """Add tags to a group in WeCom (a new group when ``group_name`` names none), then to the mirror."""
    group = _client(tenant.pk).externalcontact.add_corp_tag(names, group_id=group_id or None,
                                                            group_name=group_name or None)
    with transaction.atomic():
        apply_corp_tags(tenant.pk, [group], within=("tag", set()))
        audit(tenant.pk, AuditLog.Action.CHANGE_CUSTOMER_TAG, actor=actor, change="create",
              group=group.get("group_name"), names=list(names))
    return [t["id"] for t in group.get("tag") or ()]


def rename_corp_tag(tag: CustomerTag, name: str, *, group: bool = False, actor=None) -> None:
    """Rename a tag, or (``group``) its whole group, in WeCom and in the mirror."""
    _client(tag.tenant_id).externalcontact.edit_corp_tag(tag.group_id if group else tag.tag_id, name=name)
    with transaction.atomic():
        if group:
            old = tag.group_name
            CustomerTag.objects.filter(tenant_id=tag.tenant_id, group_id=tag.group_id).update(group_name=name)
        else:
            old = tag.name
            CustomerTag.objects.filter(pk=tag.pk).update(name=name)
        audit(tag.tenant_id, AuditLog.Action.CHANGE_CUSTOMER_TAG, actor=actor,
              change="rename_group" if group else "rename", old_name=old, name=name)


def delete_corp_tags(tenant_id: int, tags, *, actor=None) -> int:
    """Delete tags in WeCom and in the mirror; returns how many."""
    tags = list(tags)
    if not tags:
        return 0
    _client(tenant_id).externalcontact.del_corp_tag(tag_ids=[t.tag_id for t in tags])
    with transaction.atomic():
        CustomerTag.objects.filter(pk__in=[t.pk for t in tags]).delete()
        audit(tenant_id, AuditLog.Action.CHANGE_CUSTOMER_TAG, actor=actor, change="delete",
              names=[f"{t.group_name}/{t.name}" for t in tags])
    return len(tags)


def mark_customer(follow: FollowUser, *, add=(), remove=(), actor=None) -> FollowUser:
    """Put corp tags on (``add``) and take them off (``remove``) the customer of ``follow``'s member, in WeCom
    (``mark_tag``) and on the relation. WeComError is raised (e.g. 40068 for a tag WeCom no longer has)."""
    contact = follow.contact
    add = [str(t) for t in add if t]
    remove = [str(t) for t in remove if t and str(t) not in add]
    if not add and not remove:
        return follow
    _client(contact.tenant_id).externalcontact.mark_tag(follow.userid, contact.external_userid, add, remove)
    with transaction.atomic():
        follow = FollowUser.objects.select_for_update().get(pk=follow.pk)
        kept = [t for t in follow.tag_ids if t not in remove]
        follow.tag_ids = list(dict.fromkeys([*kept, *add]))
        follow.save(update_fields=["tag_ids"])
        audit(contact.tenant_id, AuditLog.Action.CHANGE_CUSTOMER_TAG, actor=actor, change="mark",
              wecom_userid=follow.userid, external_userid=contact.external_userid, added=add, removed=remove)
    return follow


def tag_names(tenant_id: int, tag_ids) -> list[CustomerTag]:
    """The mirrored tags among ``tag_ids``, in WeCom's order (ids the library no longer has are left out)."""
    return list(CustomerTag.objects.filter(tenant_id=tenant_id, tag_id__in=list(tag_ids)))

