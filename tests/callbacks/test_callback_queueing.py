"""How stored callbacks reach the workers: the per-process batch publisher, the batch task, the requeue
sweep (what it picks up, and that it does not pick up the same event on every run), and a callback
stored through a database connection that the server dropped."""

import datetime
import os
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import TestCase
from django.utils import timezone

from tests.callbacks.test_callbacks import deliver
from tests.factories import make_config, make_tenant
from wecom_integration.callbacks import handling, tasks
from wecom_integration.callbacks import services as callbacks
from wecom_integration.callbacks.publisher import BatchPublisher
from wecom_integration.directory import services as directory_services
from wecom_integration.events import parse_event
from wecom_integration.models import CallbackEvent, WeComUser
from wecom_integration.testing.callbacks import build_contact_user_xml

T0 = 1_700_000_000


# The publisher ----------------------------------------------------------------------------------------


class Recorder:
    """A publish function that records its batches, and can be told to fail or to wait."""

    def __init__(self):
        self.batches = []
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()
        self.called = threading.Event()

    def __call__(self, items):
        self.called.set()
        self.gate.wait(5)
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.batches.append(items)

    def items(self):
        return [item for batch in self.batches for item in batch]


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_items_submitted_together_go_out_as_one_batch():
    sent = Recorder()
    publisher = BatchPublisher(sent, max_batch=100, linger=0.2)
    for item in range(10):
        publisher.submit(item)
    assert wait_until(lambda: sent.batches)
    assert sent.batches == [list(range(10))]
    assert (publisher.published_batches, publisher.published_items) == (1, 10)


def test_a_full_batch_goes_out_without_waiting_for_the_linger():
    sent = Recorder()
    publisher = BatchPublisher(sent, max_batch=5, linger=30)
    started = time.monotonic()
    for item in range(12):
        publisher.submit(item)
    assert wait_until(lambda: len(sent.items()) >= 10)
    assert time.monotonic() - started < 5
    assert sent.batches[:2] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    # The last two wait for more, or for the linger; flush sends them now, in order.
    assert publisher.flush() == 2
    assert sent.items() == list(range(12))


def test_an_item_alone_waits_at_most_the_linger():
    sent = Recorder()
    publisher = BatchPublisher(sent, max_batch=100, linger=0.05)
    started = time.monotonic()
    publisher.submit("only")
    assert wait_until(lambda: sent.batches, timeout=2)
    assert 0.04 <= time.monotonic() - started < 2
    assert sent.batches == [["only"]]


def test_items_arriving_while_a_batch_is_being_published_make_the_next_batch():
    sent = Recorder()
    publisher = BatchPublisher(sent, max_batch=100, linger=0)
    sent.gate.clear()
    publisher.submit(0)
    assert sent.called.wait(2)
    for item in range(1, 50):
        publisher.submit(item)
    sent.gate.set()
    assert wait_until(lambda: len(sent.items()) == 50)
    assert sent.batches == [[0], list(range(1, 50))]


def test_a_failed_publish_is_logged_and_counted_and_the_publisher_goes_on(caplog):
    sent = Recorder()
    publisher = BatchPublisher(sent, max_batch=100, linger=0, name="test-publisher")
    sent.fail = True
    publisher.submit(1)
    assert wait_until(lambda: publisher.failed_batches == 1)
    assert "left to the sweep" in caplog.text
    sent.fail = False
    publisher.submit(2)
    assert wait_until(lambda: sent.batches)
    assert sent.batches == [[2]]


def test_under_load_a_process_sends_at_most_one_batch_per_interval():
    sent = Recorder()
    publisher = BatchPublisher(sent, max_batch=100, linger=0.01, interval=0.3)
    publisher.submit(1)
    assert wait_until(lambda: sent.batches)
    first_sent = time.monotonic()
    # Arriving right after a message went out, these wait for the interval, not just the linger, and go together.
    for item in (2, 3, 4):
        publisher.submit(item)
    assert wait_until(lambda: len(sent.batches) == 2, timeout=5)
    assert time.monotonic() - first_sent >= 0.25
    assert sent.batches == [[1], [2, 3, 4]]


