"""Template cards end to end over real HTTP: cards composed under WeCom's rules and refused by the fake as WeCom
refuses them, sent to bound members, clicked in the fake's WeCom app (a signed template_card_event reaching the
live server), recorded, and answered with update_template_card as the adapter decides; response codes spent
once; messages recalled within WeCom's 24 hours."""

import pytest
from django.core.exceptions import ValidationError

from tests.factories import config_from_fake, make_member, make_tenant, make_user
from wecom_integration.client import WeComError, client_for
from wecom_integration.login.adapter import DefaultWeComAdapter
from wecom_integration.messaging import cards
from wecom_integration.messaging.services import Message, send
from wecom_integration.models import Binding, CardClick, MessageLog, WeComUser

pytestmark = pytest.mark.django_db


def button_card(task_id=None, **extra):
    card = {
        "card_type": "button_interaction",
        "main_title": {"title": "报销申请", "desc": "张三 · 320 元"},
        "button_list": [{"text": "同意", "key": "approve", "style": 1}, {"text": "驳回", "key": "reject", "style": 2}],
        **extra,
    }
    if task_id:
        card["task_id"] = task_id
    return card


def vote_card(task_id="vote-1"):
    return {
        "card_type": "vote_interaction",
        "task_id": task_id,
        "main_title": {"title": "团建去哪儿"},
        "checkbox": {"question_key": "where", "mode": 1, "option_list": [
            {"id": "hill", "text": "爬山"}, {"id": "lake", "text": "划船"}, {"id": "bbq", "text": "烧烤"}]},
        "submit_button": {"text": "提交", "key": "submit"},
    }


def text_notice():
    return {"card_type": "text_notice", "main_title": {"title": "周报已生成"},
            "card_action": {"type": 1, "url": "https://example.com/report"}}


def news_notice():
    return {"card_type": "news_notice", "main_title": {"title": "新品发布"},
            "card_image": {"url": "https://example.com/a.png", "aspect_ratio": 2.0},
            "card_action": {"type": 1, "url": "https://example.com/news"}}


def multiple_card(task_id="multi-1"):
    return {
        "card_type": "multiple_interaction",
        "task_id": task_id,
        "main_title": {"title": "午餐"},
        "select_list": [
            {"question_key": "main", "title": "主食", "option_list": [{"id": "rice", "text": "米饭"},
                                                                    {"id": "noodle", "text": "面条"}]},
            {"question_key": "drink", "title": "饮料", "option_list": [{"id": "tea", "text": "茶"}]},
        ],
        "submit_button": {"text": "提交", "key": "go"},
    }


def member(fake):
    return next(u.userid for u in fake.org.active_users())


# Composing: WeCom's rules, before anything is sent ----------------------------------------------------------


@pytest.mark.parametrize("card", [button_card("b-1"), vote_card(), text_notice(), news_notice(), multiple_card()])
def test_the_five_card_types_compose(card):
    message = Message.template_card(card)
    assert message.payload()["template_card"]["card_type"] == card["card_type"]
    assert message.summary() == card["main_title"]["title"]


@pytest.mark.parametrize("card, words", [
    ({"card_type": "poll"}, "Unknown card type"),
    (button_card("b-1", button_list=[]), "button_list"),
    (button_card("b-1", button_list=[{"text": str(i), "key": f"k{i}"} for i in range(7)]), "1 to 6"),
    (button_card("b-1", button_list=[{"text": "a", "key": "same"}, {"text": "b", "key": "same"}]), "twice"),
    (button_card("bad task id!"), "task_id"),
    (button_card("x" * 129), "task_id"),
    ({**text_notice(), "card_action": None}, "card_action"),
    ({"card_type": "text_notice", "card_action": {"type": 1, "url": "https://e.x"}}, "sub_title_text"),
    ({**news_notice(), "card_image": None}, "card_image or image_text_area"),
    ({**vote_card(), "checkbox": {"question_key": "q", "option_list": []}}, "option_list"),
    ({**vote_card(), "submit_button": None}, "submit_button"),
    ({**multiple_card(), "select_list": [multiple_card()["select_list"][0]] * 4}, "select_list"),
])
def test_cards_breaking_wecoms_rules_are_refused_with_a_reason(card, words):
    with pytest.raises(ValidationError) as refused:
        Message.template_card(card)
    assert any(words in text for text in refused.value.messages), refused.value.messages


