"""Template cards from every face over real HTTP: the admin's send page (a button card, a text notice, any card as
JSON), POST /api/messages/, JeecgBoot's sendMessageTest with msgType template_card, the message log's recall
action, and the fake's WeCom-app screen where a member clicks a card and sees it change."""

import json
from datetime import timedelta

import pytest
import requests
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tenants.models import Membership
from tests.factories import config_from_fake, make_member, make_tenant, make_tenant_admin, make_user
from tests.messaging.test_cards import button_card, member, vote_card
from wecom_integration.messaging import cards
from wecom_integration.messaging.services import Message, send
from wecom_integration.models import Binding, CardClick, MessageLog, WeComUser

pytestmark = pytest.mark.django_db


def api_headers(user, tenant):
    token = Token.objects.get_or_create(user=user)[0].key
    return {"HTTP_X_ACCESS_TOKEN": token, "HTTP_X_TENANT_ID": str(tenant.pk), "HTTP_ACCEPT_LANGUAGE": "en"}


# The admin's send page -------------------------------------------------------------------------------------


def test_the_send_page_sends_a_button_card_and_a_text_notice(wired, fake_wecom, client):
    someone = member(fake_wecom)
    client.force_login(make_tenant_admin("boss", wired.tenant))
    url = reverse("admin:wecom_integration_messagelog_send_test", args=[wired.pk])

    page = client.post(url, {"msgtype": "button_interaction", "card_title": "加班申请", "card_description": "周六",
                             "card_buttons": "同意|yes\n驳回", "userids": someone})

    assert page.status_code == 200 and not page.context["form"].errors
    [held] = fake_wecom.cards_for(someone)
    card = held["card"]
    assert card["main_title"] == {"title": "加班申请", "desc": "周六"}
    assert [(b["text"], b["key"]) for b in card["button_list"]] == [("同意", "yes"), ("驳回", "button-2")]
    assert MessageLog.objects.get().task_id == held["task_id"]
    # The log entry links to the card's clicks.
    fake_wecom.click_template_card(someone, held["task_id"], "yes")
    log = MessageLog.objects.get(task_id=held["task_id"])
    entry = client.get(reverse("admin:wecom_integration_messagelog_change", args=[log.pk])).content.decode()
    assert "1 click" in entry
    clicks = client.get(reverse("admin:wecom_integration_cardclick_changelist"), {"task_id": held["task_id"]})
    assert clicks.status_code == 200 and list(clicks.context["cl"].result_list) == list(CardClick.objects.all())

    client.post(url, {"msgtype": "text_notice", "card_title": "周报", "card_url": "https://example.com/w",
                      "userids": someone})
    notice = fake_wecom.cards_for(someone)[0]["card"]
    assert notice["card_type"] == "text_notice" and notice["card_action"] == {"type": 1, "url": "https://example.com/w"}


def test_the_send_page_explains_a_card_wecom_would_refuse(wired, fake_wecom, client):
    someone = member(fake_wecom)
    client.force_login(make_tenant_admin("boss", wired.tenant))
    url = reverse("admin:wecom_integration_messagelog_send_test", args=[wired.pk])
    seven = "\n".join(f"b{i}" for i in range(7))
    page = client.post(url, {"msgtype": "button_interaction", "card_title": "太多", "card_buttons": seven,
                             "userids": someone})
    assert "1 to 6" in " ".join(page.context["form"].non_field_errors())
    page = client.post(url, {"msgtype": "text_notice", "card_title": "没有链接", "userids": someone})
    assert "link" in " ".join(page.context["form"].non_field_errors())
    page = client.post(url, {"msgtype": "template_card", "card_json": json.dumps(vote_card("vote-a")),
                             "userids": someone})
    assert not page.context["form"].errors
    assert fake_wecom.calls["message/send"] == 1
    assert fake_wecom.cards_for(someone)[0]["card"]["card_type"] == "vote_interaction"


