"""Sending app messages over real HTTP to the fake WeCom: message types, media upload, batching, invalid
and unbound recipients, the log, the Celery task, the inbox reply, the app menu and the admin pages."""

import json
import math

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from tenants.models import Membership
from tests.factories import config_from_fake, make_config, make_member, make_tenant, make_tenant_admin, make_user
from wecom_integration.client import WeComRateLimited
from wecom_integration.client.tokens import clear_memo
from wecom_integration.messaging import menu as menu_service
from wecom_integration.messaging.services import (
    Message,
    NotConfigured,
    deliver,
    plan_batches,
    prepare,
    reply_to_inbox,
    send,
    send_async,
)
from wecom_integration.messaging.tasks import send_message
from wecom_integration.models import Binding, ContactTag, InboxMessage, MessageLog, WeComUser
from wecom_integration.testing import FakeWeCom

pytestmark = pytest.mark.django_db
User = get_user_model()

# The smallest valid PNG WeCom would take: the fake checks the extension and a size of ≥ 5 bytes.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture(autouse=True)
def _fresh_tokens():
    cache.clear()
    clear_memo()
    yield
    clear_memo()


def point_at(fake):
    """Settings that send the client to ``fake``, with fast busy retries."""
    return override_settings(WECOM={"API_BASE": fake.api_base, "BUSY_BACKOFF": 0.001, "BUSY_RETRIES": 1})


@pytest.fixture
def fake():
    with FakeWeCom(users=60, departments=8, seed=3) as server, point_at(server):
        yield server


@pytest.fixture
def big_fake():
    with FakeWeCom(users=1200, departments=120, seed=5) as server, point_at(server):
        yield server


def active_userids(fake, count=None):
    userids = [user.userid for user in fake.org.active_users()]
    assert count is None or len(userids) >= count, "the fake corp is too small for this test"
    return userids[:count] if count else userids


def bind(tenant, userids, prefix=None):
    """Create a member of ``tenant`` bound to each WeCom userid (in bulk); returns userid -> username."""
    prefix = prefix or f"{tenant.code}_"
    names = {userid: f"{prefix}{userid}" for userid in userids}
    users = User.objects.bulk_create([User(username=name, password="!") for name in names.values()])
    Membership.objects.bulk_create(
        [Membership(user=user, tenant=tenant, status=Membership.Status.ACTIVE) for user in users]
    )
    wecom_users = WeComUser.objects.bulk_create(
        [WeComUser(tenant=tenant, userid=userid, name=userid) for userid in userids]
    )
    Binding.objects.bulk_create(
        [Binding(tenant=tenant, user=user, wecom_user=wu) for user, wu in zip(users, wecom_users, strict=True)]
    )
    return names


@pytest.fixture
def tenant(fake):
    tenant = make_tenant("acme")
    config_from_fake(tenant, fake)
    return tenant


# Batching -------------------------------------------------------------------------------------------


def test_plan_batches_boundaries_and_sharing():
    users = [f"u{i}" for i in range(2500)]
    parties = [str(i) for i in range(150)]
    assert len(plan_batches(users[:1000])) == 1
    assert len(plan_batches(users[:1001])) == 2
    assert len(plan_batches(parties=parties[:100])) == 1
    assert len(plan_batches(parties=parties[:101])) == 2
    assert len(plan_batches(tags=parties[:101])) == 2
    # Users, departments and tags ride in the same calls: 3 calls for 2,500 users + 150 departments.
    batches = plan_batches(users, parties, parties[:5])
    assert len(batches) == 3
    assert [len(b["touser"].split("|")) for b in batches] == [1000, 1000, 500]
    assert [len(b.get("toparty", "").split("|")) for b in batches[:2]] == [100, 50]
    assert "toparty" not in batches[2] and batches[0]["totag"] == "0|1|2|3|4" and "totag" not in batches[1]
    assert [u for b in batches for u in b["touser"].split("|")] == users
    assert plan_batches(users, parties, to_all=True) == [{"touser": "@all"}]


