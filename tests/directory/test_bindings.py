"""Bindings: one-to-one per tenant, manual bind and Remove, the audit trail, and their admin screens."""

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse

from tenants.models import Membership
from tenants.services import decide_memberships
from tests.factories import config_from_fake, make_member, make_tenant, make_tenant_admin, make_user
from wecom_integration.directory import bindings, sync
from wecom_integration.models import AuditLog, Binding, SyncRun, WeComUser

User = get_user_model()
pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant():
    return make_tenant("bt")


def member(tenant, userid, name="某人", status=1, removed=False):
    return WeComUser.objects.create(tenant=tenant, userid=userid, name=name, status=status, removed=removed)


def account(tenant, username, status=Membership.Status.ACTIVE):
    user = make_user(username, password=None)
    if status:
        make_member(user, tenant, status=status)
    return user


# The service ---------------------------------------------------------------------------------------


def test_bind_records_who_and_what(tenant):
    admin = make_user("boss", password=None)
    user, wecom_user = account(tenant, "u1"), member(tenant, "w1")

    binding = bindings.bind(tenant, user, wecom_user, actor=admin)

    assert binding.is_active and binding.user == user and binding.wecom_user == wecom_user
    record = AuditLog.objects.get(tenant=tenant, action="bind")
    assert (record.actor, record.target_user, record.wecom_userid) == (admin, user, "w1")
    assert record.detail["source"] == "manual"
    assert record.created_at is not None


def test_binding_is_one_to_one_per_tenant(tenant):
    user, other_user = account(tenant, "u1"), account(tenant, "u2")
    first, second = member(tenant, "w1"), member(tenant, "w2")
    bindings.bind(tenant, user, first)

    with pytest.raises(bindings.BindingError) as taken:
        bindings.bind(tenant, other_user, first)
    assert taken.value.code == "wecom_user_bound"
    with pytest.raises(bindings.BindingError) as busy:
        bindings.bind(tenant, user, second)
    assert busy.value.code == "user_bound"
    # The same account may be bound in another tenant: one-to-one is per tenant.
    elsewhere = make_tenant("other")
    make_member(user, elsewhere)
    bindings.bind(elsewhere, user, member(elsewhere, "w1"))
    assert Binding.objects.filter(user=user).count() == 2


def test_binding_a_member_of_another_tenant_or_who_left_is_refused(tenant):
    user = account(tenant, "u1")
    foreign = member(make_tenant("x"), "w9")
    with pytest.raises(bindings.BindingError) as caught:
        bindings.bind(tenant, user, foreign)
    assert caught.value.code == "other_tenant"
    for wecom_user in (member(tenant, "quit", status=5), member(tenant, "off", status=2),
                       member(tenant, "gone", removed=True)):
        with pytest.raises(bindings.BindingError) as left:
            bindings.bind(tenant, user, wecom_user)
        assert left.value.code == "wecom_user_left"
    assert not Binding.objects.exists()


def test_binding_a_non_member_makes_them_pending(tenant):
    outsider = account(tenant, "out", status=None)
    bindings.bind(tenant, outsider, member(tenant, "w1"))
    assert Membership.objects.get(user=outsider, tenant=tenant).status == Membership.Status.PENDING
    assert AuditLog.objects.filter(tenant=tenant, action="pending", target_user=outsider).exists()
    assert AuditLog.objects.get(tenant=tenant, action="bind").detail["membership"] == "pending"


def test_rebinding_a_deactivated_pair_reactivates_it(tenant):
    user, wecom_user = account(tenant, "u1"), member(tenant, "w1")
    binding = Binding.objects.create(tenant=tenant, user=user, wecom_user=wecom_user, is_active=False)
    again = bindings.bind(tenant, user, wecom_user)
    assert again.pk == binding.pk and again.is_active