def test_a_full_batch_does_not_wait_for_the_interval():
    sent = Recorder()
    publisher = BatchPublisher(sent, max_batch=3, linger=0.01, interval=30)
    publisher.submit(0)
    assert wait_until(lambda: sent.batches)
    started = time.monotonic()
    for item in (1, 2, 3):
        publisher.submit(item)
    assert wait_until(lambda: len(sent.batches) == 2, timeout=5)
    assert time.monotonic() - started < 5
    assert sent.batches == [[0], [1, 2, 3]]


def test_settings_are_read_at_each_batch():
    sent = Recorder()
    size = {"value": 2}
    publisher = BatchPublisher(sent, max_batch=lambda: size["value"], linger=lambda: 30)
    for item in range(4):
        publisher.submit(item)
    assert wait_until(lambda: len(sent.items()) == 4)
    assert sent.batches == [[0, 1], [2, 3]]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_has_its_own_thread_and_nothing_of_the_parents():
    sent = Recorder()
    publisher = BatchPublisher(sent, max_batch=100, linger=30)
    publisher.submit("parent")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: it must not see or send the parent's item, and its own must go out
        try:
            ok = publisher.pending() == 0
            publisher.submit("child")
            ok = ok and publisher.flush() == 1 and sent.batches == [["child"]]
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    assert publisher.pending() == 1
    assert publisher.flush() == 1
    assert sent.batches == [["parent"]]


# The batch task ---------------------------------------------------------------------------------------


@pytest.fixture
def config():
    return make_config(make_tenant("queue"))


def stored(config, userid, when=T0, change_type="create_user"):
    """A contact change stored as a callback would store it, without queueing it."""
    xml = build_contact_user_xml(config.corp_id, change_type, {"userid": userid, "name": userid.title()}, when)
    row, created = callbacks.store_event(config.tenant_id, "contacts", parse_event(xml))
    assert created
    return row


@pytest.mark.django_db
def test_the_insert_sends_what_each_fields_own_preparation_would(config):
    """The callback INSERT passes some values without their field's preparation: for each of those,
    get_db_prep_save() must give back the very same value (an int only wrapped for a cursor that binds
    on the client), so skipping it changes nothing stored."""
    passes, constants, _ = callbacks._insert_statement(connection)
    passing = {field.name: kind for field, kind in passes if kind is not None}
    # Text and the integer columns pass, and on PostgreSQL the time stamp (a datetime goes to psycopg as it
    # is); elsewhere the time stamp, and everywhere the JSON, are still prepared by their field.
    if connection.vendor == "postgresql":
        assert passing.pop("received_at") is datetime.datetime
    assert passing == {
        "tenant": int,
        "kind": str,
        "dedupe_key": str,
        "msg_type": str,
        "event": str,
        "change_type": str,
        "subject": str,
        "from_user": str,
        "create_time": int,
        "xml": str,
        "request_id": str,
    }
    values = {
        "tenant": config.tenant_id,
        "kind": "app",
        "dedupe_key": "k" * 255,
        "msg_type": "text",
        "event": "",
        "change_type": "",
        "subject": "张三",
        "from_user": "zhangsan",
        "create_time": 2**62,
        "xml": "<xml>文</xml>",
        "request_id": "r" * 64,
        # What _store stamps: aware when USE_TZ is on, as it is in these settings.
        "received_at": timezone.now(),
    }
    assert timezone.is_aware(values["received_at"])
    for field, kind in passes:
        if kind is None:
            continue
        value = values[field.name]
        prepared = field.get_db_prep_save(value, connection)
        if kind is int:
            assert int(prepared) == value
        else:
            assert (prepared, type(prepared)) == (value, type(value))
    # The other columns take their defaults, the same in every row.
    others = [
        f for f in CallbackEvent._meta.concrete_fields if not f.primary_key and f.name not in callbacks._STORED_FIELDS
    ]
    assert {f.name for f in others} == {"status", "attempts", "error", "handled_at", "queued_at"}
    assert len(constants) == len(others)