def test_an_interactive_card_without_a_task_id_gets_a_fresh_one():
    first, second = Message.template_card(button_card()), Message.template_card(button_card())
    assert first.task_id and second.task_id and first.task_id != second.task_id
    assert Message.template_card(text_notice()).task_id == ""


# The fake refuses what WeCom refuses ----------------------------------------------------------------------


def test_the_fake_refuses_cards_as_wecom_does(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base, "BUSY_RETRIES": 0}
    api = client_for(config_from_fake(make_tenant("strict"), fake_wecom), "app").message
    someone = member(fake_wecom)
    codes = []
    for card in [
        {"card_type": "poll", "main_title": {"title": "x"}},
        button_card("b-2", button_list=[]),
        button_card("b-3", button_list=[{"text": "a", "key": "k"}] * 2),
        button_card(None),
        button_card("b 4"),
        {**vote_card("v-2"), "checkbox": {"question_key": "q", "option_list": [{"id": "a", "text": "a"}] * 21}},
        {**text_notice(), "card_action": {"type": 0}},
    ]:
        with pytest.raises(WeComError) as refused:
            api.send_template_card(card, touser=[someone])
        codes.append(refused.value.errcode)
    assert codes == [40058, 40058, 40058, 42014, 42014, 40058, 40058]
    api.send_template_card(button_card("once"), touser=[someone])
    with pytest.raises(WeComError) as again:
        api.send_template_card(button_card("once"), touser=[someone])
    assert again.value.errcode == 42014  # a task_id is used once per app
    assert fake_wecom.cards_for(someone)[0]["task_id"] == "once"


def test_a_response_code_works_once_and_for_72_hours(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base, "BUSY_RETRIES": 0}
    api = client_for(config_from_fake(make_tenant("codes"), fake_wecom), "app").message
    someone = member(fake_wecom)
    first = api.send_template_card(button_card("c-1"), touser=[someone])["response_code"]
    later = api.send_template_card(button_card("c-2"), touser=[someone])["response_code"]
    assert api.update_template_card(first, replace_name="已处理", userids=[someone])["errcode"] == 0
    with pytest.raises(WeComError):
        api.update_template_card(first, replace_name="again", userids=[someone])
    fake_wecom.advance_time(72 * 3600 + 1)
    with pytest.raises(WeComError):
        api.update_template_card(later, replace_name="too late", userids=[someone])
    held = {c["task_id"]: c for c in fake_wecom.cards_for(someone)}
    assert held["c-1"]["replace_name"] == "已处理" and held["c-2"]["replace_name"] is None
    with pytest.raises(ValueError):  # the disabled button cannot be clicked
        fake_wecom.click_template_card(someone, "c-1", "approve")


# A click end to end ---------------------------------------------------------------------------------------


def test_a_click_is_recorded_and_the_choice_shown_as_done(wired, fake_wecom):
    someone = member(fake_wecom)
    log = send(wired.tenant, Message.template_card(button_card("expense-7")), users=[someone])
    assert log.status == MessageLog.Status.SENT and log.task_id == "expense-7"

    [delivery] = fake_wecom.click_template_card(someone, "expense-7", "approve")

    assert delivery.status == 200
    click = CardClick.objects.get()
    assert (click.tenant_id, click.message, click.wecom_userid) == (wired.tenant_id, log, someone)
    assert (click.event_key, click.card_type, click.choice) == ("approve", "button_interaction", "同意")
    assert click.status == CardClick.Status.UPDATED and click.response_code == ""
    assert click.update == {"replace_name": "同意 ✓"}
    [held] = fake_wecom.cards_for(someone)
    assert held["replace_name"] == "同意 ✓"
    assert fake_wecom.calls["message/update_template_card"] == 1