def test_unbind_keeps_the_user_and_is_audited(tenant):
    admin = make_user("boss", password=None)
    user = account(tenant, "u1")
    binding = bindings.bind(tenant, user, member(tenant, "w1"))

    bindings.unbind(binding, actor=admin)

    assert not Binding.objects.exists()
    assert User.objects.filter(pk=user.pk, is_active=True).exists()
    assert Membership.objects.get(user=user, tenant=tenant).status == Membership.Status.ACTIVE
    record = AuditLog.objects.get(action="unbind")
    assert (record.actor, record.target_user, record.wecom_userid) == (admin, user, "w1")


def test_approval_and_rejection_are_audited(tenant):
    admin = make_user("boss", password=None)
    waiting = account(tenant, "wait", status=None)
    bindings.bind(tenant, waiting, member(tenant, "w1"))
    refused = account(tenant, "no", status=Membership.Status.PENDING)

    decide_memberships(Membership.objects.filter(user=waiting), Membership.Status.ACTIVE, actor=admin)
    decide_memberships(Membership.objects.filter(user=refused), Membership.Status.REJECTED, actor=admin)

    approve = AuditLog.objects.get(action="approve")
    assert (approve.actor, approve.target_user, approve.wecom_userid) == (admin, waiting, "w1")
    reject = AuditLog.objects.get(action="reject")
    assert (reject.actor, reject.target_user, reject.wecom_userid) == (admin, refused, "")


def test_the_hook_is_registered_once():
    from tenants.services import decision_hooks
    from wecom_integration.tenancy import connect_default_backend

    connect_default_backend(bindings.record_membership_decision)
    connect_default_backend(bindings.record_membership_decision)
    assert decision_hooks.count(bindings.record_membership_decision) == 1


# The bound-users screen ----------------------------------------------------------------------------


@pytest.fixture
def screen(client, tenant):
    """A tenant admin logged in, two bindings in their tenant and one in another."""
    admin = make_tenant_admin("badmin", tenant)
    client.force_login(admin)
    other = make_tenant("elsewhere")
    rows = {
        "zhang": bindings.bind(tenant, account(tenant, "zhang"), member(tenant, "zhangsan", "张三")),
        "li": bindings.bind(tenant, account(tenant, "li"), member(tenant, "lisi", "李四")),
        "foreign": bindings.bind(other, account(other, "wang"), member(other, "wangwu", "王五")),
    }
    return admin, rows


def changelist(client, **params):
    return client.get(reverse("admin:wecom_integration_binding_changelist"), params)


def test_bound_users_screen_lists_searches_and_filters(client, screen):
    _admin, rows = screen
    page = changelist(client)
    assert page.status_code == 200
    shown = {b.pk for b in page.context["cl"].result_list}
    assert shown == {rows["zhang"].pk, rows["li"].pk}
    assert "王五" not in page.content.decode()
    assert {b.pk for b in changelist(client, q="李四").context["cl"].result_list} == {rows["li"].pk}
    assert {b.pk for b in changelist(client, q="zhangsan").context["cl"].result_list} == {rows["zhang"].pk}
    Binding.objects.filter(pk=rows["li"].pk).update(is_active=False)
    inactive = changelist(client, is_active__exact="0").context["cl"].result_list
    assert {b.pk for b in inactive} == {rows["li"].pk}


def test_remove_action_unbinds_and_keeps_users(client, screen):
    admin, rows = screen
    answer = client.post(
        reverse("admin:wecom_integration_binding_changelist"),
        {"action": "remove_bindings", "_selected_action": [rows["zhang"].pk, rows["foreign"].pk]},
    )
    assert answer.status_code == 302
    # Only the admin's own tenant's binding is touched; the other is out of reach.
    assert not Binding.objects.filter(pk=rows["zhang"].pk).exists()
    assert Binding.objects.filter(pk=rows["foreign"].pk).exists()
    assert User.objects.filter(username="zhang").exists()
    assert AuditLog.objects.filter(action="unbind", actor=admin, wecom_userid="zhangsan").exists()