# The messages API ------------------------------------------------------------------------------------------


def test_the_api_sends_a_card_and_lists_it(wired, fake_wecom):
    someone = member(fake_wecom)
    admin = make_user("api-admin")
    make_member(admin, wired.tenant, role=Membership.Role.ADMIN)
    api = APIClient()
    answer = api.post("/api/messages/", {"msgtype": "template_card", "content": button_card("api-1"),
                                         "userids": [someone]}, format="json", **api_headers(admin, wired.tenant))
    assert answer.status_code == 201, answer.content
    assert answer.json()["task_id"] == "api-1" and answer.json()["status"] == "sent"
    assert fake_wecom.cards_for(someone)[0]["task_id"] == "api-1"

    refused = api.post("/api/messages/", {"msgtype": "template_card", "content": {"card_type": "vote_interaction"},
                                          "userids": [someone]}, format="json", **api_headers(admin, wired.tenant))
    assert refused.status_code == 400 and "content" in refused.json()
    text = api.post("/api/messages/", {"msgtype": "text", "content": {"content": "你好"}, "userids": [someone]},
                    format="json", **api_headers(admin, wired.tenant))
    assert text.status_code == 201 and fake_wecom.deliveries_for(someone)[-1]["content"] == {"content": "你好"}
    assert fake_wecom.calls["message/send"] == 2

    plain = make_user("api-member")
    make_member(plain, wired.tenant)
    assert api.post("/api/messages/", {"msgtype": "text", "content": {"content": "x"}, "userids": [someone]},
                    format="json", **api_headers(plain, wired.tenant)).status_code == 403


# JeecgBoot's test push ------------------------------------------------------------------------------------


def test_send_message_test_carries_a_card_as_json_text(wired, fake_wecom):
    someone = member(fake_wecom)
    receiver = make_user("jeecg-receiver")
    make_member(receiver, wired.tenant)
    Binding.objects.create(tenant=wired.tenant, user=receiver, wecom_user=WeComUser.objects.get(userid=someone))
    admin = make_user("jeecg-admin")
    make_member(admin, wired.tenant, role=Membership.Role.ADMIN)
    body = {"app": "WECHAT_ENTERPRISE", "receiver": "jeecg-receiver", "sendAll": False, "msgType": "template_card",
            "content": json.dumps(button_card("jeecg-1"), ensure_ascii=False)}
    answer = APIClient().post("/sys/thirdApp/sendMessageTest", body, format="json", **api_headers(admin, wired.tenant))
    assert answer.status_code == 200 and answer.json()["success"] is True, answer.content
    assert fake_wecom.cards_for(someone)[0]["task_id"] == "jeecg-1"

    bad = APIClient().post("/sys/thirdApp/sendMessageTest", {**body, "content": "{not json"}, format="json",
                           **api_headers(admin, wired.tenant))
    assert bad.status_code == 400 and bad.json()["success"] is False
    assert fake_wecom.calls["message/send"] == 1


# Recall from the message log -------------------------------------------------------------------------------


def test_the_recall_action(wired, fake_wecom, client):
    someone = member(fake_wecom)
    boss = make_tenant_admin("boss", wired.tenant)
    fresh = send(wired.tenant, Message.text("刚发的"), users=[someone])
    old = send(wired.tenant, Message.text("昨天的"), users=[someone])
    MessageLog.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(hours=25))
    client.force_login(boss)
    page = client.post(reverse("admin:wecom_integration_messagelog_changelist"),
                       {"action": "recall_messages", "_selected_action": [fresh.pk, old.pk]}, follow=True)
    texts = [str(m) for m in page.context["messages"]]
    assert "1 message recalled." in texts
    assert any(f"#{old.pk}" in t and "24 hours" in t for t in texts)
    fresh.refresh_from_db()
    old.refresh_from_db()
    assert fresh.recalled_by == boss and fresh.recalled_at is not None and old.recalled_at is None
    assert set(fake_wecom.recalled_messages) == set(fresh.msgids)

    # Another tenant's admin never reaches this tenant's messages.
    client.force_login(make_tenant_admin("stranger", make_tenant("elsewhere")))
    client.post(reverse("admin:wecom_integration_messagelog_changelist"),
                {"action": "recall_messages", "_selected_action": [old.pk]})
    old.refresh_from_db()
    assert old.recalled_at is None and fake_wecom.calls["message/recall"] == 1


