"""The JS-SDK's tickets and signatures: what a page inside the WeCom client needs for ``wx.config`` (the
corp's jsapi_ticket) and ``wx.agentConfig`` (the app's ticket).

* get_jsapi_ticket, ticket/get?type=agent_config and the signature: https://developer.work.weixin.qq.com/document/path/90506
* wx.agentConfig: https://developer.work.weixin.qq.com/document/path/94313

Each ticket lives ``expires_in`` (7200) seconds, WeCom answers the same ticket to repeated fetches within
that time, and fetches are limited (the corp's 400 an hour, an app's 100 an hour): they are cached like
access tokens — one per corp (and app) and secret, in the shared cache, fetched single-flight by one
process at a time (``tokens.AccessTokens``), replaced ``TOKEN_REFRESH_MARGIN`` before they expire.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urldefrag

from wecom_integration.client.base import BaseAPI
from wecom_integration.client.tokens import AccessTokens

CORP = "jsapi"
AGENT = "agent_config"


def signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """sha1 of ``jsapi_ticket=…&noncestr=…&timestamp=…&url=…`` (keys in this order, the URL without its
    ``#`` part), as doc 90506 defines it."""
    page = urldefrag(url)[0]
    plain = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={page}"
    return hashlib.sha1(plain.encode("utf-8")).hexdigest()


class JSSDKAPI(BaseAPI):
    def __init__(self, client):
        super().__init__(client)
        self._tickets = {}

    def fetch_jsapi_ticket(self) -> tuple[str, int]:
        """A fresh corp ticket from WeCom: (ticket, expires_in). Prefer :meth:`jsapi_ticket` (cached)."""
        answer = self._get("get_jsapi_ticket")
        return answer["ticket"], int(answer.get("expires_in", 7200))

    def fetch_agent_ticket(self) -> tuple[str, int]:
        """A fresh app ticket (``ticket/get?type=agent_config``): (ticket, expires_in)."""
        answer = self._get("ticket/get", {"type": "agent_config"})
        return answer["ticket"], int(answer.get("expires_in", 7200))

    def _cached(self, kind):
        tickets = self._tickets.get(kind)
        if tickets is None:
            client = self._client
            # The access token's key names the corp, the secret and the API base; the agent is part of the
            # app ticket's identity too.
            key = f"{client.tokens.key}:ticket:{kind}:{client.agent_id or ''}"
            fetch = self.fetch_jsapi_ticket if kind == CORP else self.fetch_agent_ticket
            tickets = self._tickets[kind] = AccessTokens(key, fetch, client.token_store)
        return tickets

    def jsapi_ticket(self) -> str:
        """The corp's jsapi_ticket, from the shared cache (fetched once at a time when missing)."""
        return self._cached(CORP).get()

    def agent_ticket(self) -> str:
        """The app's agent_config ticket, from the shared cache."""
        return self._cached(AGENT).get()

    def invalidate(self):
        for kind in (CORP, AGENT):
            self._cached(kind).invalidate()