def test_manual_bind_form(client, screen, tenant):
    admin, _rows = screen
    user = account(tenant, "new-one")
    wecom_user = member(tenant, "zhaoliu", "赵六")
    url = reverse("admin:wecom_integration_binding_add")
    assert client.get(url).status_code == 200

    answer = client.post(url, {"tenant": tenant.pk, "user": user.pk, "wecom_user": wecom_user.pk})

    assert answer.status_code == 302, answer.content.decode()[:3000]
    assert Binding.objects.get(tenant=tenant, user=user).wecom_user == wecom_user
    assert AuditLog.objects.filter(action="bind", actor=admin, target_user=user, wecom_userid="zhaoliu").exists()


def test_manual_bind_form_shows_why_it_is_refused(client, screen, tenant):
    _admin, _rows = screen
    user = account(tenant, "second")
    taken = WeComUser.objects.get(userid="zhangsan")

    answer = client.post(
        reverse("admin:wecom_integration_binding_add"),
        {"tenant": tenant.pk, "user": user.pk, "wecom_user": taken.pk},
    )

    assert answer.status_code == 200
    assert "zhangsan" in str(answer.context["adminform"].form.non_field_errors())
    assert not Binding.objects.filter(user=user).exists()


def test_manual_bind_cannot_use_another_tenants_member(client, screen, tenant):
    user = account(tenant, "third")
    foreign = WeComUser.objects.get(userid="wangwu")
    answer = client.post(
        reverse("admin:wecom_integration_binding_add"),
        {"tenant": tenant.pk, "user": user.pk, "wecom_user": foreign.pk},
    )
    assert answer.status_code == 200  # the form refuses the choice
    assert not Binding.objects.filter(user=user).exists()


def test_audit_log_is_read_only_and_scoped(client, screen):
    page = client.get(reverse("admin:wecom_integration_auditlog_changelist"))
    assert page.status_code == 200
    records = page.context["cl"].result_list
    assert records and all(r.tenant.code == "bt" for r in records)
    record = records[0]
    assert client.get(reverse("admin:wecom_integration_auditlog_add")).status_code == 403
    change = client.post(reverse("admin:wecom_integration_auditlog_change", args=[record.pk]), {"action": "unbind"})
    assert change.status_code in (200, 403)
    record.refresh_from_db()
    assert record.action == "bind"


# The sync screens ----------------------------------------------------------------------------------


@pytest.fixture
def synced(client, fake_wecom, django_capture_on_commit_callbacks):
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base}):
        tenant = make_tenant("adm")
        config_from_fake(tenant, fake_wecom)
        admin = make_tenant_admin("sadmin", tenant)
        client.force_login(admin)
        with django_capture_on_commit_callbacks(execute=True):
            answer = client.post(reverse("admin:wecom_integration_syncrun_start"), {"tenant": tenant.pk})
        yield tenant, admin, answer


def test_sync_button_starts_a_run_and_shows_its_progress(client, synced):
    tenant, admin, answer = synced
    run = SyncRun.objects.get(tenant=tenant)
    assert answer.status_code == 302
    assert answer["Location"] == reverse("admin:wecom_integration_syncrun_progress", args=[run.pk])
    assert run.started_by == admin and run.status == SyncRun.Status.REVIEW
    page = client.get(answer["Location"])
    assert page.status_code == 200
    assert reverse("admin:wecom_integration_syncrun_progress_json", args=[run.pk]) in page.content.decode()
    state = client.get(reverse("admin:wecom_integration_syncrun_progress_json", args=[run.pk])).json()
    assert state["status"] == "review" and state["finished"] and state["counts"]["users"]["created"] == 60
    listing = client.get(reverse("admin:wecom_integration_syncrun_changelist"))
    assert listing.status_code == 200
    assert list(listing.context["sync_tenants"]) == [tenant]
    assert reverse("admin:wecom_integration_syncrun_start") in listing.content.decode()
    assert run.pk in {r.pk for r in listing.context["cl"].result_list}


def test_sync_button_refuses_a_second_run_and_other_tenants(client, synced):
    tenant, _admin, _answer = synced
    SyncRun.objects.create(tenant=tenant, status=SyncRun.Status.RUNNING)
    again = client.post(reverse("admin:wecom_integration_syncrun_start"), {"tenant": tenant.pk})
    assert again.status_code == 302
    assert SyncRun.objects.filter(tenant=tenant).count() == 2
    other = make_tenant("not-mine")
    assert client.post(reverse("admin:wecom_integration_syncrun_start"), {"tenant": other.pk}).status_code == 403
    assert not SyncRun.objects.filter(tenant=other).exists()