@given(
    users=st.integers(min_value=0, max_value=3500),
    parties=st.integers(min_value=0, max_value=350),
    tags=st.integers(min_value=0, max_value=350),
)
def test_plan_batches_is_minimal_and_loses_nobody(users, parties, tags):
    lists = {
        "touser": [f"u{i}" for i in range(users)],
        "toparty": [str(i) for i in range(parties)],
        "totag": [str(i) for i in range(tags)],
    }
    batches = plan_batches(lists["touser"], lists["toparty"], lists["totag"])
    assert len(batches) == max(math.ceil(users / 1000), math.ceil(parties / 100), math.ceil(tags / 100))
    for key, limit in (("touser", 1000), ("toparty", 100), ("totag", 100)):
        parts = [batch[key].split("|") for batch in batches if key in batch]
        assert all(len(part) <= limit for part in parts)
        assert [value for part in parts for value in part] == lists[key]
    assert all(batch for batch in batches)


@pytest.mark.parametrize("count,calls", [(1000, 1), (1001, 2)])
def test_users_are_sent_in_batches_of_1000(big_fake, count, calls):
    tenant = make_tenant("big")
    config_from_fake(tenant, big_fake)
    userids = active_userids(big_fake, count)
    log = send(tenant, Message.text("批量通知"), users=userids)
    assert log.status == MessageLog.Status.SENT
    assert big_fake.calls["message/send"] == calls == log.calls == len(log.msgids)
    delivered = [d["userid"] for d in big_fake.deliveries]
    assert sorted(delivered) == sorted(userids)
    assert all(d["content"] == {"content": "批量通知"} for d in big_fake.deliveries)


@pytest.mark.parametrize("count,calls", [(100, 1), (101, 2)])
def test_departments_are_sent_in_batches_of_100(big_fake, count, calls):
    tenant = make_tenant("depts")
    config_from_fake(tenant, big_fake)
    parties = sorted(big_fake.org.departments)[:count]
    assert len(parties) == count
    log = send(tenant, Message.text("部门通知"), parties=parties)
    assert big_fake.calls["message/send"] == calls
    sizes = [len(m["toparty"].split("|")) for m in big_fake.sent_messages]
    assert sizes == ([100, 1] if count == 101 else [100])
    assert log.status == MessageLog.Status.SENT and log.invalid_parties == []


def test_users_and_departments_share_calls(big_fake):
    tenant = make_tenant("mix")
    config_from_fake(tenant, big_fake)
    userids = active_userids(big_fake, 1050)
    parties = sorted(big_fake.org.departments)[:110]
    log = send(tenant, Message.text("x"), users=userids, parties=parties)
    assert big_fake.calls["message/send"] == 2 == log.calls
    first, second = big_fake.sent_messages
    assert len(first["touser"].split("|")) == 1000 and len(first["toparty"].split("|")) == 100
    assert len(second["touser"].split("|")) == 50 and len(second["toparty"].split("|")) == 10


def test_tags_are_sent_and_those_gone_from_wecom_reported_invalid(fake, tenant):
    # The mirror holds 101 tags (two batches); since the last sync WeCom deleted all but tag 1, which reaches
    # its member: WeCom reports the others invalid and the member the message was also sent to gets it once.
    userid, tagged = active_userids(fake, 2)
    fake.create_contact_tag("销售", [tagged], tagid=1)
    ContactTag.objects.bulk_create([ContactTag(tenant=tenant, tagid=i, name=f"t{i}") for i in range(1, 102)])
    tags = [str(i) for i in range(1, 102)]
    log = send(tenant, Message.text("hi"), users=[userid, tagged], tags=tags)
    assert fake.calls["message/send"] == 2
    assert log.invalid_tags == tags[1:]
    assert log.status == MessageLog.Status.PARTIAL
    assert sorted(d["userid"] for d in fake.deliveries) == sorted([userid, tagged])


def test_tags_the_mirror_does_not_know_are_refused_before_sending(fake, tenant):
    userid = active_userids(fake, 1)[0]
    ContactTag.objects.create(tenant=tenant, tagid=7, name="管理层")
    with pytest.raises(ValidationError, match="8, 12"):
        send(tenant, Message.text("hi"), users=[userid], tags=["7", "12", "8"])
    assert fake.calls["message/send"] == 0
    assert not MessageLog.objects.filter(tenant=tenant).exists()


# Message types and media ------------------------------------------------------------------------------


