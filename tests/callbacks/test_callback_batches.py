"""A worker's batch of callbacks handled at once (registry.handles_many: contact changes, inbox messages)
leaves what the same events leave handled one by one, in order: the same mirror, inbox and signals,
each signal carrying the member as its own event left it, and a failing event still fails alone."""

import pytest
from django.contrib.auth import get_user_model

from tests.factories import make_config, make_tenant
from wecom_integration import signals
from wecom_integration.callbacks import handling
from wecom_integration.callbacks import services as callbacks
from wecom_integration.directory import services as directory_services
from wecom_integration.events import parse_event
from wecom_integration.models import AuditLog, Binding, CallbackEvent, Department, InboxMessage, WeComUser
from wecom_integration.testing.callbacks import (
    build_contact_party_xml,
    build_contact_user_xml,
    build_message_xml,
)

pytestmark = pytest.mark.django_db

T0 = 1_700_000_000

USER_COLUMNS = (
    "userid", "name", "departments", "main_department", "is_leader_in_dept", "position", "mobile", "email",
    "gender", "status", "removed", "last_event_time", "field_times", "fingerprint",
)


def tag_xml(corp_id):
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{T0}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>"
        "<ChangeType><![CDATA[update_tag]]></ChangeType><TagId>3</TagId><AddUserItems><![CDATA[ann]]></AddUserItems>"
        "</xml>"
    )


def script(corp_id, agent_id):
    """(kind, xml) of a batch that touches members more than once each: created then changed then
    deleted in one batch, renamed (onto a free userid and onto one a sync made), named in another case,
    with a non-ASCII userid, stale, departments, a tag change and messages from the members."""
    user = build_contact_user_xml
    return [
        ("contacts", user(corp_id, "create_user", {"userid": "ann", "name": "Ann", "department": [1, 2],
                                                    "mobile": "13800000001", "email": "ann@example.com"}, T0)),
        ("app", build_message_xml(corp_id, "ANN", agent_id, content="hello", msg_id=1, create_time=T0)),
        ("contacts", user(corp_id, "update_user", {"userid": "ANN", "position": "lead"}, T0 + 1)),
        ("contacts", user(corp_id, "create_user", {"userid": "bob", "name": "Bob"}, T0)),
        ("contacts", user(corp_id, "update_user", {"userid": "bob", "name": "Bobby"}, T0 - 5)),  # stale name
        ("contacts", user(corp_id, "update_user", {"userid": "bob", "new_userid": "robert"}, T0 + 2)),
        ("contacts", user(corp_id, "update_user", {"userid": "robert", "status": 5}, T0 + 3)),
        ("contacts", user(corp_id, "update_user", {"userid": "synced", "new_userid": "taken", "name": "S"}, T0 + 1)),
        ("contacts", user(corp_id, "create_user", {"userid": "zoë", "name": "Zoë"}, T0)),
        ("contacts", user(corp_id, "update_user", {"userid": "ZOË", "name": "Zoe"}, T0 + 1)),
        ("contacts", user(corp_id, "delete_user", {"userid": "gone"}, T0)),
        ("contacts", user(corp_id, "create_user", {"userid": "gone", "name": "Back"}, T0 - 1)),  # older: stays removed
        ("contacts", user(corp_id, "update_user", {"userid": "bound", "status": 2}, T0 + 1)),
        ("contacts", user(corp_id, "delete_user", {"userid": "ann"}, T0 + 4)),
        ("contacts", build_contact_party_xml(corp_id, "create_party", {"id": 7, "name": "Sales", "parentid": 1}, T0)),
        ("contacts", tag_xml(corp_id)),
        ("app", build_message_xml(corp_id, "robert", agent_id, content="bye", msg_id=2, create_time=T0 + 3)),
        ("contacts", user(corp_id, "update_user", {"userid": "nobody", "new_userid": "newbie", "name": "N"}, T0)),
        ("contacts", user(corp_id, "update_user", {"userid": "newbie", "position": "new"}, T0 + 1)),
        ("contacts", user(corp_id, "create_user", {"userid": "cy", "name": "Cy"}, T0 + 5)),
    ]


def prepare(code):
    """A tenant whose mirror already has what a sync made: members 'taken', 'synced' and a bound 'bound'."""
    config = make_config(make_tenant(code))
    tenant_id = config.tenant_id
    for userid in ("taken", "synced", "bound"):
        WeComUser.objects.create(tenant_id=tenant_id, userid=userid, name=userid.title(), last_event_time=T0 - 100)
    account = get_user_model().objects.create_user(f"{code}-account", password="pw-123456!")
    Binding.objects.create(tenant_id=tenant_id, user=account, wecom_user=WeComUser.objects.get(
        tenant_id=tenant_id, userid="synced"))
    other = get_user_model().objects.create_user(f"{code}-bound", password="pw-123456!")
    Binding.objects.create(tenant_id=tenant_id, user=other, wecom_user=WeComUser.objects.get(
        tenant_id=tenant_id, userid="bound"))
    return config


def store(config, monkeypatch):
    monkeypatch.setattr(callbacks, "enqueue", lambda event_id, **kwargs: None)
    # App messages answered with a passive reply: the inbox keeps the reply after the message.
    reply = {"type": "text", "content": "auto"}
    return [
        callbacks.store_event(config.tenant_id, kind, parse_event(xml), reply=reply if kind == "app" else None)[0].pk
        for kind, xml in script(config.corp_id, config.agent_id)
    ]


