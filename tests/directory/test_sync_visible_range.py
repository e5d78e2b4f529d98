"""The contact and customer syncs in both worlds (issues 22 and 23), against the fake WeCom over HTTP.

Three corps: an old one (the contact-sync Secret reads everything), a 2022 one (the contact-sync Secret
lists ids only and answers 48009 to every read of details; the app Secret reads names within its visible
range, without mobile or email for a new app), and a corp whose app sees half the members. What the app
cannot see is kept and marked not visible: never removed, never deactivated, never created nameless.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse

from tests.factories import config_from_fake, make_member, make_tenant, make_tenant_admin, make_user
from wecom_integration.customers import sync as customer_sync
from wecom_integration.directory import sync
from wecom_integration.models import Binding, Department, ExternalContact, FollowUser, SyncProposal, SyncRun, WeComUser

User = get_user_model()


@pytest.fixture
def api_base(fake_wecom):
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base}):
        yield fake_wecom.api_base


@pytest.fixture
def tenant(db, fake_wecom, api_base):
    tenant = make_tenant("vis")
    config_from_fake(tenant, fake_wecom)
    return tenant


def run_sync(tenant):
    actor = User.objects.filter(username="vis-admin").first() or make_user("vis-admin", password=None)
    return sync.execute_contact_run(sync.create_run(tenant, actor=actor).pk)


def run_customers(tenant):
    return customer_sync.execute_customer_run(sync.create_run(tenant, SyncRun.Kind.CUSTOMERS).pk)


def half_range(org):
    """Top-level departments (each with its subtree) holding about half the members; the root's own
    members stay outside. Returns (departments, visible userids)."""
    chosen, visible = [], set()
    for dept_id in sorted(org.departments):
        if dept_id == 1 or len(visible) >= len(org.users) // 2:
            continue
        subtree = {u.userid for u in org.members_of(dept_id, recursive=True)}
        if len(visible | subtree) < len(org.users):
            chosen.append(dept_id)
            visible |= subtree
    assert 0 < len(visible) < len(org.users)
    return chosen, visible


def bind_everyone(tenant):
    """Bind every mirrored member to an account, as after a confirmed sync."""
    for row in WeComUser.objects.filter(tenant=tenant, status=WeComUser.Status.ACTIVE):
        user = make_user(f"acc-{row.userid}", password=None)
        make_member(user, tenant)
        Binding.objects.create(tenant=tenant, user=user, wecom_user=row)


# The two worlds ------------------------------------------------------------------------------------


def test_an_old_corp_reads_everything_with_the_contact_secret(tenant, fake_wecom):
    run = run_sync(tenant)

    assert run.status == SyncRun.Status.REVIEW, run.errors
    assert not run.fallback_mode
    assert fake_wecom.gettoken_calls.get("app", 0) == 0  # the app Secret is not needed
    assert fake_wecom.calls["user/get"] == 0
    user = next(iter(fake_wecom.org.users.values()))
    assert WeComUser.objects.get(tenant=tenant, userid=user.userid).mobile == user.mobile
    assert run.counts["outside_range"] == {"users": 0, "userids": [], "departments": 0}


def test_a_2022_corp_takes_ids_from_the_contact_secret_and_details_from_the_app(tenant, fake_wecom):
    fake_wecom.restricted = True
    org = fake_wecom.org

    run = run_sync(tenant)

    assert run.status == SyncRun.Status.REVIEW, run.errors
    assert run.fallback_mode
    # One refused call detects the 2022 world; no read of details is then tried with the contact Secret.
    assert fake_wecom.calls["department/list"] == 2  # the contact Secret's 48009, then the app's
    assert fake_wecom.calls["user/list_id"] >= 1 and fake_wecom.calls["department/simplelist"] == 1
    assert fake_wecom.calls["user/get"] == 0  # bulk user/list covered everyone
    rows = {r.userid: r for r in WeComUser.objects.filter(tenant=tenant)}
    assert set(rows) == set(org.users)
    for userid, member in org.users.items():
        row = rows[userid]
        assert (row.name, row.position, row.departments) == (member.name, member.position, list(member.departments))
        assert row.visible and row.mobile == ""  # a new app gets no mobile
    assert not Department.objects.filter(tenant=tenant, name="").exists()
    assert Department.objects.filter(tenant=tenant).count() == len(org.departments)


def test_a_2022_corp_without_the_app_secret_fails_saying_which_secret(tenant, fake_wecom):
    fake_wecom.restricted = True
    config = tenant.wecom_config
    config.secret = ""
    config.save()

    run = run_sync(tenant)

    assert run.status == SyncRun.Status.FAILED
    assert "app Secret" in run.errors[-1]["message"]
    assert not WeComUser.objects.filter(tenant=tenant).exists()


# A corp whose app sees half the members -------------------------------------------------------------


def test_a_new_2022_corp_whose_app_sees_half_lists_the_others_for_the_admin(tenant, fake_wecom):
    org = fake_wecom.org
    fake_wecom.restricted = True
    departments, visible = half_range(org)
    fake_wecom.set_visible_range(departments=departments)
    hidden = set(org.users) - visible

    run = run_sync(tenant)

    assert run.status == SyncRun.Status.REVIEW, run.errors
    rows = dict(WeComUser.objects.filter(tenant=tenant).values_list("userid", "name"))
    assert set(rows) == visible  # nobody created without a name
    assert all(name and name != userid for userid, name in rows.items())
    assert run.counts["outside_range"]["users"] == len(hidden)
    assert set(run.counts["outside_range"]["userids"]) == hidden
    # Members no list gave are asked one by one (bulk is impossible for them): 60011 each.
    assert fake_wecom.calls["user/get"] == len(hidden)
    assert not Department.objects.filter(tenant=tenant, name="").exists()
    assert not SyncProposal.objects.filter(run=run, wecom_user__userid__in=hidden).exists()


def test_members_the_app_no_longer_sees_are_kept_not_ended(tenant, fake_wecom):
    org = fake_wecom.org
    run_sync(tenant)  # an old corp: everything mirrored
    bind_everyone(tenant)
    before = dict(WeComUser.objects.filter(tenant=tenant).values_list("userid", "name"))
    departments, visible = half_range(org)
    hidden = set(org.users) - visible
    fake_wecom.restricted = True  # the corp now calls from a new IP
    fake_wecom.set_visible_range(departments=departments)
    outside_departments = {d for d in org.departments if not org.app_sees_department(d)}

    run = run_sync(tenant)

    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.REVIEW), run.errors
    assert run.counts["users"]["removed"] == 0 and run.counts["left"]["bindings"] == 0
    assert run.counts["departments"]["removed"] == 0
    rows = {r.userid: r for r in WeComUser.objects.filter(tenant=tenant)}
    assert {u for u, r in rows.items() if not r.visible} == hidden
    assert all(not r.removed and r.name == before[u] for u, r in rows.items())
    active = sum(1 for u in org.users.values() if u.status == 1)
    assert Binding.objects.filter(tenant=tenant, is_active=True).count() == active
    kept = Department.objects.filter(tenant=tenant, dept_id__in=outside_departments)
    assert kept.count() == len(outside_departments)
    assert all(not d.visible and not d.removed and d.name for d in kept)

    # Widening the range in WeCom brings them back as visible.
    fake_wecom.clear_visible_range()
    again = run_sync(tenant)
    assert again.counts["outside_range"]["users"] == 0
    assert not WeComUser.objects.filter(tenant=tenant, visible=False).exists()
    assert not Department.objects.filter(tenant=tenant, visible=False).exists()


def test_with_the_app_secret_only_unseen_members_are_asked_about_before_removal(tenant, fake_wecom):
    org = fake_wecom.org
    config = tenant.wecom_config
    config.contact_secret = ""  # the sync reads with the app Secret alone: its lists are partial
    config.save()
    run_sync(tenant)
    departments, visible = half_range(org)
    hidden = set(org.users) - visible
    fake_wecom.set_visible_range(departments=departments)
    leaver = next(iter(visible))
    fake_wecom.delete_user(leaver)

    run = run_sync(tenant)

    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.REVIEW), run.errors
    assert run.counts["users"]["removed"] == 1
    assert WeComUser.objects.get(tenant=tenant, userid=leaver).removed
    not_visible = set(WeComUser.objects.filter(tenant=tenant, visible=False).values_list("userid", flat=True))
    assert not_visible == hidden
    assert not WeComUser.objects.filter(tenant=tenant, userid__in=hidden, removed=True).exists()


def test_confirm_never_creates_an_account_for_a_member_it_cannot_read(tenant, fake_wecom):
    org = fake_wecom.org
    run_sync(tenant)
    departments, visible = half_range(org)
    fake_wecom.restricted = True
    fake_wecom.set_visible_range(departments=departments)
    run = run_sync(tenant)
    hidden = next(u for u in org.users if u not in visible)

    with pytest.raises(sync.ConfirmError) as caught:
        sync.confirm_run(run, decisions=[sync.Decision(hidden, "create")])

    assert caught.value.errors[0]["code"] in ("wecom_user_not_visible", "wecom_user_bound")
    assert not User.objects.filter(first_name=hidden).exists()


def test_review_screen_lists_the_members_outside_the_range_in_both_languages(client, tenant, fake_wecom):
    org = fake_wecom.org
    fake_wecom.restricted = True
    departments, visible = half_range(org)
    fake_wecom.set_visible_range(departments=departments)
    run = run_sync(tenant)
    client.force_login(make_tenant_admin("vis-tadmin", tenant))
    url = reverse("admin:wecom_integration_syncrun_review", args=[run.pk])
    hidden = sorted(set(org.users) - visible)

    english = client.get(url).content.decode()
    chinese = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert f"{len(hidden)} WeCom members are outside the app's visible range" in english
    assert "Visible Range" in english and hidden[0] in english
    assert "可见范围" in chinese and hidden[0] in chinese
    assert "outside the app" not in chinese
    progress = client.get(reverse("admin:wecom_integration_syncrun_progress", args=[run.pk]))
    assert progress.status_code == 200


# Customers and the visible range (issue 23) ---------------------------------------------------------


def relations(tenant):
    return {
        (external_userid, userid): (removed, visible)
        for external_userid, userid, removed, visible in FollowUser.objects.filter(contact__tenant=tenant)
        .values_list("contact__external_userid", "userid", "removed", "visible")
    }


def test_customer_relations_of_members_outside_the_range_are_kept(client, tenant, fake_wecom):
    org = fake_wecom.org
    config = tenant.wecom_config
    # Customers are read with the app Secret (authorised for customer contact), bound by its visible range.
    config.customer_secret = ""
    config.customer_credential = "app"
    config.save()
    fake_wecom.customer_app_authorised = True
    run_sync(tenant)
    assert run_customers(tenant).status == SyncRun.Status.SUCCEEDED
    before = relations(tenant)
    departments, visible = half_range(org)
    hidden_members = set(org.users) - visible
    hidden_relations = {key for key in before if key[1] in hidden_members}
    assert hidden_relations and len(hidden_relations) < len(before)
    fake_wecom.set_visible_range(departments=departments)
    # One relation of a visible member really ends.
    ended_member = next(u for u in org.users.values() if u.userid in visible and u.follows)
    ended = (ended_member.follows[0].contact.external_userid, ended_member.userid)
    with org.lock:
        follow = ended_member.follows.pop(0)
        follow.contact.followers.remove(follow)

    run = run_customers(tenant)

    assert run.status == SyncRun.Status.SUCCEEDED, run.errors
    after = relations(tenant)
    # Before the fix every relation of a member outside the range was ended here; now none is.
    assert all(after[key] == (False, False) for key in hidden_relations)
    assert after[ended] == (True, True)
    assert run.counts["follow_users"]["removed"] == 1
    assert run.counts["follow_users"]["not_visible"] == len(hidden_relations)
    assert run.counts["outside_range"]["users"] == len({k[1] for k in hidden_relations})
    assert not ExternalContact.objects.filter(
        tenant=tenant, removed=True, follow_users__userid__in=hidden_members
    ).exists()

    # The customer pages say so, with what to change.
    client.force_login(make_tenant_admin("cust-tadmin", tenant))
    listing = client.get(reverse("admin:wecom_integration_externalcontact_changelist"), follow=True)
    texts = [str(m) for m in listing.context["messages"]]
    assert any("not visible to the app that reads customers" in t and "Visible Range" in t for t in texts)
    contact = ExternalContact.objects.get(tenant=tenant, external_userid=next(iter(hidden_relations))[0])
    page = client.get(reverse("admin:wecom_integration_externalcontact_change", args=[contact.pk]))
    assert any("可见范围" in str(m) for m in page.context["messages"])

    # Widened again: the relations are visible, and nothing was lost meanwhile.
    fake_wecom.clear_visible_range()
    run_customers(tenant)
    final = relations(tenant)
    assert all(final[key] == (False, True) for key in hidden_relations)


def test_customer_sync_with_the_customer_secret_sees_every_relation(tenant, fake_wecom):
    org = fake_wecom.org
    run_sync(tenant)
    departments, _visible = half_range(org)
    fake_wecom.set_visible_range(departments=departments)  # binds the app, not the customer Secret

    run = run_customers(tenant)

    assert run.counts["follow_users"]["created"] == sum(len(c.followers) for c in org.external_contacts.values())
    assert run.counts["outside_range"]["users"] == 0
    assert fake_wecom.calls["externalcontact/list"] == 0
