"""The callback INSERT through libpq (wecom_integration/callbacks/libpq.py): the same row as through the
cursor, its prepared statement surviving a DEALLOCATE ALL, errors as Django's, and the cursor kept
whenever something watches the queries (query logging, execute wrappers, a tracer's patched execute)
or a value is not plain text."""

import datetime
import functools

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.test.utils import CaptureQueriesContext

from tests.factories import make_config, make_tenant
from wecom_integration.callbacks import libpq
from wecom_integration.callbacks import services as callbacks
from wecom_integration.events import parse_event
from wecom_integration.models import CallbackEvent
from wecom_integration.testing.callbacks import build_contact_user_xml

T0 = 1_700_000_000

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="libpq is PostgreSQL's"),
    # Outside any transaction: libpq is used only in autocommit.
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def config():
    return make_config(make_tenant("libpq"))


def event(config, userid, change_type="create_user"):
    return parse_event(build_contact_user_xml(config.corp_id, change_type, {"userid": userid, "name": "张三"}, T0))


def insert_statement():
    passes, constants, sql = callbacks._insert_statement(connection)
    return sql, constants


def values(config, key, **changes):
    row = {
        "tenant": config.tenant_id,
        "kind": "contacts",
        "dedupe_key": key,
        "msg_type": "event",
        "event": "change_contact",
        "change_type": "create_user",
        "subject": "张三",
        "from_user": "sys",
        "create_time": T0,
        "xml": "<xml>文</xml>",
        "reply": None,
        "request_id": "req",
        "received_at": datetime.datetime(2026, 12, 4, 9, 30, 0, 123456, tzinfo=datetime.UTC),
        **changes,
    }
    sql, constants = insert_statement()
    return sql, [row[name] for name in callbacks._STORED_FIELDS] + list(constants)


def prepared_names():
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


def columns_of(pk):
    names = [f.attname for f in CallbackEvent._meta.concrete_fields if f.name not in ("id", "dedupe_key")]
    return CallbackEvent.objects.values(*names).get(pk=pk)


def test_libpq_stores_the_row_the_cursor_stores(config):
    ours = callbacks._store(config.tenant_id, "contacts", event(config, "alice"), reply=None, request_id="r1")
    # Query logging keeps the cursor, and the INSERT shows among the captured queries.
    with CaptureQueriesContext(connection) as captured:
        theirs = callbacks._store(config.tenant_id, "contacts", event(config, "bob"), reply=None, request_id="r1")
    assert any(query["sql"].startswith("INSERT") for query in captured.captured_queries)
    assert ours.created and theirs.created
    mine, other = columns_of(ours.pk), columns_of(theirs.pk)
    # Both were handled right away (eager Celery, the embedded default), a moment apart.
    for stamp in ("received_at", "handled_at"):
        assert abs(mine.pop(stamp) - other.pop(stamp)) < datetime.timedelta(seconds=60)
    mine["subject"] = mine["subject"].replace("alice", "bob")
    mine["xml"] = mine["xml"].replace("alice", "bob")
    assert mine == other


def test_the_values_arrive_exactly(config):
    when = datetime.datetime(2026, 12, 4, 9, 30, 0, 123456, tzinfo=datetime.UTC)
    sql, params = values(config, "k1", subject="张三 'quoted' \\ $1 %s", create_time=2**62, received_at=when)
    pk = libpq.insert(connection, sql, params)
    assert isinstance(pk, int)
    row = CallbackEvent.objects.get(pk=pk)
    expected = ("张三 'quoted' \\ $1 %s", 2**62, when, "<xml>文</xml>")
    assert (row.subject, row.create_time, row.received_at, row.xml) == expected
    # The same key again: nothing stored, no id.
    assert libpq.insert(connection, sql, params) is None
    assert CallbackEvent.objects.filter(dedupe_key="k1").count() == 1


def test_a_prepared_statement_is_used_and_prepared_again_after_deallocate_all(config):
    connection.ensure_connection()
    connection.connection.prepare_threshold = 5
    sql, params = values(config, "p1")
    assert isinstance(libpq.insert(connection, sql, params), int)
    ours = {name for name in prepared_names() if name.startswith("wecom_")}
    assert len(ours) == 1
    # psycopg sends DEALLOCATE ALL after a rollback on a connection where it prepared statements.
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert not prepared_names()
    sql, params = values(config, "p2")
    assert isinstance(libpq.insert(connection, sql, params), int)
    assert {name for name in prepared_names() if name.startswith("wecom_")} == ours
    assert set(CallbackEvent.objects.values_list("dedupe_key", flat=True)) == {"p1", "p2"}


def test_without_a_prepare_threshold_nothing_is_prepared(config):
    connection.ensure_connection()
    connection.connection.prepare_threshold = None
    sql, params = values(config, "u1")
    assert isinstance(libpq.insert(connection, sql, params), int)
    assert not {name for name in prepared_names() if name.startswith("wecom_")}


