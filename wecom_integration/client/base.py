"""The one place that talks HTTP to WeCom and decides what each errcode means.

Policy (https://developer.work.weixin.qq.com/document/path/90313):

==================  ===========================================================================
40014, 42001,       the token is invalid/expired (or, 40001 on an API call, its secret was reset):
40001 with a token  drop it, fetch a new one, retry once
-1, network error   system busy / no answer: retry with doubling backoff, BUSY_RETRIES times at most
                    (a read timeout on a call that is not idempotent, i.e. message/send, is not
                    retried: WeCom may have sent the message)
45009, 45033        WeComRateLimited(retry_after=RATE_LIMIT_RETRY_AFTER, at least 60 s)
40001 at gettoken,  WeComConfigError with an admin_message saying what to fix
40013, 48002,
48009, 60011, 60020
anything else       WeComError
==================  ===========================================================================

Every loop here is bounded: one token retry, BUSY_RETRIES busy/network retries, so a call makes at most
BUSY_RETRIES + 2 requests. Nothing recurses.
"""

import json
import re
import time
from functools import cache
from urllib.parse import urlsplit

import msgspec
import requests
import urllib3

from wecom_integration.client.counters import stats
from wecom_integration.client.errors import (
    IP_IN_ERRMSG,
    WeComConfigError,
    WeComError,
    WeComNetworkError,
    WeComRateLimited,
)
from wecom_integration.client.ratelimit import RateBudget
from wecom_integration.client.session import get_session
from wecom_integration.client.tokens import AccessTokens, CacheTokenStore, token_key
from wecom_integration.conf import wecom_settings

SECRET_KINDS = ("app", "contacts", "customers")
#: What a client may be built for: a secret kind, or "approvals" (the approval secret, else the app's).
CLIENT_KINDS = (*SECRET_KINDS, "approvals")

TOKEN_ERRCODES = frozenset({40014, 42001})
BAD_CREDENTIAL = 40001
BUSY = -1
RATE_LIMITED = frozenset({45009, 45033})
# errcode -> the settings an admin must change; the admin_message explains each.
CONFIG_ERRCODES = frozenset({40001, 40013, 48002, 48009, 60011, 60020})

# Anything that looks like a credential in a query string or JSON echoed back by WeCom or requests.
_CREDENTIAL_PARAM = re.compile(r"(access_token|corpsecret|secret)([=:]\s*\"?)[^&\s\"',)]+", re.IGNORECASE)
# The query string of any URL in an exception text.
_URL_QUERY = re.compile(r"(/cgi-bin/[^\s?'\"]*)\?[^\s'\"]*")


def scrub(text, *secrets):
    """``text`` without the given secrets/tokens, credential parameters or URL query strings."""
    text = str(text)
    for secret in secrets:
        # Real secrets and tokens are dozens of characters; replacing a very short one would only
        # mangle the text ("host" with a secret "s") without protecting anything.
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    text = _URL_QUERY.sub(r"\1?…", text)
    return _CREDENTIAL_PARAM.sub(r"\1\2***", text)