def test_every_message_type_reaches_the_member(fake, tenant):
    userid = active_userids(fake, 1)[0]
    messages = [
        Message.text("纯文本"),
        Message.markdown("**加粗** 与 `code`"),
        Message.textcard("审批提醒", "<div class='gray'>今天</div>请处理", "https://example.com/a", btntxt="查看"),
        Message.news([{"title": "周报", "description": "本周汇总", "url": "https://example.com/w", "picurl": ""}]),
    ]
    for message in messages:
        log = send(tenant, message, users=[userid])
        assert log.status == MessageLog.Status.SENT, log.errmsg
    received = fake.deliveries_for(userid)
    assert [d["msgtype"] for d in received] == ["text", "markdown", "textcard", "news"]
    assert received[2]["content"]["btntxt"] == "查看"
    assert received[3]["content"]["articles"] == [
        {"title": "周报", "description": "本周汇总", "url": "https://example.com/w"}
    ]


@pytest.mark.parametrize("msgtype,filename", [("image", "chart.png"), ("file", "报表.xlsx")])
def test_image_and_file_are_uploaded_then_sent(fake, tenant, msgtype, filename):
    userid = active_userids(fake, 1)[0]
    factory = Message.image if msgtype == "image" else Message.file
    log = send(tenant, factory(filename=filename, content=PNG), users=[userid])
    assert log.status == MessageLog.Status.SENT, log.errmsg
    assert fake.calls["media/upload"] == 1
    ((media_id, media),) = fake.media.items()
    assert media["type"] == msgtype and media["filename"] == filename and media["size"] == len(PNG)
    assert log.content[msgtype]["media_id"] == media_id
    assert log.content["attachment"] == {"filename": filename, "size": len(PNG)}
    (delivery,) = fake.deliveries_for(userid)
    assert delivery["msgtype"] == msgtype and delivery["content"] == {"media_id": media_id}


def test_existing_media_id_is_sent_without_upload(fake, tenant):
    userid = active_userids(fake, 1)[0]
    first = send(tenant, Message.file(filename="a.pdf", content=PNG), users=[userid])
    media_id = first.content["file"]["media_id"]
    send(tenant, Message.file(media_id), users=[userid])
    assert fake.calls["media/upload"] == 1
    assert [d["content"]["media_id"] for d in fake.deliveries_for(userid)] == [media_id, media_id]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Message.text(""),
        lambda: Message.text("   "),
        lambda: Message.text("中" * 683),  # 2,049 bytes
        lambda: Message.markdown("x" * 2049),
        lambda: Message.textcard("", "d", "https://e.com"),
        lambda: Message.textcard("t", "d", "https://e.com", btntxt="太长的按钮"),
        lambda: Message.news([]),
        lambda: Message.news([{"title": f"t{i}", "url": "https://e.com"} for i in range(9)]),
        lambda: Message.image(filename="photo.gif", content=PNG),
        lambda: Message.file(filename="tiny.txt", content=b"1234"),
        lambda: Message.file(),
        lambda: Message.text("x", enable_duplicate_check=True, duplicate_check_interval=14401),
    ],
)
def test_invalid_messages_are_refused_before_anything_is_sent(build):
    with pytest.raises(ValidationError):
        build()


def test_text_of_exactly_2048_bytes_is_accepted(fake, tenant):
    content = "中" * 682 + "ab"
    assert len(content.encode()) == 2048
    userid = active_userids(fake, 1)[0]
    assert send(tenant, Message.text(content), users=[userid]).status == MessageLog.Status.SENT
    assert fake.deliveries_for(userid)[0]["content"]["content"] == content


def test_duplicate_check_lets_wecom_drop_the_repeat(fake, tenant):
    userid = active_userids(fake, 1)[0]
    message = Message.text("只发一次", enable_duplicate_check=True, duplicate_check_interval=600)
    first = send(tenant, message, users=[userid])
    second = send(tenant, message, users=[userid])
    assert fake.sent_messages[0]["enable_duplicate_check"] == 1
    assert fake.sent_messages[0]["duplicate_check_interval"] == 600
    assert len(fake.deliveries_for(userid)) == 1
    assert first.msgids == second.msgids


