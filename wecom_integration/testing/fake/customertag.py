"""Customer tags (企业客户标签): the corp's tag library in groups, and the tags members put on their customers.

* externalcontact/get_corp_tag_list https://developer.work.weixin.qq.com/document/path/92117: every group
  with its tags; with ``group_id`` only those groups (``tag_id`` is then ignored, as the page says), with
  ``tag_id`` only those tags in their groups;
* add_corp_tag: into ``group_id`` (unknown: 40068), or into the group named ``group_name`` (created when there
  is none); ``tag`` a non-empty list; names 1–30 characters (40058), unique within the group, as is a group's
  name among groups (40071 "UserTag Name Already Exist", the answer users report); at most 10,000 tags in a
  corp (45056);
* edit_corp_tag: ``id`` is a tag's or a group's (40068 unknown); del_corp_tag: ``tag_id`` and / or ``group_id``,
  not both empty (40058), an unknown id refuses the whole call (40068); a group whose last tag goes is gone too;
  the tags leave every customer who had them;
* externalcontact/mark_tag https://developer.work.weixin.qq.com/document/path/92118: ``userid`` (60111 unknown),
  ``external_userid`` (40096 unknown, 84061 not that member's customer), ``add_tag`` / ``remove_tag`` not both
  empty (40058), every id a corp tag (40068, nothing changed).

Changes made through the API are not called back; the control methods act as people in the WeCom admin or
client and push ``change_external_tag`` or ``edit_external_contact`` to the "customers" callback (doc 92130).
The tag ids customers hold and ``follow_user.tags`` read from ``org.tags`` (tag id → (group name, tag name)),
which this module keeps equal to the library.
"""

from __future__ import annotations

import secrets

from ..callbacks import DeliveryResult, build_external_contact_xml, build_external_tag_xml
from .base import _CUSTOMERS, _ApiError, _is_int_between, _Request, _Route

ROUTES = {
    "externalcontact/get_corp_tag_list": _Route("POST", _CUSTOMERS, "_api_corp_tag_list"),
    "externalcontact/add_corp_tag": _Route("POST", _CUSTOMERS, "_api_corp_tag_add"),
    "externalcontact/edit_corp_tag": _Route("POST", _CUSTOMERS, "_api_corp_tag_edit"),
    "externalcontact/del_corp_tag": _Route("POST", _CUSTOMERS, "_api_corp_tag_delete"),
    "externalcontact/mark_tag": _Route("POST", _CUSTOMERS, "_api_mark_tag"),
}

MAX_NAME = 30
MAX_CORP_TAGS = 10_000


class _Group:
    __slots__ = ("id", "name", "order", "create_time", "tags")

    def __init__(self, id: str, name: str, order: int, create_time: int):
        self.id, self.name, self.order, self.create_time = id, name, order, create_time
        self.tags: dict[str, _Tag] = {}

    def json(self, only=None) -> dict:
        tags = [t for t in self.tags.values() if only is None or t.id in only]
        return {"group_id": self.id, "group_name": self.name, "create_time": self.create_time, "order": self.order,
                "tag": [t.json() for t in sorted(tags, key=lambda t: -t.order)]}


class _Tag:
    __slots__ = ("id", "name", "order", "create_time")

    def __init__(self, id: str, name: str, order: int, create_time: int):
        self.id, self.name, self.order, self.create_time = id, name, order, create_time

    def json(self) -> dict:
        return {"id": self.id, "name": self.name, "create_time": self.create_time, "order": self.order}


def _new_id() -> str:
    return "et" + secrets.token_urlsafe(24)[:30]


def _name(value) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise _ApiError(40058)
    return value


def _order(value) -> int:
    if value is None:
        return 0
    if not _is_int_between(value, 0, 2**32 - 1):
        raise _ApiError(40058)
    return value