@pytest.mark.django_db
def test_the_insert_stores_what_save_would(config):
    """Every column of a callback's row, stored by the INSERT, equals what Django's save() stores for
    the same values (the JSON reply, the big CreateTime, the defaults included)."""
    xml = build_contact_user_xml(config.corp_id, "update_user", {"userid": "张三", "name": "Zhang"}, T0)
    event = parse_event(xml)
    reply = {"type": "text", "content": "好"}
    stored = callbacks._store(config.tenant_id, "app", event, reply=reply, request_id="req-1")
    assert stored.created
    saved = CallbackEvent.objects.create(
        tenant_id=config.tenant_id,
        kind="app",
        dedupe_key="other",
        msg_type=event.msg_type,
        event=event.event,
        change_type=event.change_type,
        subject=event.subject,
        from_user=event.from_user_name,
        create_time=event.create_time,
        xml=event.xml,
        reply=reply,
        request_id="req-1",
    )
    columns = [
        f.attname for f in CallbackEvent._meta.concrete_fields if f.name not in ("id", "dedupe_key", "received_at")
    ]
    ours = CallbackEvent.objects.values(*columns, "dedupe_key", "received_at").get(pk=stored.pk)
    theirs = CallbackEvent.objects.values(*columns).get(pk=saved.pk)
    assert {column: ours[column] for column in columns} == theirs
    assert ours["dedupe_key"] == event.dedupe_key
    assert abs(ours["received_at"] - saved.received_at) < timedelta(seconds=60)
    # A second delivery of the same event stores nothing and answers with the first one's row.
    again = callbacks._store(config.tenant_id, "app", event, reply=None, request_id="req-2")
    assert (again.pk, again.created, again.status, again.reply) == (stored.pk, False, "received", reply)
    assert CallbackEvent.objects.filter(tenant_id=config.tenant_id).count() == 2


@pytest.mark.django_db
def test_a_batch_is_handled_in_order_and_skips_what_is_handled_already(config):
    first, second = stored(config, "alice"), stored(config, "alice", T0 + 1, "update_user")
    third = stored(config, "bob")
    handling.handle_event(third.pk)
    outcome = tasks.handle_callback_events.apply(args=([first.pk, second.pk, third.pk, 999_999],)).get()
    assert outcome == {"handled": 2, "already_handled": 1, "missing": 1}
    assert set(CallbackEvent.objects.values_list("status", flat=True)) == {"handled"}
    assert WeComUser.objects.get(userid="alice").last_event_time == T0 + 1
    assert CallbackEvent.objects.get(pk=third.pk).attempts == 1


@pytest.mark.django_db
def test_a_failing_event_is_retried_on_its_own_and_the_rest_of_its_batch_is_handled(config, settings, monkeypatch):
    settings.WECOM = {"HANDLER_MAX_RETRIES": 2, "HANDLER_RETRY_BACKOFF": 0}
    good, bad, after = stored(config, "good"), stored(config, "bad"), stored(config, "after")
    real = directory_services.apply_contact_change

    def apply(tenant_id, event):
        if event.subject == "bad":
            raise RuntimeError("handler broke")
        return real(tenant_id, event)

    monkeypatch.setattr(directory_services, "apply_contact_change", apply)
    outcome = tasks.handle_callback_events.apply(args=([good.pk, bad.pk, after.pk],)).get()
    assert outcome == {"handled": 2, "retrying": 1}
    bad.refresh_from_db()
    # One attempt in the batch, then HANDLER_MAX_RETRIES more as its own task (eager here), then left.
    assert (bad.status, bad.attempts) == (CallbackEvent.Status.FAILED, 3)
    assert "handler broke" in bad.error
    assert bad.queued_at is not None
    assert set(WeComUser.objects.values_list("userid", flat=True)) == {"good", "after"}


@pytest.mark.django_db(transaction=True)
def test_a_database_error_in_one_handler_rolls_back_only_that_event(config, settings, monkeypatch):
    """What a deadlock or a constraint violation in one event does to its batch (one transaction)."""
    settings.WECOM = {"HANDLER_MAX_RETRIES": 0}
    monkeypatch.setattr(callbacks, "enqueue", lambda event_id, **kwargs: None)  # autocommit: stored, not handled
    rows = [stored(config, userid) for userid in ("first", "bad", "last")]
    real = directory_services.apply_contact_change

    def apply(tenant_id, event):
        change = real(tenant_id, event)  # its writes happen, then the database refuses a statement
        if event.subject == "bad":
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table")
        return change

    monkeypatch.setattr(directory_services, "apply_contact_change", apply)
    outcomes = handling.handle_events([row.pk for row in rows])
    assert outcomes[rows[0].pk] == outcomes[rows[2].pk] == handling.HANDLED
    assert "no_such_table" in str(outcomes[rows[1].pk])
    assert set(WeComUser.objects.values_list("userid", flat=True)) == {"first", "last"}
    statuses = dict(CallbackEvent.objects.values_list("subject", "status"))
    assert statuses == {"first": "handled", "bad": "failed", "last": "handled"}