class BaseWeComClient:
    """Token handling, rate budget and errcode policy for one (corp, secret)."""

    def __init__(
        self,
        corp_id,
        secret,
        kind="app",
        agent_id=None,
        api_base=None,
        timeout=None,
        *,
        token_store=None,
        rate_budget=None,
        proxy=None,
    ):
        if kind not in CLIENT_KINDS:
            raise ValueError(f"kind must be one of {CLIENT_KINDS}, not {kind!r}")
        if not corp_id or not secret:
            raise ValueError("corp_id and secret are required")
        self.corp_id = corp_id
        self._secret = secret
        self.kind = kind
        self.agent_id = int(agent_id) if agent_id not in (None, "") else None
        self._api_base = api_base.rstrip("/") if api_base else None
        self._timeout = timeout
        # The tenant's fixed egress (an HTTP CONNECT proxy): every call of this client, gettoken
        # included, goes through it. Its password, if any, is scrubbed from error texts like a secret.
        self.proxy = proxy or None
        self._proxies = {"http": proxy, "https": proxy} if proxy else None
        self._proxy_password = urlsplit(proxy).password if proxy else None
        self.token_store = token_store or CacheTokenStore()
        self.rate_budget = rate_budget or RateBudget(corp_id)
        self.tokens = AccessTokens(
            token_key(corp_id, kind, secret, self.api_base), self._fetch_token, self.token_store
        )

    def __repr__(self):
        return (
            f"<{type(self).__name__} corp_id={self.corp_id!r} kind={self.kind!r} agent_id={self.agent_id!r}>"
        )

    @property
    def api_base(self):
        return self._api_base or wecom_settings.API_BASE.rstrip("/")

    @property
    def timeout(self):
        timeout = self._timeout if self._timeout is not None else wecom_settings.HTTP_TIMEOUT
        return tuple(timeout) if isinstance(timeout, list) else timeout

    # Tokens ---------------------------------------------------------------------------------------

    @property
    def access_token(self):
        return self.tokens.get()

    def invalidate_token(self):
        """Drop this secret's token everywhere (memory and store); the next call fetches a new one."""
        self.tokens.invalidate()

    def refresh_token(self):
        """Fetch a new token now. Raises WeComConfigError if the CorpID or the secret is wrong."""
        return self.tokens.refresh()

    def _fetch_token(self):
        """https://developer.work.weixin.qq.com/document/path/91039"""
        data = self._call(
            "GET", "gettoken", params={"corpid": self.corp_id, "corpsecret": self._secret}, with_token=False
        )
        stats.record("gettoken", kind=self.kind)
        return data["access_token"], data.get("expires_in", 7200)

    # Calls ----------------------------------------------------------------------------------------

    def egress_ip(self):
        """The IP address WeCom sees this client's calls come from (through its proxy, if any), or None.

        WeCom names the caller's IP in every error's errmsg ("…, from ip: 1.2.3.4, more info at …"), so a
        gettoken without a secret (41004, nothing spent, no credential sent) reveals it. One request,
        no retry. https://developer.work.weixin.qq.com/document/path/91039
        """
        data = self._send("GET", "gettoken", {"corpid": self.corp_id}, None, None, None, True)
        match = IP_IN_ERRMSG.search(str(data.get("errmsg", "")))
        return match.group(1) if match else None

    def get(self, path, params=None, **kwargs):
        return self._call("GET", path, params=params, **kwargs)

    def post(self, path, data=None, params=None, **kwargs):
        return self._call("POST", path, params=params, json_body=data, **kwargs)

    def _call(
        self, method, path, *, params=None, json_body=None, files=None, with_token=True, idempotent=True,
        answer=None,
    ):
        """One API call under the errcode policy; returns the decoded answer (errcode 0). ``answer`` (an
        msgspec Struct) names the keys to keep of a bulky answer: see :func:`decode_answer`."""
        token_retried = False
        busy_retries = 0
        max_busy = wecom_settings.BUSY_RETRIES
        while True:
            token = self.tokens.get() if with_token else None
            if with_token:
                self.rate_budget.spend(path)
            started = time.monotonic()
            try:
                data = self._send(method, path, params, json_body, files, token, idempotent, answer)
            except WeComNetworkError as exc:
                seconds = time.monotonic() - started
                stats.record("call", path=path, kind=self.kind, errcode="network", seconds=seconds)
                if exc.retryable and busy_retries < max_busy:
                    self._backoff(busy_retries, path, "network")
                    busy_retries += 1
                    continue
                raise
            errcode = data.get("errcode", 0) or 0
            stats.record(
                "call", path=path, kind=self.kind, errcode=errcode, seconds=time.monotonic() - started
            )
            if errcode == 0:
                return data
            errmsg = scrub(data.get("errmsg", ""), self._secret, token)
            if with_token and not token_retried and (errcode in TOKEN_ERRCODES or errcode == BAD_CREDENTIAL):
                stats.record("retry", path=path, reason="token")
                self.tokens.invalidate(token)
                token_retried = True
                continue
            if errcode == BUSY and busy_retries < max_busy:
                self._backoff(busy_retries, path, "busy")
                busy_retries += 1
                continue
            raise self._error(errcode, errmsg, path)

    def _error(self, errcode, errmsg, path):
        if errcode in RATE_LIMITED:
            retry_after = max(60, wecom_settings.RATE_LIMIT_RETRY_AFTER)
            return WeComRateLimited(errcode, errmsg, path, self.kind, retry_after=retry_after)
        if errcode in CONFIG_ERRCODES:
            return WeComConfigError(errcode, errmsg, path, self.kind)
        return WeComError(errcode, errmsg, path, self.kind)

    def _backoff(self, attempt, path, reason):
        stats.record("retry", path=path, reason=reason)
        time.sleep(wecom_settings.BUSY_BACKOFF * (2**attempt))

    def _send(self, method, path, params, json_body, files, token, idempotent, answer=None):
        url = f"{self.api_base}/cgi-bin/{path}"
        query = dict(params or {})
        if token:
            query["access_token"] = token
        kwargs = {"params": query, "timeout": self.timeout}
        if self._proxies:
            kwargs["proxies"] = self._proxies
        if json_body is not None:
            # WeCom wants UTF-8 text, not \u escapes.
            kwargs["data"] = json.dumps(json_body, ensure_ascii=False).encode()
            kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
        if files is not None:
            kwargs["files"] = files
        failure = None
        try:
            response = get_session().request(method, url, **kwargs)
        except requests.RequestException as exc:
            retryable = idempotent or _request_not_sent(exc)
            failure = (f"{type(exc).__name__}: {scrub(exc, self._secret, token, self._proxy_password)}", retryable)
        # Raised outside the except block so the requests exception (its text holds the URL with the
        # token) is not chained as __context__ and never reaches a log or an error tracker.
        if failure:
            raise WeComNetworkError.build(failure[0], path, self.kind, retryable=failure[1])
        if response.status_code != 200:
            raise WeComNetworkError.build(
                f"HTTP {response.status_code}", path, self.kind, retryable=response.status_code >= 500
            )
        data = decode_answer(response, answer)
        if not isinstance(data, dict):
            raise WeComNetworkError.build(
                "answer is not a JSON object", path, self.kind, retryable=idempotent
            )
        return data


