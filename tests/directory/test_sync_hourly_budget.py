"""WeCom's hourly limits (issue 20 item 2): the fake blocks past each limit as WeCom does (per API per corp
a minute and an hour, per IP a minute and an hour, 45009); the client's budget keeps every window under
its limit with a sliding hour; a second fallback sync within the hour waits for the budget instead of
being blocked, its progress page says until when, and it completes once the hour has room.

Time: the fake's clock is advanced with ``advance_time``; the budget's with its ``clock`` seam. Tests print
their figures past pytest's capture."""

import pytest
import requests
from django.test import override_settings

from tests.factories import config_from_fake, make_tenant, make_tenant_admin
from wecom_integration.client import WeComRateLimited, client_for, ratelimit
from wecom_integration.directory import sync
from wecom_integration.models import SyncRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def later(monkeypatch):
    """Move the budget's clock forward: ``later(seconds)``."""
    offset = [0.0]
    real = ratelimit.clock
    monkeypatch.setattr(ratelimit, "clock", lambda: real() + offset[0])

    def advance(seconds):
        offset[0] += seconds

    return advance


def token(fake, secret):
    return requests.get(f"{fake.api_base}/cgi-bin/gettoken", params={"corpid": fake.corp_id, "corpsecret": secret},
                        timeout=5).json()["access_token"]


def call(fake, access_token, api="department/simplelist"):
    return requests.get(f"{fake.api_base}/cgi-bin/{api}", params={"access_token": access_token}, timeout=5).json()


@pytest.mark.parametrize("limits,per_ip,hourly", [
    (dict(per_minute=5), False, False),  # per API per corp: another API still answers
    (dict(per_hour=5), False, True),
    (dict(ip_per_minute=5), True, False),  # per IP: every API is blocked (gettoken counted too)
    (dict(ip_per_hour=5), True, True),
    (dict(corp_per_hour=5), True, True),  # the corp over all its APIs (gettoken counted too)
])
def test_the_fake_blocks_past_each_limit_with_45009(fake_wecom, limits, per_ip, hourly):
    fake_wecom.set_rate_limit(**limits)
    access = token(fake_wecom, fake_wecom.contact_secret)
    answers = [call(fake_wecom, access)["errcode"] for _ in range(6)]
    allowed = 4 if per_ip else 5
    assert answers == [0] * allowed + [45009] * (6 - allowed)
    assert (call(fake_wecom, access, "user/list_id")["errcode"] == 45009) is per_ip
    # Blocked for a minute or for an hour, as crossed.
    fake_wecom.advance_time(61)
    assert (call(fake_wecom, access)["errcode"] == 45009) is hourly
    fake_wecom.advance_time(3600)
    assert call(fake_wecom, access)["errcode"] == 0


def test_the_hourly_budget_slides_and_never_lets_an_hour_see_more_than_its_limit(later):
    window = ratelimit.HourlyWindow("test-corp", limit=50)
    now = ratelimit.clock()
    taken = 0
    while window.take(now) == 0.0:
        taken += 1
    assert taken == 50
    wait = window.take(now)
    assert 3600 < wait <= 3660  # the oldest minute bucket leaves the window after 61 minutes
    assert window.wait_for(10, now) == wait and window.wait_for(51, now) is None
    assert window.take(now + wait + 1) == 0.0


def test_a_call_past_the_hour_raises_with_the_wait_instead_of_calling_wecom(fake_wecom, capsys):
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base, "RATE_BUDGET_PER_HOUR": 20}):
        fake_wecom.set_rate_limit(per_hour=25)
        client = client_for(config_from_fake(make_tenant("hourly"), fake_wecom), "contacts")
        for _ in range(20):
            client.department.simplelist()
        before = sum(fake_wecom.calls.values())
        with pytest.raises(WeComRateLimited) as waiting:
            client.department.simplelist()
        assert waiting.value.scope == "hour" and 3500 < waiting.value.retry_after <= 3661
        assert sum(fake_wecom.calls.values()) == before  # WeCom never saw the call that would cross
    with capsys.disabled():
        print(f"\nhourly budget 20: the 21st call waits {waiting.value.retry_after} s instead of a 60-minute block")


def test_a_second_fallback_sync_within_the_hour_waits_then_completes(fake_wecom, client, later, capsys):
    org = fake_wecom.org
    fake_wecom.restricted = True
    # Every member put in the app's visible range one by one: the sync asks user/get for each (the fallback).
    fake_wecom.set_visible_range(users=list(org.users))
    members = len(org.users)
    # WeCom's hour: a bit more than one sync's calls; the budget 10% under it.
    fake_wecom.set_rate_limit(per_hour=int(members * 1.6), per_minute=10_000)
    budget = int(members * 1.45)
    tenant = make_tenant("twice")
    config_from_fake(tenant, fake_wecom)
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base, "RATE_BUDGET_PER_HOUR": budget}):
        first = sync.execute_contact_run(sync.create_run(tenant, SyncRun.Kind.CONTACTS, None).pk)
        assert first.status in (SyncRun.Status.REVIEW, SyncRun.Status.SUCCEEDED), first.errors
        assert first.fallback_mode and fake_wecom.calls["user/get"] == members
        first_calls = sum(fake_wecom.quota_calls.values())

        second = sync.create_run(tenant, SyncRun.Kind.CONTACTS, None)
        with pytest.raises(WeComRateLimited) as waiting:
            sync.execute_contact_run(second.pk)
        second.refresh_from_db()
        assert waiting.value.scope == "hour" and second.status == SyncRun.Status.PENDING
        assert second.waiting_until is not None and not second.errors
        assert sum(fake_wecom.quota_calls.values()) == first_calls  # it waited before calling anything

        client.force_login(make_tenant_admin("watcher", tenant))
        state = client.get(f"/admin/wecom_integration/syncrun/{second.pk}/progress.json").json()
        assert state["waiting_for_budget_until"]
        page = client.get(f"/admin/wecom_integration/syncrun/{second.pk}/progress/").content.decode()
        assert "Waiting for WeCom&#x27;s hourly call budget until" in page or "hourly call budget until" in page
        # The stale-run sweep leaves a waiting run alone.
        assert sync.fail_stale_runs(0) == 0

        # An hour later (for the budget and for WeCom) the retried task runs it through, never blocked.
        later(waiting.value.retry_after + 1)
        fake_wecom.advance_time(waiting.value.retry_after + 1)
        done = sync.execute_contact_run(second.pk)
        assert done.status in (SyncRun.Status.REVIEW, SyncRun.Status.SUCCEEDED), done.errors
        assert fake_wecom.calls["user/get"] == 2 * members
        assert not any(entry.get("errcode") == 45009 for entry in done.errors)
    with capsys.disabled():
        print(f"\n{members} members, one user/get each: the first sync made {first_calls} calls of a {budget} hourly "
              f"budget (WeCom's limit {int(members * 1.6)}); the second waited {waiting.value.retry_after} s "
              f"instead of being blocked for an hour, then made {sum(fake_wecom.quota_calls.values()) - first_calls}")