def test_a_database_error_is_djangos(config):
    sql, params = values(config, "fk", tenant=config.tenant_id + 10_000)
    with pytest.raises(IntegrityError):
        libpq.insert(connection, sql, params)
    # The connection is fine afterwards, and nothing was stored.
    assert not CallbackEvent.objects.filter(dedupe_key="fk").exists()
    sql, params = values(config, "after")
    assert isinstance(libpq.insert(connection, sql, params), int)


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "nul\x00inside"},  # libpq would cut it at the NUL: the cursor refuses it
        {"subject": "lone \ud800 surrogate"},
        {"reply": {"type": "text", "content": "好"}},  # JSON goes through its field
        {"create_time": True},
    ],
    ids=["nul", "surrogate", "json", "bool"],
)
def test_values_that_are_not_plain_text_keep_the_cursor(config, changes):
    sql, params = values(config, "odd", **changes)
    if "reply" in changes:
        params[callbacks._STORED_FIELDS.index("reply")] = CallbackEvent._meta.get_field("reply").get_db_prep_save(
            changes["reply"], connection
        )
    assert libpq.insert(connection, sql, params) is libpq.UNSUITED


def test_a_reply_is_stored_through_the_cursor(config):
    stored = callbacks._store(config.tenant_id, "app", event(config, "carol"), reply={"c": "好"}, request_id="")
    assert CallbackEvent.objects.get(pk=stored.pk).reply == {"c": "好"}


def test_inside_a_transaction_the_cursor_writes(config):
    sql, params = values(config, "atomic")
    with transaction.atomic():
        assert libpq.insert(connection, sql, params) is libpq.UNSUITED
        stored = callbacks._store(config.tenant_id, "contacts", event(config, "dave"), reply=None, request_id="")
        assert stored.created
    assert CallbackEvent.objects.filter(pk=stored.pk).exists()


def test_an_execute_wrapper_sees_the_insert(config):
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        stored = callbacks._store(config.tenant_id, "contacts", event(config, "erin"), reply=None, request_id="")
    assert stored.created
    assert any(sql.startswith("INSERT") for sql in seen)


def test_a_tracer_that_patched_the_cursor_sees_the_insert(config, monkeypatch):
    seen = []
    original = CursorWrapper.execute

    @functools.wraps(original)
    def traced(self, sql, params=None):
        seen.append(sql)
        return original(self, sql, params)

    traced.__module__ = "some_tracer"
    monkeypatch.setattr(CursorWrapper, "execute", traced)
    stored = callbacks._store(config.tenant_id, "contacts", event(config, "frank"), reply=None, request_id="")
    assert stored.created
    assert any(sql.startswith("INSERT") for sql in seen)


def test_a_connection_with_a_tracers_cursor_class_keeps_the_cursor(config):
    connection.ensure_connection()
    base = connection.connection.cursor_factory
    traced = type("TracedCursor", (base,), {"__module__": "some_tracer.psycopg"})
    connection.connection.cursor_factory = traced
    try:
        sql, params = values(config, "traced")
        assert libpq.insert(connection, sql, params) is libpq.UNSUITED
    finally:
        connection.connection.cursor_factory = base
    assert libpq.insert(connection, sql, params) is not libpq.UNSUITED


class _EqualWrapper:
    """A wrapper object as wrapt builds one: called in place of the method and equal to what it wraps."""

    def __init__(self, wrapped, seen):
        self.__wrapped__ = wrapped
        self.seen = seen

    def __eq__(self, other):
        return other is self.__wrapped__ or other is self

    __hash__ = object.__hash__

    def __get__(self, instance, owner):
        if instance is None:
            return self

        def bound(sql, params=None):
            self.seen.append(sql)
            return self.__wrapped__(instance, sql, params)

        return bound


def test_a_tracer_that_patches_the_cursor_after_a_direct_insert_is_still_seen(config, monkeypatch):
    """Whether the execute methods are their own is remembered between callbacks, by identity: a wrapper
    put in place later, even one that compares equal to the method it wraps, sends the INSERT back
    through the cursor."""
    sql, params = values(config, "before")
    assert libpq.insert(connection, sql, params) is not libpq.UNSUITED
    seen = []
    monkeypatch.setattr(CursorWrapper, "execute", _EqualWrapper(CursorWrapper.__dict__["execute"], seen))
    assert CursorWrapper.__dict__["execute"] == libpq._unwatched_methods[0]
    sql, params = values(config, "after")
    assert libpq.insert(connection, sql, params) is libpq.UNSUITED
    stored = callbacks._store(config.tenant_id, "contacts", event(config, "gina"), reply=None, request_id="")
    assert stored.created
    assert any(sql.startswith("INSERT") for sql in seen)
    monkeypatch.undo()
    sql, params = values(config, "undone")
    assert libpq.insert(connection, sql, params) is not libpq.UNSUITED


def test_the_time_stamp_is_stored_to_the_microsecond(config):
    stored = callbacks._store(config.tenant_id, "contacts", event(config, "hana"), reply=None, request_id="")
    row = CallbackEvent.objects.get(pk=stored.pk)
    assert datetime.timedelta(0) <= datetime.datetime.now(datetime.UTC) - row.received_at < datetime.timedelta(
        seconds=30
    )
    sql, params = values(config, "stamp")
    pk = libpq.insert(connection, sql, params)
    assert CallbackEvent.objects.get(pk=pk).received_at == datetime.datetime(
        2026, 12, 4, 9, 30, 0, 123456, tzinfo=datetime.UTC
    )
