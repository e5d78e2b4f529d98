"""Sign in with WeCom: the in-WeCom OAuth flow, the browser QR flow and two-step verification.

Both sign-in flows are the same three steps:

1. :func:`start` issues a state and returns WeCom's URL to redirect to (the authorize URL inside WeCom,
   https://developer.work.weixin.qq.com/document/path/91022; the QR login page in a browser,
   https://developer.work.weixin.qq.com/document/path/98151);
2. WeCom sends the browser back to our callback with ``code`` and ``state``;
3. :func:`complete` checks the state, exchanges the code (``auth/getuserinfo``), finds the account the
   WeCom member is bound to in the tenant, logs it in and says where to go next.

Every refusal is a :class:`LoginRefused` subclass carrying a translated title and message (and, for
problems only an administrator can fix, ``admin_message``); views render them, never a 500. How a WeCom
member becomes a local user is the adapter's business (:mod:`wecom_integration.login.adapter`).

The state
    WeCom accepts only ``[a-zA-Z0-9]`` and at most 128 bytes in ``state``, so ``signing.dumps()`` (with its
    ``:``, ``-`` and ``_``) cannot be used. The state is ``issued-at (8 hex) + nonce (24 hex) + MAC (32
    hex)``, the MAC being Django's ``salted_hmac`` (what ``django.core.signing`` signs with) under
    :data:`STATE_SALT` over the timestamp, the nonce, the tenant, the flow and a random value kept in the
    browser's session. What the callback needs (tenant, flow, ``next``) waits in the cache under the
    nonce and is consumed with ``cache.delete``, which only one caller can win (atomic on Redis), so a
    state is valid once, for :data:`STATE_MAX_AGE` seconds, in the browser that started, for one tenant.
"""

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext

from wecom_integration.client import (
    WeComConfigError,
    WeComError,
    WeComNetworkError,
    authorize_url,
    client_for,
    qr_login_url,
)
from wecom_integration.conf import absolute_url, wecom_settings
from wecom_integration.directory import services as directory
from wecom_integration.extension import get_adapter
from wecom_integration.login import twostep
from wecom_integration.login.refusals import (
    CodeInvalid,
    CodeReplayed,
    InvalidState,
    LoginDisabled,
    MissingCode,
    NotBound,
    NotMember,
    VerificationDisabled,
    WeComUnavailable,
    WrongAccount,
)
from wecom_integration.models import WeComConfig

logger = logging.getLogger(__name__)

FLOW_OAUTH = "oauth"
FLOW_QR = "qr"
FLOWS = (FLOW_OAUTH, FLOW_QR)

SCOPE_BASE = "snsapi_base"
SCOPE_PRIVATE_INFO = "snsapi_privateinfo"

STATE_SALT = "wecom_integration.login.state"
STATE_MAX_AGE = 600
# WeCom's codes live 5 minutes; remembering used ones a little longer covers every replay WeCom accepts.
CODE_MEMORY_SECONDS = 600
VERIFY_SALT = "wecom_integration.login.verify"
VERIFY_MAX_AGE = 600

SESSION_BROWSER_KEY = "_wecom_login_browser"
BACKEND_PATH = "wecom_integration.login.backends.WeComBackend"

# errcode 40029: the code is unknown, expired or already used (doc 91023).
INVALID_CODE = 40029
# errcode 50001: the redirect URI is not on the app's trusted domain (可信域名).
UNTRUSTED_REDIRECT = 50001

_STATE_CACHE_PREFIX = "wecom:login:state:"
_CODE_CACHE_PREFIX = "wecom:login:code:"


# Results ---------------------------------------------------------------------------------------------


@dataclass
class LoginResult:
    user: object
    tenant: object
    userid: str
    redirect_to: str
    created: bool = False


@dataclass
class StateTicket:
    tenant_id: int
    flow: str
    next_url: str


@dataclass
class Identity:
    """The account a sign-in code stands for: the local user, the binding and the WeCom userid."""

    config: WeComConfig
    userid: str
    binding: object
    created: bool = False

    @property
    def user(self):
        return self.binding.user


# Configuration and URLs ------------------------------------------------------------------------------


# Larger ids cannot be in the table and would overflow the database's integer (a 500, not a refusal).
MAX_ID = 2**63 - 1


