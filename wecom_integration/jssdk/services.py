"""The JS-SDK configuration of one page: what ``wx.config`` (the corp's jsapi_ticket) and ``wx.agentConfig``
(the app's ticket) need, signed per doc 90506 (https://developer.work.weixin.qq.com/document/path/90506,
https://developer.work.weixin.qq.com/document/path/94313).

Only pages of this site are signed: a signature is a credential the JS-SDK accepts for that URL, so
signing another site's page would let it call the JS-SDK as the tenant's app.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlsplit

from wecom_integration.client import client_for
from wecom_integration.client.api.jssdk import signature


class ForeignURL(ValueError):
    """The URL is not a page of this site (or not an absolute http(s) URL)."""


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def check_url(url: str, site_origins) -> str:
    """``url`` when it is an absolute http(s) URL on one of ``site_origins``; raises ForeignURL."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or parts.password:
        raise ForeignURL("url must be an absolute http(s) URL of this site")
    if _origin(url) not in {_origin(origin) for origin in site_origins if origin}:
        raise ForeignURL("url is not a page of this site")
    return url


def js_config(config, url: str, *, timestamp: int | None = None) -> dict:
    """``{"config": {...}, "agentConfig": {...}}`` for the page at ``url`` (already checked)."""
    client = client_for(config, "app")
    timestamp = int(time.time()) if timestamp is None else timestamp
    corp_nonce, agent_nonce = secrets.token_hex(8), secrets.token_hex(8)
    return {
        "config": {
            "beta": True,
            "appId": config.corp_id,
            "timestamp": timestamp,
            "nonceStr": corp_nonce,
            "signature": signature(client.jssdk.jsapi_ticket(), corp_nonce, timestamp, url),
        },
        "agentConfig": {
            "corpid": config.corp_id,
            "agentid": config.agent_id,
            "timestamp": timestamp,
            "nonceStr": agent_nonce,
            "signature": signature(client.jssdk.agent_ticket(), agent_nonce, timestamp, url),
        },
    }
