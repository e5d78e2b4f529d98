"""Confirm at more than one chunk's size (issue 19): the rows written in bulk are exactly the rows the
decisions call for, confirming again writes nothing, and a failure in a later chunk leaves nothing."""

import pytest
from django.contrib.auth import get_user_model
from django.db import models
from django.test import override_settings

from tenants.models import Membership
from tests.factories import make_member, make_tenant, make_user
from wecom_integration.bulk import insert_rows, one_of, plain_model
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


# Reading and writing in bulk for a host's models (issue 19 item 4) ------------------------------------


def test_one_of_finds_any_number_of_values_in_one_query(db, django_assert_num_queries):
    tenant = make_tenant("OF")
    odd = ['q"\\{,}', "NULL", "张 三", "01", "-0", ""]
    WeComUser.objects.bulk_create(WeComUser(tenant=tenant, userid=u or "-", name=u)
                                  for u in [*odd, *map(str, range(3000))])
    wanted = [*odd, *map(str, range(0, 3000, 2)), "absent"]
    with django_assert_num_queries(1):
        found = set(WeComUser.objects.filter(one_of("userid", wanted), tenant=tenant).values_list("userid", flat=True))
    assert found == (set(wanted) - {"", "absent"})
    pks = list(WeComUser.objects.filter(tenant=tenant).values_list("pk", flat=True)[:10])
    assert set(WeComUser.objects.filter(one_of("pk", pks)).values_list("pk", flat=True)) == set(pks)
    assert WeComUser.objects.filter(one_of("tenant_id", [tenant.pk])).count() == 3006
    with django_assert_num_queries(0):
        assert list(WeComUser.objects.filter(one_of("userid", []))) == []
    assert WeComUser.objects.filter(tenant=tenant).exclude(one_of("userid", wanted)).count() == 3006 - len(found)


def test_insert_rows_gives_back_what_it_inserted(db):
    rows = [(f"ir{n}", f"名{n}", f"ir{n}@example.com", "!unusable") for n in range(2500)]
    returned = insert_rows(User, ("username", "first_name", "email", "password"), rows,
                           constants={"last_name": "", "is_active": True}, returning=("username", "pk"))
    assert sorted(returned) == sorted(User.objects.filter(username__startswith="ir").values_list("username", "pk"))
    made = User.objects.filter(username__startswith="ir")
    assert {u.date_joined for u in made} and made.filter(is_staff=False, is_superuser=False).count() == 2500
    assert len({u.date_joined for u in made}) == 1  # a time stamp: one for the call, like auto_now


def _code():
    import secrets

    return secrets.token_hex(8)


@pytest.mark.django_db(transaction=True)
def test_insert_rows_calls_a_random_default_per_row_and_leaves_database_defaults_to_the_database():
    from django.db import connection
    from django.test.utils import isolate_apps
    from django.utils import timezone

    with isolate_apps("tenants"):
        class Ticket(models.Model):
            code = models.CharField(max_length=16, default=_code, unique=True)
            issued = models.DateTimeField(default=timezone.now)
            note = models.CharField(max_length=8, db_default="db")
            number = models.IntegerField()

            class Meta:
                app_label = "tenants"

            def __str__(self):
                return self.code

        with connection.schema_editor() as editor:
            editor.create_model(Ticket)
        try:
            assert plain_model(Ticket)
            insert_rows(Ticket, ("number",), [(n,) for n in range(1200)])
            assert Ticket.objects.count() == 1200
            assert Ticket.objects.values("code").distinct().count() == 1200  # not one code for all
            assert set(Ticket.objects.values_list("note", flat=True)) == {"db"}
            assert Ticket.objects.values("issued").distinct().count() == 1
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(Ticket)


class _Upper(models.CharField):
    """A field that computes what it writes in pre_save: only an instance can say what that is."""

    def pre_save(self, model_instance, add):
        return getattr(model_instance, self.attname).upper()


def test_insert_rows_refuses_a_model_whose_field_computes_its_value_in_pre_save(db):
    from django.test.utils import isolate_apps

    with isolate_apps("tenants"):
        class Shouting(models.Model):
            word = _Upper(max_length=8)

            class Meta:
                app_label = "tenants"

            def __str__(self):
                return self.word

    assert not plain_model(Shouting)
    with pytest.raises(ValueError, match="pre_save"):
        insert_rows(Shouting, ("word",), [("quiet",)])


