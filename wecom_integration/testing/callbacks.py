"""Play WeCom's side of the callback protocol: build the XML it pushes, encrypt, sign and post it.

Message and event XML follows https://developer.work.weixin.qq.com/document/path/90239 (app messages)
and https://developer.work.weixin.qq.com/document/path/90240 (events); contact changes follow
https://developer.work.weixin.qq.com/document/path/90970 and customer changes
https://developer.work.weixin.qq.com/document/path/92130. The envelope, signature and retry behaviour
follow https://developer.work.weixin.qq.com/document/path/90930: WeCom waits 5 s for an answer and
tries 3 times in all.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import requests
import urllib3
from defusedxml import ElementTree

__all__ = [
    "CallbackSender",
    "CallbackVerificationError",
    "DeliveryResult",
    "build_contact_party_xml",
    "build_contact_tag_xml",
    "build_contact_user_xml",
    "build_event_xml",
    "build_external_contact_xml",
    "build_external_tag_xml",
    "build_message_xml",
]

# user/get field names -> change_contact element names.
_USER_ELEMENTS = {
    "userid": "UserID",
    "new_userid": "NewUserID",
    "name": "Name",
    "department": "Department",
    "main_department": "MainDepartment",
    "is_leader_in_dept": "IsLeaderInDept",
    "direct_leader": "DirectLeader",
    "position": "Position",
    "mobile": "Mobile",
    "gender": "Gender",
    "email": "Email",
    "biz_mail": "BizMail",
    "status": "Status",
    "avatar": "Avatar",
    "alias": "Alias",
    "telephone": "Telephone",
    "address": "Address",
    "extattr": "ExtAttr",
}
_PARTY_ELEMENTS = {"id": "Id", "name": "Name", "parentid": "ParentId", "order": "Order"}
# WeCom sends these as bare numbers; everything else is CDATA.
_NUMERIC_USER_ELEMENTS = {"MainDepartment", "Status", "Gender"}


class CallbackVerificationError(Exception):
    """The receiver did not echo the decrypted echostr exactly, so WeCom would refuse the URL."""


def _cdata(value: str) -> str:
    # "]]>" cannot appear inside one CDATA section; split it across two.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _element(name: str, value) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int | float):
        return f"<{name}>{value}</{name}>"
    if isinstance(value, dict):
        return f"<{name}>" + "".join(_element(k, v) for k, v in value.items()) + f"</{name}>"
    if isinstance(value, list | tuple):
        # Repeated children, e.g. <PicList><item>…</item><item>…</item></PicList>.
        return f"<{name}>" + "".join(_element("item", v) for v in value) + f"</{name}>"
    return f"<{name}>{_cdata(str(value))}</{name}>"


def _document(elements: list[tuple[str, object]]) -> str:
    inner = "".join(_element(name, value) for name, value in elements if value is not None)
    return f"<xml>{inner}</xml>"


def _now(create_time) -> int:
    return int(time.time()) if create_time is None else int(create_time)


def _joined(value) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _extattr_xml_value(extattr) -> dict | list:
    attrs = extattr.get("attrs", []) if isinstance(extattr, dict) else extattr
    items = []
    for attr in attrs:
        item = {"Name": attr.get("name", ""), "Type": int(attr.get("type", 0))}
        if "text" in attr:
            item["Text"] = {"Value": attr["text"].get("value", "")}
        if "web" in attr:
            item["Web"] = {"Title": attr["web"].get("title", ""), "Url": attr["web"].get("url", "")}
        items.append(item)
    return items


def build_contact_user_xml(corp_id: str, change_type: str, user: dict, create_time=None) -> str:
    """A change_contact event for a member (create_user / update_user / delete_user).

    ``user`` uses user/get's field names; pass only what WeCom would push: everything for
    create_user, the changed fields (plus userid) for update_user, just userid for delete_user.
    https://developer.work.weixin.qq.com/document/path/90970
    """
    elements: list[tuple[str, object]] = [
        ("ToUserName", corp_id), ("FromUserName", "sys"), ("CreateTime", _now(create_time)),
        ("MsgType", "event"), ("Event", "change_contact"), ("ChangeType", change_type),
    ]
    for key, element in _USER_ELEMENTS.items():
        if key not in user or user[key] is None:
            continue
        value = user[key]
        if key in ("department", "is_leader_in_dept", "direct_leader"):
            value = _joined(value)
        elif key == "extattr":
            value = _extattr_xml_value(value)
        elif element in _NUMERIC_USER_ELEMENTS and str(value).lstrip("-").isdigit():
            value = int(value)
        elements.append((element, value))
    # Already-XML-cased extras pass through (tests that want unusual fields).
    elements.extend((k, v) for k, v in user.items() if k[:1].isupper())
    return _document(elements)


def build_contact_party_xml(corp_id: str, change_type: str, dept: dict, create_time=None) -> str:
    """A change_contact event for a department (create_party / update_party / delete_party).

    https://developer.work.weixin.qq.com/document/path/90971
    """
    elements: list[tuple[str, object]] = [
        ("ToUserName", corp_id), ("FromUserName", "sys"), ("CreateTime", _now(create_time)),
        ("MsgType", "event"), ("Event", "change_contact"), ("ChangeType", change_type),
    ]
    for key, element in _PARTY_ELEMENTS.items():
        if dept.get(key) is not None:
            value = dept[key]
            elements.append((element, int(value) if key != "name" else str(value)))
    return _document(elements)


def build_contact_tag_xml(corp_id: str, tag_id: int, *, add_users=(), del_users=(), add_parties=(),
                          del_parties=(), create_time=None) -> str:
    """A change_contact ``update_tag`` event: members and departments added to or removed from a tag, each list
    comma-separated and left out when empty. https://developer.work.weixin.qq.com/document/path/90972
    """
    elements: list[tuple[str, object]] = [
        ("ToUserName", corp_id), ("FromUserName", "sys"), ("CreateTime", _now(create_time)),
        ("MsgType", "event"), ("Event", "change_contact"), ("ChangeType", "update_tag"), ("TagId", int(tag_id)),
    ]
    for name, items in (("AddUserItems", add_users), ("DelUserItems", del_users), ("AddPartyItems", add_parties),
                        ("DelPartyItems", del_parties)):
        if items:
            elements.append((name, _joined(list(items))))
    return _document(elements)


def build_external_tag_xml(corp_id: str, change_type: str, tag_id: str, tag_type: str = "tag",
                           strategy_id=None, create_time=None) -> str:
    """A change_external_tag event (create / update / delete of a customer tag or tag group, ``shuffle`` of their
    order; ``tag_type`` is "tag" or "tag_group"). https://developer.work.weixin.qq.com/document/path/92130
    """
    elements: list[tuple[str, object]] = [
        ("ToUserName", corp_id), ("FromUserName", "sys"), ("CreateTime", _now(create_time)),
        ("MsgType", "event"), ("Event", "change_external_tag"), ("Id", tag_id),
        ("TagType", tag_type if change_type != "shuffle" else None), ("ChangeType", change_type),
        ("StrategyId", strategy_id),
    ]
    return _document(elements)


def build_message_xml(corp_id: str, from_user: str, agent_id, msg_type: str = "text", content: str = "hi",
                      msg_id=None, create_time=None, **extra) -> str:
    """A message a member sent to the app. For non-text types pass the type's fields in ``extra``
    (e.g. ``PicUrl=…, MediaId=…``). https://developer.work.weixin.qq.com/document/path/90239
    """
    if msg_id is None:
        msg_id = random.getrandbits(63)
    elements: list[tuple[str, object]] = [
        ("ToUserName", corp_id), ("FromUserName", from_user), ("CreateTime", _now(create_time)),
        ("MsgType", msg_type),
    ]
    if msg_type == "text":
        elements.append(("Content", content))
    elements.extend(extra.items())
    elements += [("MsgId", int(msg_id)), ("AgentID", int(agent_id))]
    return _document(elements)


def build_event_xml(corp_id: str, from_user: str, agent_id, event: str, event_key=None, create_time=None,
                    **extra) -> str:
    """An app event (subscribe, click, view, LOCATION, enter_agent, scancode_push …). Extra keyword
    arguments become elements; dicts nest and lists become <item> children.
    https://developer.work.weixin.qq.com/document/path/90240
    """
    elements: list[tuple[str, object]] = [
        ("ToUserName", corp_id), ("FromUserName", from_user), ("CreateTime", _now(create_time)),
        ("MsgType", "event"), ("Event", event),
    ]
    if event_key is not None:
        elements.append(("EventKey", event_key))
    elements.extend(extra.items())
    elements.append(("AgentID", int(agent_id)))
    return _document(elements)


def build_external_contact_xml(corp_id: str, change_type: str, user_id: str, external_user_id: str,
                               state=None, welcome_code=None, create_time=None, **extra) -> str:
    """A change_external_contact event (add_external_contact, edit_external_contact,
    del_external_contact, del_follow_user, add_half_external_contact, transfer_fail).
    https://developer.work.weixin.qq.com/document/path/92130
    """
    elements: list[tuple[str, object]] = [
        ("ToUserName", corp_id), ("FromUserName", "sys"), ("CreateTime", _now(create_time)),
        ("MsgType", "event"), ("Event", "change_external_contact"), ("ChangeType", change_type),
        ("UserID", user_id), ("ExternalUserID", external_user_id), ("State", state),
        ("WelcomeCode", welcome_code),
    ]
    elements.extend(extra.items())
    return _document(elements)


@dataclass
class DeliveryResult:
    """What happened to one pushed callback: the last HTTP status (None if no answer at all), how many
    tries it took, the receiver's last answer body and the last transport error."""

    status: int | None
    attempts: int
    body: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    def as_dict(self) -> dict:
        return {"status": self.status, "attempts": self.attempts, "ok": self.ok, "error": self.error}


