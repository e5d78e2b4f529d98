"""Confirm at more than one chunk's size (issue 19): the rows written in bulk are exactly the rows the
decisions call for, confirming again writes nothing, and a failure in a later chunk leaves nothing."""

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from tenants.models import Membership
from tests.factories import make_member, make_tenant, make_user
from wecom_integration.bulk import insert_rows
from wecom_integration.directory import sync
from wecom_integration.directory.sync.state import BATCH_SIZE
from wecom_integration.login.adapter import DefaultWeComAdapter
from wecom_integration.models import AuditLog, Binding, SyncRun, WeComUser

User = get_user_model()

#: More members than two of confirm's chunks, so the last chunk is written after two others.
MEMBERS = 2 * BATCH_SIZE + 300
#: Existing accounts bound by decisions: (how many, membership before or None, membership after).
EXISTING = (
    (100, Membership.Status.ACTIVE, Membership.Status.ACTIVE),  # renamed to their WeCom name
    (50, None, Membership.Status.PENDING),  # not members of the tenant: pending, audited as such
    (30, Membership.Status.INACTIVE, Membership.Status.PENDING),  # ended: pending again, audited
    (20, Membership.Status.PENDING, Membership.Status.PENDING),  # already pending: no new pending record
)


@pytest.fixture
def large_review(db):
    """A tenant with MEMBERS members (some with an email), 200 existing accounts and a run in review;
    returns (tenant, run, decisions, {userid: (account or None, membership after)})."""
    tenant = make_tenant("BK")
    WeComUser.objects.bulk_create(
        WeComUser(tenant=tenant, userid=f"m{i:04d}", name=f"成员{i}", email=f"m{i}@example.com" if i % 3 else "",
                  status=1)
        for i in range(MEMBERS)
    )
    plan, decisions, i = {}, [], 0
    for count, before, after in EXISTING:
        for _ in range(count):
            userid = f"m{i:04d}"
            account = make_user(f"acct{i}", first_name="Old", last_name="Name", password=None)
            if before is not None:
                make_member(account, tenant, status=before)
            decisions.append(sync.Decision(userid, "bind", account.username))
            plan[userid] = (account, after)
            i += 1
    for n in range(i, MEMBERS):
        decisions.append(sync.Decision(f"m{n:04d}", "create"))
        plan[f"m{n:04d}"] = (None, Membership.Status.ACTIVE)
    run = SyncRun.objects.create(tenant=tenant, status=SyncRun.Status.REVIEW)
    return tenant, run, decisions, plan


def _snapshot(tenant):
    return (
        sorted(Binding.objects.filter(tenant=tenant).values_list("user_id", "wecom_user_id")),
        sorted(User.objects.values_list("username", "first_name", "last_name", "email")),
        sorted(Membership.objects.values_list("user_id", "tenant_id", "status")),
        AuditLog.objects.count(),
    )


