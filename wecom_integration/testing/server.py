"""A faithful fake of WeCom's server API (qyapi.weixin.qq.com/cgi-bin/…) over real HTTP.

Tests, the demo and the benchmarks talk to this instead of WeCom. It is pure Python (stdlib,
requests, defusedxml) so it runs without Django. What it models, each after the WeCom page linked in
the handler's docstring:

* one access_token per secret kind, reused while valid, with expiry (42001) and early invalidation
  (40014); errors answer HTTP 200 with ``errcode``/``errmsg`` like WeCom, errmsg carrying a hint;
* which secret may call what. A token of the wrong kind gets 48002 ("api forbidden"), except
  user/list_id, which answers 48009 because WeCom reserves it for the contact-sync secret and
  reports it with the contact-assistant code (see wecom-facts.md);
* trusted IPs (``trusted_ips``): a call from any other address answers 60020 "not allow to access from
  your ip, …, from ip: <caller>" (doc 90313; gettoken is not checked);
* the 2022 rules per secret (``restricted``; wecom-facts.md, and the 48009 page "no longer allowed to
  read directory details from a new IP"): the contact-sync secret may only list ids (``user/list_id``,
  ``department/simplelist``); every read of details with it (``user/get``, ``user/list``,
  ``user/simplelist``, ``department/list``, ``department/get``) answers 48009 "api forbidden for contact
  assistant" (the errmsg users of every SDK report, e.g. openscrm/api-server#26). Contact callbacks
  withhold mobile, email, avatar and the like;
* the self-built app's visible range (``Org.set_visible_range``, 可见范围), applied to every read with the
  app secret, in both worlds: departments and members outside it are absent from lists and answer 60011
  "no privilege to access/modify contact/party/agent" on a direct read (user/get
  https://developer.work.weixin.qq.com/document/path/90196, department/list
  https://developer.work.weixin.qq.com/document/path/90208); the customer APIs list only follow users
  inside it ("应用只能获取到可见范围内的成员", https://developer.work.weixin.qq.com/document/path/92994);
* a new app (``new_app``, created after 2022-06-20; by default as ``restricted``): its secret reads
  members without mobile, email, avatar, gender, QR code and address (those need the member's consent,
  ``snsapi_privateinfo``);
* rate limits per corp per API (45009 with the minute/hour blocks), an optional concurrency limit
  (45033) and WeCom's silent per-member message quota (30/min, 1000/h);
* fault injection with a seeded random: errcodes, dropped connections, answers slower than the
  client's timeout (the work is still done, like a real slow WeCom), added latency;
* change_contact callbacks for every org mutation, sent synchronously with WeCom's retry policy;
* customer contact in an old corp (the 客户联系 secret works) or a new one (since 2023-12-01 it answers 48002;
  the app only once authorised under 客户联系 → 可调用接口的应用), docs 92994, 96316;
* two-step verification through ``auth/get_tfa_info`` / ``user/tfa_succ`` with the contact-sync secret, or
  the app for its own OAuth page and members in its visible range, and the older ``user/authsucc`` for the
  contact-sync secret only, docs 99499, 99500, 99521, 90203;
* message recipients outside the app's visible range reported invalid, userids matched ignoring case and
  reported lower-cased, the app's daily quota of account limit × 200 person-times (45009), doc 90236;
* media ids that expire after 3 days (40007), doc 90253; WeCom's exemptions from its call counts
  (``quota_calls``: not message/send, not getuserinfo with a valid code), doc 90454.

docs/fake-wecom.md lists every behaviour with its doc page and test, and what the fake does not model.

gettoken answers the same token while it lives, with ``expires_in`` counting its remaining life
(a fresh token reports the full ``token_ttl``): a client that trusts expires_in never holds an
expired token, and one that assumes a fresh 7200 s on every answer is caught by 42001.

Time-dependent behaviour reads :meth:`FakeWeCom.now`, which :meth:`FakeWeCom.advance_time` shifts,
so tests can expire tokens and codes without sleeping.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import secrets
import socket
import struct
import sys
import threading
import time
import traceback
import zlib
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import parse_qs, urlsplit

from wecom_integration.testing.callbacks import (
    CallbackSender,
    DeliveryResult,
    build_contact_party_xml,
    build_contact_user_xml,
    build_event_xml,
    build_external_contact_xml,
    build_message_xml,
)
from wecom_integration.testing.org import (
    SENSITIVE_USER_FIELDS,
    ExternalContact,
    Follow,
    Org,
    User,
    dept_user_json,
)

__all__ = ["FakeWeCom", "FakeWeComError", "CALLBACK_KINDS"]

CALLBACK_KINDS = ("app", "contacts", "customers")
MAX_BODY = 25 * 1024 * 1024
TOKEN_LENGTH = 214  # what real tokens measure; WeCom asks callers to keep 512 bytes for them
OAUTH_CODE_TTL = 300
TFA_CODE_TTL = 300  # the verification page's code and the tfa_code: single use, 5 minutes (doc 99499)
MEDIA_TTL = 3 * 86400  # a temporary media_id lives 3 days (doc 90253)
MESSAGES_PER_ACCOUNT_PER_DAY = 200  # each app sends at most account limit × 200 人次 a day (doc 90236)
BEIJING = 8 * 3600  # WeCom's days start at midnight in Beijing
# Calls WeCom does not count against the API frequency limits (doc 90454's exemptions): message/send, and
# auth/getuserinfo when the code is valid. ``calls`` still counts every request the fake served.
QUOTA_EXEMPT = frozenset(("message/send",))
USER_TICKET_TTL = 1800
OAUTH_SCOPES = ("snsapi_base", "snsapi_privateinfo")
MESSAGE_TYPES = frozenset(
    ("text", "markdown", "textcard", "news", "mpnews", "image", "file", "voice", "video", "template_card")
)
INTERACTIVE_CARDS = frozenset(("button_interaction", "vote_interaction", "multiple_interaction"))
MENU_TYPES = frozenset(("click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
                        "pic_photo_or_album", "pic_weixin", "location_select", "view_miniprogram"))
# type -> (largest size in bytes, allowed file extensions or None for any); smallest is 5 bytes.
MEDIA_RULES = {
    "image": (10 * 1024 * 1024, {"jpg", "jpeg", "png"}),
    "voice": (2 * 1024 * 1024, {"amr"}),
    "video": (10 * 1024 * 1024, {"mp4"}),
    "file": (20 * 1024 * 1024, None),
}
TEXT_LIMIT_BYTES = 2048

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
    40032: "invalid userid list size",
    40056: "invalid agentid",
    40058: "invalid parameter",
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
    43002: "require POST method",
    44001: "empty media data",
    44004: "empty content",
    45008: "article size out of limit",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
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

ROUTES = {
    "gettoken": _Route("GET", None, "_api_gettoken"),
    "department/list": _Route("GET", _DIRECTORY, "_api_department_list"),
    "department/simplelist": _Route("GET", _DIRECTORY, "_api_department_simplelist"),
    "department/get": _Route("GET", _DIRECTORY, "_api_department_get"),
    "user/list": _Route("GET", _DIRECTORY, "_api_user_list"),
    "user/simplelist": _Route("GET", _DIRECTORY, "_api_user_simplelist"),
    "user/get": _Route("GET", _DIRECTORY, "_api_user_get"),
    "user/list_id": _Route("POST", _CONTACTS, "_api_user_list_id", forbidden=48009),
    "user/authsucc": _Route("GET", _CONTACTS, "_api_user_authsucc"),
    "auth/get_tfa_info": _Route("POST", _DIRECTORY, "_api_auth_get_tfa_info"),
    "user/tfa_succ": _Route("POST", _DIRECTORY, "_api_user_tfa_succ"),
    "message/send": _Route("POST", _APP, "_api_message_send"),
    "auth/getuserinfo": _Route("GET", _APP, "_api_auth_getuserinfo"),
    "auth/getuserdetail": _Route("POST", _APP, "_api_auth_getuserdetail"),
    "externalcontact/get_follow_user_list": _Route("GET", _CUSTOMERS, "_api_externalcontact_follow_users"),
    "externalcontact/list": _Route("GET", _CUSTOMERS, "_api_externalcontact_list"),
    "externalcontact/get": _Route("GET", _CUSTOMERS, "_api_externalcontact_get"),
    "externalcontact/batch/get_by_user": _Route("POST", _CUSTOMERS, "_api_externalcontact_batch"),
    "menu/create": _Route("POST", _APP, "_api_menu_create"),
    "menu/get": _Route("GET", _APP, "_api_menu_get"),
    "menu/delete": _Route("GET", _APP, "_api_menu_delete"),
    "media/upload": _Route("POST", _APP, "_api_media_upload"),
}


_JSON = "application/json; charset=UTF-8"


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _tiny_png() -> bytes:
    """A 1×1 grey PNG, so avatar URLs in a demo resolve to the fake, never to a real CDN."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x99"))
            + chunk(b"IEND", b""))