def _nonce() -> str:
    return str(secrets.randbelow(9_000_000_000) + 1_000_000_000)


class CallbackSender:
    """Sign and deliver callbacks to one receiver URL the way WeCom does.

    ``receive_id`` is the CorpID for a self-built app. ``timeout`` and ``tries`` default to WeCom's
    5 seconds and 3 tries in all; retries happen on a timeout, a connection error or a 5xx answer.
    """

    def __init__(self, url: str, token: str, encoding_aes_key: str, receive_id: str,
                 session: requests.Session | None = None, timeout: float = 5.0, tries: int = 3):
        from wecom_integration.crypto import WeComCrypto  # the cipher may be written after this module

        self.url = url
        self.token = token
        self.receive_id = receive_id
        self.crypto = WeComCrypto(token, encoding_aes_key, receive_id)
        self.session = session
        self.timeout = timeout
        self.tries = max(1, int(tries))
        # Pushes go through urllib3 (one keep-alive connection) unless a requests.Session is given: it
        # costs half the CPU of requests, which matters to a load generator sharing the machine with the
        # server it loads.
        self._pool: urllib3.PoolManager | None = None

    def _session(self) -> requests.Session:
        if self.session is None:
            self.session = requests.Session()
        return self.session

    def verify_url(self, echostr: str | None = None, timestamp=None, nonce=None) -> requests.Response:
        """The GET WeCom makes when an admin saves the callback URL: the receiver must answer the
        decrypted ``echostr`` exactly. https://developer.work.weixin.qq.com/document/path/90930"""
        if echostr is None:
            echostr = str(secrets.randbelow(10**19))
        timestamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or _nonce()
        encrypted, signature = self.crypto.encrypt(echostr, nonce, timestamp)
        params = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce, "echostr": encrypted}
        response = self._session().get(self.url, params=params, timeout=self.timeout)
        response.expected_echostr = echostr
        return response

    def check_url(self) -> requests.Response:
        """verify_url, raising CallbackVerificationError unless the answer is exactly right."""
        response = self.verify_url()
        if response.status_code != 200 or response.content != response.expected_echostr.encode():
            raise CallbackVerificationError(
                f"{self.url} answered {response.status_code} {response.content[:80]!r}, "
                f"expected {response.expected_echostr!r}"
            )
        return response

    def envelope(self, xml: str, timestamp=None, nonce=None, to_user_name: str | None = None,
                 agent_id=None) -> tuple[dict, bytes]:
        """The query parameters and body of one push, for tests that want to tamper with them."""
        timestamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or _nonce()
        encrypted, signature = self.crypto.encrypt(xml, nonce, timestamp)
        body = _document([
            ("ToUserName", self.receive_id if to_user_name is None else to_user_name),
            ("Encrypt", encrypted),
            ("AgentID", "" if agent_id is None else str(agent_id)),
        ])
        return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}, body.encode()

    def post(self, xml: str, timestamp=None, nonce=None, to_user_name: str | None = None,
             agent_id=None) -> DeliveryResult:
        """Push one message or event. Every retry carries the same envelope, as WeCom's do, so the
        receiver sees true duplicates."""
        params, body = self.envelope(xml, timestamp, nonce, to_user_name, agent_id)
        return self.post_envelope(params, body)

    def post_envelope(self, params: dict, body: bytes) -> DeliveryResult:
        """Deliver a prepared (possibly tampered) envelope with WeCom's retry policy."""
        if self.session is None:
            return self._post_with_urllib3(params, body)
        session = self._session()
        status = None
        text = ""
        error = None
        for attempt in range(1, self.tries + 1):
            try:
                response = session.post(self.url, params=params, data=body, timeout=self.timeout,
                                        headers={"Content-Type": "text/xml"})
            except (requests.Timeout, requests.ConnectionError) as exc:
                status, text, error = None, "", f"{type(exc).__name__}: {exc}"
                continue
            status, text, error = response.status_code, response.text, None
            if status < 500:
                return DeliveryResult(status, attempt, text, error)
        return DeliveryResult(status, self.tries, text, error)

    def _post_with_urllib3(self, params: dict, body: bytes) -> DeliveryResult:
        if self._pool is None:
            self._pool = urllib3.PoolManager(maxsize=1, retries=False)
        url = f"{self.url}{'&' if '?' in self.url else '?'}{urlencode(params)}"
        status = None
        text = ""
        error = None
        for attempt in range(1, self.tries + 1):
            try:
                response = self._pool.request(
                    "POST", url, body=body, headers={"Content-Type": "text/xml"},
                    timeout=urllib3.Timeout(total=self.timeout), retries=False, redirect=False,
                )
            except urllib3.exceptions.HTTPError as exc:  # timeouts, refused or dropped connections
                status, text, error = None, "", f"{type(exc).__name__}: {exc}"
                continue
            status, text, error = response.status, response.data.decode("utf-8", "replace"), None
            if status < 500:
                return DeliveryResult(status, attempt, text, error)
        return DeliveryResult(status, self.tries, text, error)

    def close(self) -> None:
        """Close the sender's connections."""
        if self._pool is not None:
            self._pool.clear()
        if self.session is not None:
            self.session.close()

    def open_reply(self, body: str | bytes) -> str | None:
        """Check and decrypt a passive reply (<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>);
        None for an empty or "success" answer. Raises ValueError if the reply is malformed or
        its signature is wrong. https://developer.work.weixin.qq.com/document/path/90241"""
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        if body.strip() in ("", "success"):
            return None
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as exc:
            raise ValueError(f"passive reply is not XML: {exc}") from exc
        fields = {child.tag: (child.text or "") for child in root}
        missing = {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"} - fields.keys()
        if missing:
            raise ValueError(f"passive reply lacks {sorted(missing)}")
        try:
            return self.crypto.decrypt(fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"],
                                       fields["Encrypt"])
        except Exception as exc:  # the cipher's own error types are its business; we only report
            raise ValueError(f"passive reply does not verify: {exc}") from exc