def test_safe_flag_is_sent(fake, tenant):
    userid = active_userids(fake, 1)[0]
    send(tenant, Message.text("保密", safe=True), users=[userid])
    assert fake.deliveries_for(userid)[0]["safe"] == 1


# Recipients, invalid and unbound ----------------------------------------------------------------------


def test_usernames_are_mapped_through_bindings(fake, tenant):
    userids = active_userids(fake, 3)
    names = bind(tenant, userids)
    sender = make_user("boss")
    log = send(tenant, Message.text("hello"), usernames=list(names.values()), sender=sender, source="api")
    assert sorted(d["userid"] for d in fake.deliveries) == sorted(userids)
    assert log.touser.split("|") == userids
    assert log.sender == sender and log.source == "api"


def test_unknown_username_sends_nothing(fake, tenant):
    names = bind(tenant, active_userids(fake, 1))
    with pytest.raises(ValidationError) as info:
        send(tenant, Message.text("x"), usernames=[*names.values(), "nobody"])
    assert "nobody" in " ".join(info.value.messages)
    assert fake.calls["message/send"] == 0 and not MessageLog.objects.exists()


def test_unbound_members_are_skipped_and_only_unbound_is_an_error(fake, tenant):
    names = bind(tenant, active_userids(fake, 1))
    loner = make_user("loner")
    make_member(loner, tenant)
    log = send(tenant, Message.text("x"), usernames=[*names.values(), "loner"])
    assert log.status == MessageLog.Status.SENT and len(fake.deliveries) == 1
    with pytest.raises(ValidationError, match="loner"):
        send(tenant, Message.text("x"), usernames=["loner"])
    # An inactive binding (the member quit) counts as unbound.
    Binding.objects.filter(tenant=tenant).update(is_active=False)
    with pytest.raises(ValidationError):
        send(tenant, Message.text("x"), usernames=list(names.values()))


def test_another_tenants_usernames_are_unknown(fake, tenant):
    other = make_tenant("other")
    names = bind(other, active_userids(fake, 1))
    with pytest.raises(ValidationError):
        send(tenant, Message.text("x"), usernames=list(names.values()))
    assert fake.calls["message/send"] == 0


def test_invalid_users_are_logged_and_the_rest_delivered(fake, tenant):
    good = active_userids(fake, 2)
    log = send(tenant, Message.text("x"), users=[*good, "ghost-1", "ghost-2"])
    assert log.status == MessageLog.Status.PARTIAL
    assert log.invalid_users == ["ghost-1", "ghost-2"]
    assert log.errcode == 0 and len(log.msgids) == 1
    assert sorted(d["userid"] for d in fake.deliveries) == sorted(good)


def test_all_recipients_invalid_is_a_failure(fake, tenant):
    log = send(tenant, Message.text("x"), users=["ghost"])
    assert log.status == MessageLog.Status.FAILED
    assert log.errcode == 81013 and log.invalid_users == ["ghost"] and log.msgids == []


def test_at_all_reaches_every_active_member(fake, tenant):
    log = send(tenant, Message.text("全员通知"), to_all=True)
    assert log.touser == "@all" and log.status == MessageLog.Status.SENT
    assert fake.sent_messages[0]["touser"] == "@all"
    assert sorted(d["userid"] for d in fake.deliveries) == sorted(active_userids(fake))


def test_no_configuration_sends_nothing(fake):
    tenant = make_tenant("bare")
    with pytest.raises(NotConfigured):
        send(tenant, Message.text("x"), users=["a"])
    assert not MessageLog.objects.exists()


@pytest.mark.parametrize("kwargs", [{}, {"users": ["a|b"]}, {"parties": ["sales"]}, {"users": ["@all"]}])
def test_bad_recipients_are_refused(fake, tenant, kwargs):
    with pytest.raises(ValidationError):
        send(tenant, Message.text("x"), **kwargs)
    assert fake.calls["message/send"] == 0


# WeCom errors, rate limits and the Celery task ---------------------------------------------------------


def test_configuration_error_is_logged_with_what_to_fix(fake, tenant):
    fake.set_faults(error_rate=1.0, errcodes=(60020,), paths=["message/send"])
    log = send(tenant, Message.text("x"), users=active_userids(fake, 1))
    assert log.status == MessageLog.Status.FAILED and log.errcode == 60020
    assert fake.deliveries == []


