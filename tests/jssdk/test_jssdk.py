"""The JS-SDK (issue 18 item 1): WeChat's published signature example; the fake's tickets as WeCom serves
them; the client's tickets cached and fetched once; GET /api/wecom/jssdk/ for pages of this site only."""

import pytest
import requests
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import config_from_fake, make_member, make_tenant, make_user
from wecom_integration.client import client_for
from wecom_integration.client.api.jssdk import signature
from wecom_integration.client.tokens import clear_memo

pytestmark = pytest.mark.django_db


def test_the_signature_matches_wechats_published_example():
    ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    assert signature(ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value") == (
        "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    )
    # The page's # part is not signed.
    assert signature(ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value#top") == (
        "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    )


def ticket_of(fake, api, **params):
    token = requests.get(f"{fake.api_base}/cgi-bin/gettoken", params={"corpid": fake.corp_id,
                         "corpsecret": fake.secret}, timeout=5).json()["access_token"]
    return requests.get(f"{fake.api_base}/cgi-bin/{api}", params={"access_token": token, **params}, timeout=5).json()


def test_the_fake_answers_the_same_ticket_until_it_expires_and_limits_fetches(fake_wecom):
    first = ticket_of(fake_wecom, "get_jsapi_ticket")
    again = ticket_of(fake_wecom, "get_jsapi_ticket")
    assert first["errcode"] == 0 and first["ticket"] == again["ticket"] and again["expires_in"] <= 7200
    agent = ticket_of(fake_wecom, "ticket/get", type="agent_config")
    assert agent["ticket"] != first["ticket"]
    assert ticket_of(fake_wecom, "ticket/get", type="other")["errcode"] == 40058
    fake_wecom.advance_time(7201)
    assert ticket_of(fake_wecom, "get_jsapi_ticket")["ticket"] != first["ticket"]
    # An app's ticket: 100 fetches an hour, then 45009 until the hour has passed.
    answers = [ticket_of(fake_wecom, "ticket/get", type="agent_config")["errcode"] for _ in range(101)]
    assert answers.count(0) == 100 and answers[-1] == 45009
    assert fake_wecom.ticket_fetches["agent_config"] == 1 + 100
    fake_wecom.advance_time(3600)
    assert ticket_of(fake_wecom, "ticket/get", type="agent_config")["errcode"] == 0


def test_tickets_are_fetched_once_and_shared(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    config = config_from_fake(make_tenant("js"), fake_wecom)
    one, other = client_for(config, "app"), client_for(config, "app")
    assert one.jssdk.jsapi_ticket() == other.jssdk.jsapi_ticket() == fake_wecom.jsapi_ticket_value("jsapi")
    clear_memo()  # another process: it finds the ticket in the shared cache
    assert client_for(config, "app").jssdk.jsapi_ticket() == fake_wecom.jsapi_ticket_value("jsapi")
    assert one.jssdk.agent_ticket() == fake_wecom.jsapi_ticket_value("agent_config")
    assert fake_wecom.ticket_fetches == {"jsapi": 1, "agent_config": 1}


@pytest.fixture
def member_api(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    tenant = make_tenant("jsapi")
    config_from_fake(tenant, fake_wecom)
    user = make_user("clerk")
    make_member(user, tenant)
    api = APIClient(headers={"X-Access-Token": Token.objects.create(user=user).key, "X-Tenant-Id": str(tenant.pk)})
    return tenant, api


def test_a_member_gets_the_signed_configuration_of_a_page_of_this_site(member_api, fake_wecom):
    tenant, api = member_api
    page = "http://testserver/wecom/sidebar/?tab=1#customer"
    answer = api.get("/api/wecom/jssdk/", {"url": page})
    assert answer.status_code == 200, answer.content
    data = answer.json()
    config, agent = data["config"], data["agentConfig"]
    assert config["appId"] == fake_wecom.corp_id and agent["corpid"] == fake_wecom.corp_id
    assert agent["agentid"] == fake_wecom.agent_id
    assert config["signature"] == signature(fake_wecom.jsapi_ticket_value("jsapi"), config["nonceStr"],
                                            config["timestamp"], "http://testserver/wecom/sidebar/?tab=1")
    assert agent["signature"] == signature(fake_wecom.jsapi_ticket_value("agent_config"), agent["nonceStr"],
                                           agent["timestamp"], page)
    api.get("/api/wecom/jssdk/", {"url": page})
    assert fake_wecom.ticket_fetches == {"jsapi": 1, "agent_config": 1}  # cached like tokens


@pytest.mark.parametrize("url", ["https://evil.example/phish", "http://testserver.evil.example/", "/relative",
                                 "javascript:alert(1)", "http://user:pw@testserver/", ""])
def test_another_sites_page_is_never_signed(member_api, fake_wecom, url):
    _tenant, api = member_api
    answer = api.get("/api/wecom/jssdk/", {"url": url})
    assert answer.status_code == 400 and answer.json()["error"] == "foreign_url"
    assert not fake_wecom.ticket_fetches


def test_the_public_base_url_is_this_site_too(member_api, fake_wecom):
    _tenant, api = member_api
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base, "PUBLIC_BASE_URL": "https://erp.example.com"}):
        assert api.get("/api/wecom/jssdk/", {"url": "https://erp.example.com/sidebar/"}).status_code == 200


def test_only_members_of_a_configured_tenant(member_api, fake_wecom):
    tenant, api = member_api
    outsider = APIClient(headers={"X-Access-Token": Token.objects.create(user=make_user("out")).key,
                                  "X-Tenant-Id": str(tenant.pk)})
    assert outsider.get("/api/wecom/jssdk/", {"url": "http://testserver/"}).status_code == 403
    assert APIClient().get("/api/wecom/jssdk/", {"url": "http://testserver/"}).status_code == 401
    bare = make_tenant("bare")
    user = make_user("bare-clerk")
    make_member(user, bare)
    bare_api = APIClient(headers={"X-Access-Token": Token.objects.create(user=user).key, "X-Tenant-Id": str(bare.pk)})
    assert bare_api.get("/api/wecom/jssdk/", {"url": "http://testserver/"}).status_code == 409