def test_review_screen_edit_and_confirm(client, synced):
    tenant, admin, _answer = synced
    run = SyncRun.objects.get(tenant=tenant)
    url = reverse("admin:wecom_integration_syncrun_review", args=[run.pk])
    page = client.get(url)
    assert page.status_code == 200
    proposals = list(page.context["page"])
    assert proposals and proposals[0].ambiguous  # the ambiguous ones first
    target = account(tenant, "picked")
    row = next(p for p in proposals if not p.ambiguous)
    skipped = next(p for p in proposals if p.pk != row.pk and not p.ambiguous)
    data = {"proposal": [row.pk, skipped.pk], f"action-{row.pk}": "bind", f"username-{row.pk}": "picked",
            f"wecom-{row.pk}": row.wecom_user.userid, f"action-{skipped.pk}": "skip",
            f"username-{skipped.pk}": "", f"wecom-{skipped.pk}": skipped.wecom_user.userid, "confirm": "1"}

    answer = client.post(url, data)

    assert answer.status_code == 302
    run.refresh_from_db()
    assert run.status == SyncRun.Status.CONFIRMED
    assert Binding.objects.get(tenant=tenant, user=target).wecom_user == row.wecom_user
    assert not Binding.objects.filter(tenant=tenant, wecom_user=skipped.wecom_user).exists()
    assert AuditLog.objects.filter(tenant=tenant, action="bind", actor=admin, target_user=target).exists()
    assert User.objects.filter(username__startswith="adm").count() > 1  # the others got accounts


def test_review_screen_search_is_scoped(client, synced):
    tenant, _admin, _answer = synced
    run = SyncRun.objects.get(tenant=tenant)
    url = reverse("admin:wecom_integration_syncrun_review_search", args=[run.pk])
    account(tenant, "findme")
    outside = make_tenant("zz")
    account(outside, "findme-not")
    accounts = client.get(url, {"kind": "accounts", "q": "findme"}).json()["results"]
    assert [a["value"] for a in accounts] == ["findme"]
    some = WeComUser.objects.filter(tenant=tenant, status=1).first()
    members = client.get(url, {"kind": "members", "q": some.userid}).json()["results"]
    assert some.userid in [m["value"] for m in members]


def test_sync_screens_of_another_tenant_are_refused(client, synced):
    _tenant, _admin, _answer = synced
    other = make_tenant("theirs")
    run = sync.create_run(other)
    for name in ("progress", "progress_json", "review", "review_search"):
        assert client.get(reverse(f"admin:wecom_integration_syncrun_{name}", args=[run.pk])).status_code == 403
    assert client.post(reverse("admin:wecom_integration_syncrun_review", args=[run.pk]), {}).status_code == 403


def test_org_chart_shows_the_tree_with_head_counts(client, synced, fake_wecom):
    tenant, _admin, _answer = synced
    page = client.get(reverse("admin:wecom_integration_department_org_chart"))
    assert page.status_code == 200
    tree = page.context["tree"]
    root = tree[0]
    org = fake_wecom.org
    counted = sum(1 for u in org.users.values() if u.status != 5)
    assert root["id"] == 1 and root["total"] == counted
    assert root["direct"] == sum(1 for u in org.users.values() if 1 in u.departments)
    leaves = [t for t in tree if t["kind"] == "leaf"]
    assert leaves and all(t["direct"] == sum(1 for u in org.users.values() if t["id"] in u.departments)
                          for t in leaves)
    assert sum(1 for t in tree if t["kind"] == "open") == sum(1 for t in tree if t["kind"] == "close")
    html = page.content.decode()
    assert org.departments[1].name in html
    other = make_tenant("hidden")
    assert client.get(reverse("admin:wecom_integration_department_org_chart"), {"tenant": other.pk}).status_code == 403