def test_a_user_model_watched_as_it_is_built_keeps_bulk_create(large_review):
    """A host whose user model has post_init receivers (or a field computing its value in pre_save) gets
    its accounts through bulk_create, each built as an instance, as before."""
    from django.db.models.signals import post_init

    tenant, run, decisions, plan = large_review
    built = []

    def watch(sender, instance, **kwargs):
        built.append(instance)

    post_init.connect(watch, sender=User)
    try:
        assert not plain_model(User)
        counts = sync.confirm_run(run, decisions=decisions)
    finally:
        post_init.disconnect(watch, sender=User)
    created = {u.username for u in built if u.username.startswith("BK")}
    assert counts["created"] == len(created) == sum(1 for account, _after in plan.values() if account is None)
    assert plain_model(User)
    accounts = dict(User.objects.filter(username__in=created).values_list("username", "pk"))
    members = dict(WeComUser.objects.filter(tenant=tenant).values_list("userid", "pk"))
    bound = set(Binding.objects.filter(tenant=tenant).values_list("user_id", "wecom_user_id"))
    assert {(accounts[f"BK{userid}"], members[userid]) for userid, (a, _s) in plan.items() if a is None} <= bound


class NamingAdapter(DefaultWeComAdapter):
    """A host naming the sync's accounts its own way."""

    def username_for(self, tenant, wecom_user):
        return f"wx.{wecom_user.userid}.{len(wecom_user.name)}"


def test_the_accounts_a_confirm_creates_are_named_by_the_hosts_username_for(db):
    tenant = make_tenant("NM")
    WeComUser.objects.bulk_create(WeComUser(tenant=tenant, userid=f"u{i}", name="名" * (i + 1), status=1)
                                  for i in range(3))
    run = SyncRun.objects.create(tenant=tenant, status=SyncRun.Status.REVIEW)
    adapter = DefaultWeComAdapter()
    assert adapter.usernames_for(tenant, [("u0", "x")]) == {"u0": adapter.username_for(tenant, WeComUser(userid="u0"))}
    with override_settings(WECOM={"ADAPTER": f"{__name__}.NamingAdapter"}):
        sync.confirm_run(run, decisions=[sync.Decision(f"u{i}", "create") for i in range(3)])
    assert set(User.objects.filter(username__startswith="wx.").values_list("username", flat=True)) == {
        "wx.u0.1", "wx.u1.2", "wx.u2.3"}


def test_quick_username_checks_give_the_validators_answers():
    from django.contrib.auth.validators import ASCIIUsernameValidator, UnicodeUsernameValidator
    from django.core.validators import MaxLengthValidator, RegexValidator

    from wecom_integration.directory.sync.confirming import _quick_validators, _username_problem

    def no_admin(value):
        if "admin" in value:
            from django.core.exceptions import ValidationError

            raise ValidationError("no admins")

    validators = [
        UnicodeUsernameValidator(),
        ASCIIUsernameValidator(),
        RegexValidator(r"^x", inverse_match=True, message="must not start with x"),
        MaxLengthValidator(12),
        MaxLengthValidator(lambda: 9),
        no_admin,
    ]
    quick = _quick_validators(validators)
    assert [test is not None for test, _validator in quick] == [True, True, True, True, False, False]
    for name in ["zhang.san", "张三", "has space", "x-ray", "ok@site", "a" * 10, "a" * 13, "sysadmin", "tab\there",
                 "end\n", ""]:
        expected = _username_problem(name, 0, [(None, v) for v in validators])
        assert _username_problem(name, 0, quick) == expected, name


def test_set_memberships_creates_updates_and_counts_only_what_changes(db, django_assert_num_queries):
    import datetime

    from wecom_integration.tenancy import MembershipBackend

    tenant, other = make_tenant("SM"), make_tenant("SM2")
    users = [make_user(f"sm{i}") for i in range(5)]
    old = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    for user, status in zip(users[:3], ["active", "inactive", "pending"], strict=True):
        Membership.objects.create(user=user, tenant=tenant, status=status, role=Membership.Role.ADMIN)
    Membership.objects.create(user=users[3], tenant=other, status="inactive")
    Membership.objects.update(created_at=old, updated_at=old)

    wanted = {users[0].pk: "active", users[1].pk: "pending", users[2].pk: "pending", users[3].pk: "pending",
              users[4].pk: "active"}
    with django_assert_num_queries(1):  # one INSERT … ON CONFLICT, no lookup first
        changed = MembershipBackend().set_memberships(tenant, wanted)

    assert changed == 3  # users[1] updated, users[3] and users[4] new in this tenant
    rows = {(m.user_id, m.tenant_id): m for m in Membership.objects.all()}
    assert {key: m.status for key, m in rows.items()} == {
        (users[0].pk, tenant.pk): "active", (users[1].pk, tenant.pk): "pending", (users[2].pk, tenant.pk): "pending",
        (users[3].pk, other.pk): "inactive", (users[3].pk, tenant.pk): "pending", (users[4].pk, tenant.pk): "active",
    }
    # Unchanged rows keep their time stamps; the changed one keeps its role and creation time.
    for user in (users[0], users[2]):
        assert rows[(user.pk, tenant.pk)].updated_at == old
    assert rows[(users[3].pk, other.pk)].updated_at == old
    updated = rows[(users[1].pk, tenant.pk)]
    assert (updated.role, updated.created_at) == (Membership.Role.ADMIN, old) and updated.updated_at > old
    assert rows[(users[4].pk, tenant.pk)].role == Membership.Role.MEMBER
    assert MembershipBackend().set_memberships(tenant, wanted) == 0


