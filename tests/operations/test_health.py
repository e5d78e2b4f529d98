"""/healthz, /readyz and /metrics: what they answer, to whom, and that they never reveal a secret."""

import os
import re
import secrets

import pytest
from celery import current_app
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.urls import resolve

from tests.operations.test_scale_out import Proc, base_env, free_port, http_get, wait_for, wait_http_ok
from wecom_integration.operations import health

pytestmark = pytest.mark.django_db


@pytest.fixture
def real_broker():
    """Celery as in production (not eager) for one test, with the broker URL the test sets."""
    conf = current_app.conf
    saved = conf.task_always_eager, conf.broker_url
    conf.task_always_eager = False
    yield conf
    conf.task_always_eager, conf.broker_url = saved
    health._drop_broker_connection()


def test_the_probes_and_metrics_are_at_the_root():
    assert resolve("/healthz").func is health.healthz
    assert resolve("/readyz").func is health.readyz
    assert resolve("/metrics").func is health.metrics


def test_healthz_answers_without_any_io(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_probes_take_get_and_head_only(client):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


def test_readyz_is_ready_with_every_dependency_and_the_eager_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "cache": "ok", "broker": "eager"}}


def test_readyz_names_an_unreachable_broker_without_its_address_or_password(client, real_broker):
    real_broker.broker_url = f"redis://:hunter2-broker-pw@127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == "ok"
    assert body["checks"]["broker"].startswith("error: ")
    assert "hunter2" not in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()


def test_readyz_recovers_when_the_broker_comes_back(client, real_broker):
    real_broker.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    assert client.get("/readyz").status_code == 503
    real_broker.broker_url = "memory://"
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == "eager"


def test_readyz_names_an_unreachable_cache(client):
    unreachable = {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                   "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}
    with override_settings(CACHES={"default": unreachable}):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"].startswith("error: ")
    assert response.json()["checks"]["database"] == "ok"


@pytest.mark.services
def test_readyz_keeps_one_broker_connection_between_probes(client, real_broker):
    import redis

    real_broker.broker_url = os.environ["REDIS_URL"]
    assert client.get("/readyz").json()["checks"]["broker"] == "ok"
    server = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        before = server.info("stats")["total_connections_received"]
        for _ in range(20):
            assert client.get("/readyz").status_code == 200
        # Not one new connection to Redis in 20 probes: each was a PING on the connection kept open.
        assert server.info("stats")["total_connections_received"] == before
    finally:
        server.close()


def test_a_node_whose_dependencies_are_down_is_alive_but_not_ready(tmp_path):
    port = free_port()
    env = base_env(
        DATABASE_URL=f"postgres://wecom:db-pw-4711@127.0.0.1:{free_port()}/wecom",
        REDIS_URL=f"redis://:redis-pw-4711@127.0.0.1:{free_port()}/0",
        PORT=port, HOST="127.0.0.1", WEB_CONCURRENCY=1,
    )
    web = Proc("web-deps-down", "gunicorn -c gunicorn.conf.py config.wsgi", env, tmp_path)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", procs=[web])
        # A list, because a 503 Response is falsy.
        (response,) = wait_for(lambda: [r] if (r := http_get(f"http://127.0.0.1:{port}/readyz")) is not None else None,
                               timeout=60, what="/readyz", procs=[web])
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert set(checks) == {"database", "cache", "broker"}
        assert all(value.startswith("error: ") for value in checks.values()), checks
        assert "pw-4711" not in response.text
    finally:
        web.stop()
    assert "pw-4711" not in web.output()


# /metrics access ------------------------------------------------------------------------------------------


def test_metrics_are_served_to_loopback(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "wecom_callbacks_received_total" in response.content.decode()


def test_metrics_are_refused_to_other_addresses_without_a_token(client):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403


def test_metrics_are_refused_through_a_proxy_even_from_loopback(client):
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert client.get("/metrics", HTTP_FORWARDED="for=203.0.113.9").status_code == 403


@override_settings(METRICS_ALLOWED_IPS=["10.0.0.0/8", "192.0.2.7"])
def test_metrics_allowed_ips_take_addresses_and_networks(client):
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.8").status_code == 403


@override_settings(METRICS_ALLOWED_IPS=["not-an-ip"])
def test_a_malformed_allowed_ip_is_a_configuration_error(client):
    with pytest.raises(ImproperlyConfigured):
        client.get("/metrics", REMOTE_ADDR="10.0.0.1")


def test_with_a_token_metrics_need_it_from_anywhere(client):
    token = secrets.token_urlsafe(24)
    with override_settings(METRICS_TOKEN=token):
        missing = client.get("/metrics")
        assert missing.status_code == 401
        assert missing["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Token {token}").status_code == 401
        allowed = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert allowed.status_code == 200
        assert token not in allowed.content.decode()


def test_metrics_speak_openmetrics_when_asked(client):
    response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


def test_probe_answers_name_no_setting_value(client, settings):
    body = client.get("/readyz").content.decode() + client.get("/healthz").content.decode()
    for value in (settings.SECRET_KEY, *settings.WECOM_FIELD_KEYS):
        assert value not in body
    assert not re.search(r"redis://|postgres://|sqlite://", body)
