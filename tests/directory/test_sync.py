"""The contact sync against the fake WeCom over real HTTP: fetch, mirror, matching, confirm."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from tenants.models import Membership
from tests.factories import config_from_fake, make_member, make_tenant, make_user
from wecom_integration.directory import sync
from wecom_integration.directory.services import user_fingerprint
from wecom_integration.directory.tasks import periodic_sync, run_contact_sync
from wecom_integration.models import AuditLog, Binding, Department, SyncProposal, SyncRun, WeComUser

User = get_user_model()
MIRROR_TABLES = ("wecom_integration_wecomuser", "wecom_integration_department", "wecom_integration_binding")


@pytest.fixture
def api_base(fake_wecom):
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base}):
        yield fake_wecom.api_base


@pytest.fixture
def tenant(db, fake_wecom, api_base):
    tenant = make_tenant("acme")
    config_from_fake(tenant, fake_wecom)
    return tenant


def run_sync(tenant, actor="admin", **kwargs):
    """A sync as an admin starts it (``actor=None``: as celery beat does)."""
    if actor == "admin":
        actor = User.objects.filter(username="sync-admin").first() or make_user("sync-admin", password=None)
    run = sync.create_run(tenant, actor=actor)
    return sync.execute_contact_run(run.pk, **kwargs)


def mirror_state(tenant):
    users = list(
        WeComUser.objects.filter(tenant=tenant)
        .order_by("userid")
        .values_list("userid", "name", "departments", "position", "mobile", "email", "status", "removed", "fingerprint")
    )
    departments = list(
        Department.objects.filter(tenant=tenant)
        .order_by("dept_id")
        .values_list("dept_id", "name", "parent_id", "removed")
    )
    return users, departments


def writes_to_mirror(queries):
    return [
        q["sql"]
        for q in queries
        if q["sql"].split(" ", 1)[0] in ("INSERT", "UPDATE", "DELETE") and any(t in q["sql"] for t in MIRROR_TABLES)
    ]


# Fetch and mirror ----------------------------------------------------------------------------------


def test_first_sync_mirrors_the_whole_organisation(tenant, fake_wecom):
    run = run_sync(tenant)

    assert run.status == SyncRun.Status.REVIEW, run.errors
    assert not run.fallback_mode
    org = fake_wecom.org
    assert WeComUser.objects.filter(tenant=tenant).count() == len(org.users)
    assert set(Department.objects.filter(tenant=tenant).values_list("dept_id", flat=True)) == set(org.departments)
    some = next(u for u in org.users.values() if len(u.departments) > 1)
    row = WeComUser.objects.get(tenant=tenant, userid=some.userid)
    assert row.name == some.name
    assert row.departments == list(some.departments)
    assert row.main_department == some.main_department
    assert row.position == some.position
    assert row.mobile == some.mobile
    assert row.email == some.email
    assert row.fingerprint == user_fingerprint(row)
    dept = org.departments[2]
    mirrored = Department.objects.get(tenant=tenant, dept_id=2)
    assert (mirrored.name, mirrored.parent_id, mirrored.order) == (dept.name, dept.parentid, dept.order)
    assert run.counts["users"]["created"] == len(org.users)
    assert run.started_at and run.finished_at and run.duration is not None


def test_unchanged_resync_writes_nothing_and_keeps_the_same_state(tenant):
    run_sync(tenant)
    before = mirror_state(tenant)

    with CaptureQueriesContext(connection) as queries:
        second = run_sync(tenant)

    assert second.status == SyncRun.Status.REVIEW
    assert second.counts["rows_written"] == 0
    assert second.counts["users"]["unchanged"] == len(before[0])
    assert writes_to_mirror(queries.captured_queries) == []
    assert mirror_state(tenant) == before


def test_changes_removed_and_disabled_members(tenant, fake_wecom):
    org = fake_wecom.org
    run_sync(tenant)
    renamed, removed, disabled = [u for u in org.users.values() if u.status == 1][:3]
    # Bind the two who will leave, to see their bindings and memberships deactivated.
    bound = {}
    for member in (removed, disabled):
        user = make_user(f"u-{member.userid}", password=None)
        make_member(user, tenant)
        Binding.objects.create(tenant=tenant, user=user, wecom_user=WeComUser.objects.get(userid=member.userid))
        bound[member.userid] = user
    with org.lock:
        renamed.name = "改名测试"
        renamed.position = "新岗位"
        org.remove_user(removed)
        disabled.status = 2
        new_dept = org.add_department(org.next_department_id(), "新部门", "New", 1, 5)
        org.add_user("newcomer", "新同事", (new_dept.id,))

    run = run_sync(tenant)

    assert run.status == SyncRun.Status.REVIEW, run.errors
    assert run.counts["users"] == {
        "created": 1, "updated": 2, "removed": 1, "not_visible": 0, "unchanged": len(org.users) - 3, "skipped_newer": 0,
        "written": 4,
    }
    row = WeComUser.objects.get(tenant=tenant, userid=renamed.userid)
    assert (row.name, row.position) == ("改名测试", "新岗位")
    gone = WeComUser.objects.get(tenant=tenant, userid=removed.userid)
    assert gone.removed  # marked, not deleted
    assert WeComUser.objects.get(tenant=tenant, userid=disabled.userid).status == 2
    assert Department.objects.get(tenant=tenant, dept_id=new_dept.id).name == "新部门"
    for userid, user in bound.items():
        binding = Binding.objects.get(tenant=tenant, user=user)
        assert not binding.is_active
        assert Membership.objects.get(user=user, tenant=tenant).status == Membership.Status.INACTIVE
        assert User.objects.filter(pk=user.pk, is_active=True).exists()  # never deleted or disabled
        assert AuditLog.objects.filter(tenant=tenant, action="deactivate", wecom_userid=userid).exists()
    assert run.counts["left"]["bindings"] == 2


def test_bound_members_take_their_new_wecom_name(tenant, fake_wecom):
    org = fake_wecom.org
    run = run_sync(tenant)
    sync.confirm_run(run, accept_proposals=True, create_unmatched=True)
    member = next(u for u in org.users.values() if u.status == 1)
    outsider_member = next(u for u in org.users.values() if u.status == 1 and u is not member)
    # The second account is a pending member here: it belongs to someone else, so it is not renamed.
    pending = Binding.objects.get(tenant=tenant, wecom_user__userid=outsider_member.userid).user
    Membership.objects.filter(user=pending, tenant=tenant).update(status=Membership.Status.PENDING)
    with org.lock:
        member.name = "新名字"
        outsider_member.name = "别动我"

    again = run_sync(tenant)

    user = Binding.objects.get(tenant=tenant, wecom_user__userid=member.userid).user
    assert user.get_full_name() == "新名字"
    pending.refresh_from_db()
    assert pending.first_name != "别动我"
    assert again.counts["accounts_renamed"] == 1


def test_periodic_run_leaves_an_admins_review_alone(tenant):
    admins = run_sync(tenant)
    periodic = run_sync(tenant, actor=None)  # as celery beat starts it
    admins.refresh_from_db()
    assert admins.status == SyncRun.Status.REVIEW and admins.proposals.exists()
    assert periodic.status == SyncRun.Status.SUCCEEDED
    assert periodic.counts["review_left_to"] == admins.pk


def test_membership_kept_when_deactivation_is_switched_off(tenant, fake_wecom, api_base):
    org = fake_wecom.org
    run_sync(tenant)
    member = next(u for u in org.users.values() if u.status == 1)
    user = make_user("keeper", password=None)
    make_member(user, tenant)
    Binding.objects.create(tenant=tenant, user=user, wecom_user=WeComUser.objects.get(userid=member.userid))
    with org.lock:
        member.status = 2

    with override_settings(WECOM={"API_BASE": api_base, "DEACTIVATE_MEMBERSHIP_ON_LEAVE": False}):
        run_sync(tenant)

    assert not Binding.objects.get(user=user).is_active
    assert Membership.objects.get(user=user, tenant=tenant).status == Membership.Status.ACTIVE


def test_removed_department_is_marked_and_comes_back(tenant, fake_wecom):
    org = fake_wecom.org
    with org.lock:
        leaf = org.add_department(org.next_department_id(), "临时组", "Temp", 1, 1)
    run_sync(tenant)
    with org.lock:
        org.remove_department(leaf)
    run_sync(tenant)
    assert Department.objects.get(tenant=tenant, dept_id=leaf.id).removed
    with org.lock:
        org.add_department(leaf.id, "临时组", "Temp", 1, 1)
    run = run_sync(tenant)
    assert not Department.objects.get(tenant=tenant, dept_id=leaf.id).removed
    assert run.counts["departments"]["updated"] == 1


def test_fallback_mode_when_the_full_lists_are_forbidden(tenant, fake_wecom):
    fake_wecom.restricted = True

    run = run_sync(tenant)

    assert run.status == SyncRun.Status.REVIEW, run.errors
    assert run.fallback_mode
    # Details come from the app Secret in bulk: no user/get when every member is in a listed department.
    assert fake_wecom.calls["user/get"] == 0 and fake_wecom.calls["user/list"] >= 1
    assert fake_wecom.gettoken_calls["app"] == 1
    some = next(iter(fake_wecom.org.users.values()))
    row = WeComUser.objects.get(tenant=tenant, userid=some.userid)
    assert row.name == some.name and row.departments == list(some.departments)
    assert row.position == some.position
    assert row.mobile == ""  # withheld from a new app under the 2022 rules
    names = dict(Department.objects.filter(tenant=tenant).values_list("dept_id", "name"))
    assert names == {d.id: d.name for d in fake_wecom.org.departments.values()}
    again = run_sync(tenant)
    assert again.counts["rows_written"] == 0


def test_fallback_keeps_what_wecom_withholds(tenant, fake_wecom):
    run_sync(tenant)
    before = mirror_state(tenant)
    fake_wecom.restricted = True

    run = run_sync(tenant)

    assert run.fallback_mode
    assert run.counts["rows_written"] == 0
    assert mirror_state(tenant) == before  # mobiles, emails and department names stay


def test_failed_fetch_leaves_the_mirror_unchanged(tenant, fake_wecom):
    org = fake_wecom.org
    run_sync(tenant)
    before = mirror_state(tenant)
    with org.lock:
        first = next(iter(org.users.values()))
        first.name = "不该出现"
    fake_wecom.restricted = True
    fake_wecom.set_visible_range(users=list(org.users)[:40])  # 40 user/get calls
    fake_wecom.reset_stats()
    # 40058 is not retried by the client: the run fails part-way through the user/get calls.
    fake_wecom.set_faults(error_rate=0.2, errcodes=[40058], paths=["user/get"], seed=3)

    run = run_sync(tenant)

    assert run.status == SyncRun.Status.FAILED
    assert run.errors[-1]["errcode"] == 40058
    assert run.errors[-1]["path"] == "user/get"
    assert fake_wecom.calls["user/get"] > 1  # it had fetched some before failing
    assert mirror_state(tenant) == before
    assert run.finished_at is not None


def test_missing_configuration_fails_the_run_with_a_message(db):
    tenant = make_tenant("bare")
    run = run_sync(tenant)
    assert run.status == SyncRun.Status.FAILED
    assert run.errors[-1]["message"]


def test_disabled_integration_is_not_synced(tenant, fake_wecom):
    tenant.wecom_config.enabled = False
    tenant.wecom_config.save()
    run = run_sync(tenant)
    assert run.status == SyncRun.Status.FAILED
    assert "switched off" in run.errors[-1]["message"]
    assert sum(fake_wecom.calls.values()) == 0


def test_one_sync_at_a_time(tenant):
    first = sync.create_run(tenant)
    with pytest.raises(sync.SyncAlreadyRunning) as caught:
        sync.create_run(tenant)
    assert caught.value.run == first
    # A customer sync is another kind and may run alongside.
    sync.create_run(tenant, SyncRun.Kind.CUSTOMERS)
    sync.execute_contact_run(first.pk)
    sync.create_run(tenant)  # free again once finished


@pytest.mark.django_db(transaction=True)
def test_progress_is_saved_outside_the_transaction_as_it_goes(fake_wecom, api_base):
    tenant = make_tenant("prog")
    config_from_fake(tenant, fake_wecom)
    fake_wecom.restricted = True
    # Members put in the app's range one by one: one user/get each, a long phase with many steps.
    fake_wecom.set_visible_range(users=list(fake_wecom.org.users))
    run = sync.create_run(tenant)
    seen = []

    def spy(execute, sql, params, many, context):
        if sql.startswith("UPDATE") and "wecom_integration_syncrun" in sql and '"phase"' in sql:
            seen.append((connection.in_atomic_block, list(params)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        finished = sync.execute_contact_run(run.pk)

    assert finished.status == SyncRun.Status.REVIEW
    progress = [params for atomic, params in seen if not atomic]
    phases = [p[0] for p in progress]
    assert {"departments", "user_ids", "details", "saving"} <= set(phases)
    details = [(p[1], p[2]) for p in progress if p[0] == "details"]
    total = len(fake_wecom.org.users)
    assert any(0 < done < total for done, _total in details)
    assert details[-1] == (total, total)


def test_callback_newer_than_the_fetch_is_not_overwritten(tenant, fake_wecom):
    run_sync(tenant)
    member = next(iter(fake_wecom.org.users.values()))
    # A contact callback applied after the fetch began carries a later CreateTime.
    WeComUser.objects.filter(tenant=tenant, userid=member.userid).update(name="回调新名", last_event_time=2**40)
    with fake_wecom.org.lock:
        member.position = "changed"
    run = run_sync(tenant)
    assert run.counts["users"]["skipped_newer"] == 1
    assert WeComUser.objects.get(tenant=tenant, userid=member.userid).name == "回调新名"


def test_rate_limited_sync_is_retried_by_the_task(tenant, fake_wecom):
    # department/list answers 45009 about half the time: the task retries until a run gets through.
    fake_wecom.set_faults(error_rate=0.5, errcodes=[45009], paths=["department/list"], seed=7)
    run = sync.create_run(tenant)

    run_contact_sync.delay(run.pk)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.REVIEW
    limited = [e for e in run.errors if e.get("errcode") == 45009]
    assert limited and all(e["retry_after"] >= 60 for e in limited)


def test_rate_limited_without_end_fails_the_run(tenant, fake_wecom):
    fake_wecom.set_faults(error_rate=1.0, errcodes=[45009], paths=["department/list"])
    run = sync.create_run(tenant)

    run_contact_sync.delay(run.pk)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.FAILED
    assert run.errors[-1]["errcode"] == 45009


def test_periodic_sync_starts_due_tenants_only(tenant, db, django_capture_on_commit_callbacks):
    config = tenant.wecom_config
    other = make_tenant("quiet")
    with django_capture_on_commit_callbacks(execute=True):
        assert periodic_sync() == []  # off by default
    config.periodic_sync = True
    config.sync_interval_minutes = 60
    config.save()

    with django_capture_on_commit_callbacks(execute=True):
        started = periodic_sync()
    assert len(started) == 1
    assert SyncRun.objects.get(pk=started[0]).status == SyncRun.Status.REVIEW
    with django_capture_on_commit_callbacks(execute=True):
        assert periodic_sync() == []  # not due again yet
    assert not SyncRun.objects.filter(tenant=other).exists()


def test_stale_runs_are_failed(tenant):
    run = sync.create_run(tenant)
    SyncRun.objects.filter(pk=run.pk).update(created_at=run.created_at - __import__("datetime").timedelta(hours=9))
    assert sync.fail_stale_runs(3600) == 1
    run.refresh_from_db()
    assert run.status == SyncRun.Status.FAILED
    sync.create_run(tenant)


def test_plan_user_lists_covers_every_department_once():
    # 1 ─ 2 ─ 4 ─ 6
    #   │   └ 5
    #   └ 3
    # 7 is in a parent cycle with 8 (never a real tree, but it must not be lost).
    tree = {1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 8: 7}
    departments = {d: {"parent_id": p} for d, p in tree.items()}

    plan = sync.plan_user_lists(departments, subtree_limit=3)

    assert sorted(plan) == [(1, False), (2, False), (3, False), (4, True), (5, False), (7, False), (8, False)]
    assert sync.plan_user_lists(departments, subtree_limit=100)[0] == (1, True)


def test_recursion_is_trusted_only_when_proven(tenant, fake_wecom, monkeypatch):
    """``fetch_child`` is deprecated: an answer with no member below the department asked for may
    be a WeCom that ignored it, so the departments below are asked for one by one."""
    org = fake_wecom.org
    with org.lock:
        top = org.add_department(org.next_department_id(), "上层", "Top", 1, 1)
        below = org.add_department(org.next_department_id(), "下层", "Below", top.id, 1)
        org.add_user("only-top", "顶层", (top.id,))
    monkeypatch.setattr(sync.fetching, "SUBTREE_DEPARTMENTS", 2)  # the tuning knob, so the small org splits
    departments = {d.id: {"parent_id": d.parentid} for d in org.departments.values()}
    plan = sync.plan_user_lists(departments)
    assert (top.id, True) in plan

    def proven(dept_id):
        subtree = {d.id for d in org.subtree(dept_id)} - {dept_id}
        return any(set(u.departments) & subtree for u in org.members_of(dept_id, recursive=True))

    unproven_below = sum(len(org.subtree(d)) - 1 for d, recursive in plan if recursive and not proven(d))
    fake_wecom.reset_stats()

    run = run_sync(tenant)

    assert run.status == SyncRun.Status.REVIEW, run.errors
    assert fake_wecom.calls["user/list"] == len(plan) + unproven_below
    assert unproven_below >= 1  # "下层" was asked for on its own
    assert WeComUser.objects.filter(tenant=tenant).count() == len(org.users)
    assert WeComUser.objects.get(tenant=tenant, userid="only-top").departments == [top.id]
    assert Department.objects.get(tenant=tenant, dept_id=below.id).parent_id == top.id


# Matching ------------------------------------------------------------------------------------------


def test_normalize_name():
    assert sync.normalize_name("  王　明 ") == "王明"  # ideographic space, trimmed
    assert sync.normalize_name("ＺＨＡＮＧ  Wei") == "zhang wei"  # full width, collapsed, folded
    assert sync.normalize_name("John   Smith") == "john smith"
    assert sync.normalize_name("") == ""


def test_match_names_rules():
    wecom = [
        (1, "王明"),  # user 10 is 王 + 明
        (2, "张伟"),
        (3, "张伟"),  # two 张伟 in WeCom: ambiguous
        (4, "李娜"),  # two 李娜 accounts: ambiguous
        (5, "ＪＯＨＮ Smith"),
        (6, "无人"),
        (7, ""),
    ]
    users = [
        (10, "明", "王"),
        (11, "张伟", ""),
        (12, "李娜", ""),
        (13, "娜", "李"),
        (14, "John", "Smith"),
    ]
    result = sync.match_names(wecom, users)
    assert result[1].user_id == 10 and not result[1].ambiguous
    assert result[2].user_id is None and result[2].ambiguous
    assert result[3].user_id is None and result[3].ambiguous
    assert result[4].user_id is None and result[4].ambiguous and set(result[4].candidates) == {12, 13}
    assert result[5].user_id == 14
    assert result[6].user_id is None and not result[6].ambiguous and not result[6].candidates
    assert result[7].user_id is None and not result[7].ambiguous


def test_one_account_matching_two_spellings_is_ambiguous():
    result = sync.match_names([(1, "王明"), (2, "明 王")], [(10, "明", "王")])
    assert result[1].user_id is None and result[1].ambiguous
    assert result[2].user_id is None and result[2].ambiguous


def _member(tenant, userid, name, status=1):
    return WeComUser.objects.create(tenant=tenant, userid=userid, name=name, status=status)


def _review_run(tenant):
    run = SyncRun.objects.create(tenant=tenant, status=SyncRun.Status.REVIEW)
    sync.build_proposals(run)
    return run


def test_proposals_skip_bound_members_and_accounts(db):
    tenant = make_tenant("match")
    bound_member = _member(tenant, "bound", "赵六")
    free_member = _member(tenant, "free", "赵六")
    _member(tenant, "gone", "钱七", status=5)
    bound_user = make_user("zhao-bound", first_name="赵六", password=None)
    make_member(bound_user, tenant)
    Binding.objects.create(tenant=tenant, user=bound_user, wecom_user=bound_member)
    free_user = make_user("zhao-free", first_name="六", last_name="赵", password=None)
    make_member(free_user, tenant)
    outsider = make_user("qian", first_name="钱七", password=None)  # not a member: never proposed

    run = _review_run(tenant)

    proposals = {p.wecom_user.userid: p for p in run.proposals.select_related("wecom_user")}
    assert set(proposals) == {"free"}  # bound and quit members get none
    assert proposals["free"] == SyncProposal.objects.get(run=run, wecom_user=free_member)
    assert proposals["free"].user == free_user
    assert proposals["free"].action == SyncProposal.Action.BIND
    assert not SyncProposal.objects.filter(user=outsider).exists()


def test_proposal_actions_and_notes(db):
    tenant = make_tenant("notes")
    _member(tenant, "a1", "张伟")
    _member(tenant, "a2", "张伟")
    _member(tenant, "b1", "李娜")
    _member(tenant, "c1", "孤独")
    for username in ("lina1", "lina2"):
        make_member(make_user(username, first_name="李娜", password=None), tenant)

    run = _review_run(tenant)
    proposals = {p.wecom_user.userid: p for p in run.proposals.select_related("wecom_user")}

    # Same name twice in WeCom, nobody in the tenant: new accounts are safe, but flagged.
    assert proposals["a1"].action == "create" and proposals["a1"].ambiguous
    assert proposals["b1"].action == "skip" and proposals["b1"].ambiguous
    assert "lina1" in proposals["b1"].note and "lina2" in proposals["b1"].note
    assert proposals["c1"].action == "create" and not proposals["c1"].ambiguous


def test_a_new_review_supersedes_the_old_one(tenant):
    first = run_sync(tenant)
    second = run_sync(tenant)
    first.refresh_from_db()
    assert first.status == SyncRun.Status.SUCCEEDED
    assert first.counts["superseded_by"] == second.pk
    assert not first.proposals.exists()
    assert second.proposals.exists()


# Confirm -------------------------------------------------------------------------------------------


@pytest.fixture
def review(db):
    """A tenant with a mirror and accounts, and a run waiting for review."""
    tenant = make_tenant("T01")
    members = {
        "wangming": _member(tenant, "wangming", "王明"),
        "lisi": _member(tenant, "lisi", "李四"),
        "zhaoliu": _member(tenant, "zhaoliu", "赵六"),
        "sunqi": _member(tenant, "sunqi", "孙七"),
    }
    wang = make_user("wang", first_name="明", last_name="王", password=None)
    make_member(wang, tenant)
    outsider = make_user("outsider", first_name="Someone", password=None)  # no membership in this tenant
    run = _review_run(tenant)
    return tenant, members, wang, outsider, run


def test_confirm_binds_matches_and_creates_accounts(review):
    tenant, members, wang, _outsider, run = review
    admin = make_user("boss", password=None)

    counts = sync.confirm_run(run, actor=admin, accept_proposals=True, create_unmatched=True)

    assert counts["bound"] == 4 and counts["created"] == 3 and counts["pending"] == 0
    assert Binding.objects.get(tenant=tenant, wecom_user=members["wangming"]).user == wang
    wang.refresh_from_db()
    assert wang.get_full_name() == "王明"  # an existing member takes the WeCom name
    created = User.objects.get(username="T01lisi")
    assert created.first_name == "李四"
    assert not created.has_usable_password()
    assert not created.check_password("T01lisi")  # not seed 001's password = username
    assert Membership.objects.get(user=created, tenant=tenant).status == Membership.Status.ACTIVE
    assert Binding.objects.get(tenant=tenant, user=created).wecom_user == members["lisi"]
    assert AuditLog.objects.filter(tenant=tenant, action="create_account", target_user=created, actor=admin).exists()
    assert AuditLog.objects.filter(tenant=tenant, action="bind", wecom_userid="wangming", actor=admin).exists()
    run.refresh_from_db()
    assert run.status == SyncRun.Status.CONFIRMED
    assert run.counts["confirm"]["bound"] == 4


def test_accept_proposals_alone_creates_no_accounts(review):
    tenant, _members, _wang, _outsider, run = review
    counts = sync.confirm_run(run, accept_proposals=True)
    assert counts["bound"] == 1 and counts["created"] == 0
    assert Binding.objects.filter(tenant=tenant).count() == 1


def test_create_for_an_existing_username_makes_a_new_account(review):
    """Issue 16: "create" never binds the existing account of its default name."""
    tenant, _members, _wang, _outsider, run = review
    elsewhere = make_user("T01zhaoliu", first_name="Other name", password=None)

    counts = sync.confirm_run(run, decisions=[sync.Decision("zhaoliu", "create")])

    assert counts == {"bound": 1, "created": 1, "pending": 0, "updated": 0, "skipped": 0}
    created = Binding.objects.get(tenant=tenant, wecom_user__userid="zhaoliu").user
    assert created != elsewhere and created.username == "T01zhaoliu-2"
    assert not Membership.objects.filter(user=elsewhere, tenant=tenant).exists()
    elsewhere.refresh_from_db()
    assert elsewhere.first_name == "Other name"  # their account is not touched


def test_bind_to_a_user_outside_the_tenant_is_pending(review):
    tenant, _members, _wang, outsider, run = review
    sync.confirm_run(run, decisions=[sync.Decision("sunqi", "bind", "outsider")])
    assert Membership.objects.get(user=outsider, tenant=tenant).status == Membership.Status.PENDING
    assert Binding.objects.get(tenant=tenant, user=outsider).wecom_user.userid == "sunqi"


def test_rebinding_a_deactivated_member_makes_them_pending_again(review):
    tenant, _members, _wang, _outsider, run = review
    former = make_user("former", password=None)
    make_member(former, tenant, status=Membership.Status.INACTIVE)
    sync.confirm_run(run, decisions=[sync.Decision("sunqi", "bind", "former")])
    assert Membership.objects.get(user=former, tenant=tenant).status == Membership.Status.PENDING


def test_decisions_override_proposals(review):
    tenant, _members, wang, outsider, run = review
    sync.confirm_run(
        run,
        accept_proposals=True,
        create_unmatched=True,
        decisions=[sync.Decision("wangming", "skip"), sync.Decision("lisi", "bind", "wang")],
    )
    assert Binding.objects.get(tenant=tenant, user=wang).wecom_user.userid == "lisi"
    assert not Binding.objects.filter(tenant=tenant, wecom_user__userid="wangming").exists()


def _snapshot(tenant):
    return (
        sorted(Binding.objects.filter(tenant=tenant).values_list("user_id", "wecom_user_id")),
        sorted(User.objects.values_list("username", "first_name", "last_name")),
        sorted(Membership.objects.values_list("user_id", "tenant_id", "status")),
        AuditLog.objects.count(),
    )


@pytest.mark.parametrize(
    "bad",
    [
        sync.Decision("sunqi", "create", "has space"),  # invalid username
        sync.Decision("sunqi", "create", "x" * 151),  # too long
        sync.Decision("sunqi", "bind", "wang"),  # wang is bound by the proposal earlier in the plan
        sync.Decision("sunqi", "bind", "nobody"),  # no such account
        sync.Decision("ghost", "create"),  # no such member
    ],
)
def test_a_bad_decision_late_in_the_plan_changes_nothing(review, bad):
    tenant, _members, _wang, _outsider, run = review
    before = _snapshot(tenant)

    with pytest.raises(sync.ConfirmError) as caught:
        sync.confirm_run(
            run,
            accept_proposals=True,
            decisions=[sync.Decision("lisi", "create"), sync.Decision("zhaoliu", "create"), bad],
        )

    assert [e["wecom_userid"] for e in caught.value.errors] == [bad.wecom_userid]
    assert _snapshot(tenant) == before
    run.refresh_from_db()
    assert run.status == SyncRun.Status.REVIEW


def test_confirm_refuses_members_already_bound_and_accounts_already_bound(review):
    tenant, members, wang, _outsider, run = review
    other = make_user("other", password=None)
    make_member(other, tenant)
    Binding.objects.create(tenant=tenant, user=other, wecom_user=members["sunqi"])
    before = _snapshot(tenant)

    with pytest.raises(sync.ConfirmError) as caught:
        sync.confirm_run(
            run,
            decisions=[sync.Decision("sunqi", "bind", "wang"), sync.Decision("lisi", "bind", "other")],
        )

    assert {e["code"] for e in caught.value.errors} == {"wecom_user_bound", "user_bound"}
    assert _snapshot(tenant) == before


def test_a_database_failure_midway_rolls_everything_back(review):
    tenant, _members, _wang, _outsider, run = review
    before = _snapshot(tenant)

    def fail_on_binding_insert(execute, sql, params, many, context):
        if sql.startswith("INSERT") and "wecom_integration_binding" in sql:
            raise RuntimeError("disk full")
        return execute(sql, params, many, context)

    # Users and memberships are written before the bindings: the failure comes after them.
    with connection.execute_wrapper(fail_on_binding_insert), pytest.raises(RuntimeError):
        sync.confirm_run(run, accept_proposals=True, create_unmatched=True)

    assert _snapshot(tenant) == before
    run.refresh_from_db()
    assert run.status == SyncRun.Status.REVIEW


def test_confirm_twice_is_refused(review):
    _tenant, _members, _wang, _outsider, run = review
    sync.confirm_run(run, accept_proposals=True)
    with pytest.raises(sync.ConfirmError) as caught:
        sync.confirm_run(run, accept_proposals=True)
    assert caught.value.code == "not_in_review"


def test_review_edits_move_an_account_to_another_member(review):
    _tenant, _members, wang, _outsider, run = review
    proposal = run.proposals.get(wecom_user__userid="wangming")

    edit = {"proposal": proposal.pk, "action": "bind", "username": "wang", "wecom_userid": "lisi"}
    sync.update_proposals(run, [edit])

    proposal.refresh_from_db()
    assert (proposal.action, proposal.user) == ("skip", None)
    moved = run.proposals.get(wecom_user__userid="lisi")
    assert (moved.action, moved.user) == ("bind", wang)
    with pytest.raises(sync.ConfirmError):
        sync.update_proposals(run, [{"proposal": proposal.pk, "action": "bind", "username": "nobody"}])


def test_full_cycle_then_second_sync_has_nothing_to_review(tenant, fake_wecom):
    run = run_sync(tenant)
    sync.confirm_run(run, accept_proposals=True, create_unmatched=True)
    bindable = sum(1 for u in fake_wecom.org.users.values() if u.status in (1, 4))
    assert Binding.objects.filter(tenant=tenant).count() == bindable

    with CaptureQueriesContext(connection) as queries:
        again = run_sync(tenant)

    assert again.status == SyncRun.Status.SUCCEEDED  # nothing to review
    assert again.counts["rows_written"] == 0
    assert writes_to_mirror(queries.captured_queries) == []
