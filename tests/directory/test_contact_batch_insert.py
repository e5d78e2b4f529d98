"""The members a batch of contact events creates are written as plain rows (bulk.insert_rows) and each
instance is handed back as bulk_create would leave it: the same rows as the events applied one by one,
every instance with its id, saved, its updated_at the row's; bulk_create still when the model is watched
as it is built."""

import pytest
from django.db import connection, transaction
from django.db.models.signals import pre_init
from django.test.utils import CaptureQueriesContext

from tests.factories import make_config, make_tenant
from wecom_integration import bulk, signals
from wecom_integration.callbacks import handling
from wecom_integration.callbacks import services as callbacks
from wecom_integration.directory import services
from wecom_integration.events import parse_event
from wecom_integration.fields import PREFIX, decrypt_value
from wecom_integration.models import WeComUser
from wecom_integration.testing.callbacks import build_contact_user_xml

pytestmark = pytest.mark.django_db

T0 = 1_700_000_000
#: Every column but the id, the tenant and the time stamp, as the model reads them (encrypted ones decrypted).
COLUMNS = tuple(
    field.attname for field in WeComUser._meta.concrete_fields if field.attname not in ("id", "tenant_id", "updated_at")
)
ENCRYPTED = ("mobile", "email", "avatar")


def event(change_type, user, when=T0):
    return parse_event(build_contact_user_xml("wwcorp", change_type, user, when))


def creates(count):
    """create_user events carrying what WeCom sends, varied: empty and absent personal data, statuses
    (quit members too), departments, odd characters."""
    out = []
    for n in range(count):
        user = {"userid": f"m{n}", "name": f"成员 {n} \"q\" \\ {{x}},", "department": [1, n + 2],
                "is_leader_in_dept": [n % 2, 0], "main_department": n + 2, "position": "产品经理" if n % 3 else "",
                "gender": str(n % 3), "status": (1, 2, 4, 5)[n % 4]}
        if n % 2:
            user["mobile"] = f"1380000{n:04d}"
        if n % 3:
            user["email"] = f"m{n}@example.com"
        if n % 5 == 0:
            user["avatar"] = f"https://wework.qpic.cn/{n}/0"
        elif n % 5 == 1:
            user["avatar"] = ""
        out.append(event("create_user", user, T0 + n))
    return out


def in_batch(tenant_id, events):
    with transaction.atomic(), services.contact_batch((tenant_id, e) for e in events):
        return [services.apply_contact_change(tenant_id, e) for e in events]


def one_by_one(tenant_id, events):
    changes = []
    for e in events:
        with transaction.atomic():
            changes.append(services.apply_contact_change(tenant_id, e))
    return changes


def rows(tenant_id):
    """{userid: the row's columns}, encrypted columns as the model reads them."""
    return {row[COLUMNS.index("userid")]: row
            for row in WeComUser.objects.filter(tenant_id=tenant_id).values_list(*COLUMNS)}


def stored_personal_data(tenant_id):
    """{userid: (mobile, email, avatar) as stored, decrypted here}: encrypted unless empty."""
    table = WeComUser._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT userid, mobile, email, avatar FROM {table} WHERE tenant_id = %s", [tenant_id])
        stored = cursor.fetchall()
    out = {}
    for userid, *values in stored:
        assert all(value == "" or value.startswith(PREFIX) for value in values), userid
        out[userid] = tuple(decrypt_value(value) if value else "" for value in values)
    return out


def member_inserts(queries):
    table = WeComUser._meta.db_table
    return [q["sql"] for q in queries if q["sql"].startswith("INSERT INTO") and table in q["sql"].split("(")[0]]


def assert_saved_as_in_database(changes, tenant_id):
    """Each instance the events returned carries its row's id and time stamp and is marked saved."""
    by_pk = {row.pk: row for row in WeComUser.objects.filter(tenant_id=tenant_id)}
    for change in changes:
        user = change.wecom_user
        assert user.pk in by_pk, user.userid
        assert user.tenant_id == tenant_id
        assert user._state.adding is False and user._state.db == "default"
        assert user.updated_at is not None and user.updated_at == by_pk[user.pk].updated_at