@pytest.mark.django_db
def test_each_event_of_a_batch_is_handled_under_the_request_id_that_stored_it(config):
    from wecom_integration import observability, signals

    seen = []

    def receiver(sender, callback_event, **kwargs):
        seen.append((callback_event.subject, observability.get_request_id()))

    rows = []
    for userid, request_id in (("anna", "req-anna"), ("ben", "req-ben"), ("cleo", "")):
        xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": userid}, T0)
        rows.append(callbacks.store_event(config.tenant_id, "contacts", parse_event(xml), request_id=request_id)[0])
    signals.contact_changed.connect(receiver)
    try:
        with observability.request_id_context("the-task"), TestCase.captureOnCommitCallbacks(execute=True):
            handling.handle_events([row.pk for row in rows])
    finally:
        signals.contact_changed.disconnect(receiver)
    assert seen == [("anna", "req-anna"), ("ben", "req-ben"), ("cleo", "the-task")]


@pytest.mark.django_db
def test_enqueue_with_a_broker_hands_the_id_to_the_publisher(config, monkeypatch):
    from config.celery import app

    submitted = []
    monkeypatch.setattr(callbacks.publisher, "submit", submitted.append)
    row = stored(config, "carol")
    app.conf.task_always_eager = False  # the conftest fixture restores it
    callbacks.enqueue(row.pk)
    assert submitted == [row.pk]


# The requeue sweep ------------------------------------------------------------------------------------


def age(row, seconds, **fields):
    then = timezone.now() - timedelta(seconds=seconds)
    CallbackEvent.objects.filter(pk=row.pk).update(received_at=then, **fields)


@pytest.mark.django_db
def test_the_sweep_picks_events_whose_handling_is_overdue(config, settings):
    settings.WECOM = {"HANDLER_MAX_RETRIES": 2}
    fresh = stored(config, "fresh")
    lost = stored(config, "lost")
    age(lost, 900)
    requeued_lately = stored(config, "requeued")
    age(requeued_lately, 900, queued_at=timezone.now() - timedelta(seconds=30))
    failed_with_retries_left = stored(config, "failing")
    age(failed_with_retries_left, 900, status="failed", attempts=2, queued_at=timezone.now() - timedelta(seconds=700))
    failed_for_good = stored(config, "given-up")
    age(failed_for_good, 900, status="failed", attempts=3)
    handled = stored(config, "done")
    age(handled, 900, status="handled")

    due = set(callbacks.stale_events(older_than=600).values_list("pk", flat=True))
    assert due == {lost.pk, failed_with_retries_left.pk}
    assert fresh.pk not in due


@pytest.mark.django_db
def test_the_sweep_queues_each_overdue_event_once_per_period(config, settings, monkeypatch):
    settings.WECOM = {"CALLBACK_BATCH_SIZE": 2}
    rows = [stored(config, f"late{i}") for i in range(5)]
    for row in rows:
        age(row, 900)
    sent = []
    monkeypatch.setattr(tasks.handle_callback_events, "delay", lambda ids: sent.append(list(ids)))

    assert callbacks.requeue_stale_events(older_than=600) == 5
    assert sent == [[rows[0].pk, rows[1].pk], [rows[2].pk, rows[3].pk], [rows[4].pk]]
    assert not CallbackEvent.objects.filter(queued_at__isnull=True).exists()
    # Still "received" (the messages are in the queue, or lost again): not queued again until the
    # period has passed since this sweep queued them.
    assert callbacks.requeue_stale_events(older_than=600) == 0
    CallbackEvent.objects.update(queued_at=timezone.now() - timedelta(seconds=601))
    assert callbacks.requeue_stale_events(older_than=600) == 5


