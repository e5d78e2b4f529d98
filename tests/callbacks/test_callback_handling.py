"""What stored callbacks do: the contact mirror, customers (against the fake WeCom), the inbox,
signals, two-step verification, failures and retries, and the admin screens."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import TestCase
from django.urls import reverse

from tenants.models import Membership
from tests.callbacks.test_callbacks import deliver, sender_for
from tests.factories import config_from_fake, make_config, make_member, make_tenant, make_tenant_admin, make_user
from wecom_integration import signals
from wecom_integration.callbacks import handling
from wecom_integration.callbacks import services as callbacks
from wecom_integration.events import ContactUserEvent, ExternalContactEvent, SubscribeEvent, TextMessage
from wecom_integration.login import twostep
from wecom_integration.models import (
    AuditLog,
    Binding,
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

T0 = 1_700_000_000


@pytest.fixture
def config():
    return make_config(make_tenant("acme"))


def contact(client, config, change_type, user, when=T0):
    answer = deliver(
        client, config, "contacts", build_contact_user_xml(config.corp_id, change_type, user, when)
    )
    assert answer.status_code == 200
    return CallbackEvent.objects.latest("id")


def party(client, config, change_type, dept, when=T0):
    answer = deliver(
        client, config, "contacts", build_contact_party_xml(config.corp_id, change_type, dept, when)
    )
    assert answer.status_code == 200
    return CallbackEvent.objects.latest("id")


def mirror(config, userid):
    return WeComUser.objects.get(tenant=config.tenant, userid=userid)


def bound_member(config, wecom_user, username="zs"):
    user = make_user(username)
    membership = make_member(user, config.tenant)
    binding = Binding.objects.create(tenant=config.tenant, user=user, wecom_user=wecom_user)
    return user, membership, binding


# The contact mirror ------------------------------------------------------------------------------------


def test_create_user_fills_the_mirror(client, config):
    event = contact(
        client,
        config,
        "create_user",
        {
            "userid": "zhangsan",
            "name": "张三",
            "department": [1, 2],
            "main_department": 1,
            "is_leader_in_dept": [1, 0],
            "position": "产品经理",
            "mobile": "13800000000",
            "gender": "1",
            "email": "zs@example.com",
            "status": 1,
        },
    )
    assert event.status == CallbackEvent.Status.HANDLED
    user = mirror(config, "zhangsan")
    assert (user.name, user.departments, user.main_department, user.is_leader_in_dept) == (
        "张三",
        [1, 2],
        1,
        [1, 0],
    )
    assert (user.position, user.mobile, user.gender, user.email, user.status) == (
        "产品经理",
        "13800000000",
        "1",
        "zs@example.com",
        1,
    )
    assert user.last_event_time == T0
    assert len(user.fingerprint) == 40


def test_update_user_touches_only_the_fields_it_carries(client, config):
    contact(client, config, "create_user", {"userid": "li", "name": "Li", "position": "Dev", "mobile": "139"})
    before = mirror(config, "li").fingerprint
    contact(client, config, "update_user", {"userid": "li", "name": "Li Si"}, T0 + 5)
    user = mirror(config, "li")
    assert (user.name, user.position, user.mobile) == ("Li Si", "Dev", "139")
    assert user.fingerprint != before


def test_rename_keeps_the_row_so_bindings_follow(client, config):
    contact(client, config, "create_user", {"userid": "zhang", "name": "Zhang"})
    row = mirror(config, "zhang")
    system_user, _, binding = bound_member(config, row)
    contact(
        client,
        config,
        "update_user",
        {"userid": "zhang", "new_userid": "zhang3", "name": "Zhang San"},
        T0 + 1,
    )
    renamed = mirror(config, "zhang3")
    assert renamed.pk == row.pk
    assert renamed.name == "Zhang San"
    assert not WeComUser.objects.filter(tenant=config.tenant, userid="zhang").exists()
    binding.refresh_from_db()
    assert (binding.wecom_user_id, binding.user_id, binding.is_active) == (row.pk, system_user.pk, True)


def test_rename_onto_a_row_a_sync_already_made_moves_the_binding(client, config):
    contact(client, config, "create_user", {"userid": "old", "name": "Old"})
    old = mirror(config, "old")
    _, _, binding = bound_member(config, old)
    WeComUser.objects.create(tenant=config.tenant, userid="new", name="New")
    contact(client, config, "update_user", {"userid": "old", "new_userid": "new", "position": "PM"}, T0 + 1)
    binding.refresh_from_db()
    new = mirror(config, "new")
    assert (binding.wecom_user_id, binding.is_active) == (new.pk, True)
    assert new.position == "PM"
    assert mirror(config, "old").removed


def test_delete_user_marks_removed_and_deactivates_binding_and_membership(client, config):
    contact(client, config, "create_user", {"userid": "wang", "name": "Wang"})
    system_user, membership, binding = bound_member(config, mirror(config, "wang"))
    contact(client, config, "delete_user", {"userid": "wang"}, T0 + 10)
    user = mirror(config, "wang")
    assert user.removed
    binding.refresh_from_db()
    membership.refresh_from_db()
    assert binding.is_active is False
    assert membership.status == Membership.Status.INACTIVE
    # The system user is never deleted, nor switched off: they may belong to other tenants.
    assert get_user_model().objects.get(pk=system_user.pk).is_active
    audit = AuditLog.objects.get(tenant=config.tenant)
    assert (audit.action, audit.target_user_id, audit.wecom_userid) == ("deactivate", system_user.pk, "wang")


def test_quit_status_deactivates_binding_and_membership(client, config):
    contact(client, config, "create_user", {"userid": "zhao", "name": "Zhao"})
    system_user, membership, binding = bound_member(config, mirror(config, "zhao"))
    contact(client, config, "update_user", {"userid": "zhao", "status": 5}, T0 + 1)
    user = mirror(config, "zhao")
    assert (user.status, user.removed) == (WeComUser.Status.QUIT, False)
    binding.refresh_from_db()
    membership.refresh_from_db()
    assert (binding.is_active, membership.status) == (False, Membership.Status.INACTIVE)
    assert get_user_model().objects.filter(pk=system_user.pk).exists()


def test_membership_kept_when_the_setting_is_off(client, settings, config):
    settings.WECOM = {"DEACTIVATE_MEMBERSHIP_ON_LEAVE": False}
    contact(client, config, "create_user", {"userid": "qian", "name": "Qian"})
    _, membership, binding = bound_member(config, mirror(config, "qian"))
    contact(client, config, "delete_user", {"userid": "qian"}, T0 + 1)
    binding.refresh_from_db()
    membership.refresh_from_db()
    assert (binding.is_active, membership.status) == (False, Membership.Status.ACTIVE)


def test_update_older_than_the_delete_is_ignored(client, config):
    contact(client, config, "create_user", {"userid": "sun", "name": "Sun"}, T0)
    contact(client, config, "delete_user", {"userid": "sun"}, T0 + 100)
    late = contact(client, config, "update_user", {"userid": "sun", "name": "Sun Late"}, T0 + 50)
    assert late.status == CallbackEvent.Status.HANDLED
    user = mirror(config, "sun")
    assert (user.removed, user.name, user.last_event_time) == (True, "Sun", T0 + 100)


def test_older_update_does_not_overwrite_a_newer_one(client, config):
    contact(client, config, "create_user", {"userid": "zhou", "name": "Zhou"}, T0)
    contact(client, config, "update_user", {"userid": "zhou", "position": "Lead"}, T0 + 20)
    contact(client, config, "update_user", {"userid": "zhou", "position": "Intern"}, T0 + 10)
    assert mirror(config, "zhou").position == "Lead"


def test_create_handled_after_its_update_still_brings_every_field(client, config):
    # A redelivered task can run a create_user after the update_user that followed it.
    contact(client, config, "update_user", {"userid": "qin", "position": "Lead"}, T0 + 5)
    contact(
        client, config, "create_user",
        {"userid": "qin", "name": "Qin", "department": [3], "main_department": 3, "position": "Intern"}, T0,
    )
    user = mirror(config, "qin")
    assert (user.name, user.departments, user.main_department, user.position) == ("Qin", [3], 3, "Lead")


def test_delete_before_create_keeps_the_user_removed(client, config):
    contact(client, config, "delete_user", {"userid": "wu"}, T0 + 10)
    contact(client, config, "create_user", {"userid": "wu", "name": "Wu"}, T0)
    assert mirror(config, "wu").removed
    # A userid used again later is a new member.
    contact(client, config, "create_user", {"userid": "wu", "name": "Wu Again"}, T0 + 20)
    user = mirror(config, "wu")
    assert (user.removed, user.name) == (False, "Wu Again")


def test_party_create_update_delete(client, config):
    party(client, config, "create_party", {"id": 5, "name": "Sales", "parentid": 1, "order": 10})
    dept = Department.objects.get(tenant=config.tenant, dept_id=5)
    assert (dept.name, dept.parent_id, dept.order, dept.removed) == ("Sales", 1, 10, False)
    party(client, config, "update_party", {"id": 5, "name": "Sales East"}, T0 + 1)
    party(client, config, "update_party", {"id": 5, "parentid": 3}, T0 + 2)
    dept.refresh_from_db()
    assert (dept.name, dept.parent_id, dept.order) == ("Sales East", 3, 10)
    party(client, config, "delete_party", {"id": 5}, T0 + 3)
    dept.refresh_from_db()
    assert dept.removed
    party(client, config, "update_party", {"id": 5, "name": "Ghost"}, T0 + 4)
    dept.refresh_from_db()
    assert (dept.removed, dept.name) == (True, "Sales East")


def test_update_tag_is_stored_and_handled(client, config):
    xml = build_contact_user_xml(config.corp_id, "update_tag", {"TagId": 3, "AddUserItems": "a,b"}, T0)
    assert deliver(client, config, "contacts", xml).status_code == 200
    event = CallbackEvent.objects.get()
    assert (event.change_type, event.subject, event.status) == (
        "update_tag",
        "3",
        CallbackEvent.Status.HANDLED,
    )


def test_tenants_mirrors_are_separate(client, config):
    other = make_config(make_tenant("other"))
    contact(client, config, "create_user", {"userid": "same", "name": "In A"})
    contact(client, other, "create_user", {"userid": "same", "name": "In B"})
    assert mirror(config, "same").name == "In A"
    assert mirror(other, "same").name == "In B"


# Signals -----------------------------------------------------------------------------------------------


@pytest.fixture
def received():
    """Every signal sent, with its arguments and the event's status as committed when it was sent."""
    calls = []

    def listen(signal_name):
        def receiver(sender, **kwargs):
            stored = CallbackEvent.objects.get(pk=kwargs["callback_event"].pk)
            calls.append((signal_name, sender, kwargs, stored.status))

        return receiver

    receivers = {
        name: listen(name)
        for name in ("message_received", "app_event_received", "contact_changed", "customer_changed")
    }
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    yield calls
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def test_contact_changed_is_sent_after_the_commit(client, config, received):
    event = contact(client, config, "create_user", {"userid": "he", "name": "He"})
    [(name, sender, kwargs, status)] = received
    assert (name, sender, status) == ("contact_changed", ContactUserEvent, CallbackEvent.Status.HANDLED)
    assert kwargs["tenant_id"] == config.tenant_id
    assert kwargs["change_type"] == "create_user"
    assert kwargs["callback_event"].pk == event.pk
    assert isinstance(kwargs["event"], ContactUserEvent) and kwargs["event"].user_id == "he"
    assert kwargs["wecom_user"] == mirror(config, "he")
    assert kwargs["department"] is None