def test_confirm_writes_exactly_the_rows_the_decisions_call_for(large_review):
    tenant, run, decisions, plan = large_review
    admin = make_user("boss", password=None)
    users_before = set(User.objects.values_list("pk", flat=True))

    counts = sync.confirm_run(run, actor=admin, decisions=decisions)

    existing = sum(count for count, _before, _after in EXISTING)
    created = MEMBERS - existing
    assert counts == {"bound": MEMBERS, "created": created, "pending": 100, "updated": 100, "skipped": 0}
    members = dict(WeComUser.objects.filter(tenant=tenant).values_list("userid", "pk"))
    new_users = {u.username: u for u in User.objects.exclude(pk__in=users_before)}
    assert len(new_users) == created
    user_of = {}
    for userid, (account, _after) in plan.items():
        user_of[userid] = account.pk if account else new_users[f"BK{userid}"].pk

    bindings = list(Binding.objects.filter(tenant=tenant).values("user_id", "wecom_user_id", "is_active", "created_at",
                                                                 "updated_at"))
    assert sorted((b["user_id"], b["wecom_user_id"]) for b in bindings) == sorted(
        (user_of[userid], members[userid]) for userid in plan
    )
    assert all(b["is_active"] and b["created_at"] and b["updated_at"] for b in bindings)

    for username, user in new_users.items():
        n = int(username[3:])
        assert (user.first_name, user.last_name, user.email) == (f"成员{n}", "", f"m{n}@example.com" if n % 3 else "")
        assert user.is_active and not user.is_staff and not user.is_superuser
        assert not user.has_usable_password()
    assert len({user.password for user in new_users.values()}) == created  # a random unusable hash each
    renamed = User.objects.filter(username__in=[f"acct{i}" for i in range(100)])
    assert sorted(renamed.values_list("first_name", "last_name")) == sorted((f"成员{i}", "") for i in range(100))
    assert User.objects.filter(username__in=[f"acct{i}" for i in range(100, 200)], first_name="Old").count() == 100

    assert dict(Membership.objects.filter(tenant=tenant).values_list("user_id", "status")) == {
        user_of[userid]: after for userid, (_account, after) in plan.items()
    }

    expected = set()
    for userid, (account, after) in plan.items():
        detail = {"source": "sync", "run": run.pk}
        if account is None:
            expected.add(("create_account", user_of[userid], userid, frozenset(detail.items())))
        elif account.username in {f"acct{i}" for i in range(100, 180)}:  # outsiders and ended memberships
            expected.add(("pending", user_of[userid], userid, frozenset(detail.items())))
        expected.add(("bind", user_of[userid], userid, frozenset({**detail, "membership": after}.items())))
    audits = list(AuditLog.objects.filter(tenant=tenant).values_list(
        "action", "target_user_id", "wecom_userid", "detail", "actor_id", "created_at"))
    assert len(audits) == len(expected) == 2 * MEMBERS - existing + 80
    assert {(a, u, w, frozenset(d.items())) for a, u, w, d, _actor, _at in audits} == expected
    assert {actor for *_rest, actor, _at in audits} == {admin.pk}
    assert all(at is not None for *_rest, at in audits)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.CONFIRMED and run.counts["confirm"] == counts


def test_confirming_again_creates_nothing_twice(large_review):
    tenant, run, decisions, _plan = large_review
    sync.confirm_run(run, decisions=decisions)
    after = _snapshot(tenant)

    with pytest.raises(sync.ConfirmError):
        sync.confirm_run(run, decisions=decisions)  # the run is confirmed
    again = SyncRun.objects.create(tenant=tenant, status=SyncRun.Status.REVIEW)
    sync.build_proposals(again)
    counts = sync.confirm_run(again, accept_proposals=True, create_unmatched=True)

    assert not again.proposals.exists()  # every member is bound: nothing to propose
    assert counts == {"bound": 0, "created": 0, "pending": 0, "updated": 0, "skipped": 0}
    with pytest.raises(sync.ConfirmError) as caught:
        sync.confirm_run(SyncRun.objects.create(tenant=tenant, status=SyncRun.Status.REVIEW),
                         decisions=[sync.Decision("m0500", "create")])
    assert caught.value.errors[0]["code"] == "wecom_user_bound"
    assert _snapshot(tenant) == after


#: The calls of set_memberships the adapters below have seen, across their instances.
CALLS = []


class FailingHostAdapter(DefaultWeComAdapter):
    """A host whose membership store fails on the confirm's third chunk (after two were written)."""

    def set_memberships(self, tenant, statuses):
        CALLS.append(len(statuses))
        if len(CALLS) == 3:
            raise ConnectionError("the host's membership service is down")
        return super().set_memberships(tenant, statuses)


class ConcurrentSignInAdapter(DefaultWeComAdapter):
    """As its first chunk's memberships are written, a member of the last chunk is bound meanwhile (a
    sign-in): the bindings' unique constraint then refuses the last chunk's bulk insert."""

    def set_memberships(self, tenant, statuses):
        CALLS.append(len(statuses))
        if len(CALLS) == 1:
            member = WeComUser.objects.get(tenant=tenant, userid=f"m{MEMBERS - 1:04d}")
            Binding.objects.create(tenant=tenant, user=make_user("signed-in", password=None), wecom_user=member)
        return super().set_memberships(tenant, statuses)


