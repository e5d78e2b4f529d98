"""FakeWeCom: one fake corp with one self-built app, assembled from one mixin per WeCom API group (user.py,
department.py, oauth.py, message.py, externalcontact.py, menu.py, media.py), the callbacks it pushes
(push.py) and its test-control endpoint (control.py), served over HTTP by http.py.

This module holds what every call goes through:

* the routing table, merged from each group's ``ROUTES`` fragment, and the dispatcher;
* one access_token per secret kind, reused while valid, with expiry (42001) and early invalidation
  (40014); errors answer HTTP 200 with ``errcode``/``errmsg`` like WeCom, errmsg carrying a hint.
  gettoken: https://developer.work.weixin.qq.com/document/path/91039;
* which secret may call what. A token of the wrong kind gets 48002 ("api forbidden"), or the route's own
  code (user/list_id: 48009, see user.py); the customer APIs also check who may call them (docs 92994,
  96316, see externalcontact.py);
* trusted IPs (``trusted_ips``): a call from any other address answers 60020 "not allow to access from
  your ip, …, from ip: <caller>" (gettoken is not checked), doc 90313,
  https://developer.work.weixin.qq.com/document/path/90313;
* rate limits per corp per API (45009 with the minute/hour blocks), an optional concurrency limit
  (45033), and fault injection (limits.py); WeCom's exemptions from its call counts (``quota_calls``: not
  message/send, not getuserinfo with a valid code), doc 90454, https://developer.work.weixin.qq.com/document/path/90454.

gettoken answers the same token while it lives, with ``expires_in`` counting its remaining life
(a fresh token reports the full ``token_ttl``): a client that trusts expires_in never holds an
expired token, and one that assumes a fresh 7200 s on every answer is caught by 42001.

Time-dependent behaviour reads :meth:`FakeWeCom.now`, which :meth:`FakeWeCom.advance_time` shifts,
so tests can expire tokens and codes without sleeping.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

from ..callbacks import DeliveryResult
from . import (
    approval,
    card,
    customertag,
    department,
    externalcontact,
    groupchat,
    jssdk,
    media,
    menu,
    message,
    oauth,
    tag,
    user,
)
from .approval import ApprovalAPI, ApprovalScreen
from .base import _CUSTOMERS, _DROP, _JSON, ERRMSG, _ApiError, _Encoded, _json_bytes, _Request, _Route
from .card import CardAPI, CardScreen
from .control import ControlAPI
from .customertag import CustomerTagAPI
from .department import DepartmentAPI
from .externalcontact import ExternalContactAPI
from .groupchat import GroupChatAPI
from .http import _Handler, _HTTPServer
from .jssdk import JSSDKAPI
from .limits import _Faults, _RateLimiter
from .media import MediaAPI
from .menu import MenuAPI
from .message import MessageAPI, _Sent
from .oauth import OAuthAPI
from .org import Org
from .push import CallbackPush, _Registration
from .tag import ContactTagAPI
from .toolbar import ToolbarClient
from .user import UserAPI

TOKEN_LENGTH = 214  # what real tokens measure; WeCom asks callers to keep 512 bytes for them
# Calls WeCom does not count against the API frequency limits (doc 90454's exemptions): message/send, and
# auth/getuserinfo when the code is valid. ``calls`` still counts every request the fake served.
QUOTA_EXEMPT = frozenset(("message/send",))


def _merge_routes(*fragments: dict) -> dict:
    """One routing table from the groups' fragments; an API claimed twice is a bug in the fake."""
    routes: dict[str, _Route] = {}
    for fragment in fragments:
        for api, route in fragment.items():
            if api in routes:
                raise RuntimeError(f"two groups route {api}")
            routes[api] = route
    return routes


ROUTES = _merge_routes(
    {"gettoken": _Route("GET", None, "_api_gettoken")},
    department.ROUTES,
    user.ROUTES,
    oauth.ROUTES,
    message.ROUTES,
    externalcontact.ROUTES,
    menu.ROUTES,
    media.ROUTES,
    approval.ROUTES,
    jssdk.ROUTES,
    groupchat.ROUTES,
    tag.ROUTES,
    customertag.ROUTES,
    card.ROUTES,
)


class FakeWeCom(UserAPI, DepartmentAPI, OAuthAPI, MessageAPI, ExternalContactAPI, MenuAPI, MediaAPI, ApprovalAPI,
                ApprovalScreen, JSSDKAPI, GroupChatAPI, ContactTagAPI, CustomerTagAPI, ToolbarClient, CardAPI,
                CardScreen, CallbackPush,
                ControlAPI):
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
        # The 审批 app's own secret, for tenants that call approvals with it rather than the app's.
        self.approval_secret = secrets.token_urlsafe(32)
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
                              self.customer_secret: "customers", self.approval_secret: "approvals"}
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
                       concurrency: int | None = None, enabled: bool = True, ip_per_minute: int | None = None,
                       ip_per_hour: int | None = None, corp_per_hour: int | None = None) -> None:
        """Configure (and by default switch on) the per-API and per-IP limits; windows restart."""
        limiter = self._limiter
        if ip_per_minute is not None:
            limiter.ip_per_minute = ip_per_minute
        if ip_per_hour is not None:
            limiter.ip_per_hour = ip_per_hour
        if corp_per_hour is not None:
            limiter.corp_per_hour = corp_per_hour
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
        code = limiter.check(api, self.now(), request.client_ip)
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
