from typing import Any

import msgspec

from wecom_integration.client.base import BaseAPI

LIST_ID_MAX_LIMIT = 10000


class ListedMember(msgspec.Struct):
    """A member of a ``user/list`` answer as the directory mirrors it (``directory.services``'
    ``user_fields_from_api``): its other keys (order, alias, extattr, qr_code, telephone …) are skipped
    while the answer is decoded. Each value is whatever JSON WeCom sent; a key it left out stays out."""

    userid: Any = msgspec.UNSET
    name: Any = msgspec.UNSET
    department: Any = msgspec.UNSET
    main_department: Any = msgspec.UNSET
    is_leader_in_dept: Any = msgspec.UNSET
    position: Any = msgspec.UNSET
    mobile: Any = msgspec.UNSET
    email: Any = msgspec.UNSET
    biz_mail: Any = msgspec.UNSET
    avatar: Any = msgspec.UNSET
    gender: Any = msgspec.UNSET
    status: Any = msgspec.UNSET


class MemberListAnswer(msgspec.Struct):
    """A ``user/list`` answer as :meth:`UserAPI.list_members` decodes it."""

    errcode: Any = msgspec.UNSET
    errmsg: Any = msgspec.UNSET
    userlist: list[ListedMember] = msgspec.UNSET


class UserAPI(BaseAPI):
    def get(self, userid):
        """One member's details. https://developer.work.weixin.qq.com/document/path/90196"""
        return self._get("user/get", {"userid": userid})

    def simplelist(self, department_id):
        """Members of a department: [{userid, name, department, open_userid}].

        https://developer.work.weixin.qq.com/document/path/90200
        """
        return self._get("user/simplelist", {"department_id": department_id})["userlist"]

    def list(self, department_id):
        """Members of a department with details. Blocked (48009) for contact-sync callers from new IPs
        since 2022. https://developer.work.weixin.qq.com/document/path/90201
        """
        return self._get("user/list", {"department_id": department_id})["userlist"]

    def list_members(self, department_id, fetch_child=False):
        """``user/list`` for the directory mirror: each member with the keys of :class:`ListedMember`
        only, the rest skipped while decoding (a 100,000-member sync reads ~70 MB of these answers).
        ``fetch_child`` asks for the whole subtree (deprecated by WeCom: check that it recursed).
        https://developer.work.weixin.qq.com/document/path/90201
        """
        params = {"department_id": department_id}
        if fetch_child:
            params["fetch_child"] = 1
        return self._get("user/list", params, answer=MemberListAnswer).get("userlist") or []

    def list_id(self, cursor=None, limit=LIST_ID_MAX_LIMIT):
        """One page of every member's userid and departments: {next_cursor, dept_user: [{userid,
        department}]}. Contacts secret only. https://developer.work.weixin.qq.com/document/path/96067
        """
        if not 1 <= limit <= LIST_ID_MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {LIST_ID_MAX_LIMIT}")
        body = {"limit": limit}
        if cursor:
            body["cursor"] = cursor
        return self._post("user/list_id", body)

    def iter_list_id(self, limit=LIST_ID_MAX_LIMIT):
        """Every ``{userid, department}`` entry of ``list_id``, across all pages: one entry per
        (member, department), so a member of two departments comes twice.

        https://developer.work.weixin.qq.com/document/path/96067
        """
        cursor = None
        seen = set()
        while True:
            page = self.list_id(cursor, limit)
            yield from page.get("dept_user", [])
            cursor = page.get("next_cursor")
            # A cursor seen before would loop forever; WeCom never repeats one, so stop rather than spin.
            if not cursor or cursor in seen:
                return
            seen.add(cursor)

    def tfa_succ(self, userid, tfa_code):
        """Tell WeCom the member passed two-step verification, with the ``tfa_code`` of
        ``oauth.get_tfa_info``. The contact-sync secret, or the app for members in its visible range.
        https://developer.work.weixin.qq.com/document/path/99500
        """
        return self._post("user/tfa_succ", {"userid": userid, "tfa_code": tfa_code})

    def authsucc(self, userid):
        """Tell WeCom the member passed the company's two-step verification.

        https://developer.work.weixin.qq.com/document/path/90203
        """
        return self._get("user/authsucc", {"userid": userid})
