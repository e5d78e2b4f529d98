"""The tenant's dashboard: its figures, its chart, the tenant page's screens, the language switch."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from tenants import admin as tenants_admin
from tenants.models import Membership
from tests.factories import make_config, make_member, make_tenant, make_tenant_admin, make_user
from wecom_integration.models import (
    Binding,
    CallbackEvent,
    MessageLog,
    SyncRun,
    WeComUser,
)
from wecom_integration.operations import dashboard as dash

pytestmark = pytest.mark.django_db


def wecom_user(tenant, userid, **fields):
    return WeComUser.objects.create(tenant=tenant, userid=userid, name=userid.title(), **fields)


def event(tenant, key, at, status=CallbackEvent.Status.HANDLED, **fields):
    row = CallbackEvent.objects.create(tenant=tenant, kind="contacts", dedupe_key=key, xml="<xml/>", status=status,
                                       **fields)
    CallbackEvent.objects.filter(pk=row.pk).update(received_at=at)  # received_at is auto_now_add
    return row


def run(tenant, status, at, kind=SyncRun.Kind.CONTACTS, **fields):
    row = SyncRun.objects.create(tenant=tenant, kind=kind, status=status, **fields)
    SyncRun.objects.filter(pk=row.pk).update(created_at=at)
    row.refresh_from_db()
    return row


def message(tenant, status, at, **fields):
    row = MessageLog.objects.create(tenant=tenant, msgtype="text", content={"text": {"content": "hi"}},
                                    status=status, **fields)
    MessageLog.objects.filter(pk=row.pk).update(created_at=at)
    return row


@pytest.fixture
def tenant():
    return make_tenant("acme", "Acme 企业")


@pytest.fixture
def other():
    return make_tenant("other")


# The figures ---------------------------------------------------------------------------------------


def test_counts_bound_unbound_and_pending_members_of_this_tenant_only(tenant, other):
    alice, bob = make_user("alice"), make_user("bob")
    make_member(alice, tenant)
    make_member(bob, tenant, status=Membership.Status.PENDING)
    make_member(make_user("carol"), tenant, status=Membership.Status.PENDING)
    make_member(make_user("dave"), tenant, status=Membership.Status.REJECTED)
    make_member(make_user("erin"), other, status=Membership.Status.PENDING)
    w_alice, w_bob = wecom_user(tenant, "alice"), wecom_user(tenant, "bob")
    wecom_user(tenant, "frank")
    wecom_user(tenant, "grace", status=WeComUser.Status.NOT_ACTIVATED)
    wecom_user(tenant, "heidi", removed=True)
    wecom_user(tenant, "ivan", status=WeComUser.Status.QUIT)
    wecom_user(tenant, "judy", status=WeComUser.Status.DISABLED)
    Binding.objects.create(tenant=tenant, user=alice, wecom_user=w_alice)
    Binding.objects.create(tenant=tenant, user=bob, wecom_user=w_bob)
    w_other = wecom_user(other, "olga")
    Binding.objects.create(tenant=other, user=make_user("olga"), wecom_user=w_other)
    wecom_user(other, "oscar")

    board = dash.tenant_dashboard(tenant)

    assert board.members == 4  # alice, bob, frank, grace: the ones who can sign in
    assert board.bound == 2
    assert board.unbound == 2  # frank and grace
    assert board.pending == 2  # bob and carol
    assert board.config is None
    assert board.last_sync is None
    assert board.review_run is None
    assert board.attention_count == 0


def test_last_sync_and_the_run_waiting_for_review(tenant, other):
    now = timezone.now()
    old_review = run(tenant, SyncRun.Status.SUCCEEDED, now - timedelta(hours=5))
    review = run(tenant, SyncRun.Status.REVIEW, now - timedelta(hours=2))
    run(tenant, SyncRun.Status.SUCCEEDED, now - timedelta(hours=1), kind=SyncRun.Kind.CUSTOMERS)
    run(other, SyncRun.Status.RUNNING, now)

    board = dash.tenant_dashboard(tenant, now)

    assert board.last_sync == review  # the latest contact sync, not the customers' one
    assert board.review_run == review
    assert old_review != board.last_sync


def test_callbacks_are_counted_per_hour_over_the_last_24_hours(tenant, other):
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    event(tenant, "a", now - timedelta(minutes=10))
    event(tenant, "b", now - timedelta(hours=2))
    event(tenant, "c", now - timedelta(hours=2, minutes=5), status=CallbackEvent.Status.FAILED)
    event(tenant, "d", now - timedelta(hours=23))
    event(tenant, "too-old", now - timedelta(hours=24, minutes=31))
    event(other, "elsewhere", now - timedelta(minutes=5))

    hours = dash.callbacks_per_hour(tenant, now)

    assert len(hours) == 24
    local = timezone.localtime(now)
    assert hours[-1].start == local.replace(minute=0)
    assert [h.start for h in hours] == sorted(h.start for h in hours)
    assert hours[0].start == local.replace(minute=0) - timedelta(hours=23)
    by_offset = {23 - i: (h.total, h.failed) for i, h in enumerate(hours) if h.total}
    assert by_offset == {0: (1, 0), 2: (2, 1), 23: (1, 0)}


def test_failed_syncs_need_attention_until_a_later_sync_of_that_kind_settles_them(tenant):
    now = timezone.now()
    run(tenant, SyncRun.Status.FAILED, now - timedelta(days=10))  # too old to nag about
    run(tenant, SyncRun.Status.FAILED, now - timedelta(hours=6))  # settled by the success below
    run(tenant, SyncRun.Status.SUCCEEDED, now - timedelta(hours=5))
    late = run(tenant, SyncRun.Status.FAILED, now - timedelta(hours=1), errors=[{"message": "errcode 60011"}])
    customers = run(tenant, SyncRun.Status.FAILED, now - timedelta(hours=4), kind=SyncRun.Kind.CUSTOMERS)

    problems = dash.failed_syncs(tenant, now)

    assert problems.count == 2
    assert list(problems.recent) == [late, customers]


def test_failed_events_and_messages_need_attention(tenant, other):
    now = timezone.now()
    failed = event(tenant, "f1", now - timedelta(days=30), status=CallbackEvent.Status.FAILED, error="boom")
    event(tenant, "ok", now, status=CallbackEvent.Status.HANDLED)
    event(other, "f2", now, status=CallbackEvent.Status.FAILED)
    refused = message(tenant, MessageLog.Status.FAILED, now - timedelta(hours=1), errcode=81013, errmsg="no user")
    partial = message(tenant, MessageLog.Status.PARTIAL, now - timedelta(hours=2))
    message(tenant, MessageLog.Status.SENT, now)
    message(tenant, MessageLog.Status.FAILED, now - timedelta(days=8))

    board = dash.tenant_dashboard(tenant, now)

    assert board.failed_events.count == 1
    assert [e.pk for e in board.failed_events.recent] == [failed.pk]
    assert board.failed_messages.count == 2
    assert [m.pk for m in board.failed_messages.recent] == [refused.pk, partial.pk]
    assert board.attention_count == 3


def test_problems_are_all_counted_but_only_the_newest_listed(tenant):
    now = timezone.now()
    for i in range(dash.ATTENTION_LIMIT + 3):
        event(tenant, f"e{i}", now - timedelta(minutes=i), status=CallbackEvent.Status.FAILED)

    problems = dash.failed_events(tenant)

    assert problems.count == dash.ATTENTION_LIMIT + 3
    assert len(problems.recent) == dash.ATTENTION_LIMIT
    assert [e.dedupe_key for e in problems.recent] == [f"e{i}" for i in range(dash.ATTENTION_LIMIT)]


def test_the_number_of_queries_does_not_grow_with_the_tenant(tenant, django_assert_max_num_queries):
    now = timezone.now()
    User = get_user_model()
    for i in range(40):
        user = User.objects.create(username=f"u{i}")  # no password: hashing 40 would only slow the test
        make_member(user, tenant, status=Membership.Status.PENDING if i % 2 else Membership.Status.ACTIVE)
        member = wecom_user(tenant, f"w{i}")
        if i % 3 == 0:
            Binding.objects.create(tenant=tenant, user=user, wecom_user=member)
        event(tenant, f"k{i}", now - timedelta(minutes=37 * i), status="failed" if i % 5 == 0 else "handled")
        message(tenant, MessageLog.Status.FAILED, now - timedelta(minutes=i))
        run(tenant, SyncRun.Status.FAILED, now - timedelta(minutes=i), kind=SyncRun.Kind.CUSTOMERS)

    with django_assert_max_num_queries(14):
        dash.tenant_dashboard(tenant, now)


# The chart -----------------------------------------------------------------------------------------


def test_bar_chart_scales_to_the_busiest_hour_and_shows_the_failed_part():
    start = timezone.localtime(timezone.now()).replace(minute=0, second=0, microsecond=0)
    hours = [dash.HourBucket(start + timedelta(hours=i)) for i in range(24)]
    hours[3] = dash.HourBucket(hours[3].start, total=100, failed=25)
    hours[4] = dash.HourBucket(hours[4].start, total=1, failed=1)
    hours[5] = dash.HourBucket(hours[5].start, total=50)

    chart = dash.bar_chart(hours, bar_width=10, gap=2, plot_height=80, axis_height=20)

    assert chart.peak == 100
    assert (chart.width, chart.height, chart.plot_height) == (24 * 12 - 2, 100, 80)
    busiest, tiny, half = chart.bars[3], chart.bars[4], chart.bars[5]
    assert (busiest.x, busiest.y, busiest.height) == (36, 0, 80)
    assert (busiest.failed_y, busiest.failed_height) == (60, 20)
    assert half.height == 40 and half.y == 40 and half.failed_height == 0
    assert tiny.height == 2 and tiny.failed_height == 2  # one callback still shows
    assert chart.bars[0].height == 0
    assert [bar.label for bar in chart.bars if bar.tick] == [
        f"{hours[i].start:%H}:00" for i in (0, 6, 12, 18, 23)
    ]


def test_an_empty_day_draws_no_bars():
    start = timezone.localtime(timezone.now()).replace(minute=0, second=0, microsecond=0)
    chart = dash.bar_chart([dash.HourBucket(start + timedelta(hours=i)) for i in range(24)])
    assert chart.peak == 0
    assert all(bar.height == 0 and bar.failed_height == 0 for bar in chart.bars)


# The tenant's page ---------------------------------------------------------------------------------


@pytest.fixture
def configured(tenant, client):
    config = make_config(tenant)
    admin_user = make_tenant_admin("boss", tenant)
    client.force_login(admin_user)
    return config


def links_of(html):
    """{screen key: href} of the tenant page's screen list."""
    return {
        key: unescape(href)
        for href, key in re.findall(r'<a href="([^"]+)" data-screen="([^"]+)">', html)
    }