def get_config(tenant_id):
    """The tenant's enabled WeCom configuration, or LoginDisabled."""
    if not 0 <= int(tenant_id) <= MAX_ID:
        raise LoginDisabled(detail=f"tenant {tenant_id}")
    config = WeComConfig.objects.select_related("tenant").filter(tenant_id=tenant_id).first()
    if config is None or not config.enabled or not config.corp_id or not config.agent_id:
        raise LoginDisabled(tenant=config.tenant if config else None, detail=f"tenant {tenant_id}")
    return config


def oauth_scope(config):
    """``snsapi_privateinfo`` when the tenant asks members for their private information at sign-in
    (WeCom then shows a consent page and ``auth/getuserinfo`` adds a ``user_ticket``), else
    ``snsapi_base``. https://developer.work.weixin.qq.com/document/path/91022"""
    return SCOPE_PRIVATE_INFO if config.private_info_scope else SCOPE_BASE


def callback_url(request=None):
    """Where WeCom sends the browser back, absolute (the app's trusted domain must be its host)."""
    return absolute_url(reverse("wecom_integration:oauth-callback"), request)


def homepage_url(config, request=None, next_url=None):
    """The URL to paste as the WeCom app's homepage (应用主页): our start view for the tenant.

    WeCom opens the homepage with a fixed URL, so it cannot carry a per-visit state; the start view issues
    a fresh single-use state and redirects to WeCom's authorize URL (see :func:`homepage_urls`).
    https://developer.work.weixin.qq.com/document/path/91022
    """
    url = absolute_url(reverse("wecom_integration:oauth-start", kwargs={"tenant_id": config.tenant_id}), request)
    if next_url:
        url += "?" + urlencode({"next": next_url})
    return url


def homepage_urls(config, request=None):
    """Both URLs for the configuration page: ``homepage`` (to paste) and ``authorize``, the documented
    authorize URL the homepage redirects to, with ``STATE`` standing for the per-visit state.

    https://developer.work.weixin.qq.com/document/path/91022
    """
    return {
        "homepage": homepage_url(config, request),
        "authorize": authorize_url(
            config.corp_id, callback_url(request), "STATE", config.agent_id, oauth_scope(config)
        ),
    }


def verification_page_urls(config, request=None):
    """What to set as the verification page in WeCom's two-step verification (二次验证) setting: ``page``, our
    verification page, and ``oauth``, the app's OAuth link to it (the page to set when the app exchanges the
    code, ``two_step_credential == "app"``). ``setting`` names which of the two applies to this configuration.

    https://developer.work.weixin.qq.com/document/path/99521
    """
    page = absolute_url(verify_url(config.tenant_id), request)
    oauth = authorize_url(config.corp_id, page, "tfa", config.agent_id)
    return {"page": page, "oauth": oauth, "setting": oauth if twostep.credential_kind(config) == "app" else page}


def safe_next(request, url):
    """``url`` if it stays on this site, else "" (no open redirect: ``//evil.com``, ``https://evil.com``,
    ``/\\evil.com`` and ``javascript:`` are all refused)."""
    hosts = {request.get_host()}
    public = wecom_settings.PUBLIC_BASE_URL
    if public:
        hosts.add(public.split("://", 1)[-1].split("/", 1)[0])
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts=hosts, require_https=request.is_secure()):
        return url
    return ""


# The state -------------------------------------------------------------------------------------------


def _browser_secret(request, create):
    value = request.session.get(SESSION_BROWSER_KEY)
    if not value and create:
        value = secrets.token_hex(16)
        request.session[SESSION_BROWSER_KEY] = value
    return value or ""


def _state_mac(issued, nonce, tenant_id, flow, browser):
    value = f"{issued}|{nonce}|{tenant_id}|{flow}|{browser}"
    return salted_hmac(STATE_SALT, value, algorithm="sha256").hexdigest()[:32]


