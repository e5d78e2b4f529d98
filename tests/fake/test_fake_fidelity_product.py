"""The product against the stricter fake (#23): recipients outside the app's visible range in the message log,
userids matched ignoring case through callbacks and bindings, the daily message quota, media re-uploaded when
WeCom has dropped them, and a deleted customer ended whatever code WeCom uses for it."""

import time

import pytest
from django.core.cache import cache

from tests.callbacks.test_callbacks import deliver as post_callback
from tests.factories import config_from_fake, make_tenant
from tests.messaging.test_messaging import PNG, bind, point_at
from wecom_integration.client.tokens import clear_memo
from wecom_integration.messaging import inbox
from wecom_integration.messaging import services as messaging
from wecom_integration.messaging.services import Message, deliver, prepare, send
from wecom_integration.messaging.tasks import send_message
from wecom_integration.models import CallbackEvent, ExternalContact, InboxMessage, MessageLog, WeComUser
from wecom_integration.testing.callbacks import build_contact_user_xml, build_external_contact_xml

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_tokens():
    cache.clear()
    clear_memo()
    yield
    clear_memo()


@pytest.fixture
def fake(make_fake_wecom):
    server = make_fake_wecom(users=30, departments=4, seed=11)
    with point_at(server):
        yield server


@pytest.fixture
def tenant(fake):
    tenant = make_tenant("acme")
    config_from_fake(tenant, fake)
    return tenant


# Messages outside the visible range (doc 90236) -----------------------------------------------------------
def test_recipients_outside_the_visible_range_are_shown_as_such(fake, tenant):
    fake.add_user("Inside", "里面", department=[1])
    fake.add_user("Outside", "外面", department=[1])
    fake.org.set_visible_range(users=["Inside"])
    bind(tenant, ["Inside", "Outside"])
    log = send(tenant, Message.text("通知"), users=["Inside", "Outside", "ghost"])
    assert log.status == MessageLog.Status.PARTIAL
    # WeCom answers the ids lower-cased; the log names the member as the mirror spells them.
    assert log.invalid_users == ["outside", "ghost"]
    assert log.out_of_range_users == ["Outside"]
    assert messaging.usernames_for(tenant, log.invalid_users)[0] == "acme_Outside"
    assert [d["userid"] for d in fake.deliveries] == ["Inside"]


def test_recipients_are_matched_ignoring_case(fake, tenant):
    fake.add_user("ZhangSan", "张三", department=[1])
    names = bind(tenant, ["ZhangSan"])
    log = send(tenant, Message.text("hi"), users=["zhangsan"])
    assert log.status == MessageLog.Status.SENT and log.touser == "ZhangSan"
    log = send(tenant, Message.text("hi"), usernames=[names["ZhangSan"]])
    assert log.status == MessageLog.Status.SENT
    assert len(fake.deliveries_for("ZhangSan")) == 2


# The daily quota (doc 90236) -------------------------------------------------------------------------------
def test_the_daily_quota_stops_delivery_and_says_so(make_fake_wecom, django_capture_on_commit_callbacks):
    fake = make_fake_wecom(users=30, departments=4, seed=11, account_limit=1)  # 200 person-times a day
    with point_at(fake):
        tenant = make_tenant("quota")
        config_from_fake(tenant, fake)
        userids = [u.userid for u in fake.org.active_users()][:20]
        for _ in range(10):
            assert send(tenant, Message.text("x"), users=userids).status == MessageLog.Status.SENT
        log = send(tenant, Message.text("one more"), users=userids[:1])
        assert log.status == MessageLog.Status.FAILED and log.errcode == 45009
        assert "account limit × 200" in messaging.describe_failure(log)
        assert fake.stats()["messages_today"] == 200
        # The task retries a bounded number of times, then closes the log as it stands.
        with django_capture_on_commit_callbacks(execute=True):
            queued = messaging.send_async(tenant, Message.text("later"), users=userids[:1])
        queued.refresh_from_db()
        assert queued.status == MessageLog.Status.FAILED
        assert fake.calls["message/send"] == 10 + 1 + 1 + send_message.max_retries