class CustomerTagAPI:
    """The corp's customer tags. A mixin of FakeWeCom (core.py): state lives on FakeWeCom."""

    @property
    def corp_tag_groups(self) -> dict[str, _Group]:
        """The library, built on first use from the org's seeded tags (so the ids customers hold stay valid)."""
        groups = getattr(self, "_corp_tag_groups", None)
        if groups is None:
            groups = self._corp_tag_groups = {}
            by_name: dict[str, _Group] = {}
            now = int(self.now())
            for tag_id, (group_name, tag_name) in self.org.tags.items():
                group = by_name.get(group_name)
                if group is None:
                    group = by_name[group_name] = groups.setdefault(
                        "et" + tag_id[2:12] + "G" * 20, _Group("et" + tag_id[2:12] + "G" * 20, group_name, 0, now))
                group.tags[tag_id] = _Tag(tag_id, tag_name, 0, now)
        return groups

    def _reindex_tags(self) -> None:
        self.org.tags = {t.id: (g.name, t.name) for g in self.corp_tag_groups.values() for t in g.tags.values()}

    def _find(self, tag_or_group_id):
        for group in self.corp_tag_groups.values():
            if group.id == tag_or_group_id:
                return group, None
            if tag_or_group_id in group.tags:
                return group, group.tags[tag_or_group_id]
        return None, None

    # ------------------------------------------------------------------ control: people in WeCom
    def admin_add_corp_tag(self, group_name: str, name: str) -> tuple[str, list[DeliveryResult]]:
        """An admin adds a customer tag in the WeCom admin console; pushes change_external_tag create."""
        with self._lock:
            tags = self._add_tags(None, group_name, 0, [{"name": name}])
        return tags[0].id, self.emit("customers", build_external_tag_xml(
            self.corp_id, "create", tags[0].id, "tag", create_time=int(self.now())))

    def admin_rename_corp_tag(self, tag_id: str, name: str) -> list[DeliveryResult]:
        """An admin renames a customer tag or group; pushes change_external_tag update."""
        with self._lock:
            group, tag = self._find(tag_id)
            (tag or group).name = _name(name)
            self._reindex_tags()
        return self.emit("customers", build_external_tag_xml(
            self.corp_id, "update", tag_id, "tag" if tag else "tag_group", create_time=int(self.now())))

    def admin_delete_corp_tag(self, tag_id: str) -> list[DeliveryResult]:
        """An admin deletes a customer tag (or a whole group); pushes change_external_tag delete."""
        group, tag = self._find(tag_id)
        with self._lock:
            self._delete([tag_id] if tag else [], [] if tag else [tag_id])
        return self.emit("customers", build_external_tag_xml(
            self.corp_id, "delete", tag_id, "tag" if tag else "tag_group", create_time=int(self.now())))

    def member_mark_customer(self, userid: str, external_userid: str, add=(), remove=()) -> list[DeliveryResult]:
        """A member changes a customer's tags in the WeCom client; pushes edit_external_contact."""
        with self._lock:
            self._mark(userid, external_userid, list(add), list(remove))
        return self.emit("customers", build_external_contact_xml(
            self.corp_id, "edit_external_contact", userid, external_userid, create_time=int(self.now())))

    # ------------------------------------------------------------------ the rules
    def _add_tags(self, group_id, group_name, order, tags) -> list[_Tag]:
        groups = self.corp_tag_groups
        if not isinstance(tags, list) or not tags or not all(isinstance(t, dict) for t in tags):
            raise _ApiError(40058)
        names = [_name(t.get("name")) for t in tags]
        orders = [_order(t.get("order")) for t in tags]
        if len(set(names)) != len(names):
            raise _ApiError(40071)
        if sum(len(g.tags) for g in groups.values()) + len(names) > MAX_CORP_TAGS:
            raise _ApiError(45056)
        now = int(self.now())
        if group_id:
            group = groups.get(group_id)
            if group is None:
                raise _ApiError(40068)
        else:
            group_name = _name(group_name)
            group = next((g for g in groups.values() if g.name == group_name), None)
            if group is None:
                group = _Group(_new_id(), group_name, _order(order), now)
                groups[group.id] = group
        if any(t.name in names for t in group.tags.values()):
            raise _ApiError(40071)
        added = [_Tag(_new_id(), name, o, now) for name, o in zip(names, orders, strict=True)]
        for tag in added:
            group.tags[tag.id] = tag
        self._reindex_tags()
        return added

    def _delete(self, tag_ids: list, group_ids: list) -> None:
        groups = self.corp_tag_groups
        found = [self._find(i) for i in tag_ids]
        if any(tag is None for _, tag in found) or any(g not in groups for g in group_ids):
            raise _ApiError(40068)
        for group, tag in found:
            group.tags.pop(tag.id, None)
            if not group.tags:
                group_ids.append(group.id)
        for group_id in set(group_ids):
            groups.pop(group_id, None)
        self._reindex_tags()
        live = self.org.tags
        with self.org.lock:
            for contact in self.org.external_contacts.values():
                for follow in contact.followers:
                    if any(t not in live for t in follow.tag_ids):
                        follow.tag_ids = tuple(t for t in follow.tag_ids if t in live)

    def _mark(self, userid, external_userid, add, remove, app: bool = False) -> None:
        org = self.org
        if not isinstance(add, list) or not isinstance(remove, list) or not (add or remove):
            raise _ApiError(40058)
        if any(t not in org.tags for t in [*add, *remove]):
            raise _ApiError(40068)
        with org.lock:
            user = org.find_user(userid) if isinstance(userid, str) else None
            if user is None:
                raise _ApiError(60111)
            if app and not org.app_sees_user(user):
                raise _ApiError(60011)
            contact = org.external_contacts.get(external_userid) if isinstance(external_userid, str) else None
            if contact is None:
                raise _ApiError(40096)
            follow = next((f for f in contact.followers if f.user is user), None)
            if follow is None:
                raise _ApiError(84061)
            kept = [t for t in follow.tag_ids if t not in remove]
            follow.tag_ids = tuple(dict.fromkeys([*kept, *(t for t in add if t not in remove)]))

    # ------------------------------------------------------------------ API
    def _api_corp_tag_list(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/92117"""
        data = request.json()
        tag_ids, group_ids = data.get("tag_id") or [], data.get("group_id") or []
        if not isinstance(tag_ids, list) or not isinstance(group_ids, list):
            raise _ApiError(40058)
        with self._lock:
            groups = sorted(self.corp_tag_groups.values(), key=lambda g: -g.order)
            if group_ids:
                return {"tag_group": [g.json() for g in groups if g.id in group_ids]}
            if tag_ids:
                wanted = set(tag_ids)
                return {"tag_group": [g.json(wanted) for g in groups if wanted & set(g.tags)]}
            return {"tag_group": [g.json() for g in groups]}

    def _api_corp_tag_add(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/92117"""
        data = request.json()
        with self._lock:
            added = self._add_tags(data.get("group_id"), data.get("group_name"), data.get("order"), data.get("tag"))
            group, _ = self._find(added[0].id)
            return {"tag_group": group.json({t.id for t in added})}

    def _api_corp_tag_edit(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/92117"""
        data = request.json()
        with self._lock:
            group, tag = self._find(data.get("id"))
            if group is None:
                raise _ApiError(40068)
            target = tag or group
            if data.get("name") is not None:
                name = _name(data["name"])
                siblings = group.tags.values() if tag else self.corp_tag_groups.values()
                if any(s.name == name and s is not target for s in siblings):
                    raise _ApiError(40071)
                target.name = name
            if data.get("order") is not None:
                target.order = _order(data["order"])
            self._reindex_tags()
        return {}

    def _api_corp_tag_delete(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/92117"""
        data = request.json()
        tag_ids, group_ids = data.get("tag_id") or [], data.get("group_id") or []
        if not isinstance(tag_ids, list) or not isinstance(group_ids, list) or not (tag_ids or group_ids):
            raise _ApiError(40058)
        with self._lock:
            self._delete(list(tag_ids), list(group_ids))
        return {}

    def _api_mark_tag(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/92118"""
        data = request.json()
        with self._lock:
            self._mark(data.get("userid"), data.get("external_userid"), data.get("add_tag") or [],
                       data.get("remove_tag") or [], app=request.kind == "app")
        return {}