def issue_state(request, tenant_id, flow, next_url=""):
    """A fresh single-use state for ``tenant_id`` bound to this browser's session (see the module doc)."""
    if flow not in FLOWS:
        raise ValueError(f"flow must be one of {FLOWS}, not {flow!r}")
    issued = f"{int(time.time()):08x}"
    nonce = secrets.token_hex(12)
    browser = _browser_secret(request, create=True)
    cache.set(
        _STATE_CACHE_PREFIX + nonce,
        {"tenant_id": int(tenant_id), "flow": flow, "next": next_url},
        timeout=STATE_MAX_AGE,
    )
    return issued + nonce + _state_mac(issued, nonce, int(tenant_id), flow, browser)


def consume_state(request, state):
    """The StateTicket of a state issued to this browser less than STATE_MAX_AGE ago; the state cannot
    be used again. Raises InvalidState."""
    if not isinstance(state, str) or len(state) != 64 or not all(c in "0123456789abcdef" for c in state):
        raise InvalidState(detail="malformed")
    issued, nonce, mac = state[:8], state[8:32], state[32:]
    age = time.time() - int(issued, 16)
    if not -60 <= age <= STATE_MAX_AGE:
        raise InvalidState(detail="expired")
    key = _STATE_CACHE_PREFIX + nonce
    entry = cache.get(key)
    if not entry:
        raise InvalidState(detail="unknown or used")
    browser = _browser_secret(request, create=False)
    expected = _state_mac(issued, nonce, entry["tenant_id"], entry["flow"], browser)
    # Checked before consuming, so a state replayed from another browser cannot burn the owner's.
    if not browser or not constant_time_compare(mac, expected):
        raise InvalidState(detail="signature or browser mismatch")
    if not cache.delete(key):
        raise InvalidState(detail="used concurrently")
    return StateTicket(entry["tenant_id"], entry["flow"], entry["next"])


# The flows -------------------------------------------------------------------------------------------


def start(request, tenant_id, flow, next_url=None):
    """WeCom's URL to send the browser to for signing in to ``tenant_id``: the authorize URL (``oauth``,
    inside WeCom, https://developer.work.weixin.qq.com/document/path/91022) or the QR login page (``qr``,
    in a browser, https://developer.work.weixin.qq.com/document/path/98151). Raises LoginDisabled."""
    config = get_config(tenant_id)
    state = issue_state(request, config.tenant_id, flow, safe_next(request, next_url or ""))
    redirect_uri = callback_url(request)
    if flow == FLOW_OAUTH:
        return authorize_url(config.corp_id, redirect_uri, state, config.agent_id, oauth_scope(config))
    return qr_login_url(config.corp_id, redirect_uri, state, config.agent_id)


def complete(request, code, state):
    """Finish a sign-in WeCom sent back to our callback: check the state, exchange the code, log the bound
    account in with Django's session. Returns a LoginResult; raises a LoginRefused.

    https://developer.work.weixin.qq.com/document/path/91022, https://developer.work.weixin.qq.com/document/path/98151
    """
    if not state:
        raise InvalidState(detail="no state")
    ticket = consume_state(request, state)
    if not code:
        raise MissingCode()
    config = get_config(ticket.tenant_id)
    adapter = get_adapter(request)
    identity = authenticate_code(request, config, code)
    adapter.login(request, identity.user)
    redirect_to = safe_next(request, ticket.next_url) or adapter.get_login_redirect_url(request, config.tenant)
    logger.info("WeCom sign-in: tenant %s userid %s as user %s", config.tenant_id, identity.userid, identity.user.pk)
    return LoginResult(identity.user, config.tenant, identity.userid, redirect_to, identity.created)


def authenticate_code(request, config, code):
    """The Identity a sign-in ``code`` of ``config``'s corp stands for, after every access check (what
    the authentication backend runs). Raises a LoginRefused.

    https://developer.work.weixin.qq.com/document/path/91023
    """
    adapter = get_adapter(request)
    userid, user_ticket = _exchange(config, code)
    binding = adapter.get_binding(config.tenant, userid)
    created = False
    if binding is None:
        if not adapter.is_open_for_signup(request, config, userid):
            raise NotBound(tenant=config.tenant, detail=userid)
        wecom_user = adapter.get_or_fetch_wecom_user(config, userid)
        binding, created = adapter.create_user(config.tenant, wecom_user)
        if binding is None:
            raise NotBound(tenant=config.tenant, detail=userid)
    adapter.check_can_login(request, config.tenant, binding)
    if user_ticket:
        fill_private_info(config, binding.wecom_user, user_ticket)
    return Identity(config, userid, binding, created)


