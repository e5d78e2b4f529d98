"""What every API group of the fake shares: WeCom's error codes and messages, the parsed request, the
route record and the secret kinds a route accepts.

Errors answer HTTP 200 with ``errcode``/``errmsg`` like WeCom (the global error code page:
https://developer.work.weixin.qq.com/document/path/90313); core adds the hint and the caller's IP to errmsg.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ERRMSG = {
    -1: "system busy",
    40001: "invalid credential",
    40004: "invalid media type",
    40005: "invalid type",
    40006: "invalid file size",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40022: "invalid sub button level",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40029: "invalid code",
    40031: "all list invalid",
    40032: "invalid userid list size",
    40056: "invalid agentid",
    40050: "chatid not found",
    40058: "invalid parameter",
    40068: "invalid tagid",
    40070: "all list invalid",
    40071: "UserTag Name Already Exist",
    40096: "invalid external userid",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41006: "media_id missing",
    41008: "missing code",
    41009: "missing userid",
    41010: "missing url",
    41011: "missing agentid",
    41016: "missing title",
    41033: "missing description",
    42001: "access_token expired",
    42014: "taskid has existed or empty or exceed max len",
    43002: "require POST method",
    44001: "empty media data",
    44004: "empty content",
    45008: "article size out of limit",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    45056: "too many tags",
    46003: "menu no exist",
    47001: "data format error",
    48002: "api forbidden",
    48009: "api forbidden for contact assistant",
    60001: "invalid department name",
    60003: "department not found",
    60011: "no privilege to access/modify contact/party/agent",
    60004: "parent department not found",
    60005: "department contains user",
    60006: "department contains sub-department",
    60007: "not allow to delete root department",
    60008: "department existed",
    60010: "department has circular dependency",
    60102: "userid existed",
    60111: "userid not found",
    60112: "invalid username",
    60020: "not allow to access from your ip",
    81002: "department level too deep",
    81013: "user & party & tag all invalid",
    82002: "invalid partyid list size",
    82003: "invalid tagid list size",
    84014: "user ticket expired",
    84015: "invalid user ticket",
    84061: "not external contact",
    301025: "invalid parameter (oa)",
}


class FakeWeComError(Exception):
    """A control call the real WeCom would refuse, with WeCom's errcode (e.g. 60102 userid exists)."""

    def __init__(self, errcode: int, errmsg: str | None = None):
        self.errcode = errcode
        self.errmsg = errmsg or ERRMSG.get(errcode, "error")
        super().__init__(f"{errcode} {self.errmsg}")


class _ApiError(Exception):
    def __init__(self, errcode: int, extra: dict | None = None):
        super().__init__(errcode)
        self.errcode = errcode
        self.extra = extra or {}


# The dispatcher's way of saying "close the connection, answer nothing".
_DROP = object()


@dataclass(frozen=True)
class _Encoded:
    """An answer whose bulky last member is already JSON text (ensure_ascii=False)."""

    fields: dict
    key: str
    json: str
  # the dispatcher's way of saying "close the connection, answer nothing"



@dataclass(frozen=True)
class _Route:
    method: str
    kinds: frozenset | None  # None: no access_token (gettoken)
    handler: str
    forbidden: int = 48002


_CONTACTS = frozenset({"contacts"})
_APP = frozenset({"app"})
_DIRECTORY = frozenset({"contacts", "app"})
_CUSTOMERS = frozenset({"customers", "app"})


_JSON = "application/json; charset=UTF-8"


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")



def _is_int_between(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high



class _Request:
    __slots__ = ("method", "api", "query", "body", "headers", "client_ip", "kind", "_json")

    def __init__(self, method: str, api: str, query: dict, body: bytes, headers, client_ip: str):
        self.method = method
        self.api = api
        self.query = query
        self.body = body
        self.headers = headers
        self.client_ip = client_ip
        self.kind: str | None = None
        self._json = None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> dict:
        if self._json is None:
            try:
                data = json.loads(self.body.decode("utf-8")) if self.body.strip() else {}
            except (UnicodeDecodeError, ValueError):
                raise _ApiError(47001) from None
            if not isinstance(data, dict):
                raise _ApiError(47001)
            self._json = data
        return self._json
