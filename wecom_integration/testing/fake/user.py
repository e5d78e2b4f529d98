"""Members (成员): user/get, user/list, user/simplelist and user/list_id, and the control methods that change
members (add_user, update_user, delete_user), each pushing its change_contact callback.

* which secret may call what: the contact-sync and app secrets read members; user/list_id is the
  contact-sync secret's alone, and the app gets 48009 for it, not 48002, because WeCom reserves it for the
  contact-sync secret and reports it with the contact-assistant code (see wecom-facts.md);
* the 2022 rules per secret (``restricted``; wecom-facts.md, and the 48009 page "no longer allowed to
  read directory details from a new IP"): the contact-sync secret may only list ids (``user/list_id``,
  ``department/simplelist``); every read of details with it (``user/get``, ``user/list``,
  ``user/simplelist``, ``department/list``, ``department/get``) answers 48009 "api forbidden for contact
  assistant" (the errmsg users of every SDK report, e.g. openscrm/api-server#26). Contact callbacks
  withhold mobile, email, avatar and the like;
* the self-built app's visible range (``Org.set_visible_range``, 可见范围): members outside it are absent
  from lists and answer 60011 "no privilege to access/modify contact/party/agent" on a direct read;
* a new app (``new_app``, created after 2022-06-20; by default as ``restricted``): its secret reads
  members without mobile, email, avatar, gender, QR code and address (those need the member's consent,
  ``snsapi_privateinfo``).

Pages:

* user/get https://developer.work.weixin.qq.com/document/path/90196
* user/simplelist https://developer.work.weixin.qq.com/document/path/90200
* user/list https://developer.work.weixin.qq.com/document/path/90201
* user/list_id https://developer.work.weixin.qq.com/document/path/96067
* the member change callbacks https://developer.work.weixin.qq.com/document/path/90970

Two-step verification (user/authsucc, user/tfa_succ) is in oauth.py.
"""

from __future__ import annotations

from ..callbacks import DeliveryResult, build_contact_user_xml
from .base import _CONTACTS, _DIRECTORY, FakeWeComError, _ApiError, _Encoded, _is_int_between, _Request, _Route
from .org import SENSITIVE_USER_FIELDS, User, dept_user_json

ROUTES = {
    "user/list": _Route("GET", _DIRECTORY, "_api_user_list"),
    "user/simplelist": _Route("GET", _DIRECTORY, "_api_user_simplelist"),
    "user/get": _Route("GET", _DIRECTORY, "_api_user_get"),
    "user/list_id": _Route("POST", _CONTACTS, "_api_user_list_id", forbidden=48009),
}