def test_no_signal_for_an_ignored_stale_event(client, config, received):
    contact(client, config, "create_user", {"userid": "lu", "name": "Lu"}, T0 + 10)
    contact(client, config, "update_user", {"userid": "lu", "name": "Old"}, T0)
    assert [call[2]["change_type"] for call in received] == ["create_user"]


def test_message_received_with_inbox_message_and_reply(client, config, received):
    config.auto_reply = "ok"
    config.save()
    deliver(client, config, "app", build_message_xml(config.corp_id, "ma", config.agent_id, content="hi"))
    [(name, sender, kwargs, status)] = received
    assert (name, sender, status) == ("message_received", TextMessage, CallbackEvent.Status.HANDLED)
    assert kwargs["message"] == InboxMessage.objects.get(direction="in")
    assert kwargs["reply"] == {"type": "text", "content": "ok"}
    assert kwargs["event"].content == "hi"


def test_a_failing_receiver_does_not_undo_the_handling(client, config, received):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.contact_changed.connect(broken)
    try:
        event = contact(client, config, "create_user", {"userid": "lin", "name": "Lin"})
    finally:
        signals.contact_changed.disconnect(broken)
    event.refresh_from_db()
    assert event.status == CallbackEvent.Status.HANDLED
    assert len(received) == 1


