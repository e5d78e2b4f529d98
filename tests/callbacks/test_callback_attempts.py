"""#22 item 4: the configuration page says, per callback URL, what WeCom's last requests met and which
field to fix; what is kept is bounded, and the successful path stays cheap."""

import time
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.callbacks.test_callbacks import callback_url, deliver, post_envelope
from tests.factories import aes_key, make_config, make_tenant, make_tenant_admin
from wecom_integration.callbacks import attempts as callback_attempts
from wecom_integration.models import CallbackAttempt
from wecom_integration.testing.callbacks import CallbackSender, build_contact_user_xml, build_message_xml

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttle():
    callback_attempts.forget_throttle()
    yield
    callback_attempts.forget_throttle()


@pytest.fixture
def config():
    return make_config(make_tenant("acme"))


def sender(config, kind, *, token=None, key=None, corp_id=None):
    real_token, real_key = config.callback_credentials(kind)
    return CallbackSender(
        callback_url(config.tenant_id, kind), token or real_token, key or real_key, corp_id or config.corp_id
    )


def contact_xml(config, userid="zhangsan"):
    return build_contact_user_xml(config.corp_id, "create_user", {"userid": userid, "name": userid}, int(time.time()))


def post(client, config, kind, forged, xml, **envelope):
    params, body = forged.envelope(xml, **envelope)
    return post_envelope(client, config, kind, params, body)


def verify(client, config, kind, forged, timestamp=None):
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    encrypted, signature = forged.crypto.encrypt("echo-123", "4242", timestamp)
    query = urlencode({"msg_signature": signature, "timestamp": timestamp, "nonce": "4242", "echostr": encrypted})
    return client.get(callback_url(config.tenant_id, kind) + "?" + query)


def page(config, language="en"):
    browser = Client(headers={"accept-language": language})
    browser.force_login(make_tenant_admin(f"boss-{language}", config.tenant))
    return browser.get(reverse("admin:wecom_integration_wecomconfig_change", args=[config.pk])).content.decode()


def fields(config, kind):
    summary = {url["kind"]: url for url in callback_attempts.summary(config.tenant_id)}[kind]
    return [attempt["field"] or "ok" for attempt in summary["attempts"]]


def test_each_refusal_names_its_field(client, config):
    assert (
        post(
            client, config, "contacts", sender(config, "contacts", token="WrongToken1"), contact_xml(config)
        ).status_code
        == 400
    )
    assert fields(config, "contacts") == ["token"]

    assert post(client, config, "app", sender(config, "app", key=aes_key()), contact_xml(config)).status_code == 400
    assert fields(config, "app") == ["aes_key"]

    assert (
        post(
            client, config, "customers", sender(config, "customers", corp_id="wwsomeoneelse0001"), contact_xml(config)
        ).status_code
        == 400
    )
    assert fields(config, "customers") == ["corp_id"]

    stale = int(time.time()) - 3600
    assert (
        post(client, config, "contacts", sender(config, "contacts"), contact_xml(config), timestamp=stale).status_code
        == 400
    )
    assert fields(config, "contacts") == ["clock", "token"]

    html = page(config)
    for field in ("token", "aes_key", "corp_id", "clock"):
        assert f'data-field="{field}"' in html
    assert "the Token entered here is not the one set for this URL" in html
    assert "the EncodingAESKey entered here is not the one set for this URL" in html
    assert "the CorpID entered here is not the CorpID" in html
    assert "this server&#x27;s clock" in html


def test_a_url_nobody_called_says_wecom_never_reached_it(client, config):
    deliver(client, config, "contacts", contact_xml(config))
    summary = {url["kind"]: url for url in callback_attempts.summary(config.tenant_id)}
    assert summary["app"]["never_reached"] and summary["customers"]["never_reached"]
    assert not summary["contacts"]["never_reached"] and fields(config, "contacts") == ["ok"]
    html = page(config)
    assert html.count('data-field="never"') == 2
    assert "WeCom never reached this URL" in html


def test_verification_outcomes_are_shown_apart_from_deliveries(client, config):
    assert verify(client, config, "app", sender(config, "app", token="WrongToken1")).status_code == 400
    callback_attempts.forget_throttle()
    response = verify(client, config, "app", sender(config, "app"))
    assert response.status_code == 200 and response.content == b"echo-123"
    summary = {url["kind"]: url for url in callback_attempts.summary(config.tenant_id)}["app"]
    assert [(a["method"], a["field"] or "ok") for a in summary["attempts"]] == [
        ("URL verification", "ok"),
        ("URL verification", "token"),
    ]


def test_a_flood_of_forged_requests_leaves_a_bounded_number_of_rows(client, config):
    deliver(client, config, "contacts", contact_xml(config, "before-flood"))
    forged = [
        sender(config, "contacts", token="WrongToken1"),
        sender(config, "contacts", key=aes_key()),
        sender(config, "contacts", corp_id="wwsomeoneelse0001"),
    ]
    for n in range(1000):
        assert post(client, config, "contacts", forged[n % 3], contact_xml(config, f"f{n}")).status_code == 400
        if n % 100 == 0:
            # Other processes, or this one a minute later: the shared throttle still holds.
            callback_attempts.forget_throttle()
    rows = CallbackAttempt.objects.filter(tenant=config.tenant)
    assert rows.count() <= callback_attempts.KEEP + 1
    # The last successful delivery is still shown, whatever came after it.
    assert fields(config, "contacts")[-1] == "ok"
    assert set(fields(config, "contacts")) == {"token", "aes_key", "corp_id", "ok"}


def test_the_successful_path_costs_at_most_one_cache_operation_and_no_extra_write(client, config, monkeypatch):
    class CountingCache:
        def __init__(self, wrapped):
            self.wrapped, self.ops = wrapped, 0

        def __getattr__(self, name):
            attr = getattr(self.wrapped, name)
            if not callable(attr):
                return attr

            def counted(*args, **kwargs):
                self.ops += 1
                return attr(*args, **kwargs)

            return counted

    counting = CountingCache(callback_attempts.cache)
    monkeypatch.setattr(callback_attempts, "cache", counting)
    deliveries = 200
    with CaptureQueriesContext(connection) as queries:
        for n in range(deliveries):
            xml = build_message_xml(config.corp_id, "zhangsan", config.agent_id, content=f"m{n}", msg_id=10_000 + n)
            assert post(client, config, "app", sender(config, "app"), xml).status_code == 200
    assert counting.ops <= deliveries
    assert counting.ops == 1  # the first success asks the shared throttle; the memo answers the rest
    attempt_writes = [q for q in queries.captured_queries if "wecom_integration_callbackattempt" in q["sql"]]
    assert len([q for q in attempt_writes if q["sql"].startswith("INSERT")]) == 1
    assert CallbackAttempt.objects.filter(tenant=config.tenant).count() == 1


@pytest.mark.parametrize(
    "language, texts",
    [
        ("en", ["What WeCom's requests met", "the Token entered here", "WeCom never reached this URL"]),
        ("zh-hans", ["企业微信请求的结果", "此处填写的 Token", "企业微信从未访问过此 URL"]),
    ],
)
def test_the_page_in_both_languages(client, config, language, texts):
    post(client, config, "contacts", sender(config, "contacts", token="WrongToken1"), contact_xml(config))
    html = page(config, language)
    for text in texts:
        assert text in html