class UserAPI:
    """Member reads and member changes.

    A mixin of FakeWeCom (core.py): its state (``org``, ``_lock``, the clock …) lives on FakeWeCom; route handlers
    are looked up by the names in ROUTES."""

    # ------------------------------------------------------------------ control: member changes (emit callbacks)
    _USER_FIELDS = frozenset(("new_userid", "name", "department", "main_department", "is_leader_in_dept",
                              "position", "mobile", "gender", "email", "biz_mail", "status", "avatar",
                              "alias", "telephone", "address"))
    _EXTRA_FIELDS = ("mobile", "email", "biz_mail", "avatar", "alias", "telephone", "address")

    def add_user(self, userid: str, name: str, department=(1,), **fields) -> list[DeliveryResult]:
        """Add a member (status 1 unless given) and push create_user.
        https://developer.work.weixin.qq.com/document/path/90970"""
        unknown = set(fields) - self._USER_FIELDS - {"status"}
        if unknown or "new_userid" in fields:
            raise TypeError(f"unknown member fields: {sorted(unknown or {'new_userid'})}")
        org = self.org
        with org.lock:
            if not userid or userid in org.users:
                raise FakeWeComError(60102 if userid else 41009)
            if not name:
                raise FakeWeComError(60112)
            departments = self._valid_departments(department)
            user = org.add_user(userid, name, departments, position=str(fields.pop("position", "")),
                                gender=str(fields.pop("gender", "1")), status=int(fields.pop("status", 1)))
            self._apply_user_fields(user, fields)
            payload = self._callback_user(org.user_json(user))
        return self.emit("contacts", build_contact_user_xml(self.corp_id, "create_user", payload,
                                                            create_time=int(self.now())))

    def update_user(self, userid: str, **fields) -> list[DeliveryResult]:
        """Change a member and push update_user carrying only what changed (NewUserID on a rename).
        Setting status 5 (quit) removes the member and pushes delete_user, as WeCom does."""
        unknown = set(fields) - self._USER_FIELDS
        if unknown:
            raise TypeError(f"unknown member fields: {sorted(unknown)}")
        org = self.org
        with org.lock:
            user = org.users.get(userid)
            if user is None:
                raise FakeWeComError(60111)
            if int(fields.get("status", 0) or 0) == 5:
                org.remove_user(user)
                change, payload = "delete_user", {"userid": userid}
            else:
                before = org.user_json(user)
                new_userid = fields.pop("new_userid", None)
                if new_userid and new_userid != userid:
                    if new_userid in org.users:
                        raise FakeWeComError(60102)
                    org.rename_user(user, new_userid)
                self._apply_user_fields(user, fields)
                after = org.user_json(user)
                changed = {k: v for k, v in after.items() if before.get(k) != v and k != "userid"}
                payload = self._callback_user({"userid": userid, **changed})
                if user.userid != userid:
                    payload["new_userid"] = user.userid
                change = "update_user"
                if len(payload) == 1:
                    return []  # nothing WeCom would report changed
        return self.emit("contacts", build_contact_user_xml(self.corp_id, change, payload,
                                                            create_time=int(self.now())))

    def delete_user(self, userid: str) -> list[DeliveryResult]:
        """Remove a member and push delete_user."""
        org = self.org
        with org.lock:
            user = org.users.get(userid)
            if user is None:
                raise FakeWeComError(60111)
            org.remove_user(user)
        return self.emit("contacts", build_contact_user_xml(self.corp_id, "delete_user", {"userid": userid},
                                                            create_time=int(self.now())))

    def _valid_departments(self, department) -> tuple[int, ...]:
        if isinstance(department, int | str):
            department = [department]
        try:
            ids = tuple(dict.fromkeys(int(d) for d in department))
        except (TypeError, ValueError):
            raise FakeWeComError(40058, "department must be a list of ids") from None
        if not ids:
            raise FakeWeComError(40058, "a member needs at least one department")
        for dept_id in ids:
            if dept_id not in self.org.departments:
                raise FakeWeComError(60003)
        return ids

    def _apply_user_fields(self, user: User, fields: dict) -> None:
        org = self.org
        if "department" in fields:
            org.move_user(user, self._valid_departments(fields["department"]))
        if "main_department" in fields:
            main = int(fields["main_department"])
            if main not in user.departments:
                raise FakeWeComError(40058, "main_department must be one of the member's departments")
            user.main_department = main
        if "is_leader_in_dept" in fields:
            flags = [int(x) for x in fields["is_leader_in_dept"]]
            if len(flags) != len(user.departments):
                raise FakeWeComError(40058, "is_leader_in_dept must match department")
            for dept_id, flag in zip(user.departments, flags, strict=True):
                org._set_leader(user, org.departments[dept_id], bool(flag))
        for key in ("name", "position"):
            if key in fields:
                if key == "name" and not fields[key]:
                    raise FakeWeComError(60112)
                setattr(user, key, str(fields[key]))
        if "gender" in fields:
            user.gender = str(fields["gender"])
        if "status" in fields:
            status = int(fields["status"])
            if status not in (1, 2, 4):
                raise FakeWeComError(40058, "status is 1, 2 or 4 (5 removes the member)")
            user.status = status
        for key in self._EXTRA_FIELDS:
            if key in fields:
                user.set_extra(key, str(fields[key]))

    def _callback_user(self, data: dict) -> dict:
        # Since the 2022 restrictions, callbacks no longer carry the sensitive fields either.
        if self.restricted:
            return {k: v for k, v in data.items() if k not in SENSITIVE_USER_FIELDS}
        return data

    # ------------------------------------------------------------------ API: members
    def _api_user_list(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90201 (fetch_child is deprecated by
        WeCom but still honoured here)."""
        self._forbid_contact_details(request)
        org = self.org
        with org.lock:
            sensitive = self._sensitive_for(request)
            return {"userlist": [org.user_json(u, sensitive=sensitive) for u in self._listed_members(request)]}

    def _api_user_simplelist(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90200"""
        self._forbid_contact_details(request)
        org = self.org
        with org.lock:
            return {"userlist": [org.user_simple_json(u) for u in self._listed_members(request)]}

    def _listed_members(self, request: _Request) -> list:
        """The members user/list and user/simplelist answer: with the app secret, the department must be
        in the app's visible range (60011) and members outside it are left out."""
        org = self.org
        dept_id = self._department_param(request, "department_id", None)
        if request.kind == "app" and not org.app_sees_department(dept_id):
            raise _ApiError(60011)
        users = org.members_of(dept_id, recursive=request.param("fetch_child") == "1")
        if request.kind == "app":
            users = [u for u in users if org.app_sees_user(u)]
        return users

    def _sensitive_for(self, request: _Request) -> bool:
        """Whether member reads carry mobile, email, avatar …: not for a new app's secret."""
        return not (request.kind == "app" and self.new_app)

    def _api_user_get(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90196"""
        self._forbid_contact_details(request)
        userid = request.param("userid")
        if not userid:
            raise _ApiError(41009)
        org = self.org
        with org.lock:
            user = org.users.get(userid)
            if user is None:
                raise _ApiError(60111)
            if request.kind == "app" and not org.app_sees_user(user):
                raise _ApiError(60011)
            return org.user_json(user, sensitive=self._sensitive_for(request))

    def _api_user_list_id(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/96067"""
        data = request.json()
        cursor = data.get("cursor") or ""
        limit = data.get("limit", 1000)
        if not isinstance(cursor, str) or not _is_int_between(limit, 1, 10000):
            raise _ApiError(40058)
        with self.org.lock:
            page = self.org.list_id_page(cursor, limit)
        if page is None:
            raise _ApiError(40058)
        rows, next_cursor = page
        return _Encoded({"next_cursor": next_cursor}, "dept_user", dept_user_json(rows))
