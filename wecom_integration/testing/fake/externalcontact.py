"""Customer contact (客户联系): the follow users, a member's customers, one customer, customers in batches,
and the control method for a member adding a customer (pushes add_external_contact).

* customer contact in an old corp (the 客户联系 secret works) or a new one (since 2023-12-01 it answers
  48002; the app only once authorised under 客户联系 → 可调用接口的应用), docs 92994, 96316; core checks
  this for every route here: https://developer.work.weixin.qq.com/document/path/92994, https://developer.work.weixin.qq.com/document/path/96316;
* with the app's secret, only follow users inside the app's visible range ("应用只能获取到可见范围内的成员",
  https://developer.work.weixin.qq.com/document/path/92994);
* a customer the corp no longer has answers ``deleted_customer_errcode`` (WeCom documents 84061, users
  report 40096 for deleted customers too, WxJava PR #2591).

Pages:

* externalcontact/get_follow_user_list https://developer.work.weixin.qq.com/document/path/92571
* externalcontact/list https://developer.work.weixin.qq.com/document/path/92113
* externalcontact/get https://developer.work.weixin.qq.com/document/path/92114
* externalcontact/batch/get_by_user https://developer.work.weixin.qq.com/document/path/93010
* the add_external_contact callback https://developer.work.weixin.qq.com/document/path/92130
"""

from __future__ import annotations

import secrets

from ..callbacks import DeliveryResult, build_external_contact_xml
from .base import _CUSTOMERS, FakeWeComError, _ApiError, _is_int_between, _Request, _Route
from .org import ExternalContact, Follow

ROUTES = {
    "externalcontact/get_follow_user_list": _Route("GET", _CUSTOMERS, "_api_externalcontact_follow_users"),
    "externalcontact/list": _Route("GET", _CUSTOMERS, "_api_externalcontact_list"),
    "externalcontact/get": _Route("GET", _CUSTOMERS, "_api_externalcontact_get"),
    "externalcontact/batch/get_by_user": _Route("POST", _CUSTOMERS, "_api_externalcontact_batch"),
}


class ExternalContactAPI:
    """Customer reads and new customers.

    A mixin of FakeWeCom (core.py): its state (``org``, ``_lock``, the clock …) lives on FakeWeCom; route handlers
    are looked up by the names in ROUTES."""

    # ------------------------------------------------------------------ control: a member adds a customer
    def add_external_contact(self, userid: str, name: str, state: str = "", type: int = 1,
                             external_userid: str | None = None,
                             unionid: str | None = None) -> tuple[str, list[DeliveryResult]]:
        """A member adds a customer: record the relation and push add_external_contact (with a
        WelcomeCode) to the "customers" callback. Returns (external_userid, delivery results). A new WeChat
        user (type 1) gets a unionid (``unionid``, else a generated one), as a corp bound to a WeChat open
        platform account sees it.
        https://developer.work.weixin.qq.com/document/path/92130"""
        org = self.org
        with org.lock:
            user = org.users.get(userid)
            if user is None:
                raise FakeWeComError(60111)
            external_userid = external_userid or "wm" + secrets.token_urlsafe(20)[:26] + "AAAA"
            contact = org.external_contacts.get(external_userid)
            if contact is None:
                if unionid is None and type == 1:
                    unionid = "o" + secrets.token_urlsafe(21)[:27]
                contact = ExternalContact(external_userid, name, type, 0, len(org.external_contacts),
                                          unionid=unionid or "")
            org._attach_follow(Follow(user, contact, name, "", int(self.now()), (), 1, state))
        xml = build_external_contact_xml(self.corp_id, "add_external_contact", userid, external_userid,
                                         state=state or None, welcome_code=secrets.token_urlsafe(24),
                                         create_time=int(self.now()))
        return external_userid, self.emit("customers", xml)

    # ------------------------------------------------------------------ API: customers
    def _api_externalcontact_follow_users(self, request: _Request) -> dict:
        """Members with customer contact enabled (the connection test's cheap probe). With the app's secret,
        only those in its visible range. https://developer.work.weixin.qq.com/document/path/92571"""
        org = self.org
        with org.lock:
            users = [u for u in org.active_users() if u.follows is not None]
            if request.kind == "app":
                users = [u for u in users if org.app_sees_user(u)]
            return {"follow_user": [u.userid for u in users]}

    def _api_externalcontact_list(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/92113"""
        userid = request.param("userid")
        if not userid:
            raise _ApiError(41009)
        with self.org.lock:
            user = self.org.users.get(userid)
            if user is None:
                raise _ApiError(60111)
            if request.kind == "app" and not self.org.app_sees_user(user):
                raise _ApiError(60011)
            if not user.follows:
                raise _ApiError(84061)
            return {"external_userid": [f.contact.external_userid for f in user.follows]}

    def _api_externalcontact_get(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/92114 (follow_user fits in one page).

        With the app secret only follow users inside the app's visible range are listed; a customer none
        of whose follow users the app sees answers 84061, as if it were nobody's customer (stricter than
        an empty list: a product that ends relations on 84061 is caught)."""
        external_userid = request.param("external_userid")
        org = self.org
        with org.lock:
            contact = org.external_contacts.get(external_userid or "")
            if contact is None:
                raise _ApiError(self.deleted_customer_errcode if external_userid else 40096)
            followers = contact.followers
            if request.kind == "app":
                followers = [f for f in followers if org.app_sees_user(f.user)]
                if not followers:
                    raise _ApiError(84061)
            return {"external_contact": org.contact_json(contact),
                    "follow_user": [org.follow_user_json(f) for f in followers], "next_cursor": ""}

    def _api_externalcontact_batch(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/93010"""
        data = request.json()
        userids = data.get("userid_list")
        if not isinstance(userids, list) or not 1 <= len(userids) <= 100:
            raise _ApiError(40058)
        if not all(isinstance(u, str) for u in userids):
            raise _ApiError(40058)
        userids = list(dict.fromkeys(userids))
        if request.kind == "app":
            # "应用只能获取到可见范围内的成员" (doc 92994): the others are silently left out.
            with self.org.lock:
                userids = [u for u in userids if self.org.app_sees_user(u)]
        cursor = data.get("cursor") or ""
        limit = data.get("limit", 50)
        # WeCom's rule: a limit above the maximum falls back to the default.
        if not _is_int_between(limit, 1, 100):
            limit = 50
        if not isinstance(cursor, str):
            raise _ApiError(40058)
        org = self.org
        with org.lock:
            page = org.follow_pairs_page(userids, cursor, limit)
            if page is None:
                raise _ApiError(40058)
            follows, next_cursor = page
            rows = [{"external_contact": org.contact_json(f.contact), "follow_info": org.follow_info_json(f)}
                    for f in follows]
        return {"external_contact_list": rows, "next_cursor": next_cursor}