# The fake's WeCom-app screen -------------------------------------------------------------------------------


def test_a_member_clicks_on_the_fake_screen_and_sees_the_card_change(wired, fake_wecom):
    someone = member(fake_wecom)
    send(wired.tenant, Message.template_card(button_card("screen-1")), users=[someone])
    screen = f"{fake_wecom.api_base}/fake/app/cards"
    assert someone in requests.get(screen, timeout=10).text
    page = requests.get(screen, params={"userid": someone}, timeout=10).text
    assert "报销申请" in page and "value='approve'" in page

    after = requests.post(f"{screen}/click", data={"userid": someone, "task_id": "screen-1", "key": "approve"},
                          timeout=10).text

    assert CardClick.objects.get().choice == "同意"
    # Celery runs eagerly here, so the update landed before the page was drawn.
    assert "同意 ✓" in after and "value='approve'" not in after
    again = requests.post(f"{screen}/click", data={"userid": someone, "task_id": "screen-1", "key": "approve"},
                          timeout=10)
    assert again.status_code == 400  # the button is disabled now


def test_the_control_endpoint_clicks_a_vote(wired, fake_wecom):
    someone = member(fake_wecom)
    send(wired.tenant, Message.template_card(vote_card("ctl-1")), users=[someone])
    answer = requests.post(f"{fake_wecom.api_base}/fake/card_clicks", timeout=10, json={
        "userid": someone, "task_id": "ctl-1", "key": "submit", "selected": {"where": ["lake"]}}).json()
    assert answer["deliveries"][0]["status"] == 200
    assert CardClick.objects.get().choice == "划船"
    held = requests.get(f"{fake_wecom.api_base}/fake/cards", params={"userid": someone}, timeout=10).json()
    assert held["cards"][0]["replace_name"] == "划船 ✓"


def test_a_click_answered_past_72_hours_is_recorded_as_failed_without_calling_wecom(wired, fake_wecom):
    """The update normally runs at once; one left queued past the code's 72 hours is not attempted."""
    log = MessageLog.objects.create(tenant=wired.tenant, msgtype="template_card", task_id="late-1", content={})
    click = CardClick.objects.create(tenant=wired.tenant, message=log, wecom_userid=member(fake_wecom),
                                     task_id="late-1", event_key="approve", response_code="a-spent-code")
    CardClick.objects.filter(pk=click.pk).update(created_at=click.created_at - timedelta(hours=73))
    click = cards.answer_click(click.pk)
    assert click.status == CardClick.Status.FAILED and "72" in click.errmsg and click.response_code == ""
    assert fake_wecom.calls["message/update_template_card"] == 0
    assert cards.answer_click(click.pk).status == CardClick.Status.FAILED  # answered once only


def test_other_tenants_card_is_not_linked(wired, fake_wecom, settings):
    """A click names its task_id; only the tenant's own log of that task_id is linked to it."""
    other = make_tenant("other-cards")
    MessageLog.objects.create(tenant=other, msgtype="template_card", task_id="shared-1", content={})
    someone = member(fake_wecom)
    mine = send(wired.tenant, Message.template_card(button_card("shared-1")), users=[someone])
    fake_wecom.click_template_card(someone, "shared-1", "approve")
    assert CardClick.objects.get().message == mine
    assert config_from_fake  # the factory stays imported for readers of this module's fixtures
