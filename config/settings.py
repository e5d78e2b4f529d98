"""Settings from the environment (12-factor).

DATABASE_URL  default: an SQLite file under ./db/
REDIS_URL     when set: Celery broker + result backend and Django's cache on Redis;
              when unset: Celery runs tasks eagerly and the cache is local memory.
SECRET_KEY, WECOM_FIELD_KEYS, WECOM_API_BASE, ALLOWED_HOSTS, DEBUG, STATIC_ROOT, and the production switches below.
"""

import os
from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _

from wecom_integration.celery_config import BEAT_SCHEDULE, TASK_ROUTES
from wecom_integration.operations.log_config import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# A development key so `make demo` and the tests work out of the box; production must set its own
# (the system check wecom_integration.W001 warns when this one is used with DEBUG off).
DEV_SECRET_KEY = "dev-only-insecure-key-change-me-3c1f0b9e7a6d4f2e8b5a9c0d1e2f3a4b"
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tenants",
    "wecom_integration",
]

MIDDLEWARE = [
    "wecom_integration.operations.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS and JS) from STATIC_ROOT, compressed and cached forever under their
    # hashed names: no separate static server, with DEBUG off as in production.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

(BASE_DIR / "db").mkdir(exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db' / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        # Off by default: checking costs a round trip per request (a fifth of what a web process can
        # accept in callbacks). A connection broken by a database restart fails one request instead; the
        # callback INSERT reconnects and retries by itself (services/callbacks.py).
        conn_health_checks=os.environ.get("DB_CONN_HEALTH_CHECKS", "0") == "1",
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite is the laptop default; WAL and a busy timeout keep the demo's threads from tripping.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
    # Behind pgbouncer in transaction mode, server-side cursors must be off.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DB_DISABLE_SERVER_SIDE_CURSORS", False)
    # Prepare a statement once a connection has run it this many times (psycopg's prepare_threshold;
    # it applies to the statements bound on the server, such as the callback INSERT). Unset: never, which
    # is what pgbouncer in transaction mode before 1.21 needs.
    if os.environ.get("DB_PREPARE_THRESHOLD", "").strip():
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = int(os.environ["DB_PREPARE_THRESHOLD"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "wecom_integration.login.backends.WeComBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/admin/"

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `manage.py collectstatic` gathers the apps' and the admin's files (`make demo` runs it first).
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names (base.3f1a….css) listed in a manifest, plus .gz and .br copies WhiteNoise serves.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "wecom"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = False
    CELERY_RESULT_BACKEND = None

# The app's queues, routes, beat schedule and recommended options (wecom_integration/celery_config.py):
# callbacks have their own queue so a bulk sync never delays them (docs/deploy.md has the worker commands).
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = dict(TASK_ROUTES)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", "1800"))
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "1900"))
CELERY_BEAT_SCHEDULE = dict(BEAT_SCHEDULE)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# A worker that loses Redis retries the connection this many times (about 2 s apart, growing), then exits so its
# process supervisor starts it afresh (docs/deploy.md, "Keeping workers running"): a new process cannot inherit
# a consumer that kombu left half-restored after the broker came back empty.
CELERY_BROKER_CONNECTION_MAX_RETRIES = int(os.environ.get("CELERY_BROKER_CONNECTION_MAX_RETRIES", "10"))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Nothing reads task results; at 1,000 callbacks a second they would only fill Redis.
CELERY_TASK_IGNORE_RESULT = True
# Celery closes a worker's database connection after every task unless this is set; opening one (and a new
# PostgreSQL backend) cost a callback worker more CPU than the batch of events it then handled. With it, a
# connection is kept for CONN_MAX_AGE as the web keeps it (the app closes an expired or broken one before
# each of its tasks, wecom_integration/operations/celery_signals.py) and at most this many tasks.
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000"))
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE

# No REST_FRAMEWORK here: the app's API sets its own authentication, permissions, pagination and schema
# class on its views (wecom_integration/api/base.py), so a host's DRF defaults cannot weaken it.
SPECTACULAR_SETTINGS = {
    "TITLE": "WeCom integration API",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# The app's settings (wecom_integration/conf.py, docs/install.md), here from this repository's environment.
# Keys for encrypting secrets at rest: comma-separated; the first encrypts, all decrypt, so a key is rotated
# by putting the new one first (then `manage.py wecom_rotate_keys`). WECOM_FIELD_KEYS, WECOM_API_BASE,
# METRICS_TOKEN and METRICS_ALLOWED_IPS are the documented top-level aliases of WECOM keys; they stay
# top-level here so that a test replacing WECOM keeps the encryption keys.
WECOM_FIELD_KEYS = env_list("WECOM_FIELD_KEYS")
WECOM_API_BASE = os.environ.get("WECOM_API_BASE", "https://qyapi.weixin.qq.com")
# Prometheus /metrics: a bearer token when set; otherwise loopback (and these addresses) only.
METRICS_TOKEN = os.environ.get("WECOM_METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("WECOM_METRICS_ALLOWED_IPS")
# The model every tenant foreign key of the WeCom app points at (issue 24; a host names its own).
WECOM_TENANT_MODEL = "tenants.Tenant"

WECOM = {
    "PUBLIC_BASE_URL": os.environ.get("WECOM_PUBLIC_BASE_URL", ""),
    # prometheus_client reads PROMETHEUS_MULTIPROC_DIR itself; the app merges the files of that directory.
    "METRICS_MULTIPROC_DIR": os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""),
    "WORKER_METRICS_PORT": int(os.environ["WECOM_WORKER_METRICS_PORT"])
    if os.environ.get("WECOM_WORKER_METRICS_PORT", "").strip()
    else None,
    "WORKER_METRICS_ADDR": os.environ.get("WECOM_WORKER_METRICS_ADDR", "127.0.0.1"),
}
# `make demo` sets this to the fake WeCom's stand-in client, so the chat sidebar works in a plain browser.
if env_list("WECOM_JSSDK_SCRIPTS"):
    WECOM["JSSDK_SCRIPTS"] = env_list("WECOM_JSSDK_SCRIPTS")

# Production switches; `manage.py check --deploy` is clean with these on (see docs/deploy.md).
if env_bool("SECURE", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# LOG_FORMAT=json: one structured line per callback, sync phase and WeCom call. Secrets are scrubbed by
# a filter as a last line of defence (the code never logs them in the first place). config/celery.py makes
# the workers use this too.
LOGGING = logging_config(
    fmt="json" if os.environ.get("LOG_FORMAT", "plain").lower() == "json" else "plain",
    level=os.environ.get("LOG_LEVEL", "INFO"),
)
