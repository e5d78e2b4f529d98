"""#22 item 7: every handled callback reaches host code through ``event_handled``, whatever its type, and
an admin can dispatch a stored event again without changing the mirror or duplicating side effects."""

import time

import pytest
from django.urls import reverse

from tests.callbacks.test_callbacks import deliver
from tests.factories import config_from_fake, make_tenant, make_tenant_admin
from wecom_integration import signals
from wecom_integration.callbacks import handling
from wecom_integration.events import UnknownEvent
from wecom_integration.models import (
    CallbackEvent,
    Department,
    ExternalContact,
    FollowUser,
    InboxMessage,
    WeComUser,
)
from wecom_integration.testing.callbacks import (
    build_contact_party_xml,
    build_contact_user_xml,
    build_event_xml,
    build_external_contact_xml,
    build_message_xml,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def config(settings, fake_wecom):
    settings.WECOM = {"API_BASE": fake_wecom.api_base, "BUSY_RETRIES": 0, "BUSY_BACKOFF": 0}
    return config_from_fake(make_tenant("acme"), fake_wecom, auto_reply="收到")


@pytest.fixture
def handled():
    seen = []

    def receiver(sender, **kwargs):
        seen.append((sender, kwargs))

    signals.event_handled.connect(receiver)
    yield seen
    signals.event_handled.disconnect(receiver)


def _every_kind(config, fake):
    """(callback URL kind, XML) for one event of each kind the product meets."""
    corp, agent = config.corp_id, config.agent_id
    now = int(time.time())
    member = next(iter(fake.org.users))
    external_userid, _ = fake.add_external_contact(member, "客户甲")
    return [
        ("app", build_message_xml(corp, member, agent, content="你好", msg_id=9001, create_time=now)),
        ("app", build_event_xml(corp, member, agent, "subscribe", create_time=now)),
        ("app", build_event_xml(corp, member, agent, "click", event_key="menu-1", create_time=now)),
        (
            "app",
            build_event_xml(
                corp,
                member,
                agent,
                "sys_approval_change",
                create_time=now,
                ApprovalInfo={"SpNo": "202612030001", "SpStatus": "2", "TemplateId": "tpl-1"},
            ),
        ),
        (
            "app",
            build_event_xml(
                corp, member, agent, "template_card_event", event_key="btn-ok", create_time=now, TaskId="task-1"
            ),
        ),
        ("app", build_event_xml(corp, member, agent, "some_future_event", create_time=now, Anything="x")),
        (
            "contacts",
            build_contact_user_xml(corp, "create_user", {"userid": "newbie", "name": "新人", "department": [1]}, now),
        ),
        ("contacts", build_contact_party_xml(corp, "create_party", {"id": 77, "name": "新部门", "parentid": 1}, now)),
        (
            "customers",
            build_external_contact_xml(corp, "add_external_contact", member, external_userid, create_time=now),
        ),
        (
            "app",
            build_event_xml(corp, "sys", agent, "kf_msg_or_event", create_time=now, Token="kf-token", OpenKfId="wk1"),
        ),
    ]


def _snapshot(tenant):
    return {
        "users": list(WeComUser.objects.filter(tenant=tenant).order_by("userid").values()),
        "departments": list(Department.objects.filter(tenant=tenant).order_by("dept_id").values()),
        "customers": list(ExternalContact.objects.filter(tenant=tenant).order_by("pk").values()),
        "follows": list(FollowUser.objects.filter(contact__tenant=tenant).order_by("pk").values()),
        "inbox": list(InboxMessage.objects.filter(tenant=tenant).order_by("pk").values()),
    }


def _strip_times(snapshot):
    return {
        name: [{k: v for k, v in row.items() if k != "updated_at"} for row in rows] for name, rows in snapshot.items()
    }


def test_every_handled_event_reaches_event_handled_with_its_type_tenant_and_kind(client, config, fake_wecom, handled):
    events = _every_kind(config, fake_wecom)
    for kind, xml in events:
        assert deliver(client, config, kind, xml).status_code == 200

    assert len(handled) == len(events) == CallbackEvent.objects.filter(status="handled").count()
    kinds = [(kwargs["kind"], kwargs["event"].kind) for _, kwargs in handled]
    assert kinds[0] == ("app", "message")
    assert ("contacts", "contact") in kinds and ("customers", "customer") in kinds
    for sender, kwargs in handled:
        assert sender is type(kwargs["event"])
        assert kwargs["tenant_id"] == config.tenant_id
        assert kwargs["callback_event"].kind == kwargs["kind"]
        assert kwargs["replay"] is False
    # Approval, template card, customer service and a type nobody knows all reach host code, typed.
    names = {kwargs["event"].event for _, kwargs in handled}
    assert {"sys_approval_change", "template_card_event", "kf_msg_or_event", "some_future_event"} <= names
    future = next(kwargs["event"] for _, kwargs in handled if kwargs["event"].event == "some_future_event")
    assert isinstance(future, UnknownEvent) and future.fields["Anything"] == "x"


def test_the_specific_signals_stay(client, config, fake_wecom, handled):
    specific = []

    def receiver(sender, **kwargs):
        specific.append(kwargs)

    signals.contact_changed.connect(receiver)
    try:
        xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": "u1", "name": "一"}, int(time.time()))
        deliver(client, config, "contacts", xml)
    finally:
        signals.contact_changed.disconnect(receiver)
    assert len(specific) == 1 and specific[0]["change_type"] == "create_user"
    assert len(handled) == 1


def test_replaying_every_kind_leaves_the_mirror_unchanged_and_duplicates_nothing(
    client, config, fake_wecom, handled, django_capture_on_commit_callbacks
):
    for kind, xml in _every_kind(config, fake_wecom):
        deliver(client, config, kind, xml)
    before = _snapshot(config.tenant)
    sent_before = len(fake_wecom.sent_messages)
    assert len(before["inbox"]) == 2  # the message and its auto-reply
    handled.clear()

    with django_capture_on_commit_callbacks(execute=True):
        dispatched, failed = handling.redispatch_events(CallbackEvent.objects.filter(tenant=config.tenant))

    assert failed == 0
    assert dispatched == CallbackEvent.objects.filter(tenant=config.tenant).count()
    after = _snapshot(config.tenant)
    assert _strip_times(after) == _strip_times(before)
    assert len(fake_wecom.sent_messages) == sent_before  # no auto-reply sent again
    assert len(handled) == dispatched and all(kwargs["replay"] for _, kwargs in handled)
    assert set(CallbackEvent.objects.values_list("status", flat=True)) == {"handled"}


def test_admin_action_dispatches_again_with_counted_feedback(
    client, config, fake_wecom, handled, django_capture_on_commit_callbacks
):
    tenant = config.tenant
    for kind, xml in _every_kind(config, fake_wecom)[:3]:
        deliver(client, config, kind, xml)
    handled.clear()
    admin = make_tenant_admin("boss", tenant)
    client.force_login(admin)
    ids = list(CallbackEvent.objects.filter(tenant=tenant).values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:wecom_integration_callbackevent_changelist"),
            {"action": "dispatch_again", "_selected_action": ids},
            follow=True,
            headers={"accept-language": "en"},
        )
    assert response.status_code == 200
    assert "3 events were dispatched again." in response.content.decode()
    assert len(handled) == 3
    assert InboxMessage.objects.filter(tenant=tenant).count() == 2

    response = client.post(
        reverse("admin:wecom_integration_callbackevent_changelist"),
        {"action": "dispatch_again", "_selected_action": ids[:1]},
        follow=True,
        headers={"accept-language": "zh-hans"},
    )
    assert "1 个事件已重新分发" in response.content.decode()
