"""The JS-SDK's tickets: the corp's jsapi_ticket (``get_jsapi_ticket``) and the app's agent_config ticket
(``ticket/get?type=agent_config``), https://developer.work.weixin.qq.com/document/path/90506.

As WeCom does: each lasts 7200 s and a repeated fetch within that time answers the same ticket (with the
time it has left); fetches are limited per hour — the corp's ticket 400 an hour per corp, an app's 100 an
hour per app — and past that answer 45009 until the hour (the fake's clock) has passed. Fetches are counted
in ``ticket_fetches`` ("jsapi", "agent_config").
"""

from __future__ import annotations

import secrets
from collections import Counter

from .base import _APP, _ApiError, _Request, _Route

ROUTES = {
    "get_jsapi_ticket": _Route("GET", _APP, "_api_get_jsapi_ticket"),
    "ticket/get": _Route("GET", _APP, "_api_ticket_get"),
}

TICKET_TTL = 7200
HOURLY_LIMIT = {"jsapi": 400, "agent_config": 100}


class JSSDKAPI:
    """Tickets for the JS-SDK. A mixin of FakeWeCom (core.py): state lives on FakeWeCom."""

    def _jssdk(self) -> dict:
        state = getattr(self, "_jssdk_state", None)
        if state is None:
            state = self._jssdk_state = {"tickets": {}, "windows": {}, "fetches": Counter()}
        return state

    @property
    def ticket_fetches(self) -> Counter:
        return self._jssdk()["fetches"]

    def jsapi_ticket_value(self, kind: str = "jsapi") -> str | None:
        """The ticket WeCom currently holds for ``kind`` (None before the first fetch): for tests that check
        signatures."""
        entry = self._jssdk()["tickets"].get(kind)
        return entry[0] if entry and entry[1] > self.now() else None

    def _api_get_jsapi_ticket(self, request: _Request) -> dict:
        return self._ticket("jsapi")

    def _api_ticket_get(self, request: _Request) -> dict:
        if request.param("type") != "agent_config":
            raise _ApiError(40058)
        return self._ticket("agent_config")

    def _ticket(self, kind: str) -> dict:
        now = self.now()
        with self._lock:
            state = self._jssdk()
            start, count = state["windows"].get(kind, (now, 0))
            if now - start >= 3600:
                start, count = now, 0
            if count >= HOURLY_LIMIT[kind]:
                raise _ApiError(45009)
            state["windows"][kind] = (start, count + 1)
            state["fetches"][kind] += 1
            ticket, expires_at = state["tickets"].get(kind, ("", 0.0))
            if expires_at <= now:
                ticket, expires_at = secrets.token_urlsafe(64), now + TICKET_TTL
                state["tickets"][kind] = (ticket, expires_at)
        return {"ticket": ticket, "expires_in": int(expires_at - now)}
