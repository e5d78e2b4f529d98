"""Retention (issue 20 item 1): what is past WECOM["RETENTION"] goes, in bounded batches and per tenant;
failed and unhandled callbacks stay until handled or dismissed; the inbox keeps its messages when their
events go; the command and the beat entry."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import make_tenant
from wecom_integration.celery_config import BEAT_SCHEDULE, TASK_ROUTES
from wecom_integration.models import AuditLog, CallbackAttempt, CallbackEvent, CardClick, InboxMessage, MessageLog
from wecom_integration.operations import retention
from wecom_integration.tasks import purge_old_rows

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def aged(model, days, **fields):
    """A row of ``model`` made ``days`` days ago (auto_now_add fields overwritten after the INSERT)."""
    row = model.objects.create(**fields)
    when = NOW - dt.timedelta(days=days)
    stamp = {CallbackEvent: "received_at", CallbackAttempt: "at"}.get(model, "created_at")
    model.objects.filter(pk=row.pk).update(**{stamp: when})
    return row


def event(tenant, kind, days, status=CallbackEvent.Status.HANDLED, key=None):
    key = key or f"{kind}-{days}-{status}-{CallbackEvent.objects.count()}"
    return aged(CallbackEvent, days, tenant=tenant, kind=kind, dedupe_key=key, xml="<xml/>", status=status)


@pytest.fixture
def tenant():
    return make_tenant("keep")


def test_handled_events_go_by_the_age_of_their_callback_url(tenant, settings):
    settings.WECOM = {"RETENTION": {"callback_events": {"app": 10}}}  # contacts and customers keep 90
    old_app, young_app = event(tenant, "app", 11), event(tenant, "app", 9)
    old_contact, very_old_contact = event(tenant, "contacts", 30), event(tenant, "contacts", 91)
    counts = retention.purge_tenant(tenant.pk, now=NOW)
    left = set(CallbackEvent.objects.values_list("pk", flat=True))
    assert left == {young_app.pk, old_contact.pk}
    assert {old_app.pk, very_old_contact.pk}.isdisjoint(left)
    assert counts["callback events (app)"] == 1 and counts["callback events (contacts)"] == 1


def test_failed_and_unhandled_events_stay_until_handled_or_dismissed(tenant):
    failed = event(tenant, "app", 400, CallbackEvent.Status.FAILED)
    received = event(tenant, "app", 400, CallbackEvent.Status.RECEIVED)
    dismissed = event(tenant, "app", 400, CallbackEvent.Status.DISMISSED)
    retention.purge_tenant(tenant.pk, now=NOW)
    left = set(CallbackEvent.objects.values_list("pk", flat=True))
    assert left == {failed.pk, received.pk} and dismissed.pk not in left


def test_an_admin_dismisses_failed_events_so_they_can_go(client, tenant):
    from tests.factories import make_tenant_admin

    failed = event(tenant, "app", 400, CallbackEvent.Status.FAILED)
    handled = event(tenant, "app", 1)
    client.force_login(make_tenant_admin("keeper", tenant))
    answer = client.post("/admin/wecom_integration/callbackevent/",
                         {"action": "dismiss_selected", "_selected_action": [failed.pk, handled.pk]})
    assert answer.status_code == 302
    failed.refresh_from_db()
    handled.refresh_from_db()
    assert failed.status == CallbackEvent.Status.DISMISSED and handled.status == CallbackEvent.Status.HANDLED
    retention.purge_tenant(tenant.pk, now=NOW)
    assert not CallbackEvent.objects.filter(pk=failed.pk).exists()


def test_each_other_table_goes_by_its_own_setting(tenant, settings):
    settings.WECOM = {"RETENTION": {"message_logs": 5, "inbox_messages": 10, "audit_log": 20, "callback_attempts": 1}}
    for days in (4, 6):
        aged(MessageLog, days, tenant=tenant, msgtype="text", content={})
    for days in (9, 11):
        aged(InboxMessage, days, tenant=tenant, wecom_userid="u", direction="in", msg_type="text", content="x")
    for days in (19, 21):
        aged(AuditLog, days, tenant=tenant, action="bind")
    for days in (0, 2):
        aged(CallbackAttempt, days, tenant=tenant, kind="app", method="deliver")
    counts = retention.purge_tenant(tenant.pk, now=NOW)
    assert counts == {"callback events (app)": 0, "callback events (contacts)": 0, "callback events (customers)": 0,
                      "callback attempts": 1, "message log": 1, "card clicks": 0, "inbox": 1, "audit log": 1}
    assert MessageLog.objects.count() == InboxMessage.objects.count() == AuditLog.objects.count() == 1


def test_none_keeps_for_ever_and_an_unknown_key_is_refused(tenant, settings):
    settings.WECOM = {"RETENTION": {"audit_log": None}}
    aged(AuditLog, 10_000, tenant=tenant, action="bind")
    counts = retention.purge_tenant(tenant.pk, now=NOW)
    assert "audit log" not in counts and AuditLog.objects.count() == 1
    settings.WECOM = {"RETENTION": {"audit": 5}}
    with pytest.raises(ValueError, match="unknown"):
        retention.policy()


def test_the_inbox_keeps_a_message_whose_event_is_purged(tenant, settings):
    settings.WECOM = {"RETENTION": {"callback_events": {"app": 1}}}
    old = event(tenant, "app", 5)
    message = InboxMessage.objects.create(tenant=tenant, wecom_userid="u", direction="in", msg_type="text",
                                          content="still here", event=old)
    retention.purge_tenant(tenant.pk, now=NOW)
    message.refresh_from_db()
    assert message.event_id is None and message.content == "still here"


def test_a_card_click_outlives_its_callback_and_its_card_and_goes_by_its_own_setting(tenant, settings):
    settings.WECOM = {"RETENTION": {"callback_events": {"app": 1}, "message_logs": 1, "card_clicks": 30}}
    card = aged(MessageLog, 5, tenant=tenant, msgtype="template_card", task_id="old-card", content={})
    click = aged(CardClick, 5, tenant=tenant, message=card, event=event(tenant, "app", 5), wecom_userid="u",
                 task_id="old-card", choice="同意")
    stale = aged(CardClick, 31, tenant=tenant, wecom_userid="u", task_id="older", choice="驳回")
    counts = retention.purge_tenant(tenant.pk, now=NOW)
    assert counts["message log"] == 1 and counts["callback events (app)"] == 1 and counts["card clicks"] == 1
    click.refresh_from_db()
    assert (click.message_id, click.event_id, click.choice) == (None, None, "同意")
    assert not CardClick.objects.filter(pk=stale.pk).exists()


def test_deleting_goes_in_bounded_batches_and_by_tenant(tenant):
    other = make_tenant("other")
    for n in range(7):
        event(tenant, "app", 100, key=f"mine-{n}")
    theirs = event(other, "app", 100, key="theirs")
    with CaptureQueriesContext(connection) as queries:
        counts = retention.purge_tenant(tenant.pk, now=NOW, batch_size=3)
    deletes = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE") and "callbackevent" in q["sql"]
    ]
    assert counts["callback events (app)"] == 7
    assert len(deletes) == 3  # 3 + 3 + 1
    assert all(q.count("%s") == 0 and q.count(",") <= 2 for q in deletes)  # at most 3 ids each
    assert list(CallbackEvent.objects.values_list("pk", flat=True)) == [theirs.pk]


def test_a_dry_run_counts_and_deletes_nothing(tenant):
    event(tenant, "app", 100)
    out = io.StringIO()
    call_command("wecom_purge", "--dry-run", stdout=out)
    assert CallbackEvent.objects.count() == 1
    assert "would delete" in out.getvalue() and "callback events (app)" in out.getvalue()
    assert "1 row(s) due in 2 tenant(s); nothing deleted." in out.getvalue()  # the default tenant and ours


def test_the_command_and_the_beat_task_purge(tenant):
    event(tenant, "app", 100)
    aged(AuditLog, 5000, tenant=tenant, action="bind")
    out = io.StringIO()
    call_command("wecom_purge", "--tenant", str(tenant.pk), "--batch-size", "1", stdout=out)
    assert CallbackEvent.objects.count() == 0 and AuditLog.objects.count() == 0
    assert "2 row(s) deleted in 1 tenant(s)." in out.getvalue()
    event(tenant, "contacts", 100)
    assert purge_old_rows.delay().get()["callback events (contacts)"] == 1
    entry = BEAT_SCHEDULE["wecom-purge-old-rows"]
    assert entry["task"] == "wecom_integration.tasks.purge_old_rows" and entry["schedule"] == 86400
    assert TASK_ROUTES[entry["task"]] == {"queue": "bulk"}