# Two-step verification ----------------------------------------------------------------------------------


def test_follow_events_are_stored_and_two_step_confirms_with_wecom(client, settings, fake_wecom, received):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    config = config_from_fake(make_tenant("two"), fake_wecom, two_step_verification=True)
    userid = next(iter(fake_wecom.org.users))
    xml = build_event_xml(config.corp_id, userid, config.agent_id, "subscribe", create_time=int(time.time()))
    assert deliver(client, config, "app", xml).content == b"success"
    assert twostep.is_following(config.tenant_id, userid)
    assert twostep.last_follow_event(config.tenant_id, userid).event == "subscribe"
    assert received[0][:2] == ("app_event_received", SubscribeEvent)
    info = twostep.exchange_page_code(config, fake_wecom.issue_tfa_code(userid))
    twostep.confirm(config, userid, info["tfa_code"])
    assert userid in fake_wecom.authsucc_users


# Customers, with externalcontact/get served by the fake ---------------------------------------------------


@pytest.fixture
def fake_config(settings, fake_wecom):
    settings.WECOM = {
        "API_BASE": fake_wecom.api_base,
        "BUSY_RETRIES": 0,
        "BUSY_BACKOFF": 0,
        "HANDLER_MAX_RETRIES": 2,
        "HANDLER_RETRY_BACKOFF": 0,
    }
    return config_from_fake(make_tenant("cust"), fake_wecom)


