"""Contact tags (通讯录标签): tag/create, update, delete, get, list, addtagusers, deltagusers, and the update_tag
callback a change made in the WeCom admin pushes.

What the fake holds to, from WeCom's pages and what users of its API report:

* a tag name is 1–32 characters and unique in the corp; a second tag of the same name answers 40071
  ("UserTag Name Already Exist"), a tagid already taken or unknown 40068 ("invalid tagid"), a negative or
  non-integer tagid or an over-long name 40058; a corp holds at most 3,000 tags (45056, nothing created);
  https://developer.work.weixin.qq.com/document/path/90210
* a tag belongs to whoever created it: the contact-sync secret manages every tag, an app's secret only the
  tags it created (60011 otherwise, as for any contact object it may not modify), and members or departments
  outside the app's visible range are invalid for it;
  https://developer.work.weixin.qq.com/document/path/90214
* addtagusers / deltagusers take at most 1,000 userids and 100 departments a call, not both empty (40058); some
  invalid ones are reported in ``invalidlist`` ("a|b") and ``invalidparty`` ([2, 4]) and the rest applied; all
  invalid answers 40070 for addtagusers and 40031 for deltagusers (each as its page says); a tag holds at
  most 30,000 members and departments together (45056 beyond);
  https://developer.work.weixin.qq.com/document/path/90215
* tag/get lists only members inside the app's visible range for an app's secret; under the 2022 rules
  (``restricted``) the contact-sync secret may list tags (tag/list) but reads no member details (48009),
  as with user/get; https://developer.work.weixin.qq.com/document/path/90213
* tag/list https://developer.work.weixin.qq.com/document/path/90216

A change made through the API is not called back to the caller; the control methods act as an admin in the
WeCom admin console and push ``update_tag`` to the "contacts" callback (doc 90972).
"""

from __future__ import annotations

from ..callbacks import DeliveryResult, build_contact_tag_xml
from .base import _DIRECTORY, _ApiError, _is_int_between, _Request, _Route

ROUTES = {
    "tag/create": _Route("POST", _DIRECTORY, "_api_tag_create"),
    "tag/update": _Route("POST", _DIRECTORY, "_api_tag_update"),
    "tag/delete": _Route("GET", _DIRECTORY, "_api_tag_delete"),
    "tag/get": _Route("GET", _DIRECTORY, "_api_tag_get"),
    "tag/list": _Route("GET", _DIRECTORY, "_api_tag_list"),
    "tag/addtagusers": _Route("POST", _DIRECTORY, "_api_tag_add_users"),
    "tag/deltagusers": _Route("POST", _DIRECTORY, "_api_tag_del_users"),
}

MAX_TAGS = 3000
MAX_TAG_NAME = 32
MAX_TAG_MEMBERS = 30_000
MAX_USERS_PER_CALL = 1000
MAX_PARTIES_PER_CALL = 100
TOO_MANY = 45056


class ContactTag:
    """One tag: its members by userid, its departments, and who created it ("contacts", "app" or "admin")."""

    __slots__ = ("id", "name", "creator", "users", "parties")

    def __init__(self, id: int, name: str, creator: str):
        self.id = id
        self.name = name
        self.creator = creator
        self.users: dict[str, None] = {}  # insertion-ordered set of userids
        self.parties: dict[int, None] = {}