def exchange_code(config, code):
    """The WeCom userid a single-use sign-in ``code`` stands for (``auth/getuserinfo``), refusing a code
    seen before without asking WeCom. Raises CodeReplayed, CodeInvalid, NotMember or WeComUnavailable.

    https://developer.work.weixin.qq.com/document/path/91023
    """
    return _exchange(config, code)[0]


def _exchange(config, code):
    """(userid, user_ticket or "") for a sign-in code; see :func:`exchange_code`. WeCom adds the ticket
    only to codes of a ``snsapi_privateinfo`` sign-in the member consented to."""
    info = _spend_code(config, code, lambda: client_for(config, "app").oauth.getuserinfo(code))
    userid = info.get("userid") or info.get("UserId") or ""
    if not userid:
        # A non-member (an outside WeChat user) gets an openid only.
        raise NotMember(tenant=config.tenant, detail=info.get("openid") or info.get("OpenId") or "")
    return userid, info.get("user_ticket") or ""


def _spend_code(config, code, exchange):
    """Run ``exchange`` (the WeCom call that spends a single-use ``code``) once per code, with WeCom's
    refusals turned into LoginRefused."""
    digest = hashlib.sha256(f"{config.corp_id}\0{code}".encode()).hexdigest()
    if not cache.add(_CODE_CACHE_PREFIX + digest, 1, timeout=CODE_MEMORY_SECONDS):
        raise CodeReplayed(tenant=config.tenant)
    try:
        return exchange()
    except WeComConfigError as exc:
        logger.warning("WeCom sign-in: tenant %s: %r", config.tenant_id, exc)
        raise WeComUnavailable(tenant=config.tenant, admin_message=exc.admin_message, detail=str(exc)) from exc
    except WeComError as exc:
        logger.warning("WeCom sign-in: tenant %s: %r", config.tenant_id, exc)
        if exc.errcode == INVALID_CODE:
            raise CodeInvalid(tenant=config.tenant, detail=str(exc)) from exc
        raise WeComUnavailable(tenant=config.tenant, admin_message=_admin_message(exc), detail=str(exc)) from exc


# What getuserdetail answers -> the WeComUser field it fills (doc 95833). Gender, biz_mail and address
# are not kept: the product has no use for them, so it does not store them.
PRIVATE_INFO_FIELDS = {"mobile": "mobile", "email": "email", "avatar": "avatar"}


def fill_private_info(config, wecom_user, user_ticket):
    """Fill the member's mobile, email and avatar from the ``user_ticket`` of a consented
    ``snsapi_privateinfo`` sign-in (``auth/getuserdetail``) and record the consent's time. The fields
    are encrypted at rest. A failure is logged and does not stop the sign-in; returns True when filled.

    https://developer.work.weixin.qq.com/document/path/95833
    """
    try:
        detail = client_for(config, "app").oauth.getuserdetail(user_ticket)
    except WeComError as exc:
        logger.warning("WeCom sign-in: tenant %s: private information not read: %r", config.tenant_id, exc)
        return False
    if str(detail.get("userid") or "").lower() != wecom_user.userid.lower():
        logger.warning("WeCom sign-in: tenant %s: user_ticket of another member ignored", config.tenant_id)
        return False
    values = {field: str(detail[key]) for key, field in PRIVATE_INFO_FIELDS.items() if detail.get(key)}
    # Through the directory's one setter, so the fingerprint follows and the next sync finds the row
    # unchanged (the 2022 sync keeps the stored values of fields WeCom withholds from it).
    changed = directory.apply_user_fields(wecom_user, values)
    wecom_user.private_info_at = timezone.now()
    wecom_user.save(update_fields=[*changed, "private_info_at", "updated_at"])
    return True


def _admin_message(exc):
    if exc.errcode == UNTRUSTED_REDIRECT:
        return gettext(
            "WeCom refuses to send users back to this site. Add this site's domain to the app's trusted domain "
            "(可信域名) under Web authorisation and JS-SDK (网页授权及JS-SDK) in the WeCom admin console."
        )
    if isinstance(exc, WeComNetworkError):
        return gettext("WeCom did not answer (%(error)s). Check that this server can reach WeCom's API.") % {
            "error": exc.errmsg
        }
    return gettext("WeCom answered errcode %(errcode)s: %(errmsg)s") % {"errcode": exc.errcode, "errmsg": exc.errmsg}