def members(fake, n):
    return list(fake.org.users)[:n]


def customer_event(client, config, change_type, userid, external_userid, when=None, **kwargs):
    when = int(time.time()) if when is None else when
    xml = build_external_contact_xml(
        config.corp_id, change_type, userid, external_userid, create_time=when, **kwargs
    )
    answer = deliver(client, config, "customers", xml)
    assert answer.status_code == 200
    return CallbackEvent.objects.latest("id")


def test_add_and_edit_external_contact(client, fake_wecom, fake_config, received):
    [member] = members(fake_wecom, 1)
    external_userid, _ = fake_wecom.add_external_contact(member, "客户甲", state="poster-1")
    event = customer_event(
        client, fake_config, "add_external_contact", member, external_userid, state="poster-1"
    )
    assert event.status == CallbackEvent.Status.HANDLED
    customer = ExternalContact.objects.get(tenant=fake_config.tenant, external_userid=external_userid)
    assert (customer.name, customer.type, customer.removed) == ("客户甲", 1, False)
    follow = customer.follow_users.get()
    assert (follow.userid, follow.state, follow.removed) == (member, "poster-1", False)
    assert follow.add_time > 0

    remote = fake_wecom.org.external_contacts[external_userid]
    remote.name = "客户甲（改）"
    remote.followers[0].remark = "VIP"
    customer_event(client, fake_config, "edit_external_contact", member, external_userid)
    customer.refresh_from_db()
    assert customer.name == "客户甲（改）"
    assert customer.follow_users.get().remark == "VIP"
    assert [(call[0], call[1], call[2]["change_type"]) for call in received] == [
        ("customer_changed", ExternalContactEvent, "add_external_contact"),
        ("customer_changed", ExternalContactEvent, "edit_external_contact"),
    ]
    assert received[-1][2]["external_contact"] == customer