def test_rate_limited_delivery_resumes_without_resending(big_fake):
    tenant = make_tenant("rl")
    config_from_fake(tenant, big_fake)
    userids = active_userids(big_fake, 1001)
    big_fake.set_rate_limit(per_minute=1, block_seconds=60)
    outgoing = prepare(tenant, Message.text("限流"), users=userids)
    with pytest.raises(WeComRateLimited):
        deliver(outgoing.log, raise_rate_limited=True)
    log = MessageLog.objects.get(pk=outgoing.log.pk)
    assert log.status == MessageLog.Status.QUEUED and log.calls == 1 and log.errcode == 45009
    assert len(big_fake.deliveries) == 1000

    big_fake.advance_time(61)
    log = deliver(log.pk, raise_rate_limited=True)
    assert log.status == MessageLog.Status.SENT and log.calls == 2 and len(log.msgids) == 2
    assert sorted(d["userid"] for d in big_fake.deliveries) == sorted(userids)
    # A finished log is never sent again (e.g. a Celery message delivered twice).
    assert deliver(log.pk).status == MessageLog.Status.SENT
    assert big_fake.calls["message/send"] == 3  # 2 sent + 1 refused by the limit


def test_task_gives_up_after_its_retries_and_keeps_what_was_sent(big_fake, django_capture_on_commit_callbacks):
    tenant = make_tenant("task")
    config_from_fake(tenant, big_fake)
    big_fake.set_rate_limit(per_minute=1, block_seconds=3600)
    with django_capture_on_commit_callbacks(execute=True):
        log = send_async(tenant, Message.text("x"), users=active_userids(big_fake, 1001))
    log.refresh_from_db()
    assert log.status == MessageLog.Status.PARTIAL and log.calls == 1 and log.errcode == 45009
    assert len(big_fake.deliveries) == 1000
    assert big_fake.calls["message/send"] == 1 + 1 + send_message.max_retries


def test_send_async_queues_then_the_task_delivers(fake, tenant, django_capture_on_commit_callbacks):
    userid = active_userids(fake, 1)[0]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        log = send_async(tenant, Message.image(filename="a.png", content=PNG), users=[userid], source="job")
    assert log.status == MessageLog.Status.QUEUED and fake.calls["message/send"] == 0
    for callback in callbacks:
        callback()
    log.refresh_from_db()
    assert log.status == MessageLog.Status.SENT and log.source == "job"
    assert fake.deliveries_for(userid)[0]["msgtype"] == "image"


def test_task_name_and_queue():
    from django.conf import settings

    assert send_message.name == "wecom_integration.tasks.send_message"
    assert settings.CELERY_TASK_ROUTES[send_message.name] == {"queue": "bulk"}


# The inbox reply ------------------------------------------------------------------------------------


def test_reply_to_inbox_sends_and_joins_the_conversation(fake, tenant):
    userid = active_userids(fake, 1)[0]
    admin = make_user("helpdesk")
    log, message = reply_to_inbox(tenant, userid, "收到，马上处理", sender=admin)
    assert log.status == MessageLog.Status.SENT and log.source == "inbox" and log.sender == admin
    assert message.direction == InboxMessage.Direction.OUT and message.content == "收到，马上处理"
    assert InboxMessage.objects.filter(tenant=tenant, wecom_userid=userid).count() == 1
    assert fake.deliveries_for(userid)[0]["content"] == {"content": "收到，马上处理"}


def test_failed_reply_is_not_added_to_the_conversation(fake, tenant):
    log, message = reply_to_inbox(tenant, "ghost", "hello")
    assert log.status == MessageLog.Status.FAILED and message is None
    assert not InboxMessage.objects.exists()


# The app menu ----------------------------------------------------------------------------------------

MENU = {
    "button": [
        {"type": "click", "name": "今日待办", "key": "TODO"},
        {
            "name": "更多",
            "sub_button": [
                {"type": "view", "name": "帮助中心", "url": "https://example.com/help"},
                {"type": "scancode_push", "name": "扫一扫", "key": "SCAN"},
            ],
        },
    ]
}


