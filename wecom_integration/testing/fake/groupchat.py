"""Customer groups (客户群): a member's group chats with customers, and the change_external_chat callbacks.

* externalcontact/groupchat/list https://developer.work.weixin.qq.com/document/path/92120 (limit 1-1000,
  cursor paging, owner_filter.userid_list ≤ 100)
* externalcontact/groupchat/get https://developer.work.weixin.qq.com/document/path/92122
* change_external_chat (create / update with UpdateDetail / dismiss) https://developer.work.weixin.qq.com/document/path/92130

With the app's secret only groups whose owner is in the app's visible range are listed. Control methods
act as people do in the WeCom client and push the callback to the "customers" URL.
"""

from __future__ import annotations

import copy
import secrets
from xml.sax.saxutils import escape

from ..callbacks import DeliveryResult
from .base import _CUSTOMERS, _ApiError, _is_int_between, _Request, _Route

ROUTES = {
    "externalcontact/groupchat/list": _Route("POST", _CUSTOMERS, "_api_groupchat_list"),
    "externalcontact/groupchat/get": _Route("POST", _CUSTOMERS, "_api_groupchat_get"),
}

#: WeCom's answer for a chat_id that is not a customer group of the corp.
NO_SUCH_GROUP = 40050


class GroupChatAPI:
    """Customer groups. A mixin of FakeWeCom (core.py): state lives on FakeWeCom."""

    @property
    def group_chats(self) -> dict[str, dict]:
        chats = getattr(self, "_group_chats", None)
        if chats is None:
            chats = self._group_chats = {}
        return chats

    # ------------------------------------------------------------------ control: people in the WeCom client
    def create_group_chat(self, owner: str, name: str, members=(), *, push: bool = True):
        """``owner`` creates a customer group with ``members`` (member userids, or customers' external
        userids); returns (chat_id, deliveries)."""
        if owner not in self.org.users:
            raise ValueError(f"no member {owner}")
        now = int(self.now())
        chat_id = "wr" + secrets.token_hex(11)
        with self._lock:
            self.group_chats[chat_id] = {
                "chat_id": chat_id, "name": name, "owner": owner, "create_time": now, "notice": "",
                "status": 0, "member_list": [], "admin_list": [],
            }
            for member in [owner, *members]:
                self._add_member(chat_id, member, now, scene=1, invitor=owner)
        return chat_id, (self._push_chat(chat_id, "create") if push else [])

    def add_group_member(self, chat_id: str, member: str, *, join_scene: int = 3, push: bool = True):
        now = int(self.now())
        with self._lock:
            self._add_member(chat_id, member, now, scene=join_scene, invitor=self.group_chats[chat_id]["owner"])
        return self._push_chat(chat_id, "update", UpdateDetail="add_member", JoinScene=join_scene,
                               MemChangeCnt=1) if push else []

    def rename_group_chat(self, chat_id: str, name: str, *, push: bool = True):
        with self._lock:
            self.group_chats[chat_id]["name"] = name
        return self._push_chat(chat_id, "update", UpdateDetail="change_name") if push else []

    def dismiss_group_chat(self, chat_id: str, *, push: bool = True):
        with self._lock:
            chat = self.group_chats.pop(chat_id)
        del chat
        return self._push_chat(chat_id, "dismiss") if push else []

    def _add_member(self, chat_id, member, now, scene, invitor):
        internal = member in self.org.users
        if not internal and member not in self.org.external_contacts:
            raise ValueError(f"{member} is neither a member nor a customer")
        name = self.org.users[member].name if internal else self.org.external_contacts[member].name
        self.group_chats[chat_id]["member_list"].append({
            "userid": member, "type": 1 if internal else 2, "join_time": now, "join_scene": scene,
            "invitor": {"userid": invitor}, "group_nickname": "", "name": name,
        })

    def _push_chat(self, chat_id: str, change_type: str, **extra) -> list[DeliveryResult]:
        def t(tag, value):
            return f"<{tag}>{escape(str(value))}</{tag}>"

        body = "".join(t(tag, value) for tag, value in extra.items())
        xml = ("<xml>" + t("ToUserName", self.corp_id) + t("FromUserName", "sys") + t("CreateTime", int(self.now()))
               + t("MsgType", "event") + t("Event", "change_external_chat") + t("ChatId", chat_id)
               + t("ChangeType", change_type) + body + "</xml>")
        return self.emit("customers", xml)

    # ------------------------------------------------------------------ API
    def _visible_owner(self, request: _Request, owner: str) -> bool:
        user = self.org.users.get(owner)
        return request.kind != "app" or (user is not None and self.org.app_sees_user(user))

    def _api_groupchat_list(self, request: _Request) -> dict:
        body = request.json()
        limit = body.get("limit")
        if not _is_int_between(limit, 1, 1000):
            raise _ApiError(40058)
        owners = (body.get("owner_filter") or {}).get("userid_list")
        if owners is not None and (not isinstance(owners, list) or len(owners) > 100):
            raise _ApiError(40058)
        with self._lock:
            chats = sorted((c for c in self.group_chats.values() if self._visible_owner(request, c["owner"])
                            and (owners is None or c["owner"] in owners)), key=lambda c: c["chat_id"])
        cursor = body.get("cursor") or ""
        offset = int(cursor) if str(cursor).isdigit() else 0
        page = chats[offset:offset + limit]
        following = offset + limit
        return {"group_chat_list": [{"chat_id": c["chat_id"], "status": c["status"]} for c in page],
                "next_cursor": str(following) if following < len(chats) else ""}

    def _api_groupchat_get(self, request: _Request) -> dict:
        chat_id = request.json().get("chat_id")
        with self._lock:
            chat = self.group_chats.get(chat_id) if isinstance(chat_id, str) else None
            if chat is None or not self._visible_owner(request, chat["owner"]):
                raise _ApiError(NO_SUCH_GROUP)
            data = copy.deepcopy(chat)
        data.pop("status", None)
        return {"group_chat": data}