def test_every_screen_of_the_issue_is_installed_and_found(tenant):
    sections, missing = tenants_admin.tenant_screens(tenant, {"config": 1, "review_run": 1})
    assert missing == []
    keys = {link.key for _title, links in sections for link in links if link.url}
    assert {
        "config", "test_connection", "menu", "syncs", "review", "org_chart", "bound", "unbound", "pending",
        "events", "inbox", "messages", "send_test", "customers",
    } <= keys


def test_the_tenant_page_shows_the_dashboard_and_links_every_screen_filtered_to_the_tenant(
    client, tenant, other, configured
):
    review = run(tenant, SyncRun.Status.REVIEW, timezone.now())
    event(tenant, "cb", timezone.now(), status=CallbackEvent.Status.FAILED, error="decrypt failed")

    response = client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="tenant-dashboard-title"' in html
    assert html.count('class="dash-hour"') == 24
    assert "decrypt failed" in html
    links = links_of(html)
    assert links["config"] == reverse("admin:wecom_integration_wecomconfig_change", args=[configured.pk])
    assert links["review"] == reverse("admin:wecom_integration_syncrun_review", args=[review.pk])
    assert links["bound"].endswith(f"?tenant__id__exact={tenant.pk}")
    assert links["pending"].endswith(f"?tenant__id__exact={tenant.pk}&status__exact=pending")
    assert links["org_chart"].endswith(f"?tenant={tenant.pk}")
    # Every screen opens for the tenant's admin, with the filter accepted (an unknown filter would
    # redirect to ?e=1).
    for key, url in links.items():
        answer = client.get(url)
        assert answer.status_code == 200, (key, url, answer.status_code)


