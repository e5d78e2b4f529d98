"""The chat sidebar (issue 18 item 2) in Chromium: the page a member opens from the customer-contact toolbar
inside the WeCom client. The test stands in for the client: it blocks every request off this machine (no
WeCom script is loaded) and injects a ``wx`` object that records ``wx.config`` / ``wx.agentConfig`` and
answers ``getContext`` and ``getCurExternalContact`` / ``getCurExternalChat`` as the client would."""

import json

import pytest
from django.test import Client

from tests.factories import config_from_fake, make_member, make_tenant, make_user
from wecom_integration.client.api.jssdk import signature
from wecom_integration.models import Binding, CustomerGroup, CustomerTag, ExternalContact, FollowUser, WeComUser

pytestmark = pytest.mark.django_db(transaction=True)

STAND_IN = """
window.__wx = {calls: []};
window.wx = {
  config: function (c) { window.__wx.config = c; },
  error: function (f) { window.__wx.onError = f; },
  ready: function (f) { setTimeout(f, 0); },
  agentConfig: function (c) { window.__wx.agentConfig = c; setTimeout(c.success, 0); },
  invoke: function (name, args, cb) {
    window.__wx.calls.push(name);
    var answer = %s;
    cb(answer[name]);
  }
};
"""


@pytest.fixture
def world(live_server, fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    tenant = make_tenant("side", "侧边栏科技")
    config_from_fake(tenant, fake_wecom)
    clerk = make_user("clerk")
    make_member(clerk, tenant)
    member = WeComUser.objects.create(tenant=tenant, userid="zhangsan", name="张三")
    Binding.objects.create(tenant=tenant, user=clerk, wecom_user=member)
    vip = make_user("vip-member")
    contact = ExternalContact.objects.create(tenant=tenant, external_userid="wmVIPcustomer01", name="李女士",
                                             corp_name="客户公司", unionid="oVIP", linked_user=vip)
    CustomerTag.objects.create(tenant=tenant, tag_id="etGOLD", name="A类客户", group_id="etLEVEL",
                               group_name="客户等级")
    FollowUser.objects.create(contact=contact, userid="zhangsan", remark="大客户 VIP", tag_ids=["etGOLD", "etGONE"])
    group = CustomerGroup.objects.create(tenant=tenant, chat_id="wrVIPgroup", name="VIP 客户群", owner="zhangsan")
    group.members.create(userid="wmVIPcustomer01", type=2, name="李女士")
    group.members.create(userid="zhangsan", type=1, name="张三")
    browser = Client()
    browser.force_login(clerk)
    return {"tenant": tenant, "session": browser.cookies["sessionid"].value, "live": live_server.url,
            "fake": fake_wecom}


def open_sidebar(open_browser, world, answers):
    page = open_browser("zh-CN")
    context = page.context
    host = world["live"].split("//")[1].split(":")[0]
    context.add_cookies([{"name": "sessionid", "value": world["session"], "domain": host, "path": "/"}])
    external = []

    def only_this_machine(route):
        url = route.request.url
        if url.startswith(world["live"]):
            route.continue_()
        else:
            external.append(url)
            route.abort()

    context.route("**/*", only_this_machine)
    context.add_init_script(STAND_IN % json.dumps(answers))
    page.goto(f"{world['live']}/wecom/sidebar/{world['tenant'].pk}/")
    return page, external


def test_the_sidebar_shows_the_customer_the_member_is_talking_to(open_browser, world, screenshots_dir):
    page, external = open_sidebar(open_browser, world, {
        "getContext": {"err_msg": "getContext:ok", "entry": "single_chat_tools"},
        "getCurExternalContact": {"err_msg": "getCurExternalContact:ok", "userId": "wmVIPcustomer01"},
    })
    page.wait_for_selector("#sidebar-customer")
    text = page.inner_text("#sidebar-panel")
    assert "李女士" in text and "客户公司" in text and "大客户 VIP" in text and "VIP 客户群" in text
    assert page.inner_text("#sidebar-follows .tags").split() == ["A类客户"]  # a tag WeCom deleted is not shown
    assert page.inner_text("#sidebar-member").strip() == "vip-member"
    # The JS-SDK was configured with this page's signatures, from the tenant's tickets.
    state = page.evaluate("window.__wx")
    fake = world["fake"]
    url = page.url.split("#")[0]
    config, agent = state["config"], state["agentConfig"]
    assert config["signature"] == signature(fake.jsapi_ticket_value("jsapi"), config["nonceStr"],
                                            config["timestamp"], url)
    assert agent["signature"] == signature(fake.jsapi_ticket_value("agent_config"), agent["nonceStr"],
                                           agent["timestamp"], url)
    assert "getCurExternalContact" in agent["jsApiList"] and state["calls"] == ["getContext", "getCurExternalContact"]
    assert external and all("weixin.qq.com" in u or "wx.qq.com" in u for u in external)  # the SDK, blocked
    page.screenshot(path=str(screenshots_dir / "sidebar-customer.png"))


def test_the_sidebar_shows_a_customer_group_from_the_group_toolbar(open_browser, world):
    page, _external = open_sidebar(open_browser, world, {
        "getContext": {"err_msg": "getContext:ok", "entry": "group_chat_tools"},
        "getCurExternalChat": {"err_msg": "getCurExternalChat:ok", "chatId": "wrVIPgroup"},
    })
    page.wait_for_selector("#sidebar-group")
    text = page.inner_text("#sidebar-panel")
    assert "VIP 客户群" in text and "李女士" in text and "张三" in text


def test_a_customer_not_yet_synced_and_a_refusal_are_said_plainly(open_browser, world):
    page, _ = open_sidebar(open_browser, world, {
        "getContext": {"err_msg": "getContext:ok", "entry": "single_chat_tools"},
        "getCurExternalContact": {"err_msg": "getCurExternalContact:ok", "userId": "wmNEW/../x"},
    })
    page.wait_for_selector("#sidebar-unknown")
    assert "wmNEW/../x" in page.inner_text("#sidebar-unknown")
    page, _ = open_sidebar(open_browser, world, {
        "getContext": {"err_msg": "getContext:ok", "entry": "single_chat_tools"},
        "getCurExternalContact": {"err_msg": "getCurExternalContact:fail no permission"},
    })
    page.wait_for_selector("#sidebar-status .error")
    assert "no permission" in page.inner_text("#sidebar-status")


def test_the_fake_wecom_client_opens_the_sidebar_with_its_stand_in_js_sdk(open_browser, world, settings,
                                                                          screenshots_dir):
    """What `make demo` shows: the fake's client screen opens the corp's toolbar page; the page loads the fake's
    stand-in JS-SDK, whose wx.config / wx.agentConfig signatures the fake verifies, and is told the customer."""
    fake = world["fake"]
    settings.WECOM = {**settings.WECOM, "JSSDK_SCRIPTS": [f"{fake.api_base}/fake/jssdk/standin.js"]}
    fake.set_toolbar_page(f"{world['live']}/wecom/sidebar/{world['tenant'].pk}/")
    page = open_browser("zh-CN")
    host = world["live"].split("//")[1].split(":")[0]
    page.context.add_cookies([{"name": "sessionid", "value": world["session"], "domain": host, "path": "/"}])
    allowed = (world["live"], fake.api_base)
    page.context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(allowed)
                       else route.abort())
    # A chat with the mirrored customer, as the client's toolbar opens it.
    page.goto(f"{world['live']}/wecom/sidebar/{world['tenant'].pk}/?standin_contact=wmVIPcustomer01")
    page.wait_for_selector("#sidebar-customer")
    assert "李女士" in page.inner_text("#sidebar-panel") and page.inner_text("#sidebar-member").strip() == "vip-member"
    page.screenshot(path=str(screenshots_dir / "sidebar-standin.png"))
    # The client's own screen links to the toolbar page for its chats.
    page.goto(f"{fake.api_base}/fake/app/toolbar")
    assert page.locator("a", has_text="Open the sidebar").count() > 0
    # A page whose signature does not match (another URL was signed) fails as WeCom's client fails it.
    page.goto(f"{world['live']}/wecom/sidebar/{world['tenant'].pk}/?standin_contact=wmVIPcustomer01")
    page.evaluate("""() => new Promise(done => {
        wx.error(res => { window.__err = res.errMsg; done(); });
        wx.config({nonceStr: "x", timestamp: 1, signature: "0".repeat(40)});
    })""")
    assert page.evaluate("window.__err") == "config:invalid signature"
