"""WeCom's HTTP API, one client per tenant and secret.

    from wecom_integration.client import client_for
    client = client_for(tenant.wecom_config, "contacts")
    for entry in client.user.iter_list_id():
        client.user.get(entry["userid"])

Each secret (app, contacts, customers) has its own access token, so each gets its own client. The
errcode policy lives in ``base.py``, tokens in ``tokens.py``, the per-corp call budget in
``ratelimit.py``; API groups are in ``api/``.
"""

from wecom_integration.client.api.approval import ApprovalAPI
from wecom_integration.client.api.department import DepartmentAPI
from wecom_integration.client.api.externalcontact import ExternalContactAPI
from wecom_integration.client.api.jssdk import JSSDKAPI
from wecom_integration.client.api.media import MediaAPI
from wecom_integration.client.api.menu import MenuAPI
from wecom_integration.client.api.message import MessageAPI
from wecom_integration.client.api.oauth import OAuthAPI, authorize_url, qr_login_url
from wecom_integration.client.api.tag import TagAPI
from wecom_integration.client.api.user import UserAPI
from wecom_integration.client.base import SECRET_KINDS, BaseWeComClient
from wecom_integration.client.counters import listeners, stats
from wecom_integration.client.errors import (
    SECRET_KIND_LABELS,
    WeComConfigError,
    WeComError,
    WeComNetworkError,
    WeComNotConfigured,
    WeComRateLimited,
)
from wecom_integration.client.ratelimit import RateBudget
from wecom_integration.client.tokens import CacheTokenStore

__all__ = [
    "BaseWeComClient",
    "SECRET_KINDS",
    "SECRET_KIND_LABELS",
    "CacheTokenStore",
    "RateBudget",
    "WeComClient",
    "WeComConfigError",
    "WeComError",
    "WeComNetworkError",
    "WeComNotConfigured",
    "WeComRateLimited",
    "authorize_url",
    "client_for",
    "listeners",
    "qr_login_url",
    "secret_for",
    "stats",
]


class WeComClient(BaseWeComClient):
    """The API of one corp through one secret (``kind``: "app", "contacts" or "customers")."""

    def __init__(self, corp_id, secret, kind="app", agent_id=None, api_base=None, timeout=None, **kwargs):
        super().__init__(corp_id, secret, kind, agent_id, api_base, timeout, **kwargs)
        self.department = DepartmentAPI(self)
        self.user = UserAPI(self)
        self.message = MessageAPI(self)
        self.oauth = OAuthAPI(self)
        self.externalcontact = ExternalContactAPI(self)
        self.menu = MenuAPI(self)
        self.media = MediaAPI(self)
        self.approval = ApprovalAPI(self)
        self.jssdk = JSSDKAPI(self)
        self.tag = TagAPI(self)


def secret_for(config, kind):
    """The plaintext secret ``config`` holds for ``kind``, or "" when it has none. Customers are read with
    the credential the configuration names (``customer_credential``): the 客户联系 secret, or the app secret
    of an app authorised for customer contact, the only way for corps set up since 2023-12-01 (docs 92994,
    96316). A configuration without that setting keeps the old rule: the customer secret, else the app's."""
    if kind == "app":
        return config.secret or ""
    if kind == "contacts":
        return config.contact_secret or ""
    if kind == "customers":
        credential = getattr(config, "customer_credential", "")
        if credential == "app":
            return config.secret or ""
        if credential == "secret":
            return config.customer_secret or ""
        return config.customer_secret or config.secret or ""
    if kind == "approvals":
        # The approval app's own secret when the tenant set one (审批应用), else the self-built app's.
        return getattr(config, "approval_secret", "") or config.secret or ""
    raise ValueError(f"kind must be one of {SECRET_KINDS} or 'approvals', not {kind!r}")


def client_for(config, kind="app", **kwargs):
    """A client for a tenant's WeCom configuration (anything with ``corp_id``, ``agent_id``,
    ``secret``, ``contact_secret``, ``customer_secret``; its ``proxy_url``, if any, carries every
    call). Raises WeComNotConfigured when the CorpID
    or the secret for ``kind`` is empty."""
    if not config.corp_id:
        raise WeComNotConfigured(kind, "corp_id")
    secret = secret_for(config, kind)
    if not secret:
        raise WeComNotConfigured(kind, "secret")
    kwargs.setdefault("proxy", getattr(config, "proxy_url", "") or None)
    return WeComClient(config.corp_id, secret, kind, agent_id=config.agent_id, **kwargs)