def test_insert_rows_update_conflicts_returns_no_rows(db):
    with pytest.raises(ValueError, match="returns none"):
        insert_rows(Membership, ("user_id", "status"), [], constants={"tenant_id": 1}, returning=("pk",),
                    update_conflicts=(("user", "tenant"), ("status",), ("status",)))


def test_insert_rows_writes_a_column_of_awkward_values_in_one_statement(db, django_assert_num_queries):
    from django.utils.functional import lazy

    tenant = make_tenant("AW")
    awkward = ['q"\\{,}', "NULL", "张 三", "", " ", "a,b", "{}", '\\"', "end\\"]
    users = [make_user(f"aw{n}", password=None) for n in range(len(awkward))]
    with django_assert_num_queries(1):
        insert_rows(AuditLog, ("action", "target_user_id", "wecom_userid"),
                    [(AuditLog.Action.BIND, u.pk, text) for u, text in zip(users, awkward, strict=True)],
                    constants={"tenant": tenant})
    stored = dict(AuditLog.objects.filter(tenant=tenant).values_list("target_user_id", "wecom_userid"))
    assert [stored[u.pk] for u in users] == awkward
    # An EmailField passes a str as it is and prepares anything else (a lazy string here).
    lazy_email = lazy(lambda: "lazy@example.com", str)()
    names = {"first_name": "", "last_name": ""}
    insert_rows(User, ("username", "email", "password"), [("aw-a", "a@example.com", "!x"), ("aw-b", lazy_email, "!x")],
                constants=names)
    assert dict(User.objects.filter(username__startswith="aw-").values_list("username", "email")) == {
        "aw-a": "a@example.com", "aw-b": "lazy@example.com"}
    with pytest.raises(ValueError, match="each row must hold 3 values"):
        insert_rows(User, ("username", "email", "password"), [("aw-c", "c@example.com", "!x"), ("aw-d", "!x")],
                    constants=names)


def test_insert_rows_sends_a_batch_as_one_parameter_per_column_or_one_json_text(db):
    """PostgreSQL: one array per column (UNNEST). SQLite: the rows as one JSON text (json_each), except
    where JSON would change a value."""
    from django.db import DataError, connection, transaction
    from django.test.utils import CaptureQueriesContext

    sqlite = connection.vendor == "sqlite"
    tenant = make_tenant("JS")
    user = make_user("js", password=None)
    texts = ['q"\\{,}', "NULL", "张 三", "", "1.0", "true", "[1]", '{"a": 1}', "tab\there"]
    with CaptureQueriesContext(connection) as queries:
        insert_rows(AuditLog, ("action", "target_user_id", "wecom_userid", "detail"),
                    [(AuditLog.Action.BIND, user.pk if n % 2 else None, text, {"n": n, "ok": True, "x": 0.1})
                     for n, text in enumerate(texts)], constants={"tenant": tenant})
    inserts = [q["sql"] for q in queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1 and ("json_each" if sqlite else "UNNEST") in inserts[0]
    stored = list(AuditLog.objects.filter(tenant=tenant).order_by("pk").values_list("target_user_id", "wecom_userid",
                                                                                    "detail"))
    expected = [(user.pk if n % 2 else None, text, {"n": n, "ok": True, "x": 0.1}) for n, text in enumerate(texts)]
    assert stored == expected

    # A NUL in a str: SQLite keeps it (through the placeholders); PostgreSQL refuses it, as it refuses
    # any text holding one.
    if sqlite:
        with CaptureQueriesContext(connection) as queries:
            insert_rows(AuditLog, ("action", "wecom_userid"), [(AuditLog.Action.BIND, "nul\0inside")],
                        constants={"tenant": tenant})
        assert "json_each" not in queries[0]["sql"]
        assert AuditLog.objects.filter(wecom_userid="nul\0inside").count() == 1
    else:
        with pytest.raises((DataError, ValueError)), transaction.atomic():
            insert_rows(AuditLog, ("action", "wecom_userid"), [(AuditLog.Action.BIND, "nul\0inside")],
                        constants={"tenant": tenant})
    # An int beyond the column is refused, not stored rounded.
    with pytest.raises((OverflowError, DataError)), transaction.atomic():
        insert_rows(AuditLog, ("action", "target_user_id", "wecom_userid"), [(AuditLog.Action.BIND, 2**64, "big")],
                    constants={"tenant": tenant})
    assert not AuditLog.objects.filter(wecom_userid="big").exists()
    # The membership upsert ("WHERE true" keeps ON CONFLICT the INSERT's on SQLite).
    from wecom_integration.tenancy import MembershipBackend

    assert MembershipBackend().set_memberships(tenant, {user.pk: "active"}) == 1
    assert MembershipBackend().set_memberships(tenant, {user.pk: "pending"}) == 1
    assert Membership.objects.get(tenant=tenant, user=user).status == "pending"