def picture(tenant_id):
    """Everything the events write, comparable across tenants."""
    members = sorted(WeComUser.objects.filter(tenant_id=tenant_id).values_list(*USER_COLUMNS))
    departments = sorted(Department.objects.filter(tenant_id=tenant_id).values_list("dept_id", "name", "removed"))
    bindings = sorted(
        Binding.objects.filter(tenant_id=tenant_id).values_list("wecom_user__userid", "is_active")
    )
    audit = sorted(AuditLog.objects.filter(tenant_id=tenant_id).values_list("action", "wecom_userid"))
    inbox = list(
        InboxMessage.objects.filter(tenant_id=tenant_id)
        .order_by("id")
        .values_list("wecom_userid", "direction", "content", "read", "event__subject")
    )
    statuses = list(
        CallbackEvent.objects.filter(tenant_id=tenant_id).order_by("pk").values_list("status", "attempts")
    )
    return members, departments, bindings, audit, inbox, statuses


@pytest.fixture
def heard():
    seen = []

    def contact(sender, tenant_id, callback_event, wecom_user=None, **kwargs):
        user = wecom_user and (wecom_user.pk is not None, wecom_user.userid, wecom_user.name, wecom_user.position,
                               wecom_user.removed, wecom_user.status)
        seen.append(("contact", tenant_id, callback_event.pk, user))

    def handled(sender, tenant_id, callback_event, **kwargs):
        seen.append(("handled", tenant_id, callback_event.pk))

    def message(sender, tenant_id, callback_event, message, **kwargs):
        seen.append(("message", tenant_id, callback_event.pk, message.pk is not None, message.wecom_userid))

    signals.contact_changed.connect(contact)
    signals.event_handled.connect(handled)
    signals.message_received.connect(message)
    yield seen
    signals.contact_changed.disconnect(contact)
    signals.event_handled.disconnect(handled)
    signals.message_received.disconnect(message)


def relative(seen, ids):
    """Signals with each tenant's event ids replaced by their position in the script."""
    position = {pk: n for n, pk in enumerate(ids)}
    return [(entry[0], position[entry[2]], *entry[3:]) for entry in seen]


def test_a_batch_leaves_what_its_events_leave_one_by_one(heard, monkeypatch, django_capture_on_commit_callbacks):
    alone, together = prepare("alone"), prepare("together")
    alone_ids, together_ids = store(alone, monkeypatch), store(together, monkeypatch)

    for event_id in alone_ids:
        with django_capture_on_commit_callbacks(execute=True):
            assert handling.handle_event(event_id) == handling.HANDLED
    one_by_one = relative(heard, alone_ids)
    heard.clear()
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = handling.handle_events(together_ids)
    assert set(outcomes.values()) == {handling.HANDLED}
    assert relative(heard, together_ids) == one_by_one
    assert picture(together.tenant_id) == picture(alone.tenant_id)
    # What the script means, spelled out for the batch.
    members = {row[0]: row for row in picture(together.tenant_id)[0]}
    assert members["ann"][USER_COLUMNS.index("removed")] is True
    assert members["ann"][USER_COLUMNS.index("position")] == "lead"
    assert members["robert"][USER_COLUMNS.index("status")] == 5 and "bob" not in members
    assert members["gone"][USER_COLUMNS.index("removed")] is True
    assert members["synced"][USER_COLUMNS.index("removed")] is True
    assert members["newbie"][USER_COLUMNS.index("position")] == "new" and "nobody" not in members
    assert "zoë" in members  # ZOË's update matches it where the database folds Ë (PostgreSQL), not on SQLite
    assert members["cy"][USER_COLUMNS.index("name")] == "Cy"
    bindings = dict(picture(together.tenant_id)[2])
    assert bindings == {"taken": True, "bound": False}


def test_a_failing_event_of_a_batch_fails_alone_and_the_others_are_applied(heard, monkeypatch):
    config = prepare("failing")
    ids = store(config, monkeypatch)
    bad = ids[3]  # bob's create_user: the batch falls back to one by one and only bob's events differ
    real = directory_services.apply_contact_change

    def apply(tenant_id, event):
        if getattr(event, "user_id", None) == "bob" and event.change_type == "create_user":
            raise RuntimeError("handler broke")
        return real(tenant_id, event)

    monkeypatch.setattr(directory_services, "apply_contact_change", apply)
    outcomes = handling.handle_events(ids)
    assert isinstance(outcomes[bad], RuntimeError)
    assert [event_id for event_id, outcome in outcomes.items() if outcome != handling.HANDLED] == [bad]
    assert CallbackEvent.objects.get(pk=bad).status == CallbackEvent.Status.FAILED
    members = set(WeComUser.objects.filter(tenant_id=config.tenant_id).values_list("userid", flat=True))
    # Without bob's create, the rename of bob finds nobody and makes robert from the rename's own fields.
    assert {"ann", "robert", "zoë", "gone", "newbie", "cy", "taken", "synced", "bound"} <= members
    assert "bob" not in members
    assert InboxMessage.objects.filter(tenant_id=config.tenant_id).count() == 4


def test_a_database_error_in_a_batch_rolls_back_the_batch_then_only_that_event(monkeypatch):
    """A statement the database refuses aborts the batch's savepoint; the events then run one by one."""
    from django.db import connection

    config = prepare("dberror")
    ids = store(config, monkeypatch)
    real = directory_services.apply_contact_change

    def apply(tenant_id, event):
        change = real(tenant_id, event)
        if getattr(event, "user_id", None) == "cy":
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table")
        return change

    monkeypatch.setattr(directory_services, "apply_contact_change", apply)
    outcomes = handling.handle_events(ids)
    assert [event_id for event_id, outcome in outcomes.items() if outcome != handling.HANDLED] == [ids[-1]]
    members = set(WeComUser.objects.filter(tenant_id=config.tenant_id).values_list("userid", flat=True))
    assert "cy" not in members and {"ann", "robert"} <= members