def test_a_batch_of_creates_writes_the_rows_one_by_one_writes_and_hands_back_saved_instances():
    alone, together = make_tenant("cb-alone").pk, make_tenant("cb-together").pk
    one_by_one(alone, creates(40))
    with CaptureQueriesContext(connection) as queries:
        changes = in_batch(together, creates(40))

    assert len(rows(together)) == 40
    assert rows(together) == rows(alone)
    assert stored_personal_data(together) == stored_personal_data(alone)
    assert stored_personal_data(together)["m1"] == ("13800000001", "m1@example.com", "")
    assert_saved_as_in_database(changes, together)
    assert {change.wecom_user.userid: change.wecom_user.pk for change in changes} == dict(
        WeComUser.objects.filter(tenant_id=together).values_list("userid", "pk")
    )
    assert WeComUser.objects.filter(tenant_id=together).values("updated_at").distinct().count() == 1
    # One INSERT, as plain rows: it returns the (tenant, userid) each id belongs to (bulk_create returns ids only).
    (insert,) = member_inserts(queries.captured_queries)
    assert "userid" in insert.rsplit("RETURNING", 1)[1]


def test_members_of_two_tenants_with_the_same_userid_each_get_their_own_id():
    first, second = make_tenant("cb-first").pk, make_tenant("cb-second").pk
    pairs = [(tenant, event("create_user", {"userid": userid, "name": f"{userid}@{tenant}"}))
             for userid in ("amy", "ben", "cy") for tenant in (first, second)]
    with transaction.atomic(), services.contact_batch(pairs):
        changes = [(tenant, services.apply_contact_change(tenant, e)) for tenant, e in pairs]
    for tenant, change in changes:
        row = WeComUser.objects.get(pk=change.wecom_user.pk)
        assert (row.tenant_id, row.userid, row.name) == (tenant, change.wecom_user.userid, f"{row.userid}@{tenant}")
        assert change.wecom_user._state.adding is False
    assert WeComUser.objects.filter(tenant_id__in=(first, second)).count() == 6


def mixed():
    """Creates, updates of what the batch just created (in another case too), renames onto a free userid
    and of a member the batch created, deletes of a new member and of an unknown one."""
    return [
        event("create_user", {"userid": "amy", "name": "Amy", "department": [1, 2], "mobile": "13800000001",
                              "email": "amy@example.com"}, T0),
        event("update_user", {"userid": "amy", "position": "lead"}, T0 + 1),
        event("update_user", {"userid": "AMY", "name": "Amy B", "mobile": "13900000001"}, T0 + 2),
        event("create_user", {"userid": "ben", "name": "Ben", "avatar": "https://wework.qpic.cn/b/0"}, T0),
        event("update_user", {"userid": "ben", "new_userid": "benny"}, T0 + 1),
        event("update_user", {"userid": "benny", "mobile": "13800000002"}, T0 + 2),
        event("update_user", {"userid": "nobody", "new_userid": "newbie", "name": "N"}, T0),
        event("update_user", {"userid": "newbie", "position": "new"}, T0 + 1),
        event("create_user", {"userid": "cara", "name": "Cara", "email": "cara@example.com"}, T0),
        event("delete_user", {"userid": "cara"}, T0 + 1),
        event("delete_user", {"userid": "dan"}, T0),
        event("create_user", {"userid": "eve", "name": "Eve", "status": 5}, T0),
        event("update_user", {"userid": "eve", "status": 1}, T0 + 1),
    ]


def what_each_event_returned(changes):
    """Per event, the member as that event left it (the rows' ids differ between tenants: their userids)."""
    userids = dict(WeComUser.objects.values_list("pk", "userid"))
    return [
        (userids[c.wecom_user.pk], c.wecom_user.userid, c.wecom_user.name, c.wecom_user.position,
         c.wecom_user.mobile, c.wecom_user.removed, c.wecom_user.status, c.wecom_user._state.adding)
        for c in changes
    ]