def test_the_same_click_delivered_twice_updates_once(wired, fake_wecom):
    someone = member(fake_wecom)
    send(wired.tenant, Message.template_card(button_card("dup-1")), users=[someone])
    fake_wecom.click_template_card(someone, "dup-1", "reject")
    kind, xml, _result = fake_wecom.callback_log[-1]
    fake_wecom.emit(kind, xml)  # WeCom's retry of the same delivery
    assert CardClick.objects.count() == 1
    assert fake_wecom.calls["message/update_template_card"] == 1


def test_a_vote_records_the_choices(wired, fake_wecom):
    someone = member(fake_wecom)
    send(wired.tenant, Message.template_card(vote_card("vote-9")), users=[someone])
    fake_wecom.click_template_card(someone, "vote-9", "submit", {"where": ["hill", "bbq"]})
    click = CardClick.objects.get()
    assert click.selected_items == [{"question_key": "where", "option_ids": ["hill", "bbq"]}]
    assert click.choice == "爬山、烧烤"
    assert fake_wecom.cards_for(someone)[0]["replace_name"] == "爬山、烧烤 ✓"


class WholeCardAdapter(DefaultWeComAdapter):
    def template_card_update(self, tenant, click):
        if click.event_key == "reject":
            return None
        return {"card_type": "text_notice", "main_title": {"title": f"{click.wecom_userid} 已同意"},
                "card_action": {"type": 1, "url": "https://example.com/done"}}


def test_the_host_decides_the_new_card(wired, fake_wecom, settings):
    settings.WECOM = {**settings.WECOM, "ADAPTER": f"{__name__}.WholeCardAdapter"}
    one, two = [u.userid for u in fake_wecom.org.active_users()][:2]
    send(wired.tenant, Message.template_card(button_card("host-1")), users=[one, two])
    fake_wecom.click_template_card(one, "host-1", "approve")
    fake_wecom.click_template_card(two, "host-1", "reject")
    assert fake_wecom.cards_for(one)[0]["card"]["main_title"]["title"] == f"{one} 已同意"
    assert fake_wecom.cards_for(two)[0]["card"]["card_type"] == "button_interaction"  # left as it was
    statuses = dict(CardClick.objects.values_list("wecom_userid", "status"))
    assert statuses == {one: CardClick.Status.UPDATED, two: CardClick.Status.UNCHANGED}


class BadCardAdapter(DefaultWeComAdapter):
    def template_card_update(self, tenant, click):
        return {"card_type": "button_interaction", "main_title": {"title": "no buttons"}}


def test_a_card_wecom_would_refuse_is_recorded_as_failed_and_not_sent(wired, fake_wecom, settings):
    settings.WECOM = {**settings.WECOM, "ADAPTER": f"{__name__}.BadCardAdapter"}
    someone = member(fake_wecom)
    send(wired.tenant, Message.template_card(button_card("bad-1")), users=[someone])
    fake_wecom.click_template_card(someone, "bad-1", "approve")
    click = CardClick.objects.get()
    assert click.status == CardClick.Status.FAILED and "button_list" in click.errmsg
    assert fake_wecom.calls["message/update_template_card"] == 0


def test_a_task_id_is_refused_before_sending_when_the_tenant_used_it(wired, fake_wecom):
    someone = member(fake_wecom)
    send(wired.tenant, Message.template_card(button_card("twice")), users=[someone])
    with pytest.raises(ValidationError, match="twice"):
        send(wired.tenant, Message.template_card(button_card("twice")), users=[someone])
    assert MessageLog.objects.count() == 1


# Recall ---------------------------------------------------------------------------------------------------


