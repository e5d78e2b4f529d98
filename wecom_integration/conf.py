"""One ``WECOM`` settings dict with defaults, re-read when tests override settings.

Everything the apps read from the host's settings is here (besides Django's own: ``AUTH_USER_MODEL``,
``LOGIN_URL``, ``LOGIN_REDIRECT_URL``, ``SECRET_KEY``, ``AUTHENTICATION_BACKENDS`` and Celery's
configuration); the apps never read the environment. A host sets none of it to start: every key has a
default, and the system checks (``checks.py``) report the defaults that are insecure in production.
docs/install.md lists every key with its meaning.

Usage::

    from wecom_integration.conf import wecom_settings
    wecom_settings.API_BASE

Modelled on DRF's ``api_settings``: unknown names are an error, and the cached values are dropped on
``setting_changed`` so that ``override_settings(WECOM={...})`` works.

Older top-level names keep working as aliases (``ALIASES``); a key in ``WECOM`` wins over its alias.
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
    # WeCom's other limits (doc 90454): per corp 150,000 calls an hour; per egress IP 20,000 a minute and
    # 600,000 an hour. The budget stays 10% under each (client/ratelimit.py says how the hour slides).
    "RATE_BUDGET_PER_HOUR": 135_000,
    "RATE_BUDGET_IP_PER_MINUTE": 18_000,
    "RATE_BUDGET_IP_PER_HOUR": 540_000,
    # The JS-SDK scripts pages inside the WeCom client load (doc 90514 / 94313). The demo points this at the
    # fake WeCom's stand-in client (``/fake/jssdk/standin.js``) to show the chat sidebar without a phone.
    "JSSDK_SCRIPTS": (
        "https://res.wx.qq.com/open/js/jweixin-1.2.0.js",
        "https://open.work.weixin.qq.com/wwopen/js/jwxwork-1.0.0.js",
    ),
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
    # many ids, sent at the latest LINGER seconds after the first of them was stored, but (a full batch
    # aside) no sooner than INTERVAL seconds after its previous message, so that under load each message
    # carries more events.
    "CALLBACK_BATCH_SIZE": 100,
    "CALLBACK_BATCH_LINGER": 0.1,
    "CALLBACK_BATCH_INTERVAL": 0.5,
    # Seconds a queued job (a sync the admin started) may wait for a Celery worker before the admin shows
    # it as "waiting for a worker", with the queue's name, and a tenant admin may cancel it.
    "QUEUED_JOB_STALE_AFTER": 120,
    # Sync: deactivate a member's tenant membership when their WeCom account quits or is disabled.
    "DEACTIVATE_MEMBERSHIP_ON_LEAVE": True,
    # Public base URL used to build callback and OAuth redirect URLs (e.g. "https://erp.example.com").
    # Empty: build them from the current request.
    "PUBLIC_BASE_URL": "",
    # The adapter class host projects subclass to change how a WeCom user becomes a local user.
    "ADAPTER": "wecom_integration.login.adapter.DefaultWeComAdapter",
    # The API (/api/, /sys/) authenticates with the X-Access-Token header (DRF tokens) whatever the host's
    # REST_FRAMEWORK says; a host adds its own authentication classes here (dotted paths), tried after it.
    # Who may do what is decided by the API's own permissions (an active member of the X-Tenant-Id tenant),
    # never by the host's DEFAULT_PERMISSION_CLASSES.
    "API_AUTHENTICATION_CLASSES": [],
    # The tenant an API request without X-Tenant-Id acts in. None: JeecgBoot's 0 with the default tenant
    # model (tenants.Tenant), a 400 asking for the header with a host's own WECOM_TENANT_MODEL.
    "DEFAULT_TENANT_ID": None,
    # Keys encrypting secrets at rest (any strings; each is stretched to a Fernet key). The first encrypts,
    # all decrypt. Empty: a key derived from SECRET_KEY (system check wecom_integration.W002 warns).
    "FIELD_KEYS": [],
    # /metrics: with a token, only ``Authorization: Bearer <token>``; without, loopback and these
    # addresses or networks only.
    "METRICS_TOKEN": "",
    "METRICS_ALLOWED_IPS": [],
    # The directory prometheus_client's multi-process mode writes to: the PROMETHEUS_MULTIPROC_DIR the
    # process was started with, which prometheus_client itself reads. Empty: single-process metrics.
    "METRICS_MULTIPROC_DIR": "",
    # A Celery worker serves its own /metrics on this port (None: it does not) and address.
    "WORKER_METRICS_PORT": None,
    "WORKER_METRICS_ADDR": "127.0.0.1",
    # How many days rows are kept before ``wecom_purge`` (and its daily beat task) deletes them; None keeps
    # them for ever. A partial dict overrides only what it names. Callback events are kept by the callback
    # URL they came to, and only once handled or dismissed: a failed or unhandled event is never purged.
    # See wecom_integration/operations/retention.py and docs/deploy.md ("Retention").
    "RETENTION": {},
}

RETENTION_DEFAULTS = {
    "callback_events": {"app": 30, "contacts": 90, "customers": 90},
    "callback_attempts": 14,
    "message_logs": 180,
    "card_clicks": 180,
    "inbox_messages": 365,
    "audit_log": 3 * 365,
    # Rows deleted per statement (and per short transaction).
    "batch_size": 5000,
}

# Top-level setting -> WECOM key: the names these settings had before the WECOM dict held them all.
ALIASES = {
    "WECOM_API_BASE": "API_BASE",
    "WECOM_FIELD_KEYS": "FIELD_KEYS",
    "METRICS_TOKEN": "METRICS_TOKEN",
    "METRICS_ALLOWED_IPS": "METRICS_ALLOWED_IPS",
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
            for alias, name in ALIASES.items():
                value = getattr(settings, alias, None)
                if value and name not in self._user:
                    self._user[name] = value
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
    if setting == "WECOM" or setting in ALIASES:
        wecom_settings.reload()


setting_changed.connect(_reload)


# The deployment's public origin: every room builds the URLs it shows or sends to WeCom from it.


def public_base_url(request=None, base_url=None):
    """The origin the deployment is reached at: ``base_url`` when given, else ``WECOM["PUBLIC_BASE_URL"]``,
    else the request's own; "" when none is known (a command run without a request)."""
    base = (base_url or wecom_settings.PUBLIC_BASE_URL or "").rstrip("/")
    if base:
        return base
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    return ""


def absolute_url(path, request=None, base_url=None):
    """``path`` on the deployment's public origin (see :func:`public_base_url`); the bare path when no
    origin is known, never a guessed host."""
    return public_base_url(request, base_url) + path