def test_deletes_are_recorded_not_lost(client, fake_wecom, fake_config):
    first, second = members(fake_wecom, 2)
    external_userid, _ = fake_wecom.add_external_contact(first, "客户乙")
    fake_wecom.add_external_contact(second, "客户乙", external_userid=external_userid)
    customer_event(client, fake_config, "add_external_contact", first, external_userid)
    customer = ExternalContact.objects.get(external_userid=external_userid)
    assert set(customer.follow_users.values_list("userid", flat=True)) == {first, second}

    # The customer deleted the second member: that relation ends, the customer stays.
    now = int(time.time()) + 5
    customer_event(client, fake_config, "del_follow_user", second, external_userid, when=now)
    customer.refresh_from_db()
    gone = customer.follow_users.get(userid=second)
    assert gone.removed and gone.removed_at.timestamp() == now
    assert not customer.removed

    # The first member deleted the customer: nobody follows it any more, so it is marked removed.
    customer_event(client, fake_config, "del_external_contact", first, external_userid, when=now + 1)
    customer.refresh_from_db()
    assert customer.removed and customer.removed_at.timestamp() == now + 1
    assert FollowUser.objects.filter(contact=customer, removed=True).count() == 2


def test_delete_of_an_unseen_customer_is_still_recorded(client, fake_config):
    customer_event(client, fake_config, "del_external_contact", "someone", "wmUNSEEN", when=T0)
    customer = ExternalContact.objects.get(external_userid="wmUNSEEN")
    assert customer.removed
    assert customer.follow_users.get().userid == "someone"


def test_failed_handling_is_stored_retried_and_recoverable(client, fake_wecom, fake_config):
    [member] = members(fake_wecom, 1)
    external_userid, _ = fake_wecom.add_external_contact(member, "客户丙")
    fake_wecom.set_faults(error_rate=1.0, errcodes=(-1,), paths=["externalcontact/get"])
    event = customer_event(client, fake_config, "add_external_contact", member, external_userid)
    # Celery (eager here) retried it HANDLER_MAX_RETRIES times, then left it failed with the error.
    assert event.status == CallbackEvent.Status.FAILED
    assert event.attempts == 3
    assert "-1" in event.error and "externalcontact/get" in event.error
    assert fake_config.customer_secret not in event.error
    assert not ExternalContact.objects.filter(external_userid=external_userid).exists()

    fake_wecom.clear_faults()
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert callbacks.retry_event(event.pk) is True
    event.refresh_from_db()
    assert (event.status, event.error, event.attempts) == (CallbackEvent.Status.HANDLED, "", 4)
    assert ExternalContact.objects.get(external_userid=external_userid).name == "客户丙"
    # Handled events are left alone.
    assert callbacks.retry_event(event.pk) is False


def test_a_config_error_is_not_retried(client, fake_wecom, fake_config):
    [member] = members(fake_wecom, 1)
    external_userid, _ = fake_wecom.add_external_contact(member, "客户丁")
    fake_config.customer_secret = "wrong-secret"
    fake_config.save()
    event = customer_event(client, fake_config, "add_external_contact", member, external_userid)
    assert (event.status, event.attempts) == (CallbackEvent.Status.FAILED, 1)
    assert "40001" in event.error


def test_customer_over_real_http_from_the_fake(live_server, transactional_db, fake_wecom, fake_config):
    token, aes_key = fake_config.callback_credentials("customers")
    url = live_server.url + reverse(
        "wecom_integration:callback-customers", kwargs={"tenant_id": fake_config.tenant_id}
    )
    fake_wecom.register_callback(url, token, aes_key, kind="customers", verify=True)
    [member] = members(fake_wecom, 1)
    external_userid, [delivery] = fake_wecom.add_external_contact(member, "客户戊")
    assert (delivery.status, delivery.body) == (200, "success")
    customer = ExternalContact.objects.get(external_userid=external_userid)
    assert customer.name == "客户戊"
    assert customer.follow_users.get().userid == member


# Handling is idempotent ------------------------------------------------------------------------------------


