"""No configured secret, callback Token, EncodingAESKey or access token in what the product shows or says:
admin pages, API answers, exception messages, error pages and log lines, including at DEBUG level.

The whole-run check of every log line is tests/leakcheck.py; here each surface is exercised on purpose
with known secrets, in the situations most likely to spill them: a wrong secret, an unreachable WeCom,
a refused callback, a failed sync, a failed send, the "Test connection" page.
"""

import logging

import pytest
from django.test import override_settings
from rest_framework.authtoken.models import Token

from tests.factories import config_from_fake, make_config, make_tenant, make_tenant_admin
from wecom_integration.client import WeComError, client_for
from wecom_integration.directory import sync
from wecom_integration.models import SyncRun, WeComConfig
from wecom_integration.testing.callbacks import CallbackSender, build_contact_user_xml

pytestmark = pytest.mark.django_db


def issued_tokens(fake):
    # The fake keeps every live and recently expired token here; it has no public list of them (yet).
    return set(fake._tokens)


def secrets_of(config, fake=None):
    """Every secret value of ``config`` (and of ``fake``: its secrets and every token it issued)."""
    values = {getattr(config, name) for name in WeComConfig.WRITE_ONLY_FIELDS}
    if fake is not None:
        values |= {fake.secret, fake.contact_secret, fake.customer_secret} | issued_tokens(fake)
    return {value for value in values if value and len(value) >= 8}


def reject_secrets(config, *names):
    """Put secrets WeCom does not know into ``config`` (as after a reset in WeCom's console); returns them."""
    wrong = set()
    for name in names:
        value = f"{name}-reset-in-wecom-{config.pk:04d}-xxxxxxxx"
        setattr(config, name, value)
        wrong.add(value)
    config.save()
    return wrong


def assert_clean(text, secrets, where):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = [f"{s[:3]}…{s[-2:]}" for s in secrets if s in text]
    assert not found, f"{where} shows secrets {found}"


@pytest.fixture
def setup(fake_wecom):
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base, "BUSY_BACKOFF": 0.01}):
        tenant = make_tenant("leak")
        config = config_from_fake(tenant, fake_wecom, auto_reply="ok", archive_secret="archive-" + "s" * 20)
        admin_user = make_tenant_admin("leak-admin", tenant)
        # A token exists at the fake before anything is shown, so the checks below cover it too.
        client_for(config, "contacts").get("department/simplelist")
        client_for(config, "app").get("department/simplelist")
        yield tenant, config, admin_user, fake_wecom