def test_recall_within_24_hours_once(wired, fake_wecom):
    someone = member(fake_wecom)
    admin = make_user("recaller", staff=True)
    log = send(wired.tenant, Message.text("发错了"), users=[someone])
    cards.recall(log, admin)
    log.refresh_from_db()
    assert log.recalled_at is not None and log.recalled_by == admin
    assert set(fake_wecom.recalled_messages) == set(log.msgids)
    with pytest.raises(cards.RecallRefused, match="already"):
        cards.recall(log, admin)


def test_recall_is_refused_past_24_hours_without_calling_wecom(wired, fake_wecom):
    from datetime import timedelta

    someone = member(fake_wecom)
    log = send(wired.tenant, Message.text("昨天的"), users=[someone])
    MessageLog.objects.filter(pk=log.pk).update(created_at=log.created_at - timedelta(hours=25))
    log.refresh_from_db()
    with pytest.raises(cards.RecallRefused, match="24 hours"):
        cards.recall(log)
    assert fake_wecom.calls["message/recall"] == 0
    # The fake refuses as WeCom would, had we asked.
    fake_wecom.advance_time(25 * 3600)
    with pytest.raises(WeComError):
        client_for(wired, "app").message.recall(log.msgids[0])


def test_a_recalled_card_leaves_the_members_screen(wired, fake_wecom, client):
    someone = member(fake_wecom)
    log = send(wired.tenant, Message.template_card(button_card("gone-1")), users=[someone])
    cards.recall(log)
    assert fake_wecom.cards_for(someone) == []
    with pytest.raises(ValueError):
        fake_wecom.click_template_card(someone, "gone-1", "approve")


def test_cards_bound_by_username(wired, fake_wecom):
    someone = member(fake_wecom)
    user = make_user("alice")
    make_member(user, wired.tenant)
    Binding.objects.create(tenant=wired.tenant, user=user, wecom_user=WeComUser.objects.get(userid=someone))
    log = send(wired.tenant, Message.template_card(button_card("by-name")), usernames=["alice"])
    assert log.touser == someone and fake_wecom.cards_for(someone)[0]["task_id"] == "by-name"


def test_the_click_event_reads_wecoms_sample():
    """doc 90240's template_card_event, SelectedItems and all; a retry keys the same, another click not."""
    from wecom_integration.events import TemplateCardEvent, parse_event

    xml = (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[FromUser]]></FromUserName>"
        "<CreateTime>123456789</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[key111]]></EventKey>"
        "<TaskId><![CDATA[taskid111]]></TaskId><CardType><![CDATA[vote_interaction]]></CardType>"
        "<ResponseCode><![CDATA[ResponseCode]]></ResponseCode><AgentID>1</AgentID><SelectedItems>"
        "<SelectedItem><QuestionKey><![CDATA[QuestionKey1]]></QuestionKey><OptionIds>"
        "<OptionId><![CDATA[OptionId1]]></OptionId><OptionId><![CDATA[OptionId2]]></OptionId>"
        "</OptionIds></SelectedItem><SelectedItem><QuestionKey><![CDATA[QuestionKey2]]></QuestionKey>"
        "<OptionIds><OptionId><![CDATA[OptionId3]]></OptionId></OptionIds></SelectedItem></SelectedItems></xml>"
    )
    event = parse_event(xml)
    assert type(event) is TemplateCardEvent and event.kind == "card"
    assert (event.event_key, event.task_id, event.card_type, event.response_code) == (
        "key111", "taskid111", "vote_interaction", "ResponseCode")
    assert event.selected_items == [
        {"question_key": "QuestionKey1", "option_ids": ["OptionId1", "OptionId2"]},
        {"question_key": "QuestionKey2", "option_ids": ["OptionId3"]},
    ]
    assert event.dedupe_key == parse_event(xml).dedupe_key
    assert "ResponseCode" not in event.dedupe_key  # a digest: the key holds no usable code
    other = parse_event(xml.replace("[ResponseCode]", "[AnotherCode]"))
    assert other.dedupe_key != event.dedupe_key
    assert "ResponseCode" not in repr(event)