def test_filtered_lists_show_only_this_tenants_rows(client, tenant, other, configured):
    event(tenant, "mine", timezone.now(), subject="mine-subject")
    event(other, "theirs", timezone.now(), subject="their-subject")
    # A superuser sees every tenant; the link's filter narrows the list to this one.
    client.force_login(make_user("root", superuser=True))
    links = links_of(client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).content.decode())

    html = client.get(links["events"]).content.decode()

    assert "mine-subject" in html
    assert "their-subject" not in html


def test_without_a_configuration_the_page_says_what_to_do_first(client, tenant):
    client.force_login(make_tenant_admin("boss", tenant))

    html = client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).content.decode()

    links = links_of(html)
    assert links["config"] == reverse("admin:wecom_integration_wecomconfig_add") + f"?tenant={tenant.pk}"
    assert "send_test" not in links and "menu" not in links and "review" not in links
    assert 'class="unavailable" data-screen="send_test"' in html
    assert "Enter the WeCom configuration first." in html
    assert 'id="dash-sync-now"' not in html
    add_page = client.get(links["config"])
    assert add_page.status_code == 200
    assert add_page.context["adminform"].form.initial["tenant"] == str(tenant.pk)


def test_the_dashboard_page_of_another_tenant_is_forbidden(client, tenant, other, configured):
    mine = client.get(reverse("admin:tenants_tenant_dashboard", args=[tenant.pk]))
    theirs = client.get(reverse("admin:tenants_tenant_dashboard", args=[other.pk]))

    assert mine.status_code == 200
    assert 'id="dash-callbacks"' in mine.content.decode()
    assert theirs.status_code == 403