def test_admin_pages_never_render_secrets(client, setup):
    tenant, config, admin_user, fake = setup
    client.force_login(admin_user)
    secrets = secrets_of(config, fake)
    pages = [
        "/admin/",
        "/admin/wecom_integration/wecomconfig/",
        f"/admin/wecom_integration/wecomconfig/{config.pk}/change/",
        f"/admin/wecom_integration/wecomconfig/{config.pk}/history/",
        f"/admin/wecom_integration/wecomconfig/{config.pk}/test-connection/",
        "/admin/wecom_integration/callbackevent/",
        "/admin/wecom_integration/syncrun/",
        "/admin/wecom_integration/messagelog/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_clean(response.content, secrets, url)
    # The connection test, passing and then failing on a secret WeCom no longer accepts.
    url = f"/admin/wecom_integration/wecomconfig/{config.pk}/test-connection/"
    response = client.post(url, follow=True)
    assert response.status_code == 200
    assert_clean(response.content, secrets | issued_tokens(fake), "test connection (ok)")
    secrets |= reject_secrets(config, "contact_secret")
    response = client.post(url, follow=True)
    assert response.status_code == 200
    assert_clean(response.content, secrets, "test connection (rejected secret)")
    # The change form leaves the write-only fields empty: no secret comes back as an input's value.
    response = client.get(f"/admin/wecom_integration/wecomconfig/{config.pk}/change/")
    for name in WeComConfig.WRITE_ONLY_FIELDS:
        value = getattr(config, name)
        if value:
            assert f'value="{value}"' not in response.content.decode()


def test_api_answers_never_carry_secrets(client, setup):
    tenant, config, admin_user, fake = setup
    token = Token.objects.create(user=admin_user).key
    headers = {"HTTP_X_ACCESS_TOKEN": token, "HTTP_X_TENANT_ID": str(tenant.pk)}
    # A sync and a send that fail on a rejected secret leave their errors where the API shows them.
    rejected = reject_secrets(config, "contact_secret", "secret")
    fake.invalidate_tokens()
    run = sync.create_run(tenant)
    sync.execute_contact_run(run.pk)
    assert SyncRun.objects.get(pk=run.pk).status == SyncRun.Status.FAILED
    sent = client.post(
        "/sys/thirdApp/sendMessageTest",
        {"app": "WECHAT_ENTERPRISE", "receiver": "leak-admin", "sendAll": False, "content": "hi"},
        content_type="application/json",
        **headers,
    )
    secrets = (secrets_of(config, fake) | rejected) - {token}
    assert_clean(sent.content, secrets, "sendMessageTest")
    for url in ("/api/tenant/", "/api/wecom/sync/", f"/api/wecom/sync/{run.pk}/", "/api/messages/",
                "/api/wecom/users/", "/api/wecom/departments/"):
        response = client.get(url, **headers)
        assert response.status_code == 200, (url, response.status_code)
        assert_clean(response.content, secrets, url)
    # The caller's own API token is not echoed either.
    assert token not in client.get("/api/tenant/", **headers).content.decode()


def test_client_errors_never_carry_secrets_or_tokens(setup):
    tenant, config, admin_user, fake = setup
    secrets = secrets_of(config, fake)
    errors = []
    # A secret WeCom rejects.
    wrong = WeComConfig(corp_id=config.corp_id, agent_id=config.agent_id, secret="wrong-secret-" + "x" * 30)
    secrets.add(wrong.secret)
    try:
        client_for(wrong, "app").refresh_token()
    except WeComError as exc:
        errors.append(exc)
    # A token WeCom dropped early, and a WeCom that answers errors for a while.
    fake.set_faults(error_rate=1.0, errcodes=[-1, 40014, 60020, 48009], paths=["department/simplelist"], seed=3)
    for _ in range(4):
        try:
            client_for(config, "contacts").get("department/simplelist")
        except WeComError as exc:
            errors.append(exc)
    fake.clear_faults()
    # No WeCom at all: connection refused, after a token was already held.
    fake.stop()
    try:
        client_for(config, "contacts").get("department/simplelist", {"id": 1})
    except WeComError as exc:
        errors.append(exc)
    assert len(errors) >= 3
    secrets |= issued_tokens(fake)
    for exc in errors:
        for text in (str(exc), repr(exc), str(exc.args), str(getattr(exc, "admin_message", "")), exc.errmsg):
            assert_clean(text, secrets, f"{type(exc).__name__}")


def test_debug_logging_of_api_calls_carries_no_secret(caplog, setup):
    """An operator who sets LOG_LEVEL=DEBUG must not find secrets or tokens in the log (the URLs of
    gettoken and every API call carry them in the query string)."""
    tenant, config, admin_user, fake = setup
    fake.invalidate_tokens()
    from django.core.cache import cache

    cache.clear()
    from wecom_integration.client.tokens import clear_memo

    clear_memo()
    with caplog.at_level(logging.DEBUG):
        client_for(config, "contacts").get("department/simplelist")
        client_for(config, "app").get("department/simplelist")
    assert_clean(caplog.text, secrets_of(config, fake), "DEBUG log")


def test_refused_callbacks_say_nothing_of_the_keys(client, caplog, setup):
    tenant, config, admin_user, fake = setup
    secrets = secrets_of(config, fake)
    url = f"/wecom/callback/{tenant.pk}/contacts/"
    good = CallbackSender("http://testserver" + url, config.contact_token, config.contact_aes_key, config.corp_id)
    xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": "leaky", "name": "L"})
    params, body = good.envelope(xml)
    # Signed with the customer URL's Token: a mismatch. Then a tampered ciphertext, then a bad echostr.
    other = CallbackSender("http://testserver" + url, config.customer_token, config.customer_aes_key, config.corp_id)
    bad_params, bad_body = other.envelope(xml)
    with caplog.at_level(logging.DEBUG):
        answers = [
            client.post(f"{url}?{_query(bad_params)}", bad_body, content_type="text/xml"),
            client.post(f"{url}?{_query(params)}", body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[AAAA"),
                        content_type="text/xml"),
            client.get(url, {"msg_signature": "0" * 40, "timestamp": params["timestamp"], "nonce": "1",
                             "echostr": "AAAA"}),
        ]
    for answer in answers:
        assert 400 <= answer.status_code < 500
        assert_clean(answer.content, secrets, "refused callback answer")
    assert_clean(caplog.text, secrets, "refused callback log")


def _query(params):
    from urllib.parse import urlencode

    return urlencode(params)


def test_error_pages_and_reprs_carry_no_secrets(client, setup):
    tenant, config, admin_user, fake = setup
    secrets = secrets_of(config, fake)
    assert_clean(repr(config), secrets, "repr(WeComConfig)")
    assert_clean(str(config), secrets, "str(WeComConfig)")
    fresh = make_config(make_tenant("leak2"))
    assert_clean(repr(fresh) + str(fresh), secrets_of(fresh), "repr of a new configuration")
    with override_settings(DEBUG=False):
        client.raise_request_exception = False
        for url in ("/no-such-page/", f"/wecom/callback/{tenant.pk}/nothing/", "/api/wecom/sync/999999/"):
            response = client.get(url, HTTP_X_ACCESS_TOKEN="x" * 40)
            assert response.status_code in (401, 403, 404)
            assert_clean(response.content, secrets, url)
