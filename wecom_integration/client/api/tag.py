"""Contact tags (通讯录标签管理): https://developer.work.weixin.qq.com/document/path/90209"""

from wecom_integration.client.base import BaseAPI

#: WeCom's caps per addtagusers / deltagusers call.
MAX_USERS_PER_CALL = 1000
MAX_PARTIES_PER_CALL = 100


class TagAPI(BaseAPI):
    def list(self):
        """Every tag: [{tagid, tagname}]. https://developer.work.weixin.qq.com/document/path/90216"""
        return self._get("tag/list")["taglist"]

    def get(self, tagid):
        """A tag's name, members ([{userid, name}], those the secret may see) and departments ([id]).

        https://developer.work.weixin.qq.com/document/path/90213
        """
        return self._get("tag/get", {"tagid": int(tagid)})

    def create(self, name, tagid=None):
        """Create a tag (the caller becomes its owner); returns its id.

        https://developer.work.weixin.qq.com/document/path/90210
        """
        data = {"tagname": name}
        if tagid is not None:
            data["tagid"] = int(tagid)
        return self._post("tag/create", data)["tagid"]

    def update(self, tagid, name):
        """Rename a tag. https://developer.work.weixin.qq.com/document/path/90211"""
        return self._post("tag/update", {"tagid": int(tagid), "tagname": name})

    def delete(self, tagid):
        """https://developer.work.weixin.qq.com/document/path/90212"""
        return self._get("tag/delete", {"tagid": int(tagid)})

    def add_users(self, tagid, userids=(), parties=()):
        """Add members and departments (≤ 1,000 and ≤ 100 a call); the answer's ``invalidlist`` ("a|b") and
        ``invalidparty`` ([ids]) name those WeCom refused. https://developer.work.weixin.qq.com/document/path/90214
        """
        return self._post("tag/addtagusers", self._members(tagid, userids, parties))

    def del_users(self, tagid, userids=(), parties=()):
        """Remove members and departments. https://developer.work.weixin.qq.com/document/path/90215"""
        return self._post("tag/deltagusers", self._members(tagid, userids, parties))

    @staticmethod
    def _members(tagid, userids, parties):
        userids, parties = list(userids), [int(p) for p in parties]
        if len(userids) > MAX_USERS_PER_CALL or len(parties) > MAX_PARTIES_PER_CALL:
            raise ValueError("at most 1,000 members and 100 departments a call")
        return {"tagid": int(tagid), "userlist": userids, "partylist": parties}