def test_a_batch_mixing_creates_renames_and_updates_of_the_same_member_ends_as_one_by_one():
    alone, together = make_tenant("mx-alone").pk, make_tenant("mx-together").pk
    expected = what_each_event_returned(one_by_one(alone, mixed()))
    changes = in_batch(together, mixed())

    assert rows(together) == rows(alone)
    assert stored_personal_data(together) == stored_personal_data(alone)
    assert what_each_event_returned(changes) == expected
    members = rows(together)
    assert set(members) == {"amy", "benny", "newbie", "cara", "dan", "eve"}
    amy = members["amy"]
    assert (amy[COLUMNS.index("name")], amy[COLUMNS.index("position")], amy[COLUMNS.index("mobile")]) == (
        "Amy B", "lead", "13900000001")
    assert members["cara"][COLUMNS.index("removed")] is True and members["dan"][COLUMNS.index("removed")] is True
    assert members["eve"][COLUMNS.index("status")] == 1
    # The first event's instance keeps what that event left, and the id of the row the later ones changed.
    first = changes[0].wecom_user
    assert (first.position, first.name, first._state.adding) == ("", "Amy", False)
    assert first.pk == changes[2].wecom_user.pk == WeComUser.objects.get(tenant_id=together, userid="amy").pk
    assert changes[3].wecom_user.pk == WeComUser.objects.get(tenant_id=together, userid="benny").pk
    assert all(change.wecom_user.pk is not None and not change.wecom_user._state.adding
               and change.wecom_user.updated_at is not None for change in changes)


def test_signal_receivers_get_members_with_their_ids(monkeypatch, django_capture_on_commit_callbacks):
    config = make_config(make_tenant("cb-signal"))
    monkeypatch.setattr(callbacks, "enqueue", lambda event_id, **kwargs: None)
    xmls = [build_contact_user_xml(config.corp_id, "create_user", {"userid": f"s{n}", "name": f"S{n}"}, T0)
            for n in range(5)]
    ids = [callbacks.store_event(config.tenant_id, "contacts", parse_event(xml))[0].pk for xml in xmls]
    heard = []

    def contact(sender, wecom_user=None, **kwargs):
        heard.append((wecom_user.userid, wecom_user.pk, wecom_user._state.adding, wecom_user.updated_at))

    signals.contact_changed.connect(contact)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            outcomes = handling.handle_events(ids)
    finally:
        signals.contact_changed.disconnect(contact)
    assert set(outcomes.values()) == {handling.HANDLED}
    stored = {row.userid: (row.userid, row.pk, False, row.updated_at)
              for row in WeComUser.objects.filter(tenant_id=config.tenant_id)}
    assert sorted(heard) == sorted(stored.values()) and len(heard) == 5


def test_a_model_watched_as_it_is_built_keeps_bulk_create():
    alone, together = make_tenant("pi-alone").pk, make_tenant("pi-together").pk
    one_by_one(alone, creates(12))
    built = []

    def watch(sender, **kwargs):
        built.append(kwargs)

    pre_init.connect(watch, sender=WeComUser)
    try:
        assert not bulk.plain_model(WeComUser)
        with CaptureQueriesContext(connection) as queries:
            changes = in_batch(together, creates(12) + mixed())
    finally:
        pre_init.disconnect(watch, sender=WeComUser)
    assert built and bulk.plain_model(WeComUser)
    one_by_one(alone, mixed())
    assert rows(together) == rows(alone)
    assert stored_personal_data(together) == stored_personal_data(alone)
    assert_saved_as_in_database(changes[:12], together)  # the creates (the others' rows changed after them)
    # bulk_create's INSERTs: they return the ids only.
    inserts = member_inserts(queries.captured_queries)
    assert inserts and all("userid" not in sql.rsplit("RETURNING", 1)[-1] for sql in inserts if "RETURNING" in sql)


def test_insert_rows_writes_booleans_as_bulk_create_does():
    tenant = make_tenant("cb-bool")
    # bools as they are; anything else through the field (to_python), as bulk_create prepares it.
    values = [(True, False), (False, True), (1, 0), ("t", "f"), (False, False)]
    WeComUser.objects.bulk_create(WeComUser(tenant=tenant, userid=f"b{n}", removed=removed, visible=visible)
                                  for n, (removed, visible) in enumerate(values))
    blank = dict.fromkeys(("name", "position", "mobile", "email", "avatar", "gender", "fingerprint"), "")
    bulk.insert_rows(WeComUser, ("userid", "removed", "visible"),
                     [(f"i{n}", removed, visible) for n, (removed, visible) in enumerate(values)],
                     constants={"tenant": tenant, **blank})
    written = {userid: (removed, visible) for userid, removed, visible in
               WeComUser.objects.filter(tenant=tenant).values_list("userid", "removed", "visible")}
    expected = [(True, False), (False, True), (True, False), (True, False), (False, False)]
    assert [written[f"b{n}"] for n in range(5)] == [written[f"i{n}"] for n in range(5)] == expected
