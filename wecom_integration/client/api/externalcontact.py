from wecom_integration.client.base import BaseAPI
from wecom_integration.client.errors import WeComError

NOT_EXTERNAL_CONTACT = 84061

BATCH_MAX_USERS = 100
BATCH_MAX_LIMIT = 100


class ExternalContactAPI(BaseAPI):
    def get_follow_user_list(self):
        """Members with customer contact enabled: a list of userids. Cheap, so the connection test probes
        customer access with it. https://developer.work.weixin.qq.com/document/path/92571
        """
        return self._get("externalcontact/get_follow_user_list").get("follow_user", [])

    def list(self, userid):
        """External contacts (customers) of one member: a list of external_userid, empty when the
        member has none. https://developer.work.weixin.qq.com/document/path/92113
        """
        try:
            return self._get("externalcontact/list", {"userid": userid}).get("external_userid", [])
        except WeComError as exc:
            # WeCom answers "not external contact" for a member without customers: that is an empty list.
            if exc.errcode == NOT_EXTERNAL_CONTACT:
                return []
            raise

    def get(self, external_userid, cursor=None):
        """One customer: {external_contact, follow_user, next_cursor}; follow_user is paged by
        ``cursor`` beyond 500 followers. https://developer.work.weixin.qq.com/document/path/92114
        """
        params = {"external_userid": external_userid}
        if cursor:
            params["cursor"] = cursor
        return self._get("externalcontact/get", params)

    def batch_get_by_user(self, userid_list, cursor=None, limit=BATCH_MAX_LIMIT):
        """One page of the customers of up to 100 members: {external_contact_list, next_cursor}.

        https://developer.work.weixin.qq.com/document/path/92994
        """
        userid_list = list(userid_list)
        if not 1 <= len(userid_list) <= BATCH_MAX_USERS:
            raise ValueError(f"userid_list must hold 1 to {BATCH_MAX_USERS} members")
        if not 1 <= limit <= BATCH_MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {BATCH_MAX_LIMIT}")
        body = {"userid_list": userid_list, "limit": limit}
        if cursor:
            body["cursor"] = cursor
        return self._post("externalcontact/batch/get_by_user", body)

    def iter_batch_get_by_user(self, userid_list, limit=BATCH_MAX_LIMIT):
        """Every entry of ``external_contact_list`` ({external_contact, follow_info}) for the members
        in ``userid_list`` (any length: asked 100 members at a time), across all pages.

        https://developer.work.weixin.qq.com/document/path/92994
        """
        userid_list = list(userid_list)
        for start in range(0, len(userid_list), BATCH_MAX_USERS):
            chunk = userid_list[start : start + BATCH_MAX_USERS]
            cursor = None
            seen = set()
            while True:
                page = self.batch_get_by_user(chunk, cursor, limit)
                yield from page.get("external_contact_list", [])
                cursor = page.get("next_cursor")
                # A repeated cursor would loop forever; stop instead.
                if not cursor or cursor in seen:
                    break
                seen.add(cursor)


    def groupchat_list(self, cursor="", limit=1000, owners=None):
        """One page of the customer groups: {group_chat_list: [{chat_id, status}], next_cursor}.
        https://developer.work.weixin.qq.com/document/path/92120"""
        body = {"status_filter": 0, "limit": limit}
        if cursor:
            body["cursor"] = cursor
        if owners:
            body["owner_filter"] = {"userid_list": list(owners)}
        return self._post("externalcontact/groupchat/list", body)

    def iter_groupchats(self):
        """Every customer group's chat_id, across all pages."""
        cursor, seen = "", set()
        while True:
            page = self.groupchat_list(cursor)
            for entry in page.get("group_chat_list") or []:
                yield entry["chat_id"]
            cursor = page.get("next_cursor") or ""
            if not cursor or cursor in seen:
                return
            seen.add(cursor)

    def groupchat_get(self, chat_id):
        """One customer group: name, owner, notice, create_time, member_list (with join_scene) and
        admin_list. https://developer.work.weixin.qq.com/document/path/92122"""
        return self._post("externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1})["group_chat"]

    # Customer tags (企业客户标签), https://developer.work.weixin.qq.com/document/path/92117

    def get_corp_tag_list(self, tag_ids=(), group_ids=()):
        """The corp's customer tags in their groups: [{group_id, group_name, order, create_time, tag: [{id,
        name, order, create_time}]}]; with ``group_ids`` only those groups, else with ``tag_ids`` only those
        tags. https://developer.work.weixin.qq.com/document/path/92117"""
        data = {}
        if tag_ids:
            data["tag_id"] = list(tag_ids)
        if group_ids:
            data["group_id"] = list(group_ids)
        return self._post("externalcontact/get_corp_tag_list", data).get("tag_group") or []

    def add_corp_tag(self, names, group_id=None, group_name=None):
        """Add tags ``names`` to the group ``group_id``, or to the group called ``group_name`` (created when
        there is none); returns the group with just the new tags."""
        data = {"tag": [{"name": name} for name in names]}
        if group_id:
            data["group_id"] = group_id
        else:
            data["group_name"] = group_name
        return self._post("externalcontact/add_corp_tag", data)["tag_group"]

    def edit_corp_tag(self, tag_or_group_id, name=None, order=None):
        """Rename or reorder a tag or a group."""
        data = {"id": tag_or_group_id}
        if name is not None:
            data["name"] = name
        if order is not None:
            data["order"] = int(order)
        return self._post("externalcontact/edit_corp_tag", data)

    def del_corp_tag(self, tag_ids=(), group_ids=()):
        """Delete tags and whole groups; the tags leave every customer who had them."""
        return self._post("externalcontact/del_corp_tag", {"tag_id": list(tag_ids), "group_id": list(group_ids)})

    def mark_tag(self, userid, external_userid, add=(), remove=()):
        """Put corp tags on, or take them off, the customer ``external_userid`` of the member ``userid``.

        https://developer.work.weixin.qq.com/document/path/92118
        """
        return self._post(
            "externalcontact/mark_tag",
            {"userid": userid, "external_userid": external_userid, "add_tag": list(add), "remove_tag": list(remove)},
        )
