from wecom_integration.client.base import BaseAPI

LIST_ID_MAX_LIMIT = 10000


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