def decode_answer(response, answer=None):
    """The JSON of an answer, or None when it is not JSON.

    msgspec decodes it from the bytes (https://jcristharif.com/msgspec/): about four times faster than
    ``json.loads`` of the text, which mattered for a 100,000-member sync reading ~70 MB of ``user/list``
    answers (issue 19). With ``answer``, an msgspec Struct whose fields are the keys to keep (each typed
    ``Any``, defaulting to ``msgspec.UNSET``), the keys it does not name are skipped while decoding, never
    built into dicts; the result is still plain dicts and lists, holding only the keys WeCom sent. What
    msgspec refuses but the standard library reads (a lone surrogate escape, NaN, invalid UTF-8, an
    answer of another shape) is read by ``requests`` as before.
    """
    try:
        if answer is None:
            return msgspec.json.decode(response.content)
        return msgspec.to_builtins(_decoder(answer).decode(response.content))
    except msgspec.DecodeError:  # ValidationError too
        pass
    try:
        return response.json()
    except ValueError:
        return None


@cache
def _decoder(answer):
    return msgspec.json.Decoder(answer)


def _request_not_sent(exc):
    """True when the request surely never reached WeCom, so even a non-idempotent call may be resent."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class BaseAPI:
    """An API group (``client.user``, ``client.message`` …) bound to its client."""

    def __init__(self, client):
        self._client = client

    def _get(self, path, params=None, **kwargs):
        return self._client.get(path, params=params, **kwargs)

    def _post(self, path, data=None, params=None, **kwargs):
        return self._client.post(path, data=data, params=params, **kwargs)

    def _agent_id(self, agent_id):
        agent_id = agent_id if agent_id is not None else self._client.agent_id
        if agent_id is None:
            raise ValueError("agent_id is required: pass it or create the client with agent_id")
        return int(agent_id)
