"""No callback lost, none handled twice, under load, with a worker SIGKILLed and Redis restarted.

gunicorn (the Procfile's web, 2 workers of 4 threads) and a real Celery worker run on the PostgreSQL test
database and a redis-server of this test's own (restarting the shared one would break everyone else's
tests). The fake WeCom pushes RELIABILITY_CALLBACKS (default 20,000 in CI, 2,000 elsewhere) encrypted
contact changes and app messages at RELIABILITY_RATE per second (default 300), each with WeCom's policy of
5 s and 3 tries; one message in ten is delivered twice with the same envelope, as WeCom does when it
missed an answer. A third of the way in the worker is SIGKILLed with its pool and started again (what it
had reserved stays unacknowledged in Redis for the visibility timeout, an hour); two thirds in, Redis is
killed and started empty, losing every queued task. What must hold at the end:

- every callback was answered 200 (after WeCom's retries);
- every event is stored once (one row per dedupe key) and handled once (status handled, one attempt,
  one inbox row per message); the lost tasks are recovered by the requeue sweep
  (``wecom_integration.tasks.requeue_stale_callback_events``) sent through the broker as beat sends it;
- the mirror equals the fake's organisation for every member the load touched.

bench/load.py runs the same with figures.
"""

import os
from collections import Counter

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.factories import config_from_fake, make_tenant
from tests.procs import (
    Cluster,
    Supervisor,
    database_url,
    drain,
    mirror_mismatches,
    plan_operations,
    run_load,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

IN_CI = REQUIRE_SERVICES or bool(os.environ.get("CI"))
COUNT = int(os.environ.get("RELIABILITY_CALLBACKS") or (20_000 if IN_CI else 2_000))
RATE = float(os.environ.get("RELIABILITY_RATE") or 300)
# The sweep's cadence and age threshold in this test; production's beat entry uses minutes, not seconds.
SWEEP_EVERY = 5.0
SWEEP_OLDER_THAN = 15



@pytest.fixture
def fake():
    from wecom_integration.testing import FakeWeCom

    with FakeWeCom(users=60, departments=6, seed=21) as fake:
        yield fake


@pytest.fixture
def cluster(transactional_db, redis_server, fake, tmp_path):
    """gunicorn + one worker; stopped before the test database is flushed."""
    from django.conf import settings

    cluster = Cluster(tmp_path, database_url(settings.DATABASES["default"]), redis_server.url(0), fake.api_base)
    yield cluster
    cluster.stop()


def test_no_event_lost_or_handled_twice_with_a_killed_worker_and_a_restarted_redis(
    cluster, redis_server, fake, tmp_path, capsys
):
    from wecom_integration.models import CallbackEvent, InboxMessage

    tenant = make_tenant("load")
    config = config_from_fake(tenant, fake)
    cluster.start_web(workers=2, threads=8)
    supervisor = Supervisor(cluster, concurrency=2)
    base = f"{cluster.web_url}/wecom/callback/{tenant.pk}"
    fake.register_callback(f"{base}/contacts/", config.contact_token, config.contact_aes_key, "contacts")
    fake.register_callback(f"{base}/app/", config.app_token, config.app_aes_key, "app")

    ops = plan_operations(COUNT, rate=RATE, existing=sorted(fake.org.users))

    def kill_worker():
        supervisor.kill()

    def restart_redis():
        redis_server.restart()

    load = run_load(fake, ops, rate=RATE, actions=[(0.35, kill_worker), (0.65, restart_redis)],
                    deadline=COUNT / RATE * 4 + 60, app_callback=(f"{base}/app/", config.app_token, config.app_aes_key))
    assert supervisor.killed == [-9], "the worker was not SIGKILLed"
    assert redis_server.restarts == 1

    # Drain: the worker handles the backlog; the sweep queues again what the kill and the restart lost.
    # A worker that exits meanwhile (Celery's Redis transport can crash on the lost connection) is started
    # again as the process supervisor of a deployment would.
    events = CallbackEvent.objects.filter(tenant=tenant)
    drained, sweeps = drain(tenant, len(ops), redis_url=redis_server.url(0), supervisor=supervisor,
                            period=SWEEP_EVERY, older_than=SWEEP_OLDER_THAN, timeout=max(120.0, COUNT / 40))
    statuses = Counter(events.values_list("status", flat=True))
    # Printed past pytest's capture, so CI's log carries the run's figures.
    with capsys.disabled():
        print(
            f"\n{len(ops)} callbacks in {load.seconds:.1f} s = {load.rate:.0f}/s (target {RATE:.0f}/s); "
            f"p50 {load.p50 * 1000:.1f} ms, p99 {load.percentile(0.99) * 1000:.1f} ms; {load.retried} retried "
            f"by the sender; drained {drained:.1f} s after, {sweeps} sweeps; statuses {dict(statuses)}; "
            f"actions {load.events}; worker restarts after it exited: {supervisor.restarts}"
        )

    # Every callback answered 200 after WeCom's retries.
    assert len(load.statuses) == len(ops), f"only {len(load.statuses)} of {len(ops)} pushed: {load.events}"
    assert not load.failed, f"{len(load.failed)} callbacks never answered 200: {list(load.failed.items())[:10]}"

    # Stored exactly once: each pushed event has one row (the second delivery of a message stored nothing).
    assert sum(op.twice for op in ops) > 0
    assert events.count() == len(ops), (events.count(), len(ops))
    assert events.values("kind", "dedupe_key").distinct().count() == len(ops)
    kinds = Counter(op.kind for op in ops)
    assert events.filter(kind="app").count() == kinds["message"]
    assert events.filter(kind="contacts").count() == len(ops) - kinds["message"]

    # Handled exactly once: every row handled, in one attempt (the row lock and the status check make a
    # redelivered or requeued task a no-op), and one inbox row per message.
    unhandled = list(events.exclude(status=CallbackEvent.Status.HANDLED).values_list("pk", "status", "error")[:10])
    assert not unhandled, f"{statuses} — not handled (first 10): {unhandled}\n{cluster.logs()}"
    twice = list(events.exclude(attempts=1).values_list("pk", "attempts", "change_type")[:10])
    assert not twice, f"handled in more than one attempt: {twice}"
    inbox = Counter(
        InboxMessage.objects.filter(tenant=tenant, direction=InboxMessage.Direction.IN).values_list(
            "event_id", flat=True
        )
    )
    assert len(inbox) == kinds["message"] and set(inbox.values()) == {1}, "a message reached the inbox twice"

    # The mirror equals WeCom for every member the load touched.
    touched = {op.userid for op in ops if op.kind != "message"}
    wrong = mirror_mismatches(tenant, fake, touched)
    assert not wrong, f"{len(wrong)} of {len(touched)} members differ from WeCom (first 10): {wrong[:10]}"
