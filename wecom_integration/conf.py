"""One ``WECOM`` settings dict with defaults, re-read when tests override settings.

Usage::

    from wecom_integration.conf import wecom_settings
    wecom_settings.API_BASE

Modelled on DRF's ``api_settings``: unknown names are an error, and the cached values are dropped on
``setting_changed`` so that ``override_settings(WECOM={...})`` works.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

DEFAULTS = {
    # Base URL of WeCom's HTTP API; the client appends "/cgi-bin/<path>". Tests point it at the fake.
    "API_BASE": "https://qyapi.weixin.qq.com",
    # (connect, read) seconds for every outbound call.
    "HTTP_TIMEOUT": (3.05, 10.0),
    # Refresh an access_token this many seconds before WeCom says it expires.
    "TOKEN_REFRESH_MARGIN": 300,
    # How long a worker waits for another worker's in-flight gettoken before giving up.
    "TOKEN_LOCK_TIMEOUT": 10.0,
    # Client-side budget per corp per minute, below WeCom's 10,000/min/API (doc 90454).
    "RATE_BUDGET_PER_MINUTE": 9000,
    # Longest a call sleeps waiting for budget before raising WeComRateLimited.
    "RATE_BUDGET_MAX_WAIT": 65.0,
    # -1 (system busy): retries and the first backoff in seconds (doubles each time).
    "BUSY_RETRIES": 3,
    "BUSY_BACKOFF": 0.2,
    # Seconds a task waits before retrying after 45009/45033.
    "RATE_LIMIT_RETRY_AFTER": 60,
    # Callbacks: accepted clock skew of the timestamp, in seconds, and the largest body in bytes.
    "CALLBACK_TIMESTAMP_WINDOW": 300,
    "CALLBACK_MAX_BODY": 64 * 1024,
    # Celery: retries and first backoff (seconds) for a failed callback handler.
    "HANDLER_MAX_RETRIES": 5,
    "HANDLER_RETRY_BACKOFF": 5,
    # A web process sends stored callbacks' ids to the workers in one message per batch: at most this
    # many ids, sent at the latest this many seconds after the first of them was stored.
    "CALLBACK_BATCH_SIZE": 100,
    "CALLBACK_BATCH_LINGER": 0.1,
    # Sync: deactivate a member's tenant membership when their WeCom account quits or is disabled.
    "DEACTIVATE_MEMBERSHIP_ON_LEAVE": True,
    # Public base URL used to build callback and OAuth redirect URLs (e.g. "https://erp.example.com").
    # Empty: build them from the current request.
    "PUBLIC_BASE_URL": "",
    # The adapter class host projects subclass to change how a WeCom user becomes a local user.
    "ADAPTER": "wecom_integration.adapter.DefaultWeComAdapter",
    # The API (/api/, /sys/) authenticates with the X-Access-Token header (DRF tokens) whatever the host's
    # REST_FRAMEWORK says; a host adds its own authentication classes here (dotted paths), tried after it.
    # Who may do what is decided by the API's own permissions (an active member of the X-Tenant-Id tenant),
    # never by the host's DEFAULT_PERMISSION_CLASSES.
    "API_AUTHENTICATION_CLASSES": [],
}


class WeComSettings:
    def __init__(self, defaults=None):
        self.defaults = defaults or DEFAULTS
        self._cached = set()
        self._user = None

    @property
    def user_settings(self):
        if self._user is None:
            self._user = dict(getattr(settings, "WECOM", {}) or {})
            unknown = set(self._user) - set(self.defaults)
            if unknown:
                raise ImproperlyConfigured(f"Unknown WECOM settings: {', '.join(sorted(unknown))}")
            if getattr(settings, "WECOM_API_BASE", None) and "API_BASE" not in self._user:
                self._user["API_BASE"] = settings.WECOM_API_BASE
        return self._user

    def __getattr__(self, name):
        if name not in self.defaults:
            raise AttributeError(f"Invalid WECOM setting: {name!r}")
        value = self.user_settings.get(name, self.defaults[name])
        self._cached.add(name)
        setattr(self, name, value)
        return value

    def reload(self):
        for name in self._cached:
            delattr(self, name)
        self._cached.clear()
        self._user = None


wecom_settings = WeComSettings()


def _reload(*, setting, **kwargs):
    if setting in ("WECOM", "WECOM_API_BASE"):
        wecom_settings.reload()


setting_changed.connect(_reload)