# Two-step verification -------------------------------------------------------------------------------


@dataclass
class Verification:
    """Where a two-step verification stands: ``verified`` True once WeCom was told (``user/authsucc``);
    otherwise ``redirect_to`` is where the member must go first (to sign in to our site)."""

    config: WeComConfig
    userid: str
    user: object
    verified: bool
    redirect_to: str = ""


def verify_url(tenant_id, token=None):
    """Path of our two-step verification page (with the signed ``v`` token once WeCom's code is spent)."""
    path = reverse("wecom_integration:verify", kwargs={"tenant_id": tenant_id})
    return f"{path}?{urlencode({'v': token})}" if token else path


def verification_config(tenant_id):
    """The tenant's enabled configuration with two-step verification on, or a LoginRefused."""
    config = get_config(tenant_id)
    if not config.two_step_verification:
        raise VerificationDisabled(tenant=config.tenant)
    return config


def begin_verification(request, tenant_id, code):
    """Exchange the ``code`` WeCom appends to the verification page with the credential the configuration
    names (``auth/get_tfa_info``; the code is single use, so the userid and the tfa_code continue in a
    signed token through the sign-in redirect). Returns the verification page's path carrying that token.
    https://developer.work.weixin.qq.com/document/path/99499
    """
    config = verification_config(tenant_id)
    info = _spend_code(config, code, lambda: twostep.exchange_page_code(config, code))
    userid = info.get("userid") or ""
    if not userid:
        raise NotMember(tenant=config.tenant, detail="")
    token = signing.dumps(
        {"t": config.tenant_id, "u": userid, "c": info.get("tfa_code", "")}, salt=VERIFY_SALT, compress=True
    )
    return verify_url(config.tenant_id, token)


def continue_verification(request, tenant_id, token):
    """Run the tenant's check (the adapter's ``is_verified``) for the member in ``token``; once it
    passes, call ``user/tfa_succ`` so WeCom lets the member in. Returns a Verification; raises a
    LoginRefused. https://developer.work.weixin.qq.com/document/path/99500
    """
    config = verification_config(tenant_id)
    try:
        data = signing.loads(token or "", salt=VERIFY_SALT, max_age=VERIFY_MAX_AGE)
    except signing.BadSignature as exc:
        raise InvalidState(tenant=config.tenant, detail="verification token") from exc
    if data.get("t") != config.tenant_id or not data.get("u"):
        raise InvalidState(tenant=config.tenant, detail="verification token of another tenant")
    userid = data["u"]
    adapter = get_adapter(request)
    binding = adapter.get_binding(config.tenant, userid)
    if binding is None:
        raise NotBound(tenant=config.tenant, detail=userid)
    adapter.check_can_login(request, config.tenant, binding)
    user = binding.user
    if not adapter.is_verified(request, user):
        if request.user.is_authenticated:
            raise WrongAccount(tenant=config.tenant, detail=userid)
        here = verify_url(config.tenant_id, token)
        return Verification(config, userid, user, False, adapter.get_verification_url(request, config.tenant, here))
    _confirm(config, userid, data.get("c", ""))
    logger.info("WeCom two-step verification passed: tenant %s userid %s", config.tenant_id, userid)
    return Verification(config, userid, user, True)


def _confirm(config, userid, tfa_code):
    try:
        twostep.confirm(config, userid, tfa_code)
    except WeComConfigError as exc:
        raise WeComUnavailable(tenant=config.tenant, admin_message=exc.admin_message, detail=str(exc)) from exc
    except WeComError as exc:
        raise WeComUnavailable(tenant=config.tenant, admin_message=_admin_message(exc), detail=str(exc)) from exc


def login_url_with_next(next_url="", tenant_id=None):
    """settings.LOGIN_URL with ``next`` (and the tenant, so the page offers its WeCom button)."""
    query = {}
    if next_url:
        query["next"] = next_url
    if tenant_id is not None:
        query["tenant"] = tenant_id
    url = resolve_url(settings.LOGIN_URL)
    return f"{url}?{urlencode(query)}" if query else url
