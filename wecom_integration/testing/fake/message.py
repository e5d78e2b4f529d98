"""Messages the app sends (发送应用消息): message/send, and what the tests read back (deliveries).

* message types and their content rules (text cut at 2048 bytes, news up to 8 articles, media ids that
  must be alive, see media.py), duplicate checks within ``duplicate_check_interval``;
* recipients outside the app's visible range reported invalid, userids matched ignoring case and reported
  lower-cased, members without a licence reported in ``unlicenseduser``;
* the app's daily quota of account limit × 200 person-times (45009, nothing sent), and WeCom's silent
  per-member quota (30/min, 1000/h) while rate limits are on.

https://developer.work.weixin.qq.com/document/path/90236
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from collections import deque

from .base import _APP, _ApiError, _Request, _Route

MESSAGES_PER_ACCOUNT_PER_DAY = 200  # each app sends at most account limit × 200 人次 a day (doc 90236)
BEIJING = 8 * 3600  # WeCom's days start at midnight in Beijing
MESSAGE_TYPES = frozenset(
    ("text", "markdown", "textcard", "news", "mpnews", "image", "file", "voice", "video", "template_card")
)
INTERACTIVE_CARDS = frozenset(("button_interaction", "vote_interaction", "multiple_interaction"))
TEXT_LIMIT_BYTES = 2048

ROUTES = {
    "message/send": _Route("POST", _APP, "_api_message_send"),
}


def _truncate_utf8(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")  # never cut a character in half


class _Sent:
    __slots__ = ("msgid", "msgtype", "agentid", "content", "time", "recipients", "safe")

    def __init__(self, msgid, msgtype, agentid, content, time_, recipients, safe):
        self.msgid = msgid
        self.msgtype = msgtype
        self.agentid = agentid
        self.content = content
        self.time = time_
        self.recipients = recipients
        self.safe = safe

    def delivery(self, userid: str) -> dict:
        return {"msgid": self.msgid, "userid": userid, "msgtype": self.msgtype, "agentid": self.agentid,
                "content": self.content, "time": self.time, "safe": self.safe}


class MessageAPI:
    """message/send and the record of deliveries.

    A mixin of FakeWeCom (core.py): its state (``org``, ``_lock``, the clock …) lives on FakeWeCom; route handlers
    are looked up by the names in ROUTES."""

    # ------------------------------------------------------------------ control: what was delivered
    @property
    def deliveries(self) -> list[dict]:
        """One dict per (message, member) actually delivered, oldest first. Content dicts are shared
        between the members of one message: read them, don't mutate them."""
        with self._lock:
            return [m.delivery(u) for m in self._sent for u in m.recipients]

    def deliveries_for(self, userid: str) -> list[dict]:
        with self._lock:
            return [self._sent[i].delivery(userid) for i in self._delivery_index.get(userid, ())]

    def clear_deliveries(self) -> None:
        with self._lock:
            self._sent.clear()
            self._delivery_index.clear()
            self.sent_messages.clear()
            self._dup_cache.clear()

    # ------------------------------------------------------------------ API: messages
    def _api_message_send(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90236"""
        data = request.json()
        agentid = data.get("agentid")
        if agentid in (None, ""):
            raise _ApiError(41011)
        try:
            if int(agentid) != self.agent_id:
                raise _ApiError(40056)
        except (TypeError, ValueError):
            raise _ApiError(40056) from None
        msgtype = data.get("msgtype")
        if msgtype not in MESSAGE_TYPES:
            raise _ApiError(40008)
        content = self._validate_message(msgtype, data.get(msgtype))
        touser, toparty, totag = (str(data.get(k) or "") for k in ("touser", "toparty", "totag"))
        users = [u for u in touser.split("|") if u]
        parties = [p for p in toparty.split("|") if p]
        tags = [t for t in totag.split("|") if t]
        if len(users) > 1000 and "@all" not in users:
            raise _ApiError(40032)
        if len(parties) > 100:
            raise _ApiError(82002)
        if len(tags) > 100:
            raise _ApiError(82003)

        now = self.now()
        dup_key = None
        if data.get("enable_duplicate_check") in (1, "1", True):
            try:
                interval = min(int(data.get("duplicate_check_interval") or 1800), 14400)
            except (TypeError, ValueError):
                raise _ApiError(40058) from None
            fingerprint = json.dumps([self.agent_id, msgtype, data.get(msgtype), touser, toparty, totag],
                                     sort_keys=True, ensure_ascii=False)
            dup_key = hashlib.sha256(fingerprint.encode()).hexdigest()
            with self._lock:
                previous = self._dup_cache.get(dup_key)
                if previous is not None and now - previous[0] < interval:
                    self.sent_messages.append(data)
                    return dict(previous[1])

        try:
            safe = int(data.get("safe") or 0)
        except (TypeError, ValueError):
            raise _ApiError(40058) from None
        recipients, answer = self._resolve_recipients(users, parties, tags)
        if not recipients:
            raise _ApiError(81013, answer)
        with self._lock:
            day = self._beijing_day()
            sent_today = self._daily_sent.get(day, 0)
            if sent_today + len(recipients) > self.daily_message_quota:
                # Over the app's daily quota: refused as a frequency limit, nothing sent (doc 90236).
                raise _ApiError(45009)
            self._daily_sent = {day: sent_today + len(recipients)}
        msgid = secrets.token_urlsafe(36)
        answer["msgid"] = msgid
        if msgtype == "template_card" and content.get("card_type") in INTERACTIVE_CARDS:
            answer["response_code"] = secrets.token_urlsafe(48)
        with self._lock:
            if self._limiter.enabled:
                recipients = [r for r in recipients if self._member_quota_ok(r, now)]
            index = len(self._sent)
            sent = _Sent(msgid, msgtype, self.agent_id, content, int(now), tuple(recipients), safe)
            self._sent.append(sent)
            for userid in recipients:
                self._delivery_index.setdefault(userid, []).append(index)
            self.sent_messages.append(data)
            if dup_key is not None:
                if len(self._dup_cache) > 10_000:
                    # Nothing older than the longest interval WeCom allows (4 h) can still match.
                    self._dup_cache = {k: v for k, v in self._dup_cache.items() if now - v[0] < 14400}
                self._dup_cache[dup_key] = (now, dict(answer))
        if msgtype == "template_card":
            self._keep_card(msgid, content, sent.recipients, answer.get("response_code"), now)  # card.py
        return answer

    def _resolve_recipients(self, users: list[str], parties: list[str], tags: list[str]):
        """Who a message reaches (doc 90236): userids match ignoring case; members and departments outside
        the app's visible range are reported in invaliduser / invalidparty like unknown ones, and the ids
        WeCom reports back are lower-cased. https://developer.work.weixin.qq.com/document/path/90236"""
        org = self.org
        invalid_users: list[str] = []
        invalid_parties: list[str] = []
        invalid_tags: list[str] = []
        recipients: list[str] = []
        with self._lock, org.lock:
            if "@all" in users:
                recipients = [u.userid for u in org.active_users() if org.app_sees_user(u)]
            else:
                seen: set[str] = set()
                for userid in users:
                    user = org.find_user(userid)
                    if user is None or user.status != 1 or not org.app_sees_user(user):
                        invalid_users.append(userid.lower())
                    elif user.userid not in seen:
                        seen.add(user.userid)
                        recipients.append(user.userid)
                for party in parties:
                    dept_id = int(party) if party.isdigit() else None
                    dept = org.departments.get(dept_id) if dept_id is not None else None
                    if dept is None or not org.app_sees_department(dept):
                        invalid_parties.append(party)
                        continue
                    # A department reaches everyone below it, like WeCom's toparty.
                    for user in org.members_of(dept_id, recursive=True):
                        if user.status == 1 and user.userid not in seen:
                            seen.add(user.userid)
                            recipients.append(user.userid)
                for tag in tags:
                    # A tag reaches its members and everyone under its departments, those the app sees
                    # (tag.py); an unknown tag is reported in invalidtag.
                    members = self.tag_recipients(int(tag)) if tag.isdigit() else None
                    if members is None:
                        invalid_tags.append(tag)
                        continue
                    for user in members:
                        if user.status == 1 and user.userid not in seen and org.app_sees_user(user):
                            seen.add(user.userid)
                            recipients.append(user.userid)
        unlicensed = [r for r in recipients if r in self.unlicensed]
        if unlicensed:
            recipients = [r for r in recipients if r not in self.unlicensed]
        answer = {"invaliduser": "|".join(invalid_users), "invalidparty": "|".join(invalid_parties),
                  "invalidtag": "|".join(invalid_tags), "unlicenseduser": "|".join(u.lower() for u in unlicensed)}
        return recipients, answer

    @property
    def daily_message_quota(self) -> int:
        """人次 the app may send a day: the corp's account limit × 200 (doc 90236)."""
        return self.account_limit * MESSAGES_PER_ACCOUNT_PER_DAY

    def _beijing_day(self) -> int:
        return int((self.now() + BEIJING) // 86400)

    def _member_quota_ok(self, userid: str, now: float) -> bool:
        # WeCom silently drops messages beyond 30/min and 1000/h to one member (doc 90236).
        sends = self._member_sends.setdefault(userid, deque())
        while sends and sends[0] <= now - 3600:
            sends.popleft()
        if len(sends) >= 1000:
            return False
        recent = 0
        for t in reversed(sends):
            if t <= now - 60:
                break
            recent += 1
            if recent >= 30:
                return False
        sends.append(now)
        return True

    def _validate_message(self, msgtype: str, content) -> dict:
        if not isinstance(content, dict):
            raise _ApiError(44004 if msgtype in ("text", "markdown") else 40058)
        content = copy.deepcopy(content)
        if msgtype in ("text", "markdown"):
            if not content.get("content"):
                raise _ApiError(44004)
            # Longer text is cut, not refused, by WeCom.
            content["content"] = _truncate_utf8(str(content["content"]), TEXT_LIMIT_BYTES)
        elif msgtype == "textcard":
            for key, code in (("title", 41016), ("description", 41033), ("url", 41010)):
                if not content.get(key):
                    raise _ApiError(code)
        elif msgtype in ("news", "mpnews"):
            articles = content.get("articles")
            if not isinstance(articles, list) or not articles:
                raise _ApiError(40058)
            if len(articles) > 8:
                raise _ApiError(45008)
            for article in articles:
                if not isinstance(article, dict) or not article.get("title"):
                    raise _ApiError(41016)
                if msgtype == "mpnews":
                    self._check_media(article.get("thumb_media_id"))
        elif msgtype in ("image", "voice", "video", "file"):
            self._check_media(content.get("media_id"))
        elif msgtype == "template_card":
            self._check_template_card(content)  # card.py: the card rules, task_id unique in the app
        return content