def test_handling_twice_is_a_no_op(client, config):
    event = contact(client, config, "create_user", {"userid": "x1", "name": "X"})
    assert handling.handle_event(event.pk) == handling.ALREADY_HANDLED
    event.refresh_from_db()
    assert event.attempts == 1
    assert handling.handle_event(10**9) == handling.MISSING


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs row locks (SELECT … FOR UPDATE)")
def test_two_workers_never_both_handle_one_event(transactional_db, config):
    xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": "race", "name": "Race"}, T0)
    # Stored directly: store_event would queue it, and eager Celery would handle it right away.
    row = CallbackEvent.objects.create(tenant=config.tenant, kind="contacts", dedupe_key="race", xml=xml)
    ready = threading.Barrier(4)

    def worker(_):
        ready.wait(timeout=10)
        try:
            return handling.handle_event(row.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(worker, range(4)))
    assert outcomes.count(handling.HANDLED) == 1
    assert set(outcomes) <= {handling.HANDLED, handling.BUSY, handling.ALREADY_HANDLED}
    row.refresh_from_db()
    assert (row.status, row.attempts) == (CallbackEvent.Status.HANDLED, 1)
    assert WeComUser.objects.filter(userid="race").count() == 1


def test_a_lost_enqueue_is_healed_by_wecoms_retry(client, config, monkeypatch):
    from wecom_integration.callbacks import tasks

    xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": "lost", "name": "Lost"}, T0)
    params, body = sender_for(config, "contacts").envelope(xml)
    url = reverse("wecom_integration:callback-contacts", kwargs={"tenant_id": config.tenant_id})

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.handle_callback_event, "delay", broker_down)
        with TestCase.captureOnCommitCallbacks(execute=True):
            answer = client.post(url + "?" + _query(params), data=body, content_type="text/xml")
    # Stored, so WeCom is told so; the event waits.
    assert answer.status_code == 200
    assert CallbackEvent.objects.get().status == CallbackEvent.Status.RECEIVED
    with TestCase.captureOnCommitCallbacks(execute=True):
        client.post(url + "?" + _query(params), data=body, content_type="text/xml")
    assert CallbackEvent.objects.get().status == CallbackEvent.Status.HANDLED
    assert mirror(config, "lost").name == "Lost"


def test_requeue_stale_events(config):
    from wecom_integration.events import parse_event

    xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": "late", "name": "Late"}, T0)
    row, created = callbacks.store_event(config.tenant_id, "contacts", parse_event(xml))
    assert created
    CallbackEvent.objects.filter(pk=row.pk).update(received_at=row.received_at.replace(year=2020))
    assert callbacks.requeue_stale_events(older_than=60) == 1
    row.refresh_from_db()
    assert row.status == CallbackEvent.Status.HANDLED


def _query(params):
    from urllib.parse import urlencode

    return urlencode(params)


# Admin ----------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, config):
    client.force_login(make_tenant_admin("boss", config.tenant))
    return client


def test_event_log_lists_and_shows_the_decrypted_xml(admin_client, config):
    contact(admin_client, config, "create_user", {"userid": "show_me", "name": "Show <Me>"})
    event = CallbackEvent.objects.get()
    page = admin_client.get(reverse("admin:wecom_integration_callbackevent_changelist"))
    assert page.status_code == 200
    assert "show_me" in page.content.decode()
    detail = admin_client.get(reverse("admin:wecom_integration_callbackevent_change", args=[event.pk]))
    html = detail.content.decode()
    assert detail.status_code == 200
    assert "&lt;UserID&gt;" in html and "Show &lt;Me&gt;" in html
    assert 'name="_save"' not in html  # read-only


def test_retry_action_with_counted_feedback(admin_client, fake_wecom, fake_config):
    config = fake_config
    member = members(fake_wecom, 1)[0]
    external_userid, _ = fake_wecom.add_external_contact(member, "客户己")
    fake_wecom.set_faults(error_rate=1.0, errcodes=(-1,), paths=["externalcontact/get"])
    failed = customer_event(admin_client, config, "add_external_contact", member, external_userid)
    handled = contact(admin_client, config, "create_user", {"userid": "fine", "name": "Fine"})
    assert failed.status == CallbackEvent.Status.FAILED
    admin_client.force_login(make_tenant_admin("boss2", config.tenant))
    fake_wecom.clear_faults()
    with TestCase.captureOnCommitCallbacks(execute=True):
        answer = admin_client.post(
            reverse("admin:wecom_integration_callbackevent_changelist"),
            {"action": "retry_selected", "_selected_action": [failed.pk, handled.pk]},
            follow=True,
            HTTP_ACCEPT_LANGUAGE="en",
        )
    texts = [str(message) for message in answer.context["messages"]]
    assert "1 event was queued to be handled again." in texts
    assert "1 event was already handled and was left alone." in texts
    # The same feedback is translated for the default language.
    with TestCase.captureOnCommitCallbacks(execute=True):
        answer = admin_client.post(
            reverse("admin:wecom_integration_callbackevent_changelist"),
            {"action": "retry_selected", "_selected_action": [handled.pk]},
            follow=True,
            HTTP_ACCEPT_LANGUAGE="zh-hans",
        )
    [text] = [str(message) for message in answer.context["messages"]]
    assert "1" in text and "already handled" not in text
    failed.refresh_from_db()
    assert failed.status == CallbackEvent.Status.HANDLED