def test_sync_now_on_the_dashboard_starts_a_sync_of_this_tenant(
    client, tenant, configured, settings, django_capture_on_commit_callbacks
):
    html = client.get(reverse("admin:tenants_tenant_dashboard", args=[tenant.pk])).content.decode()
    form = re.search(r'<form method="post" action="([^"]+)">.*?name="tenant" value="(\d+)"', html, re.S)
    assert form and int(form.group(2)) == tenant.pk
    # Nothing answers at this API base: the run fails, as it would against an unreachable WeCom.
    settings.WECOM = {"API_BASE": "http://127.0.0.1:9", "HTTP_TIMEOUT": (0.5, 0.5), "BUSY_RETRIES": 0}

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(form.group(1), {"tenant": tenant.pk, "kind": "contacts"})

    created = SyncRun.objects.get(tenant=tenant)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:wecom_integration_syncrun_progress", args=[created.pk])
    created.refresh_from_db()
    assert created.status == SyncRun.Status.FAILED
    board = client.get(reverse("admin:tenants_tenant_dashboard", args=[tenant.pk])).content.decode()
    assert 'id="dash-failed-syncs"' in board


# Language and skip link ----------------------------------------------------------------------------


def test_the_language_follows_the_browser_and_the_switch(client, tenant, configured):
    url = reverse("admin:tenants_tenant_dashboard", args=[tenant.pk])

    chinese = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    english = client.get(url, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")

    assert '<html lang="zh-hans"' in chinese.content.decode()
    assert '<html lang="en"' in english.content.decode()
    page = english.content.decode()
    assert 'id="language-switch"' in page and '<label for="language-select">' in page
    assert 'value="zh-hans"' in page and "简体中文" in page

    switched = client.post(reverse("set_language"), {"language": "zh-hans", "next": url},
                           HTTP_ACCEPT_LANGUAGE="en-US")
    assert switched.status_code == 302 and switched["Location"] == url
    after = client.get(url, HTTP_ACCEPT_LANGUAGE="en-US").content.decode()
    assert '<html lang="zh-hans"' in after
    assert re.search(r'<option value="zh-hans" lang="zh-hans"\s+selected>', after)


def test_the_sign_in_page_has_the_language_switch_and_a_skip_link(client):
    html = client.get(reverse("admin:login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert 'id="language-switch"' in html
    assert html.index('class="skip-to-content-link"') < html.index('id="language-switch"')
    assert 'href="#content-start"' in html and 'id="content-start"' in html