_AVATAR_PNG = _tiny_png()


def _is_int_between(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _truncate_utf8(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")  # never cut a character in half


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


class _Faults:
    def __init__(self, error_rate, errcodes, latency, drop_rate, timeout_rate, timeout_seconds, paths, seed):
        rates = {"error_rate": error_rate, "drop_rate": drop_rate, "timeout_rate": timeout_rate}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if error_rate + drop_rate + timeout_rate > 1.0:
            raise ValueError("error_rate + drop_rate + timeout_rate must not exceed 1")
        if error_rate and not errcodes:
            raise ValueError("error_rate needs errcodes to choose from")
        self.error_rate = error_rate
        self.errcodes = tuple(errcodes)
        self.latency = latency
        self.drop_rate = drop_rate
        self.timeout_rate = timeout_rate
        self.timeout_seconds = timeout_seconds
        self.paths = None if paths is None else frozenset(_normalise_api(p) for p in paths)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def applies(self, api: str) -> bool:
        return self.paths is None or api in self.paths

    def draw(self) -> tuple[str | None, int]:
        """One roll per request; the three outcomes are exclusive so the rates mean what they say."""
        with self._lock:
            r = self._rng.random()
            if r < self.drop_rate:
                return "drop", 0
            if r < self.drop_rate + self.timeout_rate:
                return "timeout", 0
            if r < self.drop_rate + self.timeout_rate + self.error_rate:
                return "error", self._rng.choice(self.errcodes)
            return None, 0


def _normalise_api(path: str) -> str:
    path = path.strip("/")
    return path[len("cgi-bin/"):] if path.startswith("cgi-bin/") else path


class _RateLimiter:
    """Per-API fixed windows like doc 90454: crossing the minute limit blocks that API for
    ``block_seconds``, crossing the hour limit for ``hour_block_seconds``.
    https://developer.work.weixin.qq.com/document/path/90454"""

    def __init__(self):
        self.enabled = False
        self.per_minute = 10_000
        self.per_hour = 150_000
        self.block_seconds = 60.0
        self.hour_block_seconds = 3600.0
        self.concurrency: int | None = None
        self._state: dict[str, list] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._state.clear()

    def check(self, api: str, now: float) -> int | None:
        with self._lock:
            # [minute window start, minute count, hour window start, hour count, blocked until, block kind]
            st = self._state.get(api)
            if st is None:
                st = self._state[api] = [now, 0, now, 0, 0.0, None]
            if st[5] is not None:
                if now < st[4]:
                    return 45009
                if st[5] == "hour":
                    st[2], st[3] = now, 0
                st[0], st[1], st[5] = now, 0, None
            if now - st[0] >= 60:
                st[0], st[1] = now, 0
            if now - st[2] >= 3600:
                st[2], st[3] = now, 0
            st[1] += 1
            st[3] += 1
            if st[3] > self.per_hour:
                st[4], st[5] = now + self.hour_block_seconds, "hour"
                return 45009
            if st[1] > self.per_minute:
                st[4], st[5] = now + self.block_seconds, "minute"
                return 45009
            return None


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


@dataclass(frozen=True)
class _Registration:
    url: str
    token: str
    encoding_aes_key: str


class FakeWeCom:
    """One fake corp with one self-built app, served over HTTP on loopback::

        with FakeWeCom(users=50, departments=5) as fake:
            requests.get(f"{fake.api_base}/cgi-bin/gettoken",
                         params={"corpid": fake.corp_id, "corpsecret": fake.contact_secret}, timeout=5)

    Control methods (add_user, set_faults, advance_time …) are safe to call from any thread while
    it serves; the same controls are reachable over HTTP under /fake/ for another process.
    """

    def __init__(self, users: int = 200, departments: int = 20, seed: int = 1, token_ttl: int = 7200,
                 restricted: bool = False, rate_limits: bool = False, corp_id: str | None = None,
                 agent_id: int = 1000002, org: Org | None = None, trusted_ips: Iterable[str] | None = None,
                 customer_contact: str = "secret", customer_app_authorised: bool = False,
                 account_limit: int | None = None, new_app: bool | None = None,
                 visible_departments: Iterable = (), visible_users: Iterable = ()):
        self.org = org if org is not None else Org.generate(users=users, departments=departments, seed=seed)
        self.corp_id = corp_id or "ww" + secrets.token_hex(8)
        self.agent_id = int(agent_id)
        self.secret = secrets.token_urlsafe(32)
        self.contact_secret = secrets.token_urlsafe(32)
        self.customer_secret = secrets.token_urlsafe(32)
        self.token_ttl = token_ttl
        self.restricted = restricted
        # The app's trusted IPs (企业可信IP): when set, every call with an access_token from another IP
        # answers 60020, its errmsg naming the caller's IP as WeCom does. gettoken is not checked.
        self.trusted_ips: set[str] | None = set(trusted_ips) if trusted_ips is not None else None
        # Customer contact (docs 92994, 96316): "secret" models a corp set up before 2023-12-01, whose 客户联系
        # secret still calls the customer APIs; "app" a newer corp, whose secret is refused (48002). Either
        # way the app secret calls them only once the app is listed under 客户联系 → 可调用接口的应用.
        if customer_contact not in ("secret", "app"):
            raise ValueError('customer_contact is "secret" (a corp from before 2023-12-01) or "app"')
        self.customer_contact = customer_contact
        self.customer_app_authorised = customer_app_authorised
        # The corp's purchased accounts (帐号上限): the app's daily message quota is 200 times this.
        self.account_limit = account_limit if account_limit is not None else max(200, len(self.org.users))
        # Two-step verification (docs 99499, 99500): which page the admin set, the WeCom custom page (code
        # exchanged with the contact-sync secret) or the app's own OAuth link (code exchanged with the app).
        self.two_step_page = "custom"
        # What externalcontact/get answers for a customer the corp no longer has: WeCom documents 84061, and
        # users report 40096 for deleted customers too (WxJava PR #2591); tests set either.
        self.deleted_customer_errcode = 40096
        # None: a new app exactly when the corp follows the 2022 rules (the stricter pairing).
        self._new_app = new_app
        if visible_departments or visible_users:
            self.org.set_visible_range(departments=visible_departments, users=visible_users)
        # WeCom's callback patience; lower it in tests that simulate a hung receiver.
        self.callback_timeout = 5.0
        self.callback_tries = 3

        self.calls: Counter = Counter()
        self.quota_calls: Counter = Counter()  # what WeCom counts against the frequency limits
        self.gettoken_calls: Counter = Counter()
        self.sent_messages: list[dict] = []
        self.menus: dict[int, dict] = {}
        self.media: dict[str, dict] = {}
        self.authsucc_users: set[str] = set()
        self.unlicensed: set[str] = set()  # members WeCom would report in unlicenseduser
        self.callback_log: list[tuple[str, str, DeliveryResult]] = []

        self._lock = threading.RLock()
        self._stats_lock = threading.Lock()
        self._time_offset = 0.0
        self._secret_kinds = {self.secret: "app", self.contact_secret: "contacts",
                              self.customer_secret: "customers"}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._current_token: dict[str, str] = {}
        self._retired_tokens: deque[str] = deque()
        self._codes: dict[str, tuple[str | None, str | None, float, str]] = {}
        self._tickets: dict[str, tuple[str, float]] = {}
        self._tfa_codes: dict[str, tuple[str, str, float]] = {}  # page code -> (userid, page, expires)
        self._tfa_tickets: dict[str, tuple[str, float]] = {}  # tfa_code -> (userid, expires)
        self._daily_sent: dict[int, int] = {}  # Beijing day -> 人次 sent
        self._sent: list[_Sent] = []
        self._delivery_index: dict[str, list[int]] = {}
        self._dup_cache: dict[str, tuple[float, dict]] = {}
        self._member_sends: dict[str, deque] = {}
        self._callbacks: dict[str, _Registration] = {}
        # Each pushing thread keeps one sender (one HTTP keep-alive connection) per registration, as any
        # HTTP/1.1 client with a connection pool does; a new registration gets new senders.
        self._thread_senders = threading.local()
        self._faults: _Faults | None = None
        self._limiter = _RateLimiter()
        self._limiter.enabled = rate_limits
        self._inflight = 0

        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.host = "127.0.0.1"
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeWeCom:
        """Listen on host:port (0 picks a free port) and serve from a background thread."""
        if self._httpd is not None:
            raise RuntimeError("the fake is already running")
        self._stopping.clear()
        httpd = _HTTPServer((host, port), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self.host, self.port = httpd.server_address[:2]
        self.org.avatar_base = f"{self.api_base}/fake/avatar"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"fake-wecom-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open keep-alive connection, so nothing answers afterwards."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping on injected latency
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeWeCom:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def api_base(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def credentials(self) -> dict:
        """What a tenant admin would type into the product: the API base replaces qyapi.weixin.qq.com."""
        return {"api_base": self.api_base, "corp_id": self.corp_id, "agent_id": self.agent_id,
                "secret": self.secret, "contact_secret": self.contact_secret,
                "customer_secret": self.customer_secret}

    # ------------------------------------------------------------------ time and stats
    def now(self) -> float:
        return time.time() + self._time_offset

    def advance_time(self, seconds: float) -> None:
        """Move the fake's clock forward: tokens, codes, tickets, rate-limit windows and duplicate
        checks all see the new time."""
        self._time_offset += seconds

    def reset_stats(self) -> None:
        with self._stats_lock:
            self.calls.clear()
            self.quota_calls.clear()
            self.gettoken_calls.clear()

    def stats(self) -> dict:
        with self._stats_lock:
            return {"calls": dict(self.calls), "quota_calls": dict(self.quota_calls),
                    "gettoken_calls": dict(self.gettoken_calls),
                    "messages_today": self._daily_sent.get(self._beijing_day(), 0),
                    "daily_message_quota": self.daily_message_quota,
                    "messages": len(self._sent), "deliveries": sum(len(m.recipients) for m in self._sent),
                    "callbacks": len(self.callback_log)}

    # ------------------------------------------------------------------ switches
    @property
    def new_app(self) -> bool:
        """The app was created after 2022-06-20: its secret reads members without the sensitive fields
        (https://developer.work.weixin.qq.com/document/path/90196, "2022年6月20号20点00分以后新创建的自建
        应用将不再返回" mobile, gender, avatar, email, ...). Unless set, it follows ``restricted``."""
        return self.restricted if self._new_app is None else self._new_app

    @new_app.setter
    def new_app(self, value: bool | None) -> None:
        self._new_app = None if value is None else bool(value)

    def set_visible_range(self, departments: Iterable = (), users: Iterable = ()) -> None:
        """The app's visible range (see :meth:`Org.set_visible_range`); nothing given: the whole corp."""
        with self.org.lock:
            self.org.set_visible_range(departments=departments, users=users)

    def clear_visible_range(self) -> None:
        with self.org.lock:
            self.org.clear_visible_range()

    @property
    def rate_limits(self) -> bool:
        return self._limiter.enabled

    @rate_limits.setter
    def rate_limits(self, enabled: bool) -> None:
        self._limiter.enabled = bool(enabled)
        if not enabled:
            self._limiter.reset()

    def set_rate_limit(self, per_minute: int | None = None, per_hour: int | None = None,
                       block_seconds: float | None = None, hour_block_seconds: float | None = None,
                       concurrency: int | None = None, enabled: bool = True) -> None:
        """Configure (and by default switch on) the per-API limits; windows restart."""
        limiter = self._limiter
        if per_minute is not None:
            limiter.per_minute = per_minute
        if per_hour is not None:
            limiter.per_hour = per_hour
        if block_seconds is not None:
            limiter.block_seconds = block_seconds
        if hour_block_seconds is not None:
            limiter.hour_block_seconds = hour_block_seconds
        limiter.concurrency = concurrency
        limiter.enabled = enabled
        limiter.reset()

    def set_faults(self, error_rate: float = 0.0, errcodes: Iterable[int] = (-1, 45009), latency: float = 0.0,
                   drop_rate: float = 0.0, timeout_rate: float = 0.0, timeout_seconds: float = 6.0,
                   paths: Iterable[str] | None = None, seed: int = 0) -> None:
        """Inject faults into API calls (``paths`` like "user/list_id"; None means all, gettoken too).

        Per request one seeded roll picks: drop (close without answering; the call is not processed),
        timeout (sleep ``timeout_seconds``, then process and answer: the work happens although the
        client has given up), or an error answer with an errcode from ``errcodes``. ``latency`` is
        added to every matching call."""
        self._faults = _Faults(error_rate, errcodes, latency, drop_rate, timeout_rate, timeout_seconds,
                               paths, seed)

    def clear_faults(self) -> None:
        self._faults = None

    # ------------------------------------------------------------------ tokens
    def invalidate_tokens(self, kind: str | None = None) -> None:
        """Early invalidation, as WeCom may do at any time: existing tokens then answer 40014."""
        kinds = [kind] if kind else list(self._current_token)
        with self._lock:
            for k in kinds:
                token = self._current_token.pop(k, None)
                if token is not None:
                    self._tokens.pop(token, None)

    def _issue_token(self, kind: str) -> tuple[str, int]:
        now = self.now()
        with self._lock:
            token = self._current_token.get(kind)
            if token is not None:
                expires_at = self._tokens[token][1]
                if expires_at > now:
                    # WeCom hands back the same token while it lives; we report its remaining life.
                    return token, max(1, math.ceil(expires_at - now))
                self._retire(token)
            token = secrets.token_urlsafe(TOKEN_LENGTH)[:TOKEN_LENGTH]
            self._tokens[token] = (kind, now + self.token_ttl)
            self._current_token[kind] = token
            return token, int(self.token_ttl)

    def _retire(self, token: str) -> None:
        # Expired tokens stay recognisable (42001, not 40014) for a while, then are forgotten.
        self._retired_tokens.append(token)
        while len(self._retired_tokens) > 256:
            self._tokens.pop(self._retired_tokens.popleft(), None)

    # ------------------------------------------------------------------ messages, oauth, callbacks
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

    def issue_oauth_code(self, userid: str | None = None, openid: str | None = None,
                         scope: str = "snsapi_base") -> str:
        """The ``code`` WeCom appends to the OAuth redirect: single use, valid 5 minutes. ``scope`` is
        the authorize URL's: with ``snsapi_privateinfo`` (the member consented on WeCom's page) the
        code's getuserinfo also answers a ``user_ticket``; with ``snsapi_base`` (and the QR login) not.
        https://developer.work.weixin.qq.com/document/path/91023"""
        if (userid is None) == (openid is None):
            raise ValueError("give exactly one of userid (a member) or openid (a non-member)")
        if scope not in OAUTH_SCOPES:
            raise ValueError(f"scope must be one of {OAUTH_SCOPES}")
        if userid is not None and userid not in self.org.users:
            raise FakeWeComError(60111)
        if userid is not None and not self.org.app_sees_user(self.org.users[userid]):
            # WeCom shows a member outside the app's visible range an error page instead of redirecting: no code.
            raise FakeWeComError(60011)
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = (userid, openid, self.now() + OAUTH_CODE_TTL, scope)
        return code

    def issue_tfa_code(self, userid: str) -> str:
        """A member opens the company's two-step verification page: the ``code`` WeCom appends to it.
        With ``two_step_page == "app_oauth"`` the page is the app's OAuth link and the app may exchange the
        code; otherwise only the contact-sync secret may. https://developer.work.weixin.qq.com/document/path/99521"""
        user = self.org.find_user(userid)
        if user is None:
            raise FakeWeComError(60111)
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._tfa_codes[code] = (user.userid, self.two_step_page, self.now() + TFA_CODE_TTL)
        return code

    def register_callback(self, url: str, token: str, encoding_aes_key: str, kind: str = "contacts",
                          verify: bool = False):
        """Set the callback URL of one kind (app messages, contact changes, customer changes).
        With ``verify`` the URL must pass WeCom's echostr check first, as when an admin saves it;
        CallbackVerificationError otherwise."""
        if kind not in CALLBACK_KINDS:
            raise ValueError(f"kind must be one of {CALLBACK_KINDS}")
        response = None
        if verify:
            response = self._sender(url, token, encoding_aes_key).check_url()
        with self._lock:
            self._callbacks[kind] = _Registration(url, token, encoding_aes_key)
        return response

    def unregister_callback(self, kind: str) -> None:
        with self._lock:
            self._callbacks.pop(kind, None)

    def _sender(self, url: str, token: str, encoding_aes_key: str) -> CallbackSender:
        return CallbackSender(url, token, encoding_aes_key, self.corp_id, timeout=self.callback_timeout,
                              tries=self.callback_tries)

    def emit(self, kind: str, xml: str) -> list[DeliveryResult]:
        """Push one callback XML to the URL registered for ``kind``; [] if none is registered."""
        with self._lock:
            registration = self._callbacks.get(kind)
        if registration is None:
            return []
        senders = getattr(self._thread_senders, "by_registration", None)
        if senders is None:
            senders = self._thread_senders.by_registration = {}
        sender = senders.get(registration)
        if sender is None:
            sender = senders[registration] = self._sender(
                registration.url, registration.token, registration.encoding_aes_key
            )
        result = sender.post(xml, agent_id=None if kind == "contacts" else self.agent_id)
        with self._lock:
            self.callback_log.append((kind, xml, result))
        return [result]

    def send_app_message(self, userid: str, content: str = "hi", msg_type: str = "text",
                         **extra) -> list[DeliveryResult]:
        """A member writes to the app: push the message to the "app" callback."""
        xml = build_message_xml(self.corp_id, userid, self.agent_id, msg_type, content,
                                create_time=int(self.now()), **extra)
        return self.emit("app", xml)

    def send_app_event(self, userid: str, event: str, event_key=None, **extra) -> list[DeliveryResult]:
        """A member triggers an app event (click, view, enter_agent …): push it to the "app" callback."""
        xml = build_event_xml(self.corp_id, userid, self.agent_id, event, event_key,
                              create_time=int(self.now()), **extra)
        return self.emit("app", xml)

    # ------------------------------------------------------------------ org mutations (emit callbacks)
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

    def add_department(self, id: int | None = None, name: str = "", parentid: int = 1, order: int = 0,
                       name_en: str | None = None) -> list[DeliveryResult]:
        """Add a department and push create_party. https://developer.work.weixin.qq.com/document/path/90971"""
        org = self.org
        with org.lock:
            dept_id = org.next_department_id() if id is None else int(id)
            if dept_id in org.departments:
                raise FakeWeComError(60008)
            parent = org.departments.get(int(parentid))
            if parent is None:
                raise FakeWeComError(60004)
            self._check_department_name(name, parent.id)
            if parent.depth + 1 > 15:
                raise FakeWeComError(81002)
            dept = org.add_department(dept_id, name, name_en or "", parent.id, int(order))
            payload = {"id": dept.id, "name": dept.name, "parentid": dept.parentid, "order": dept.order}
        return self.emit("contacts", build_contact_party_xml(self.corp_id, "create_party", payload,
                                                             create_time=int(self.now())))

    def update_department(self, id: int, name: str | None = None, parentid: int | None = None,
                          order: int | None = None, name_en: str | None = None) -> list[DeliveryResult]:
        """Rename or move a department and push update_party with what changed. An order-only change
        is silent: update_party carries no Order."""
        org = self.org
        with org.lock:
            dept = org.departments.get(int(id))
            if dept is None:
                raise FakeWeComError(60003)
            payload: dict = {"id": dept.id}
            target_parent = dept.parentid if parentid is None else int(parentid)
            if target_parent != dept.parentid:
                if dept.id == 1:
                    raise FakeWeComError(40058, "the root department cannot move")
                if target_parent not in org.departments:
                    raise FakeWeComError(60004)
                if any(d.id == target_parent for d in org.subtree(dept.id)):
                    raise FakeWeComError(60010)
                if org.departments[target_parent].depth + org.max_depth_below(dept.id) > 15:
                    raise FakeWeComError(81002)
            if name is not None and name != dept.name:
                self._check_department_name(name, target_parent, exclude=dept.id)
            if target_parent != dept.parentid:
                org.move_department(dept, target_parent)
                payload["parentid"] = target_parent
            if name is not None and name != dept.name:
                dept.name = name
                payload["name"] = name
            if name_en is not None:
                dept.name_en = name_en
            if order is not None and int(order) != dept.order:
                dept.order = int(order)
                if dept.parentid:
                    org._sort_children(org.departments[dept.parentid])
        if len(payload) == 1:
            return []
        return self.emit("contacts", build_contact_party_xml(self.corp_id, "update_party", payload,
                                                             create_time=int(self.now())))

    def delete_department(self, id: int) -> list[DeliveryResult]:
        """Delete an empty leaf department and push delete_party (WeCom refuses others: 60005/60006)."""
        org = self.org
        with org.lock:
            dept = org.departments.get(int(id))
            if dept is None:
                raise FakeWeComError(60003)
            if dept.id == 1:
                raise FakeWeComError(60007)
            if dept.children:
                raise FakeWeComError(60006)
            if dept.members:
                raise FakeWeComError(60005)
            org.remove_department(dept)
        return self.emit("contacts", build_contact_party_xml(self.corp_id, "delete_party", {"id": dept.id},
                                                             create_time=int(self.now())))

    def add_external_contact(self, userid: str, name: str, state: str = "", type: int = 1,
                             external_userid: str | None = None) -> tuple[str, list[DeliveryResult]]:
        """A member adds a customer: record the relation and push add_external_contact (with a
        WelcomeCode) to the "customers" callback. Returns (external_userid, delivery results).
        https://developer.work.weixin.qq.com/document/path/92130"""
        org = self.org
        with org.lock:
            user = org.users.get(userid)
            if user is None:
                raise FakeWeComError(60111)
            external_userid = external_userid or "wm" + secrets.token_urlsafe(20)[:26] + "AAAA"
            contact = org.external_contacts.get(external_userid)
            if contact is None:
                contact = ExternalContact(external_userid, name, type, 0, len(org.external_contacts))
            org._attach_follow(Follow(user, contact, name, "", int(self.now()), (), 1, state))
        xml = build_external_contact_xml(self.corp_id, "add_external_contact", userid, external_userid,
                                         state=state or None, welcome_code=secrets.token_urlsafe(24),
                                         create_time=int(self.now()))
        return external_userid, self.emit("customers", xml)

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

    def _check_department_name(self, name: str, parentid: int, exclude: int | None = None) -> None:
        if not name or len(name) > 32 or any(c in name for c in '\\:*?"<>|'):
            raise FakeWeComError(60001)
        for child_id in self.org.departments[parentid].children:
            if child_id != exclude and self.org.departments[child_id].name == name:
                raise FakeWeComError(60008)

    # ------------------------------------------------------------------ HTTP dispatch
    def _dispatch(self, method: str, target: str, headers, body: bytes, client_ip: str):
        """Answer one HTTP request: (status, body, content type), or _DROP."""
        split = urlsplit(target)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        if path.startswith("/fake/"):
            return self._control(method, path, query, body)
        if not path.startswith("/cgi-bin/"):
            return 404, _json_bytes({"errcode": 404, "errmsg": "not found"}), _JSON
        api = path[len("/cgi-bin/"):].rstrip("/")
        route = ROUTES.get(api)
        if route is None:
            return (404, _json_bytes({"errcode": 404, "errmsg": f"api not found: {api}"}),
                    _JSON)
        request = _Request(method, api, query, body, headers, client_ip)
        exempt = self._quota_exempt(request)
        with self._stats_lock:
            self.calls[api] += 1
            if not exempt:
                self.quota_calls[api] += 1
        limiter = self._limiter
        # Exempt calls are still rate limited here: whether WeCom's limiter skips them is not documented,
        # and the fake stays the stricter of the two.
        if not limiter.enabled:
            return self._process(route, request)
        code = limiter.check(api, self.now())
        if code is not None:
            return self._answer(request, _ApiError(code))
        if limiter.concurrency is None:
            return self._process(route, request)
        # Injected latency counts as time in flight, as a slow WeCom would.
        with self._stats_lock:
            self._inflight += 1
            over = self._inflight > limiter.concurrency
        try:
            if over:
                return self._answer(request, _ApiError(45033))
            return self._process(route, request)
        finally:
            with self._stats_lock:
                self._inflight -= 1

    def _quota_exempt(self, request: _Request) -> bool:
        """Whether WeCom leaves this call out of its frequency counts (doc 90454): message/send always,
        auth/getuserinfo when its code is valid. https://developer.work.weixin.qq.com/document/path/90454"""
        if request.api in QUOTA_EXEMPT:
            return True
        if request.api == "auth/getuserinfo":
            entry = self._codes.get(request.param("code") or "")
            return entry is not None and entry[2] > self.now()
        return False

    def _process(self, route: _Route, request: _Request):
        faults = self._faults
        if faults is not None and faults.applies(request.api):
            if faults.latency:
                self._stopping.wait(faults.latency)
            outcome, errcode = faults.draw()
            if outcome == "drop":
                return _DROP
            if outcome == "timeout":
                self._stopping.wait(faults.timeout_seconds)
            elif outcome == "error":
                return self._answer(request, _ApiError(errcode))
        return self._answer(request, self._call(route, request))

    def _call(self, route: _Route, request: _Request):
        try:
            if route.method == "POST" and request.method != "POST":
                raise _ApiError(43002)
            if route.kinds is not None:
                trusted = self.trusted_ips
                if trusted is not None and request.client_ip not in trusted:
                    raise _ApiError(60020)
                request.kind = self._check_token(request)
                if request.kind not in route.kinds:
                    raise _ApiError(route.forbidden)
                if route.kinds is _CUSTOMERS:
                    self._check_customer_access(request.kind)
            return getattr(self, route.handler)(request)
        except _ApiError as error:
            return error

    def _check_customer_access(self, kind: str) -> None:
        """Who may call the customer-contact APIs (docs 92994, 96316): since 2023-12-01 new corps no longer
        with the 客户联系 secret; the app only once listed under 客户联系 → 可调用接口的应用. Both refusals
        answer 48002 (api forbidden). https://developer.work.weixin.qq.com/document/path/92994"""
        if kind == "customers" and self.customer_contact == "app":
            raise _ApiError(48002)
        if kind == "app" and not self.customer_app_authorised:
            raise _ApiError(48002)

    def _check_token(self, request: _Request) -> str:
        token = request.param("access_token")
        if not token:
            raise _ApiError(41001)
        entry = self._tokens.get(token)
        if entry is None:
            raise _ApiError(40014)
        kind, expires_at = entry
        if expires_at <= self.now():
            raise _ApiError(42001)
        return kind

    def _answer(self, request: _Request, result) -> tuple[int, bytes, str]:
        if isinstance(result, _ApiError):
            code = result.errcode
            # Real errmsgs carry a hint and the caller's IP; clients must key on errcode, never errmsg.
            errmsg = (f"{ERRMSG.get(code, 'error')}, hint: [{int(self.now())}_{secrets.token_hex(16)}], "
                      f"from ip: {request.client_ip}, more info at "
                      f"https://open.work.weixin.qq.com/devtool/query?e={code}")
            answer = {"errcode": code, "errmsg": errmsg, **result.extra}
        elif isinstance(result, _Encoded):
            head = _json_bytes({"errcode": 0, "errmsg": "ok", **result.fields})[:-1]
            return 200, head + f',"{result.key}":{result.json}}}'.encode(), _JSON
        else:
            answer = {"errcode": 0, "errmsg": "ok", **result}
        return 200, _json_bytes(answer), _JSON

    # ------------------------------------------------------------------ API: token
    def _api_gettoken(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/91039"""
        corpid = request.param("corpid")
        secret = request.param("corpsecret")
        if not corpid:
            raise _ApiError(41002)
        if not secret:
            raise _ApiError(41004)
        if corpid != self.corp_id:
            raise _ApiError(40013)
        kind = self._secret_kinds.get(secret)
        if kind is None:
            raise _ApiError(40001)
        token, expires_in = self._issue_token(kind)
        with self._stats_lock:
            self.gettoken_calls[kind] += 1
        return {"access_token": token, "expires_in": expires_in}

    # ------------------------------------------------------------------ API: departments
    def _department_param(self, request: _Request, name: str, default: int | None) -> int:
        raw = request.param(name)
        if raw in (None, ""):
            if default is None:
                raise _ApiError(60003)
            return default
        try:
            dept_id = int(raw)
        except ValueError:
            raise _ApiError(60003) from None
        if dept_id not in self.org.departments:
            raise _ApiError(60003)
        return dept_id

    def _forbid_contact_details(self, request: _Request) -> None:
        """The 2022 rule: the contact-sync secret reads ids only; any read of details answers 48009."""
        if self.restricted and request.kind == "contacts":
            raise _ApiError(48009)

    def _visible_subtree(self, request: _Request, root: int) -> list:
        """The departments under ``root`` the caller may see: all for the contact secret, those in the
        app's visible range for the app secret (60011 when ``root`` was asked for and is outside)."""
        org = self.org
        if request.kind != "app":
            return org.subtree(root)
        if request.param("id") not in (None, "") and not org.app_sees_department(root):
            raise _ApiError(60011)
        return [d for d in org.subtree(root) if org.app_sees_department(d)]

    def _api_department_list(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90208"""
        self._forbid_contact_details(request)
        org = self.org
        with org.lock:
            root = self._department_param(request, "id", 1)
            return {"department": [org.department_json(d) for d in self._visible_subtree(request, root)]}

    def _api_department_simplelist(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/95350"""
        org = self.org
        with org.lock:
            root = self._department_param(request, "id", 1)
            return {"department_id": [{"id": d.id, "parentid": d.parentid, "order": d.order}
                                      for d in self._visible_subtree(request, root)]}

    def _api_department_get(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/95351"""
        self._forbid_contact_details(request)
        org = self.org
        with org.lock:
            dept_id = self._department_param(request, "id", None)
            if request.kind == "app" and not org.app_sees_department(dept_id):
                raise _ApiError(60011)
            return {"department": org.department_json(org.departments[dept_id])}

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

    def _api_user_authsucc(self, request: _Request) -> dict:
        """Two-step verification passed, the older way (seed 003): only the contact-sync secret may call it
        (the route refuses the app with 48002), and only for a member WeCom sent to the verification page
        (a code was issued for them), not for any userid. https://developer.work.weixin.qq.com/document/path/90203"""
        userid = request.param("userid")
        if not userid:
            raise _ApiError(41009)
        user = self.org.find_user(userid)
        if user is None:
            raise _ApiError(60111)
        with self._lock:
            pending = any(entry[0] == user.userid for entry in self._tfa_codes.values()) or any(
                entry[0] == user.userid for entry in self._tfa_tickets.values())
            if not pending:
                raise _ApiError(60011)
            self._end_tfa(user.userid)
        return {}

    def _api_auth_get_tfa_info(self, request: _Request) -> dict:
        """The verification page's ``code`` → ``{userid, tfa_code}`` (doc 99499). The contact-sync secret may
        exchange any page code; the app only a code of its own OAuth link (the admin set the page to it) and
        only for a member in its visible range (60011 otherwise). Codes are single use, 5 minutes.
        https://developer.work.weixin.qq.com/document/path/99499"""
        code = request.json().get("code")
        if not isinstance(code, str) or not code:
            raise _ApiError(41008)
        now = self.now()
        with self._lock:
            entry = self._tfa_codes.get(code)
            if entry is None or entry[2] <= now:
                self._tfa_codes.pop(code, None)
                raise _ApiError(40029)
            userid, page, _ = entry
            if request.kind == "app":
                if page != "app_oauth":
                    raise _ApiError(40029)  # not a code of this app's OAuth link
                user = self.org.users.get(userid)
                if user is None or not self.org.app_sees_user(user):
                    raise _ApiError(60011)
            del self._tfa_codes[code]
            tfa_code = secrets.token_urlsafe(24)
            self._tfa_tickets[tfa_code] = (userid, now + TFA_CODE_TTL)
        return {"userid": userid, "tfa_code": tfa_code}

    def _api_user_tfa_succ(self, request: _Request) -> dict:
        """Two-step verification passed, the newer way (doc 99500): ``{userid, tfa_code}`` from get_tfa_info,
        with the same credential rules. https://developer.work.weixin.qq.com/document/path/99500"""
        data = request.json()
        userid, tfa_code = data.get("userid"), data.get("tfa_code")
        if not isinstance(userid, str) or not userid:
            raise _ApiError(41009)
        if not isinstance(tfa_code, str) or not tfa_code:
            raise _ApiError(40058)
        with self._lock:
            user = self.org.find_user(userid)
            if user is None:
                raise _ApiError(60111)
            if request.kind == "app" and not self.org.app_sees_user(user):
                raise _ApiError(60011)
            entry = self._tfa_tickets.get(tfa_code)
            if entry is None or entry[1] <= self.now() or entry[0] != user.userid:
                raise _ApiError(40058)
            self._end_tfa(user.userid)
        return {}

    def _end_tfa(self, userid: str) -> None:
        self.authsucc_users.add(userid)
        self._tfa_codes = {c: e for c, e in self._tfa_codes.items() if e[0] != userid}
        self._tfa_tickets = {c: e for c, e in self._tfa_tickets.items() if e[0] != userid}

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
        return answer

    def _resolve_recipients(self, users: list[str], parties: list[str], tags: list[str]):
        """Who a message reaches (doc 90236): userids match ignoring case; members and departments outside
        the app's visible range are reported in invaliduser / invalidparty like unknown ones, and the ids
        WeCom reports back are lower-cased. https://developer.work.weixin.qq.com/document/path/90236"""
        org = self.org
        invalid_users: list[str] = []
        invalid_parties: list[str] = []
        recipients: list[str] = []
        with org.lock:
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
        unlicensed = [r for r in recipients if r in self.unlicensed]
        if unlicensed:
            recipients = [r for r in recipients if r not in self.unlicensed]
        # The fake corp has no tags, so every tag is invalid.
        answer = {"invaliduser": "|".join(invalid_users), "invalidparty": "|".join(invalid_parties),
                  "invalidtag": "|".join(tags), "unlicenseduser": "|".join(u.lower() for u in unlicensed)}
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
        elif msgtype == "template_card" and not content.get("card_type"):
            raise _ApiError(40058)
        return content

    def _check_media(self, media_id) -> None:
        """A temporary media_id lives 3 days; after that WeCom answers 40007 (doc 90253).
        https://developer.work.weixin.qq.com/document/path/90253"""
        if not media_id:
            raise _ApiError(41006)
        media = self.media.get(media_id)
        if media is None or int(media["created_at"]) + MEDIA_TTL <= self.now():
            raise _ApiError(40007)

    # ------------------------------------------------------------------ API: login
    def _api_auth_getuserinfo(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/91023"""
        code = request.param("code")
        if not code:
            raise _ApiError(41008)
        now = self.now()
        with self._lock:
            entry = self._codes.pop(code, None)  # single use: gone even when expired
            if entry is None or entry[2] <= now:
                raise _ApiError(40029)
            userid, openid, _, scope = entry
            if userid is None:
                return {"openid": openid}
            if scope != "snsapi_privateinfo":
                return {"userid": userid}
            ticket = secrets.token_urlsafe(48)
            self._tickets[ticket] = (userid, now + USER_TICKET_TTL)
        return {"userid": userid, "user_ticket": ticket}

    def _api_auth_getuserdetail(self, request: _Request) -> dict:
        """The consenting member's sensitive fields (userid, gender, avatar, qr_code, mobile, email,
        biz_mail, address), available under the 2022 restrictions too. The ticket lives 1800 s (84014
        after), an unknown one answers 84015.
        https://developer.work.weixin.qq.com/document/path/95833 (doc 91122 for the old name)"""
        ticket = request.json().get("user_ticket")
        with self._lock:
            entry = self._tickets.get(ticket) if isinstance(ticket, str) else None
        if entry is None:
            raise _ApiError(84015)
        userid, expires_at = entry
        if expires_at <= self.now():
            raise _ApiError(84014)
        org = self.org
        with org.lock:
            user = org.users.get(userid)
            if user is None:
                raise _ApiError(60111)
            full = org.user_json(user)
        return {"userid": userid, **{k: full[k] for k in ("gender", "avatar", "qr_code", "mobile", "email",
                                                          "biz_mail", "address")}}

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

    # ------------------------------------------------------------------ API: menu and media
    def _agentid_param(self, request: _Request) -> int:
        raw = request.param("agentid")
        if not raw:
            raise _ApiError(41011)
        if not raw.isdigit() or int(raw) != self.agent_id:
            raise _ApiError(40056)
        return int(raw)

    def _api_menu_create(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90231"""
        agentid = self._agentid_param(request)
        buttons = request.json().get("button")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise _ApiError(40016)
        for button in buttons:
            if not isinstance(button, dict):
                raise _ApiError(40017)
            _check_button(button, top=True)
            subs = button.get("sub_button")
            if subs:
                if not isinstance(subs, list) or len(subs) > 5:
                    raise _ApiError(40023)
                for sub in subs:
                    if not isinstance(sub, dict):
                        raise _ApiError(40024)
                    if sub.get("sub_button"):
                        raise _ApiError(40022)
                    _check_button(sub, top=False)
        with self._lock:
            self.menus[agentid] = {"button": copy.deepcopy(buttons)}
        return {}

    def _api_menu_get(self, request: _Request) -> dict:
        agentid = self._agentid_param(request)
        with self._lock:
            menu = self.menus.get(agentid)
        if menu is None:
            raise _ApiError(46003)
        return copy.deepcopy(menu)

    def _api_menu_delete(self, request: _Request) -> dict:
        agentid = self._agentid_param(request)
        with self._lock:
            self.menus.pop(agentid, None)
        return {}

    def _api_media_upload(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90253"""
        media_type = request.param("type")
        if media_type not in MEDIA_RULES:
            raise _ApiError(40005)
        part = _multipart_file(request.headers.get("Content-Type", ""), request.body, "media")
        if part is None or not part[1]:
            raise _ApiError(44001)
        filename, data = part
        max_size, extensions = MEDIA_RULES[media_type]
        if not 5 <= len(data) <= max_size:
            raise _ApiError(40006)
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if extensions is not None and extension not in extensions:
            raise _ApiError(40004)
        media_id = "3" + secrets.token_urlsafe(48)[:63]
        created_at = str(int(self.now()))
        with self._lock:
            self.media[media_id] = {"type": media_type, "filename": filename, "size": len(data),
                                    "created_at": created_at,
                                    "sha256": hashlib.sha256(data).hexdigest()}
        return {"type": media_type, "media_id": media_id, "created_at": created_at}

    # ------------------------------------------------------------------ control API (/fake/…)
    def _control(self, method: str, path: str, query: dict, body: bytes):
        """A small HTTP face of the control methods, for a fake run in another process."""
        parts = [p for p in path[len("/fake/"):].split("/") if p]
        if method == "GET" and parts[:1] == ["avatar"]:
            return 200, _AVATAR_PNG, "image/png"
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            answer = self._control_call(method, parts, query, data)
        except FakeWeComError as error:
            return 400, _json_bytes({"errcode": error.errcode, "errmsg": error.errmsg}), _JSON
        except (ValueError, TypeError, KeyError) as error:
            return 400, _json_bytes({"errcode": 40058, "errmsg": str(error)}), _JSON
        if answer is None:
            return 404, _json_bytes({"errcode": 404, "errmsg": "not found"}), _JSON
        return 200, _json_bytes({"errcode": 0, "errmsg": "ok", **answer}), _JSON

    def _control_call(self, method: str, parts: list[str], query: dict, data: dict) -> dict | None:
        def results(items):
            return {"deliveries": [r.as_dict() for r in items]}

        route = (method, parts[0] if parts else "", len(parts))
        if route == ("POST", "users", 1):
            data = dict(data)
            return results(self.add_user(data.pop("userid"), data.pop("name"), data.pop("department", [1]),
                                         **data))
        if route == ("POST", "users", 2):
            return results(self.update_user(parts[1], **data))
        if route == ("DELETE", "users", 2):
            return results(self.delete_user(parts[1]))
        if route == ("POST", "departments", 1):
            return results(self.add_department(**data))
        if route == ("POST", "departments", 2):
            return results(self.update_department(int(parts[1]), **data))
        if route == ("DELETE", "departments", 2):
            return results(self.delete_department(int(parts[1])))
        if route == ("POST", "callbacks", 1):
            self.register_callback(data["url"], data["token"], data["encoding_aes_key"],
                                   data.get("kind", "contacts"), verify=bool(data.get("verify", False)))
            return {}
        if route == ("POST", "app_messages", 1):
            return results(self.send_app_message(data["userid"], data.get("content", "hi")))
        if route == ("POST", "external_contacts", 1):
            external_userid, items = self.add_external_contact(data["userid"], data.get("name", "客户"),
                                                               state=data.get("state", ""))
            return {"external_userid": external_userid, **results(items)}
        if route == ("GET", "deliveries", 1):
            userid = (query.get("userid") or [None])[0]
            return {"deliveries": self.deliveries_for(userid) if userid else self.deliveries}
        if route == ("GET", "stats", 1):
            return self.stats()
        if route == ("POST", "faults", 1):
            if data:
                self.set_faults(**data)
            else:
                self.clear_faults()
            return {}
        if route == ("POST", "rate_limit", 1):
            self.set_rate_limit(**data)
            return {}
        if route == ("POST", "settings", 1):
            if "restricted" in data:
                self.restricted = bool(data["restricted"])
            if "rate_limits" in data:
                self.rate_limits = bool(data["rate_limits"])
            if "customer_contact" in data:
                if data["customer_contact"] not in ("secret", "app"):
                    raise ValueError('customer_contact is "secret" or "app"')
                self.customer_contact = data["customer_contact"]
            if "customer_app_authorised" in data:
                self.customer_app_authorised = bool(data["customer_app_authorised"])
            if "two_step_page" in data:
                self.two_step_page = str(data["two_step_page"])
            if "new_app" in data:
                self.new_app = data["new_app"]
            if "visible_range" in data:
                visible = data["visible_range"] or {}
                self.set_visible_range(departments=visible.get("departments") or (),
                                       users=visible.get("users") or ())
            return {}
        if route == ("POST", "oauth_code", 1):
            return {"code": self.issue_oauth_code(userid=data.get("userid"), openid=data.get("openid"),
                                                  scope=data.get("scope") or "snsapi_base")}
        if route == ("POST", "tfa_code", 1):
            return {"code": self.issue_tfa_code(data["userid"])}
        if route == ("POST", "invalidate_tokens", 1):
            self.invalidate_tokens(data.get("kind"))
            return {}
        if route == ("POST", "advance_time", 1):
            self.advance_time(float(data["seconds"]))
            return {}
        if route == ("POST", "reset_stats", 1):
            self.reset_stats()
            return {}
        return None


def _check_button(button: dict, top: bool) -> None:
    """Menu button rules: names ≤16 bytes (top) or ≤40 (sub), keys ≤128, urls ≤1024."""
    name = button.get("name")
    name_limit = 16 if top else 40
    if not isinstance(name, str) or not name or len(name.encode("utf-8")) > name_limit:
        raise _ApiError(40018 if top else 40025)
    if top and button.get("sub_button"):
        return
    kind = button.get("type")
    if kind not in MENU_TYPES:
        raise _ApiError(40017 if top else 40024)
    if kind == "view":
        url = button.get("url")
        if not isinstance(url, str) or not url or len(url.encode("utf-8")) > 1024:
            raise _ApiError(40020 if top else 40027)
    elif kind != "view_miniprogram":
        key = button.get("key")
        if not isinstance(key, str) or not key or len(key.encode("utf-8")) > 128:
            raise _ApiError(40019 if top else 40026)


def _multipart_file(content_type: str, body: bytes, field: str) -> tuple[str, bytes] | None:
    """The (filename, bytes) of one multipart/form-data field, or None."""
    header = Message()
    header["Content-Type"] = content_type
    if header.get_content_type() != "multipart/form-data":
        return None
    boundary = header.get_param("boundary")
    if not boundary:
        return None
    delimiter = b"--" + str(boundary).encode("latin-1")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disposition = Message()
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() == "content-disposition":
                disposition["Content-Disposition"] = value.strip()
        if disposition.get_param("name", header="content-disposition") == field:
            filename = disposition.get_filename() or ""
            return filename, data
    return None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    fake: FakeWeCom

    def __init__(self, address, handler):
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN, which can stall for seconds without DNS.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so client sessions reuse connections like with WeCom
    server_version = "FakeWeCom"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed eventually
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # One write per answer plus no Nagle: otherwise small answers wait on delayed ACKs.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._write(411, b"length required", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._write(413, _json_bytes({"errcode": 40006, "errmsg": "request too large"}), _JSON)
            return
        body = self.rfile.read(length) if length else b""
        try:
            result = self.server.fake._dispatch(method, self.path, self.headers, body, self.client_address[0])
        except Exception:
            # A bug in the fake must be loud, not a hang or a plausible-looking WeCom error.
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._write(500, b"fake wecom internal error", "text/plain")
            return
        if result is _DROP:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(*result)

    def _write(self, status: int, payload: bytes, content_type: str) -> None:
        reason = self.responses.get(status, ("",))[0]
        head = (f"HTTP/1.1 {status} {reason}\r\nServer: {self.server_version}\r\n"
                f"Date: {formatdate(usegmt=True)}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\n")
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + payload)


def serve_until_signalled(fake: FakeWeCom, announce, stop: threading.Event | None = None) -> None:
    """Run a started fake in the foreground until SIGINT/SIGTERM (or ``stop``), after writing its
    credentials as one JSON line through ``announce`` — the contract of the management command."""
    import signal

    stop = stop or threading.Event()
    previous = {}

    def handle(signum, frame):
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handle)
    try:
        announce(json.dumps(fake.credentials(), ensure_ascii=False))
        while not stop.wait(0.5):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        fake.stop()