@pytest.fixture
def calls():
    CALLS.clear()
    yield CALLS
    CALLS.clear()


def test_a_host_adapter_failing_in_a_later_chunk_leaves_nothing(large_review, calls):
    tenant, run, decisions, _plan = large_review
    before = _snapshot(tenant)

    with override_settings(WECOM={"ADAPTER": f"{__name__}.FailingHostAdapter"}), pytest.raises(ConnectionError):
        sync.confirm_run(run, decisions=decisions)

    assert len(calls) == 3  # it failed on the third chunk, two having been written
    assert _snapshot(tenant) == before
    run.refresh_from_db()
    assert run.status == SyncRun.Status.REVIEW


def test_a_unique_conflict_in_a_later_chunk_leaves_nothing(large_review, calls):
    tenant, run, decisions, _plan = large_review
    before = _snapshot(tenant)

    with override_settings(WECOM={"ADAPTER": f"{__name__}.ConcurrentSignInAdapter"}), \
            pytest.raises(sync.ConfirmError) as caught:
        sync.confirm_run(run, decisions=decisions)

    assert caught.value.code == "conflict"
    assert len(calls) == 3  # the conflict is in the last chunk's bindings
    assert _snapshot(tenant) == before  # the sign-in's binding went too: one transaction
    run.refresh_from_db()
    assert run.status == SyncRun.Status.REVIEW
    sync.confirm_run(run, decisions=decisions)  # the same decisions, confirmed again, go through
    assert Binding.objects.filter(tenant=tenant).count() == MEMBERS


def test_insert_rows_writes_what_bulk_create_writes(db):
    tenant = make_tenant("IR")
    user = make_user("target", password=None)
    # What an array literal must escape (PostgreSQL sends each column as one): quotes, backslashes,
    # braces, commas, NULL spelled out, blanks.
    userid = 'a"b\\c{d},e NULL '
    detail = {"source": "sync", "run": 7, "名": "值", "quote": '"\\{},', "none": None}
    AuditLog.objects.bulk_create([AuditLog(tenant=tenant, action=AuditLog.Action.BIND, target_user=user,
                                           wecom_userid=userid, detail=detail)])
    insert_rows(AuditLog, ("action", "target_user_id", "wecom_userid", "detail"),
                [(AuditLog.Action.BIND, user.pk, userid, detail)], constants={"tenant": tenant, "actor_id": None})
    insert_rows(AuditLog, ("action", "target_user_id", "wecom_userid"), [(AuditLog.Action.BIND, None, "NULL")],
                constants={"tenant": tenant})
    assert AuditLog.objects.filter(wecom_userid="NULL", target_user=None, detail={}).count() == 1
    AuditLog.objects.filter(wecom_userid="NULL").delete()
    insert_rows(Membership, ("user_id",), [(user.pk,)], constants={"tenant_id": tenant.pk})
    Membership.objects.filter(tenant=tenant).delete()
    Membership.objects.bulk_create([Membership(user=user, tenant=tenant)])
    insert_rows(Membership, ("user_id",), [(make_user("second", password=None).pk,)], constants={"tenant": tenant})

    fields = ("tenant_id", "actor_id", "action", "target_user_id", "wecom_userid", "detail")
    first, second = AuditLog.objects.order_by("pk").values_list(*fields)
    assert first == second
    assert first[4] == userid and first[5] == detail
    assert AuditLog.objects.filter(created_at__isnull=True).count() == 0
    roles = set(Membership.objects.filter(tenant=tenant).values_list("role", "status"))
    assert roles == {(Membership.Role.MEMBER, Membership.Status.PENDING)}  # the fields' defaults
    with pytest.raises(ValueError):
        insert_rows(Membership, ("status",), [("active",)], constants={"tenant": tenant})  # user has no default