class ContactTagAPI:
    """Contact tags. A mixin of FakeWeCom (core.py): state lives on FakeWeCom."""

    @property
    def contact_tags(self) -> dict[int, ContactTag]:
        tags = getattr(self, "_contact_tags", None)
        if tags is None:
            tags = self._contact_tags = {}
        return tags

    # ------------------------------------------------------------------ control: an admin in the WeCom admin
    def create_contact_tag(self, name: str, userids=(), parties=(), *, tagid: int | None = None) -> int:
        """An admin creates a tag in the WeCom admin console (no callback: WeCom pushes none for a new
        tag) with members and departments; returns its id."""
        with self._lock:
            tag = self._new_tag(name, tagid, "admin")
            for userid in userids:
                user = self.org.find_user(userid)
                if user is None:
                    raise ValueError(f"no member {userid}")
                tag.users[user.userid] = None
            for party in parties:
                if int(party) not in self.org.departments:
                    raise ValueError(f"no department {party}")
                tag.parties[int(party)] = None
            return tag.id

    def change_contact_tag(self, tagid: int, *, add_users=(), del_users=(), add_parties=(), del_parties=(),
                           push: bool = True) -> list[DeliveryResult]:
        """An admin adds or removes members and departments of a tag in the WeCom admin console; pushes
        ``update_tag`` with what changed (doc 90972)."""
        with self._lock:
            tag = self.contact_tags[tagid]
            added = [self.org.find_user(u).userid for u in add_users if u not in tag.users]
            removed = [u for u in del_users if u in tag.users]
            added_parties = [int(p) for p in add_parties if int(p) not in tag.parties]
            removed_parties = [int(p) for p in del_parties if int(p) in tag.parties]
            for userid in added:
                tag.users[userid] = None
            for userid in removed:
                del tag.users[userid]
            for party in added_parties:
                tag.parties[party] = None
            for party in removed_parties:
                del tag.parties[party]
        if not push:
            return []
        xml = build_contact_tag_xml(self.corp_id, tagid, add_users=added, del_users=removed,
                                    add_parties=added_parties, del_parties=removed_parties,
                                    create_time=int(self.now()))
        return self.emit("contacts", xml)

    def tag_recipients(self, tagid: int) -> list | None:
        """The active members a message to the tag reaches (its members and everyone under its departments),
        None for an unknown tag. Call under ``org.lock``."""
        tag = self.contact_tags.get(tagid)
        if tag is None:
            return None
        org = self.org
        users = [org.users[u] for u in tag.users if u in org.users]
        for party in tag.parties:
            if party in org.departments:
                users.extend(org.members_of(party, recursive=True))
        return users

    # ------------------------------------------------------------------ API
    def _new_tag(self, name, tagid, creator: str) -> ContactTag:
        if not isinstance(name, str) or not name.strip():
            raise _ApiError(40058)
        if len(name) > MAX_TAG_NAME:
            raise _ApiError(40058)  # "tagname exceed max utf8 words 32"
        tags = self.contact_tags
        if any(t.name == name for t in tags.values()):
            raise _ApiError(40071)
        if tagid is None:
            tagid = max(tags, default=0) + 1
        elif not _is_int_between(tagid, 0, 2**32 - 1):
            raise _ApiError(40058)  # "field `tagid` expect type `uint32`"
        elif tagid in tags:
            raise _ApiError(40068)
        if len(tags) >= MAX_TAGS:
            raise _ApiError(TOO_MANY)
        tag = tags[tagid] = ContactTag(tagid, name, creator)
        return tag

    def _tag_of(self, value, request: _Request | None = None, *, modify: bool = False) -> ContactTag:
        try:
            tagid = int(value)
        except (TypeError, ValueError):
            raise _ApiError(40068) from None
        tag = self.contact_tags.get(tagid)
        if tag is None:
            raise _ApiError(40068)
        if modify and request is not None and request.kind == "app" and tag.creator != "app":
            raise _ApiError(60011)
        return tag

    def _api_tag_create(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90210"""
        data = request.json()
        with self._lock:
            tag = self._new_tag(data.get("tagname"), data.get("tagid"), request.kind)
        return {"errmsg": "created", "tagid": tag.id}

    def _api_tag_update(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90211"""
        data = request.json()
        name = data.get("tagname")
        with self._lock:
            tag = self._tag_of(data.get("tagid"), request, modify=True)
            if not isinstance(name, str) or not name.strip():
                raise _ApiError(40058)
            if len(name) > MAX_TAG_NAME:
                raise _ApiError(40058)  # "tagname exceed max utf8 words 32"
            if any(t.name == name and t.id != tag.id for t in self.contact_tags.values()):
                raise _ApiError(40071)
            tag.name = name
        return {"errmsg": "updated"}

    def _api_tag_delete(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90212"""
        with self._lock:
            tag = self._tag_of(request.param("tagid"), request, modify=True)
            del self.contact_tags[tag.id]
        return {"errmsg": "deleted"}

    def _api_tag_get(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90213"""
        if self.restricted and request.kind == "contacts":
            raise _ApiError(48009)
        org = self.org
        with self._lock, org.lock:
            tag = self._tag_of(request.param("tagid"))
            users = [org.users[u] for u in tag.users if u in org.users]
            parties = list(tag.parties)
            if request.kind == "app":
                users = [u for u in users if org.app_sees_user(u)]
                parties = [p for p in parties if p in org.departments and org.app_sees_department(p)]
            return {"tagname": tag.name, "userlist": [{"userid": u.userid, "name": u.name} for u in users],
                    "partylist": parties}

    def _api_tag_list(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90216"""
        with self._lock:
            return {"taglist": [{"tagid": t.id, "tagname": t.name} for t in self.contact_tags.values()]}

    def _tag_members_call(self, request: _Request, *, add: bool) -> dict:
        data = request.json()
        userlist, partylist = data.get("userlist") or [], data.get("partylist") or []
        if not isinstance(userlist, list) or not isinstance(partylist, list) or not (userlist or partylist):
            raise _ApiError(40058)
        if len(userlist) > MAX_USERS_PER_CALL or len(partylist) > MAX_PARTIES_PER_CALL:
            raise _ApiError(40058)
        org = self.org
        invalid_users: list[str] = []
        invalid_parties: list = []
        with self._lock, org.lock:
            tag = self._tag_of(data.get("tagid"), request, modify=True)
            users, parties = [], []
            for userid in userlist:
                user = org.find_user(userid) if isinstance(userid, str) else None
                if user is None or (request.kind == "app" and not org.app_sees_user(user)):
                    invalid_users.append(str(userid))
                elif add or user.userid in tag.users:
                    users.append(user.userid)
                else:
                    invalid_users.append(str(userid))
            for party in partylist:
                known = _is_int_between(party, 1, 2**32 - 1) and party in org.departments
                if not known or (request.kind == "app" and not org.app_sees_department(party)):
                    invalid_parties.append(party)
                elif add or party in tag.parties:
                    parties.append(party)
                else:
                    invalid_parties.append(party)
            if not users and not parties:
                raise _ApiError(40070 if add else 40031)
            if add:
                if len(set(tag.users) | set(users)) + len(set(tag.parties) | set(parties)) > MAX_TAG_MEMBERS:
                    raise _ApiError(TOO_MANY)
                for userid in users:
                    tag.users[userid] = None
                for party in parties:
                    tag.parties[party] = None
            else:
                for userid in users:
                    tag.users.pop(userid, None)
                for party in parties:
                    tag.parties.pop(party, None)
        answer: dict = {"errmsg": "ok" if add else "deleted"}
        if invalid_users:
            answer["invalidlist"] = "|".join(invalid_users)
        if invalid_parties:
            answer["invalidparty"] = invalid_parties
        return answer

    def _api_tag_add_users(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90214"""
        return self._tag_members_call(request, add=True)

    def _api_tag_del_users(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90215"""
        return self._tag_members_call(request, add=False)