@pytest.mark.django_db
def test_the_swept_events_are_handled(config):
    row = stored(config, "late")
    age(row, 900)
    assert callbacks.requeue_stale_events(older_than=600) == 1  # eager Celery: handled right here
    row.refresh_from_db()
    assert row.status == CallbackEvent.Status.HANDLED
    assert WeComUser.objects.get(userid="late").name == "Late"


@pytest.mark.django_db
def test_a_failed_publish_in_the_sweep_leaves_the_rest_for_the_next_run(config, monkeypatch):
    rows = [stored(config, f"late{i}") for i in range(3)]
    for row in rows:
        age(row, 900)

    def broker_down(ids):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.handle_callback_events, "delay", broker_down)
    assert callbacks.requeue_stale_events(older_than=600) == 0
    # The chunk it tried is marked, so the next attempt is one period later; nothing was lost.
    assert CallbackEvent.objects.filter(status="received").count() == 3


@pytest.mark.django_db
def test_the_admins_retry_restarts_the_sweeps_clock(config, monkeypatch):
    row = stored(config, "manual")
    age(row, 900, status="failed", attempts=1)
    monkeypatch.setattr(tasks.handle_callback_event, "delay", lambda event_id, **kwargs: None)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert callbacks.retry_event(row.pk)
    row.refresh_from_db()
    assert row.status == CallbackEvent.Status.RECEIVED
    assert timezone.now() - row.queued_at < timedelta(seconds=60)
    assert not callbacks.stale_events(older_than=600).filter(pk=row.pk).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks of PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_handling_events_locks_no_row_a_new_callback_needs(config, monkeypatch):
    """While a worker holds its batch's locks, the web stores the tenant's next callbacks at once: the
    handlers lock their own rows, never the tenant's (an INSERT referencing it takes FOR KEY SHARE)."""
    from django.db import connections
    from django.db.utils import load_backend

    monkeypatch.setattr(callbacks, "enqueue", lambda event_id, **kwargs: None)
    rows = [stored(config, "held"), stored(config, "held", T0 + 1, "update_user")]
    handling.handle_event(rows[0].pk)
    entered, release = threading.Event(), threading.Event()
    real = directory_services.apply_contact_change

    def slow_apply(tenant_id, event):
        change = real(tenant_id, event)
        entered.set()
        release.wait(10)
        return change

    monkeypatch.setattr(directory_services, "apply_contact_change", slow_apply)
    worker = threading.Thread(target=lambda: (handling.handle_events([rows[1].pk]), connection.close()))
    worker.start()
    try:
        assert entered.wait(10)
        # Another connection, as the web process has, that gives up after a second instead of waiting.
        settings_dict = connections["default"].settings_dict
        web = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias="web-test")
        try:
            with web.cursor() as cursor:
                cursor.execute("SET lock_timeout = '1s'")
            original = callbacks.connections
            monkeypatch.setattr(callbacks, "connections", {"default": web})
            xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": "newcomer"}, T0)
            newcomer = callbacks._store(config.tenant_id, "contacts", parse_event(xml), reply=None, request_id="")
            monkeypatch.setattr(callbacks, "connections", original)
            assert newcomer.created
        finally:
            web.close()
    finally:
        release.set()
        worker.join(10)
    assert CallbackEvent.objects.get(pk=rows[1].pk).status == CallbackEvent.Status.HANDLED


# A dropped database connection ------------------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")
@pytest.mark.django_db(transaction=True)
def test_a_callback_on_a_connection_the_database_dropped_is_stored_on_a_new_one(client, config):
    import psycopg

    def create(userid):
        return deliver(
            client, config, "contacts", build_contact_user_xml(config.corp_id, "create_user", {"userid": userid}, T0)
        )

    assert create("one").status_code == 200
    backend = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    dsn = {key: params[key] for key in ("dbname", "user", "password", "host", "port") if params.get(key)}
    with psycopg.connect(**dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (backend,))
    answer = create("two")
    assert answer.status_code == 200
    assert connection.connection.info.backend_pid != backend
    assert set(CallbackEvent.objects.values_list("subject", flat=True)) == {"one", "two"}
    assert WeComUser.objects.filter(userid="two").exists()