def test_menu_push_and_read_back(fake, tenant):
    config = tenant.wecom_config
    assert menu_service.read_menu(config) == {"button": []}
    menu_service.push_menu(config, MENU)
    assert fake.menus[fake.agent_id] == MENU
    config.refresh_from_db()
    assert config.menu == MENU
    assert menu_service.read_menu(config) == MENU
    menu_service.delete_menu(config)
    assert menu_service.read_menu(config) == {"button": []}


@pytest.mark.parametrize(
    "menu",
    [
        [],
        {"button": []},
        {"button": [{"type": "click", "name": f"b{i}", "key": "k"} for i in range(4)]},
        {"button": [{"type": "click", "name": "一二三四五", "key": "k"}]},  # 15 bytes is fine, 5 chars = 15
        {"button": [{"type": "teleport", "name": "x", "key": "k"}]},
        {"button": [{"type": "view", "name": "x", "url": "ftp://e.com"}]},
        {"button": [{"type": "click", "name": "x"}]},
        {"button": [{"name": "g", "sub_button": [{"type": "click", "name": f"s{i}", "key": "k"} for i in range(6)]}]},
    ],
)
def test_invalid_menus_are_refused_before_pushing(fake, tenant, menu):
    if menu == {"button": [{"type": "click", "name": "一二三四五", "key": "k"}]}:
        # 5 Chinese characters are 15 UTF-8 bytes: within the 16-byte limit, so this one is valid.
        menu_service.validate_menu(menu)
        menu = {"button": [{"type": "click", "name": "一二三四五六", "key": "k"}]}
    with pytest.raises(ValidationError):
        menu_service.push_menu(tenant.wecom_config, menu)
    assert fake.calls["menu/create"] == 0


# The admin pages ---------------------------------------------------------------------------------------


