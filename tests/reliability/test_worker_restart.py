"""A worker that loses Redis comes back under the deployment's own systemd unit, and loses nothing.

docs/deploy.md ("Keeping workers running") gives a systemd unit per Procfile worker. The first tests
hold the units to the guide's worker commands and to the restart policy the guide promises. The last
runs the callbacks worker as systemd would run that unit (its ExecStart; after any exit, started again
``RestartSec`` later, for ever as ``StartLimitIntervalSec=0`` says) on the PostgreSQL test database and
a redis-server of this test's own, under gunicorn and the fake WeCom's pushes, and kills Redis while the
worker holds reserved messages. The worker tries to restore them (kombu's ``restore_unacked``), fails,
exhausts ``CELERY_BROKER_CONNECTION_MAX_RETRIES`` and exits; the unit starts it again, again while Redis
is away, and once Redis is back (empty: the queued tasks are gone) the requeue sweep, sent through the
broker as beat sends it, brings every stored event back. Every callback ends handled exactly once.
"""

import configparser
import os
import re
import time
from collections import Counter

import pytest

from tests.factories import config_from_fake, make_tenant
from tests.operations.test_scale_out import doc_blocks, doc_sh_commands
from tests.procs import Cluster, database_url, drain, plan_operations, run_load

COUNT = int(os.environ.get("RESTART_CALLBACKS") or 3000)
RATE = 600.0
VENV_BIN = "/srv/wecom/.venv/bin/"


def systemd_units():
    """The guide's ``ini`` blocks that are systemd units, by file name (``wecom-worker-callbacks.service``)."""
    units = {}
    for block in doc_blocks("ini"):
        first = block.splitlines()[0]
        match = re.match(r"^# /etc/systemd/system/(\S+\.service)$", first)
        if match:
            parser = configparser.ConfigParser(interpolation=None, strict=True)
            parser.optionxform = str  # systemd's keys are case-sensitive
            parser.read_string(block)
            units[match[1]] = parser
    return units


def exec_command(unit):
    """The unit's ExecStart as the shell would run it here: the virtualenv's ``celery`` is on PATH, and
    systemd's ``%%`` is a plain ``%``."""
    command = unit["Service"]["ExecStart"]
    assert command.startswith(VENV_BIN), command
    return command[len(VENV_BIN):].replace("%%", "%")


def test_the_guide_has_a_unit_for_each_worker_running_its_command():
    units = systemd_units()
    assert set(units) == {"wecom-worker-callbacks.service", "wecom-worker-bulk.service"}
    worker_commands = [command for command in doc_sh_commands() if command.startswith("celery -A config worker ")]
    assert sorted(exec_command(unit) for unit in units.values()) == sorted(worker_commands)
    # A lone % would be a systemd specifier (%h is the home directory, not Celery's host name).
    for unit in units.values():
        assert not re.search(r"(?<!%)%(?!%)", unit["Service"]["ExecStart"].replace("%%", "")), "unescaped %"


def test_the_units_restart_a_worker_for_ever_and_stop_it_warmly():
    from django.conf import settings

    for name, unit in systemd_units().items():
        service = unit["Service"]
        assert service["Restart"] == "always", name
        assert 0 < float(service["RestartSec"]) <= 10, name
        assert unit["Unit"]["StartLimitIntervalSec"] == "0", f"{name}: systemd would give up after 5 starts"
        assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM", name
    bulk = systemd_units()["wecom-worker-bulk.service"]["Service"]
    assert float(bulk["TimeoutStopSec"]) > settings.CELERY_TASK_TIME_LIMIT, "a running sync would be killed"


def test_a_worker_gives_up_on_a_lost_broker_after_a_bounded_number_of_tries():
    from django.conf import settings

    assert 0 < settings.CELERY_BROKER_CONNECTION_MAX_RETRIES <= 20


class SystemdService:
    """One unit's service as systemd runs it: ``ExecStart`` in a process of its own and, after any exit
    that was not a stop, the same command again ``RestartSec`` later, without a limit. ``poll`` is the
    service manager's loop turn; call it from the thread that started the service (Proc's processes end
    with the thread that started them)."""

    def __init__(self, cluster, unit, name):
        assert unit["Service"]["Restart"] == "always"
        self.cluster = cluster
        self.name = name
        self.command = exec_command(unit)
        self.restart_sec = float(unit["Service"]["RestartSec"])
        self.procs = []
        self.exits = []  # (return code, the last lines it wrote) of each exit
        self._exited_at = None
        self._start()

    def _start(self):
        self.procs.append(self.cluster._start(f"{self.name}-{len(self.procs)}", self.command))
        self._exited_at = None

    @property
    def current(self):
        return self.procs[-1]

    def poll(self):
        if self.current.running():
            return True
        if self._exited_at is None:
            self._exited_at = time.monotonic()
            self.exits.append((self.current.popen.returncode, self.current.output()))
        if time.monotonic() - self._exited_at >= self.restart_sec:
            self._start()
        return self.current.running()

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if "ready." in self.current.output():
                return True
            time.sleep(0.2)
        return False


