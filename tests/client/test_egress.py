"""#22 item 6: a fixed egress per tenant. Over real HTTP: the client → the loopback forward proxy (whose
upstream connections leave from 127.0.0.2) → the fake WeCom, which only trusts listed IPs."""

import socket

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse

from tests.factories import config_from_fake, make_tenant, make_tenant_admin
from wecom_integration.client import WeComConfigError, WeComNetworkError, client_for
from wecom_integration.client.diagnostics import test_connection as run_connection_test
from wecom_integration.models import WeComConfig
from wecom_integration.testing.proxy import ForwardProxy

pytestmark = pytest.mark.django_db

PROXY_SOURCE = "127.0.0.2"


def _second_loopback_works():
    try:
        with socket.socket() as sock:
            sock.bind((PROXY_SOURCE, 0))
        return True
    except OSError:
        return False


requires_second_loopback = pytest.mark.skipif(not _second_loopback_works(), reason="127.0.0.2 is not bindable here")


@pytest.fixture
def fake(settings, make_fake_wecom):
    # Only the proxy's address is trusted, as a corp that listed its fixed egress would have it.
    fake = make_fake_wecom(users=10, departments=2, seed=5, trusted_ips={PROXY_SOURCE})
    settings.WECOM = {"API_BASE": fake.api_base, "BUSY_RETRIES": 0, "BUSY_BACKOFF": 0}
    return fake


@pytest.fixture
def proxy():
    with ForwardProxy(source_address=PROXY_SOURCE) as proxy:
        yield proxy


@requires_second_loopback
def test_every_call_of_the_tenant_goes_through_its_proxy(fake, proxy):
    config = config_from_fake(make_tenant("acme"), fake, proxy_url=proxy.url)
    client = client_for(config, "contacts")
    assert client.department.list()  # gettoken and department/list, both through the proxy
    targets = [target for _, target in proxy.requests]
    assert any("/cgi-bin/gettoken" in target for target in targets)
    assert any("/cgi-bin/department/list" in target for target in targets)


@requires_second_loopback
def test_without_the_proxy_wecom_answers_60020_naming_the_ip_to_add(fake):
    config = config_from_fake(make_tenant("acme"), fake)
    with pytest.raises(WeComConfigError) as caught:
        client_for(config, "contacts").department.list()
    assert caught.value.errcode == 60020
    assert "from ip: 127.0.0.1" in caught.value.errmsg
    assert caught.value.ip == "127.0.0.1"
    assert "Add 127.0.0.1 to the app's trusted IPs" in caught.value.admin_message


@requires_second_loopback
def test_connection_test_shows_the_ip_wecom_saw_and_the_proxy(fake, proxy):
    config = config_from_fake(make_tenant("acme"), fake, proxy_url=proxy.url)
    results = {check.kind: check for check in run_connection_test(config)}
    assert results["contacts"].ok and results["app"].ok
    egress = results["egress"]
    assert egress.ok
    assert f"WeCom sees {PROXY_SOURCE}" in egress.message
    assert f"through the proxy {proxy.url}" in egress.message


@requires_second_loopback
def test_connection_test_without_proxy_says_direct_and_which_ip_to_add(fake):
    config = config_from_fake(make_tenant("acme"), fake)
    results = {check.kind: check for check in run_connection_test(config)}
    assert not results["contacts"].ok and "127.0.0.1" in results["contacts"].message
    assert results["egress"].ok
    assert "WeCom sees 127.0.0.1: calls go out directly" in results["egress"].message


def test_an_unreachable_proxy_is_a_network_error_within_the_timeout_and_hides_its_password(settings, fake):
    # A proxy that accepts connections and never answers: only the read timeout ends the call.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings.WECOM = {**settings.WECOM, "HTTP_TIMEOUT": (0.5, 0.5)}
        config = config_from_fake(make_tenant("acme"), fake, proxy_url=f"http://ops:pr0xy-passw0rd@127.0.0.1:{port}")
        with pytest.raises(WeComNetworkError) as caught:
            client_for(config, "app").refresh_token()
    assert "pr0xy-passw0rd" not in str(caught.value) and "pr0xy-passw0rd" not in repr(caught.value)


def test_proxy_url_is_encrypted_at_rest_and_validated(fake):
    config = config_from_fake(make_tenant("acme"), fake, proxy_url="http://ops:pr0xy-passw0rd@10.0.0.5:3128")
    with connection.cursor() as cursor:
        cursor.execute("SELECT proxy_url FROM wecom_integration_wecomconfig WHERE id = %s", [config.pk])
        (stored,) = cursor.fetchone()
    assert stored.startswith("enc1:") and "10.0.0.5" not in stored
    assert WeComConfig.objects.get(pk=config.pk).proxy_url == "http://ops:pr0xy-passw0rd@10.0.0.5:3128"
    for bad in ("10.0.0.5:3128", "socks5://10.0.0.5:1080", "http://10.0.0.5", "http://10.0.0.5:3128/path"):
        config.proxy_url = bad
        with pytest.raises(ValidationError) as caught:
            config.full_clean()
        assert "proxy_url" in caught.value.message_dict


@pytest.mark.parametrize(
    "language, label", [("en", "Outbound proxy for WeCom calls"), ("zh-hans", "企业微信调用的出站代理")]
)
def test_proxy_url_is_write_only_in_the_admin(fake, language, label):
    tenant = make_tenant("acme")
    config = config_from_fake(tenant, fake, proxy_url="http://ops:pr0xy-passw0rd@10.9.8.7:3128")
    browser = Client(headers={"accept-language": language})
    browser.force_login(make_tenant_admin("boss", tenant))
    page = browser.get(reverse("admin:wecom_integration_wecomconfig_change", args=[config.pk])).content.decode()
    assert label in page
    assert "pr0xy-passw0rd" not in page and "10.9.8.7" not in page


@requires_second_loopback
@pytest.mark.parametrize("language, text", [("en", "Outbound IP"), ("zh-hans", "出口IP")])
def test_connection_page_shows_the_egress_in_both_languages(fake, proxy, language, text):
    tenant = make_tenant("acme")
    config = config_from_fake(tenant, fake, proxy_url=proxy.url)
    browser = Client(headers={"accept-language": language})
    browser.force_login(make_tenant_admin("boss", tenant))
    url = reverse("admin:wecom_integration_wecomconfig_test_connection", args=[config.pk])
    page = browser.post(url).content.decode()
    assert text in page and PROXY_SOURCE in page