def test_retry_button_on_the_event_page(admin_client, config):
    from wecom_integration.events import parse_event

    xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": "btn", "name": "Btn"}, T0)
    row, _ = callbacks.store_event(config.tenant_id, "contacts", parse_event(xml))
    CallbackEvent.objects.filter(pk=row.pk).update(status=CallbackEvent.Status.FAILED, error="boom")
    page = admin_client.get(reverse("admin:wecom_integration_callbackevent_change", args=[row.pk]))
    retry_url = reverse("admin:wecom_integration_callbackevent_retry", args=[row.pk])
    assert retry_url in page.content.decode()
    assert admin_client.get(retry_url).status_code == 405
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert admin_client.post(retry_url).status_code == 302
    row.refresh_from_db()
    assert row.status == CallbackEvent.Status.HANDLED


def test_other_tenants_event_and_retry_are_out_of_reach(client, config):
    other = make_config(make_tenant("other"))
    contact(client, other, "create_user", {"userid": "secret_user", "name": "S"})
    theirs = CallbackEvent.objects.get(tenant=other.tenant)
    client.force_login(make_tenant_admin("boss", config.tenant))
    assert (
        "secret_user"
        not in client.get(reverse("admin:wecom_integration_callbackevent_changelist")).content.decode()
    )
    retry_url = reverse("admin:wecom_integration_callbackevent_retry", args=[theirs.pk])
    assert client.post(retry_url).status_code in (403, 404)
    conversation = reverse("admin:wecom_integration_inboxmessage_conversation", args=[other.tenant_id, "x"])
    assert client.get(conversation).status_code == 403


def test_inbox_conversations_are_readable(admin_client, config):
    config.auto_reply = "稍等"
    config.save()
    for text in ("你好", "在吗"):
        deliver(
            admin_client,
            config,
            "app",
            build_message_xml(config.corp_id, "chen", config.agent_id, content=text),
        )
    deliver(
        admin_client, config, "app", build_message_xml(config.corp_id, "yang", config.agent_id, content="hey")
    )
    WeComUser.objects.create(tenant=config.tenant, userid="chen", name="陈六")

    listing = admin_client.get(reverse("admin:wecom_integration_inboxmessage_conversations"))
    html = listing.content.decode()
    assert listing.status_code == 200
    assert "陈六 (chen)" in html and "yang" in html

    url = reverse("admin:wecom_integration_inboxmessage_conversation", args=[config.tenant_id, "chen"])
    thread = admin_client.get(url)
    html = thread.content.decode()
    assert thread.status_code == 200
    assert html.index("你好") < html.index("在吗")
    reply = reverse("admin:wecom_integration_messagelog_inbox_reply", args=[config.tenant_id, "chen"])
    assert reply in html
    assert html.count("稍等") == 2
    assert not InboxMessage.objects.filter(wecom_userid="chen", direction="in", read=False).exists()
    assert InboxMessage.objects.filter(wecom_userid="yang", direction="in", read=False).count() == 1


def test_external_contact_admin_shows_follow_users(admin_client, config):
    customer = ExternalContact.objects.create(tenant=config.tenant, external_userid="wm1", name="客户")
    FollowUser.objects.create(contact=customer, userid="member_1", remark="老客户")
    page = admin_client.get(reverse("admin:wecom_integration_externalcontact_change", args=[customer.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "member_1" in html and "老客户" in html
