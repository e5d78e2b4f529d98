"""Probes and metrics for load balancers, orchestrators and Prometheus.

``/healthz``  the process is up and serving (no I/O): a liveness probe.
``/readyz``   the database, the cache and the Celery broker answer: a readiness probe. 200 when all do,
              503 naming the one that does not. With eager Celery (no REDIS_URL) the broker is "eager".
``/metrics``  Prometheus text format. With ``WECOM["METRICS_TOKEN"]`` set, only with ``Authorization:
              Bearer <token>``; without it, only from loopback or ``WECOM["METRICS_ALLOWED_IPS"]`` and
              never through a proxy (a request with X-Forwarded-For is refused).

A host serves them with ``path("", include("wecom_integration.operations.urls"))`` (docs/install.md).

None of them needs a session or a user, and none says more than a check's name and an exception class:
no hosts, URLs or messages, which can carry credentials.
"""

import hmac
import ipaddress
import os
import socket
import threading

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.http import HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.exposition import choose_encoder

from wecom_integration.conf import wecom_settings
from wecom_integration.observability import metrics_registry

# Seconds any single readiness check may take against the broker; the database and cache use their
# connection settings (connect_timeout, socket_timeout), see docs/deploy.md.
BROKER_TIMEOUT = 2.0

OK = "ok"
EAGER = "eager"


@never_cache
@require_safe
def healthz(request):
    """Liveness: 200 as long as the process answers requests."""
    return JsonResponse({"status": OK})


@never_cache
@require_safe
def readyz(request):
    """Readiness: 200 when the database, the cache and the broker answer, else 503 naming the failures."""
    checks = {}
    for name, check in (("database", _check_database), ("cache", _check_cache), ("broker", _check_broker)):
        try:
            checks[name] = check()
        except Exception as exc:
            # The class name says what kind of failure it was; the message may hold a URL with a password.
            checks[name] = f"error: {type(exc).__name__}"
    ready = all(value in (OK, EAGER) for value in checks.values())
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _check_database():
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        # A broken persistent connection would fail every later probe too; the next one reconnects.
        connection.close()
        raise
    return OK


_CACHE_KEY = f"wecom:readyz:{socket.gethostname()}:{os.getpid()}"


def _check_cache():
    # One key per process, overwritten by every probe and expiring by itself: probing never grows the cache.
    value = os.urandom(8).hex()
    cache.set(_CACHE_KEY, value, 10)
    if cache.get(_CACHE_KEY) != value:
        raise RuntimeError("cache did not return the value just written")
    return OK


_broker_lock = threading.Lock()
_broker = {"url": None, "connection": None}


def _check_broker():
    from celery import current_app

    conf = current_app.conf
    url = conf.broker_url or ""
    if conf.task_always_eager or url.startswith("memory://"):
        return EAGER
    # One connection per process, reused by every probe, so a probe costs one round trip, not a handshake.
    with _broker_lock:
        connection = _broker["connection"] if _broker["url"] == url else None
        if connection is None:
            _drop_broker_connection()
            connection = _new_broker_connection(current_app, url)
            _broker.update(url=url, connection=connection)
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT)
            client = getattr(connection.default_channel, "client", None)
            if callable(getattr(client, "ping", None)):
                # Redis: a PING proves the server answers now, not only that a socket was once opened.
                client.ping()
        except Exception:
            _drop_broker_connection()
            raise
    return OK


def _new_broker_connection(app, url):
    options = dict(app.conf.broker_transport_options or {})
    options.update(
        socket_timeout=BROKER_TIMEOUT, socket_connect_timeout=BROKER_TIMEOUT, max_retries=1, interval_start=0,
    )
    return app.connection_for_write(url, connect_timeout=BROKER_TIMEOUT, transport_options=options)


def _drop_broker_connection():
    connection = _broker["connection"]
    _broker.update(url=None, connection=None)
    if connection is not None:
        try:
            connection.release()
        except Exception:
            pass


@never_cache
@require_safe
def metrics(request):
    """Prometheus metrics of this process (or of every process sharing WECOM["METRICS_MULTIPROC_DIR"])."""
    token = wecom_settings.METRICS_TOKEN or ""
    if token:
        scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            response = HttpResponse(_("A valid metrics token is required."), status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not _allowed_without_token(request):
        return HttpResponse(
            _("Metrics are only served to loopback and METRICS_ALLOWED_IPS unless METRICS_TOKEN is set."),
            status=403, content_type="text/plain",
        )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(metrics_registry()), content_type=content_type)


def _allowed_without_token(request):
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        # Through a proxy REMOTE_ADDR is the proxy's (often loopback): the real client is unknown.
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if address.is_loopback:
        return True
    return any(address in network for network in _allowed_networks())


def _allowed_networks():
    networks = []
    for entry in wecom_settings.METRICS_ALLOWED_IPS or []:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS holds {entry!r}, which is not an IP or network.") from None
    return networks