class ServiceManager:
    """Turns every service's loop; ``ensure`` for drain()."""

    def __init__(self, *services):
        self.services = services

    def ensure(self):
        return all([service.poll() for service in self.services])



@pytest.fixture
def fake():
    from wecom_integration.testing import FakeWeCom

    with FakeWeCom(users=40, departments=4, seed=33) as fake:
        yield fake


@pytest.fixture
def cluster(transactional_db, redis_server, fake, tmp_path):
    from django.conf import settings

    # Two tries instead of ten, so the test waits seconds for the exit rather than two minutes.
    cluster = Cluster(tmp_path, database_url(settings.DATABASES["default"]), redis_server.url(0), fake.api_base,
                      extra_env={"CELERY_BROKER_CONNECTION_MAX_RETRIES": "2"})
    yield cluster
    cluster.stop()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_worker_that_redis_left_comes_back_under_its_unit_and_loses_nothing(
    cluster, redis_server, fake, capsys
):
    from wecom_integration.models import CallbackEvent

    tenant = make_tenant("restart")
    config = config_from_fake(tenant, fake)
    cluster.start_web(workers=2, threads=8)
    base = f"{cluster.web_url}/wecom/callback/{tenant.pk}"
    fake.register_callback(f"{base}/contacts/", config.contact_token, config.contact_aes_key, "contacts")
    fake.register_callback(f"{base}/app/", config.app_token, config.app_aes_key, "app")

    # The callbacks arrive and are stored and queued while no worker runs: a backlog to be working on.
    ops = plan_operations(COUNT, rate=RATE, existing=sorted(fake.org.users), twice_share=0.0)
    load = run_load(fake, ops, rate=RATE, deadline=COUNT / RATE * 4 + 60,
                    app_callback=(f"{base}/app/", config.app_token, config.app_aes_key))
    assert not load.failed and len(load.statuses) == len(ops), load.events
    events = CallbackEvent.objects.filter(tenant=tenant)
    assert events.count() == len(ops)

    # Both units: the callbacks worker handles the events; the bulk worker serves "default", where beat's
    # requeue sweep goes.
    units = systemd_units()
    service = SystemdService(cluster, units["wecom-worker-callbacks.service"], "worker-callbacks")
    bulk = SystemdService(cluster, units["wecom-worker-bulk.service"], "worker-bulk")
    assert service.wait_ready(90), service.current.tail()
    assert bulk.wait_ready(90), bulk.current.tail()
    manager = ServiceManager(service, bulk)

    # Redis goes away while the worker is part-way through the backlog, holding reserved messages.
    handled = events.filter(status=CallbackEvent.Status.HANDLED)
    deadline = time.monotonic() + 60
    while handled.count() < 100 and time.monotonic() < deadline:
        manager.ensure()
        time.sleep(0.05)
    at_kill = handled.count()
    assert 0 < at_kill < len(ops), f"{at_kill} of {len(ops)} handled when Redis was to go: no backlog to lose"
    redis_server.kill()

    # The worker exits, and its unit starts it again (each new one exits too while Redis is away).
    deadline = time.monotonic() + 60
    while len(service.procs) < 2 and time.monotonic() < deadline:
        manager.ensure()
        time.sleep(0.1)
    assert service.exits, f"the worker did not exit without Redis:\n{service.current.tail()}"
    code, output = service.exits[0]
    assert code != 0 and "Unrecoverable error" in output, output[-3000:]
    assert len(service.procs) >= 2, "the unit did not start the worker again"
    outage_began = time.monotonic()
    while time.monotonic() - outage_began < 6:
        manager.ensure()
        time.sleep(0.1)

    redis_server.start()
    redis_server.restarts += 1
    assert service.wait_ready(90), service.current.tail()
    assert bulk.wait_ready(90), bulk.current.tail()

    drained, sweeps = drain(tenant, len(ops), redis_url=redis_server.url(0), supervisor=manager,
                            period=3.0, older_than=5, timeout=240)
    statuses = Counter(events.values_list("status", flat=True))
    restored = "unacknowledged message" in output
    with capsys.disabled():
        print(
            f"\n{len(ops)} callbacks stored; Redis killed with {at_kill} handled; the worker exited "
            f"{len(service.exits)} time(s) (first exit code {code}, restore of reserved messages attempted: "
            f"{restored}), started {len(service.procs)} times by its unit (the bulk worker {len(bulk.procs)}); "
            f"drained {drained:.1f} s after, "
            f"{sweeps} sweeps; statuses {dict(statuses)}"
        )

    assert events.count() == len(ops)
    unhandled = list(events.exclude(status=CallbackEvent.Status.HANDLED).values_list("pk", "status", "error")[:10])
    assert not unhandled, f"{statuses} — not handled (first 10): {unhandled}\n{cluster.logs()}"
    twice = list(events.exclude(attempts=1).values_list("pk", "attempts")[:10])
    assert not twice, f"handled in more than one attempt: {twice}"