@pytest.fixture
def admin_client_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def test_message_log_admin_is_read_only_and_scoped(fake, tenant, admin_client_for):
    other = make_tenant("other")
    send(tenant, Message.text("acme's secret"), users=active_userids(fake, 1))
    mine = MessageLog.objects.get()
    browser = admin_client_for(make_tenant_admin("other_admin", other))
    page = browser.get(reverse("admin:wecom_integration_messagelog_changelist"))
    assert page.status_code == 200 and "acme&#x27;s secret" not in page.content.decode()
    assert browser.get(reverse("admin:wecom_integration_messagelog_change", args=[mine.pk])).status_code == 403

    browser = admin_client_for(make_tenant_admin("acme_admin", tenant))
    page = browser.get(reverse("admin:wecom_integration_messagelog_changelist"))
    assert "acme&#x27;s secret" in page.content.decode()
    detail = browser.get(reverse("admin:wecom_integration_messagelog_change", args=[mine.pk]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert browser.get(reverse("admin:wecom_integration_messagelog_add")).status_code == 403


def test_send_test_message_page(fake, tenant, admin_client_for):
    userids = active_userids(fake, 2)
    names = bind(tenant, userids)
    url = reverse("admin:wecom_integration_messagelog_send_test", args=[tenant.wecom_config.pk])
    browser = admin_client_for(make_tenant_admin("acme_admin", tenant))
    assert browser.get(url).status_code == 200
    answer = browser.post(url, {"msgtype": "text", "content": "后台测试", "usernames": ", ".join(names.values())})
    assert answer.status_code == 200
    assert sorted(d["userid"] for d in fake.deliveries) == sorted(userids)
    log = MessageLog.objects.get()
    assert log.source == "admin" and log.sender.username == "acme_admin"
    assert log.msgids[0] in answer.content.decode()

    from django.core.files.uploadedfile import SimpleUploadedFile

    browser.post(url, {"msgtype": "image", "userids": userids[0], "attachment": SimpleUploadedFile("p.png", PNG)})
    assert fake.deliveries_for(userids[0])[-1]["msgtype"] == "image"
    # Nothing chosen: the form says so and nothing is sent.
    calls = fake.calls["message/send"]
    answer = browser.post(url, {"msgtype": "text", "content": "x"})
    assert answer.status_code == 200 and fake.calls["message/send"] == calls
    assert answer.context["form"].errors


def test_send_test_page_of_another_tenant_is_forbidden(fake, tenant, admin_client_for):
    other = make_tenant("other")
    browser = admin_client_for(make_tenant_admin("other_admin", other))
    url = reverse("admin:wecom_integration_messagelog_send_test", args=[tenant.wecom_config.pk])
    assert browser.post(url, {"msgtype": "text", "content": "x", "to_all": "on"}).status_code == 403
    assert fake.calls["message/send"] == 0


def test_menu_editor_pushes_and_reads_back(fake, tenant, admin_client_for):
    url = reverse("admin:wecom_integration_messagelog_menu", args=[tenant.wecom_config.pk])
    browser = admin_client_for(make_tenant_admin("acme_admin", tenant))
    assert browser.get(url).status_code == 200
    answer = browser.post(url, {"action": "push", "menu": json.dumps(MENU, ensure_ascii=False)})
    assert answer.status_code == 200 and fake.menus[fake.agent_id] == MENU
    assert answer.context["in_sync"] is True
    tenant.wecom_config.refresh_from_db()
    assert tenant.wecom_config.menu == MENU

    answer = browser.post(url, {"action": "push", "menu": "{not json"})
    assert answer.context["form"].errors and fake.calls["menu/create"] == 1

    fake.menus.clear()
    answer = browser.post(url, {"action": "read"})
    assert answer.context["remote"] == json.dumps({"button": []}, indent=2)
    assert answer.context["in_sync"] is False


def test_inbox_reply_page(fake, tenant, admin_client_for):
    userid = active_userids(fake, 1)[0]
    InboxMessage.objects.create(tenant=tenant, wecom_userid=userid, direction="in", msg_type="text", content="在吗")
    url = reverse("admin:wecom_integration_messagelog_inbox_reply", args=[tenant.pk, userid])
    browser = admin_client_for(make_tenant_admin("acme_admin", tenant))
    page = browser.get(url)
    assert page.status_code == 200 and "在吗" in page.content.decode()
    answer = browser.post(url, {"text": "在的"})
    assert answer.status_code == 302
    assert fake.deliveries_for(userid)[0]["content"] == {"content": "在的"}
    assert InboxMessage.objects.filter(direction="out", content="在的").exists()

    outsider = admin_client_for(make_tenant_admin("other_admin", make_tenant("other")))
    assert outsider.post(url, {"text": "hijack"}).status_code == 403
    assert len(fake.deliveries_for(userid)) == 1


# The message log API ----------------------------------------------------------------------------------


def test_message_log_api_is_for_the_tenants_admins_only(fake, tenant):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    other = make_tenant("other")
    make_config(other)
    userid = active_userids(fake, 1)[0]
    log = send(tenant, Message.text("日志"), users=[userid, "ghost"])
    MessageLog.objects.create(tenant=other, msgtype="text", content={"text": {"content": "other's"}})

    def get(user, path, tenant_id):
        token = Token.objects.get_or_create(user=user)[0].key
        return APIClient().get(path, HTTP_X_ACCESS_TOKEN=token, HTTP_X_TENANT_ID=str(tenant_id))

    admin = make_tenant_admin("acme_admin", tenant)
    answer = get(admin, "/api/messages/", tenant.pk)
    assert answer.status_code == 200
    (row,) = answer.json()["results"]
    assert row["id"] == log.pk and row["status"] == "partial" and row["invalid_users"] == ["ghost"]
    assert row["msgids"] == log.msgids and row["content"]["text"] == {"content": "日志"}
    assert get(admin, f"/api/messages/{log.pk}/", tenant.pk).json()["touser"] == f"{userid}|ghost"
    other_log = MessageLog.objects.get(tenant=other)
    assert get(admin, f"/api/messages/{other_log.pk}/", tenant.pk).status_code == 404
    assert get(admin, "/api/messages/", other.pk).status_code == 403

    member = make_user("plain")
    make_member(member, tenant)
    assert get(member, "/api/messages/", tenant.pk).status_code == 403


def test_unlicensed_members_are_reported_as_not_reached(fake, tenant):
    licensed, unlicensed = active_userids(fake, 2)
    fake.unlicensed.add(unlicensed)
    log = send(tenant, Message.text("x"), users=[licensed, unlicensed])
    assert log.status == MessageLog.Status.PARTIAL and log.invalid_users == [unlicensed]
    assert [d["userid"] for d in fake.deliveries] == [licensed]
