"""Work no worker has picked up (issue 24 item 3): a sync queued longer than
``WECOM["QUEUED_JOB_STALE_AFTER"]`` and never started shows as waiting for a worker, with its queue, on
the sync list, its progress page and the tenant dashboard; a tenant admin cancels it (counted,
audit-logged), a new sync can start, and a worker that picks up the cancelled run does nothing."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from tests.factories import config_from_fake, make_tenant, make_tenant_admin
from wecom_integration.directory import sync
from wecom_integration.directory.sync import start_sync
from wecom_integration.models import AuditLog, SyncRun, WeComUser

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:wecom_integration_syncrun_changelist"


@pytest.fixture
def tenant(fake_wecom):
    tenant = make_tenant("acme")
    config_from_fake(tenant, fake_wecom)
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base}):
        yield tenant


@pytest.fixture
def admin_client(client, tenant):
    client.force_login(make_tenant_admin("boss", tenant))
    return client


def queued(tenant, seconds_ago, kind=SyncRun.Kind.CONTACTS):
    """A run recorded ``seconds_ago`` whose task no worker took (start_sync outside a commit queues nothing)."""
    run = sync.create_run(tenant, kind)
    SyncRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=seconds_ago))
    run.refresh_from_db()
    return run


def test_only_a_run_queued_past_the_setting_and_never_started_is_waiting(tenant):
    fresh = queued(tenant, 30)
    assert not sync.is_waiting_for_worker(fresh)
    old = queued(tenant, 200, kind=SyncRun.Kind.CUSTOMERS)
    assert sync.is_waiting_for_worker(old)
    assert list(SyncRun.objects.filter(sync.waiting_for_worker_q())) == [old]
    with override_settings(WECOM={"QUEUED_JOB_STALE_AFTER": 10}):
        assert sync.is_waiting_for_worker(fresh)
    # A rate-limited run put back to pending had been started: it waits for its retry, not for a worker.
    SyncRun.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(seconds=300))
    old.refresh_from_db()
    assert not sync.is_waiting_for_worker(old)


def test_the_queue_is_the_one_the_task_is_routed_to(tenant):
    run = queued(tenant, 200)
    assert sync.queue_of(run) == "bulk"
    from config.celery import app

    routes = app.conf.task_routes
    app.conf.task_routes = {**routes, "wecom_integration.tasks.run_contact_sync": {"queue": "host-slow"}}
    try:
        assert sync.queue_of(run) == "host-slow"
    finally:
        app.conf.task_routes = routes


def test_the_sync_pages_show_it_waiting_with_the_queue(admin_client, tenant):
    run = queued(tenant, 200)
    listing = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "Waiting for a worker (queue “bulk”)" in listing
    page = admin_client.get(reverse("admin:wecom_integration_syncrun_progress", args=[run.pk])).content.decode()
    assert 'id="sync-waiting" class="sync-waiting">' in page and "“bulk”" in page and 'id="sync-cancel"' in page
    state = admin_client.get(reverse("admin:wecom_integration_syncrun_progress_json", args=[run.pk])).json()
    assert state["waiting_for_worker"] is True and state["queue"] == "bulk"


def test_in_chinese_too(admin_client, tenant):
    queued(tenant, 200)
    listing = admin_client.get(reverse(CHANGELIST), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "等待" in listing and "“bulk”" in listing


def test_a_tenant_admin_cancels_it_and_a_new_sync_starts(admin_client, tenant, fake_wecom):
    run = queued(tenant, 200)
    with pytest.raises(sync.SyncAlreadyRunning):
        start_sync(tenant)
    answer = admin_client.post(reverse(CHANGELIST), {"action": "cancel_waiting", "_selected_action": [run.pk]},
                               follow=True)
    assert "1 sync cancelled." in [str(m) for m in answer.context["messages"]]
    run.refresh_from_db()
    assert run.status == SyncRun.Status.CANCELLED and run.finished_at is not None
    entry = AuditLog.objects.get(action=AuditLog.Action.CANCEL_SYNC)
    assert (entry.tenant_id, entry.actor.username, entry.detail["run"]) == (tenant.pk, "boss", run.pk)

    # The worker that finally picks the cancelled run up does nothing.
    assert sync.execute_contact_run(run.pk).status == SyncRun.Status.CANCELLED
    assert fake_wecom.calls["gettoken"] == 0 and not WeComUser.objects.exists()

    # A new sync starts and runs.
    new = start_sync(tenant)
    assert sync.execute_contact_run(new.pk).status == SyncRun.Status.REVIEW
    assert WeComUser.objects.filter(tenant=tenant).exists()


def test_what_a_worker_started_is_left_alone_and_counted(admin_client, tenant):
    started = queued(tenant, 500)
    SyncRun.objects.filter(pk=started.pk).update(status=SyncRun.Status.RUNNING, started_at=timezone.now())
    waiting = queued(tenant, 200, kind=SyncRun.Kind.CUSTOMERS)
    answer = admin_client.post(
        reverse(CHANGELIST), {"action": "cancel_waiting", "_selected_action": [started.pk, waiting.pk]}, follow=True
    )
    shown = [str(m) for m in answer.context["messages"]]
    assert "1 sync cancelled." in shown
    assert "1 sync was left alone: a worker had started it or it had finished." in shown
    assert SyncRun.objects.get(pk=started.pk).status == SyncRun.Status.RUNNING
    assert SyncRun.objects.get(pk=waiting.pk).status == SyncRun.Status.CANCELLED


def test_another_tenants_run_cannot_be_cancelled(admin_client, tenant):
    other = make_tenant("other")
    theirs = queued(other, 200)
    assert admin_client.post(reverse("admin:wecom_integration_syncrun_cancel", args=[theirs.pk])).status_code == 403
    admin_client.post(reverse(CHANGELIST), {"action": "cancel_waiting", "_selected_action": [theirs.pk]})
    assert SyncRun.objects.get(pk=theirs.pk).status == SyncRun.Status.PENDING
    assert not AuditLog.objects.filter(action=AuditLog.Action.CANCEL_SYNC).exists()


def test_the_dashboard_shows_it_and_its_button_cancels_it(admin_client, tenant):
    run = queued(tenant, 200)
    html = admin_client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).content.decode()
    assert f'id="dash-waiting-{run.pk}"' in html and "“bulk”" in html
    cancel = reverse("admin:wecom_integration_syncrun_cancel", args=[run.pk])
    assert cancel in html
    assert admin_client.post(cancel).status_code == 302
    assert SyncRun.objects.get(pk=run.pk).status == SyncRun.Status.CANCELLED
    html = admin_client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).content.decode()
    assert "dash-waiting-" not in html