# Media older than 3 days (doc 90253) ----------------------------------------------------------------------
def test_a_resumed_delivery_uploads_again_media_older_than_three_days(fake, tenant):
    userid = fake.org.active_users()[0].userid
    message = Message.file(filename="报表.pdf", content=PNG)
    log = prepare(tenant, message, users=[userid]).log
    fake.set_faults(error_rate=1.0, errcodes=(45009,), paths=["message/send"])
    with pytest.raises(messaging.WeComRateLimited):
        deliver(log, message.attachment, raise_rate_limited=True)
    log.refresh_from_db()
    first = log.content["file"]["media_id"]
    assert log.status == MessageLog.Status.QUEUED and fake.calls["media/upload"] == 1
    fake.clear_faults()

    # Three days pass (on both clocks) before the delivery resumes: WeCom has dropped the file.
    log.content["media_uploaded_at"] -= 3 * 86400
    log.save(update_fields=["content"])
    fake.advance_time(3 * 86400)
    cache.clear()
    clear_memo()
    log = deliver(log, message.attachment)
    assert log.status == MessageLog.Status.SENT, log.errmsg
    assert fake.calls["media/upload"] == 2
    (delivery,) = fake.deliveries_for(userid)
    assert delivery["content"]["media_id"] == log.content["file"]["media_id"] != first


def test_a_fresh_media_id_is_reused_on_resume(fake, tenant):
    userid = fake.org.active_users()[0].userid
    message = Message.file(filename="a.pdf", content=PNG)
    log = prepare(tenant, message, users=[userid]).log
    fake.set_faults(error_rate=1.0, errcodes=(45009,), paths=["message/send"])
    with pytest.raises(messaging.WeComRateLimited):
        deliver(log, message.attachment, raise_rate_limited=True)
    fake.clear_faults()
    log.refresh_from_db()
    assert deliver(log, message.attachment).status == MessageLog.Status.SENT
    assert fake.calls["media/upload"] == 1


# Case variants through callbacks and bindings --------------------------------------------------------------
def callback_config(settings, fake, code):
    settings.WECOM = {"API_BASE": fake.api_base, "BUSY_RETRIES": 0, "BUSY_BACKOFF": 0,
                      "HANDLER_MAX_RETRIES": 2, "HANDLER_RETRY_BACKOFF": 0}
    return config_from_fake(make_tenant(code), fake)


def test_a_userid_in_another_case_is_the_same_member(client, settings, fake):
    config = callback_config(settings, fake, "cases")
    fake.add_user("ZhangSan", "张三", department=[1])
    bind(config.tenant, ["ZhangSan"])
    member = WeComUser.objects.get(tenant=config.tenant, userid="ZhangSan")

    # A contact change naming ZHANGSAN updates the mirrored member instead of creating another.
    xml = build_contact_user_xml(config.corp_id, "update_user", {"userid": "ZHANGSAN", "position": "经理"},
                                 int(time.time()))
    assert post_callback(client, config, "contacts", xml).status_code == 200
    assert WeComUser.objects.filter(tenant=config.tenant).count() == 1
    member.refresh_from_db()
    assert member.position == "经理"

    # A message from zhangsan joins ZhangSan's conversation in the inbox.
    from wecom_integration.testing.callbacks import build_message_xml

    xml = build_message_xml(config.corp_id, "zhangsan", config.agent_id, "text", "你好",
                            create_time=int(time.time()), msg_id=987654321)
    assert post_callback(client, config, "app", xml).status_code == 200
    (message,) = InboxMessage.objects.filter(tenant=config.tenant)
    assert message.wecom_userid == "ZhangSan"
    assert list(inbox.conversation(config.tenant_id, "ZHANGSAN")) == [message]

    # The binding is found whatever the case of the id WeCom signs in with.
    from wecom_integration.login.adapter import get_adapter

    binding = get_adapter().get_binding(config.tenant, "zhangSAN")
    assert binding is not None and binding.wecom_user_id == member.pk


# A deleted customer (doc 92114; WxJava PR #2591) ------------------------------------------------------------
@pytest.mark.parametrize("errcode", [84061, 40096])
def test_a_deleted_customer_ends_the_contact_whatever_the_code(client, settings, fake, errcode):
    config = callback_config(settings, fake, f"gone{errcode}")
    member = fake.org.active_users()[0].userid
    external_userid, _ = fake.add_external_contact(member, "客户")
    event = build_external_contact_xml(config.corp_id, "add_external_contact", member, external_userid,
                                       create_time=int(time.time()))
    post_callback(client, config, "customers", event)
    assert not ExternalContact.objects.get(external_userid=external_userid).removed

    with fake.org.lock:  # the customer is deleted in WeCom
        contact = fake.org.external_contacts.pop(external_userid)
        for follow in contact.followers:
            follow.user.follows.remove(follow)
    fake.deleted_customer_errcode = errcode
    event = build_external_contact_xml(config.corp_id, "edit_external_contact", member, external_userid,
                                       create_time=int(time.time()) + 1)
    post_callback(client, config, "customers", event)
    row = CallbackEvent.objects.latest("id")
    assert (row.status, row.attempts) == (CallbackEvent.Status.HANDLED, 1)
    customer = ExternalContact.objects.get(external_userid=external_userid)
    assert customer.removed and customer.follow_users.get().removed
    assert fake.calls["externalcontact/get"] == 2
