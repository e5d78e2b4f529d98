"""docs/deploy.md is executable, and the Procfile scales out.

1. Every command in the deployment guide runs: ``sh`` blocks and the Procfile block are extracted and each
   command is run in a subprocess (long-running ones until they report ready; gunicorn with
   ``--check-config``; collectstatic with ``--dry-run``) under the guide's own example environment.
   The guide's environment variables and the ones the code reads must match both ways.
2. ``test_two_web_nodes_and_four_workers_share_one_database_and_redis`` (``services``: PostgreSQL + Redis)
   starts two web processes and four Celery workers from the Procfile on the test database and a fresh
   Redis database, sends every callback through both web nodes, runs a full contact sync through the
   API, and checks that each event was stored and handled once and that WeCom issued one token per
   secret for the whole deployment.

The process helpers here are shared with test_health and test_observability.
"""

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
PROCFILE = ROOT / "Procfile"
BIN = Path(sys.executable).parent


# Process helpers ----------------------------------------------------------------------------------------


def free_port():
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(**overrides):
    """This environment with the virtualenv first on PATH, minus per-process settings, plus ``overrides``
    (a value of None removes the variable)."""
    env = dict(os.environ)
    for name in ("PROMETHEUS_MULTIPROC_DIR", "WECOM_WORKER_METRICS_PORT", "GUNICORN_BIND", "CELERY_NODE", "PORT"):
        env.pop(name, None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def _die_with_the_tests():
    """In the child, before exec: SIGTERM it when the test process dies (Linux), so a pytest killed by a
    timeout leaves no server or worker behind; elsewhere only ``stop`` ends it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Proc:
    """A command run by bash (``exec``: the process is the command itself, so signals reach it) in its
    own process group, output to a log file. One simple command; variables go in ``env``, not before it."""

    def __init__(self, name, command, env, log_dir):
        self.name = name
        self.command = command
        self.log_path = Path(log_dir) / f"{name}.log"
        self._terminated = False
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_the_tests,
        )

    def output(self):
        return self.log_path.read_text(errors="replace")

    def tail(self, lines=40):
        return f"--- {self.name}: {self.command}\n" + "\n".join(self.output().splitlines()[-lines:])

    def running(self):
        return self.popen.poll() is None

    def terminate(self):
        """SIGTERM the main process, once: a warm shutdown, in which it stops its own children. Not the
        group: a prefork child killed while holding the pool's queue lock hangs the Celery main process
        at exit (as systemd's default KillMode=control-group would)."""
        if self.running() and not self._terminated:
            self._terminated = True
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout=30):
        """``terminate``, then SIGKILL the whole group if it is still running after ``timeout``."""
        if self.running():
            self.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # Still running, so the group is still ours: end it with everything in it.
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()
        return self.popen.returncode


def wait_for(predicate, *, timeout, what, procs=()):
    """Poll ``predicate`` until it returns a true value (returned) or ``timeout`` seconds pass (failure
    showing the processes' last output)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        dead = [proc for proc in procs if not proc.running()]
        if dead or time.monotonic() > deadline:
            reason = f"{dead[0].name} exited" if dead else f"not within {timeout} s"
            logs = "\n".join(proc.tail() for proc in procs)
            pytest.fail(f"waiting for {what}: {reason}\n{logs}")
        time.sleep(0.2)


def http_get(url, **kwargs):
    """GET that answers None instead of raising while a server is starting or too busy to answer."""
    try:
        return requests.get(url, timeout=10, **kwargs)
    except (requests.ConnectionError, requests.Timeout):
        return None


def wait_http_ok(url, *, timeout=60, procs=()):
    return wait_for(
        lambda: (r := http_get(url)) is not None and r.status_code == 200 and r, timeout=timeout, what=url,
        procs=procs,
    )


# The deployment guide -----------------------------------------------------------------------------------

_FENCE = re.compile(r"^```([A-Za-z]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_blocks(lang):
    return [body for info, body in _FENCE.findall(DOC.read_text()) if info == lang]


def doc_sh_commands():
    commands = []
    for block in doc_blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def procfile_entries(text):
    entries = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _sep, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def doc_env():
    values = {}
    for block in doc_blocks("env"):
        for line in block.splitlines():
            match = re.match(r"^([A-Z][A-Z0-9_]*)=(\S*)", line.strip())
            if match:
                values[match[1]] = match[2]
    return values


DOCUMENTED = [(f"sh: {command}", command) for command in doc_sh_commands()] + [
    (f"Procfile {name}", command) for name, command in procfile_entries(PROCFILE.read_text()).items()
]

# How each kind of documented command is exercised; a command no rule knows fails the test.
RULES = [
    (re.compile(r"^python manage\.py (migrate|check|wecom_rotate_keys)\b"), "run"),
    (re.compile(r"^python manage\.py collectstatic\b"), "dry-run"),
    (re.compile(r"^python -c "), "run"),
    (re.compile(r"^gunicorn "), "check-config"),
    (re.compile(r"^celery -A config worker "), "worker"),
    (re.compile(r"^celery -A config beat "), "beat"),
]
READY = {"worker": re.compile(r"ready\."), "beat": re.compile(r"beat: Starting")}


def test_the_guide_shows_the_procfile_as_it_is():
    assert doc_blocks("Procfile") == [PROCFILE.read_text()]
    assert set(procfile_entries(PROCFILE.read_text())) == {"web", "worker-callbacks", "worker-bulk", "beat"}


def test_callbacks_have_a_worker_of_their_own():
    entries = procfile_entries(PROCFILE.read_text())
    queues = {name: re.search(r"-Q (\S+)", command)[1].split(",") for name, command in entries.items()
              if " worker " in command}
    assert queues == {"worker-callbacks": ["callbacks"], "worker-bulk": ["bulk", "default"]}


def _code_files():
    files = [ROOT / "gunicorn.conf.py", PROCFILE, *sorted((ROOT / "config").glob("*.py"))]
    return files + sorted((ROOT / "wecom_integration").rglob("*.py"))


def test_every_documented_variable_is_read_by_the_code():
    code = "\n".join(path.read_text() for path in _code_files())
    unread = [name for name in doc_env() if not any(form in code for form in (f'"{name}"', f"'{name}'", "${" + name))]
    assert not unread, f"docs/deploy.md documents variables nothing reads: {unread}"


def test_every_variable_the_processes_read_is_documented():
    sources = [ROOT / "config" / "settings.py", ROOT / "gunicorn.conf.py",
               ROOT / "wecom_integration" / "observability.py",
               ROOT / "wecom_integration" / "operations" / "celery_signals.py"]
    reads = re.compile(r"(?:environ\.get|env_bool|env_list|getenv)\(\s*[\"']([A-Z][A-Z0-9_]+)")
    read = set()
    for path in sources:
        read |= set(reads.findall(path.read_text()))
    read |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", PROCFILE.read_text()))
    assert read, "no environment variable found: the patterns above are out of date"
    missing = sorted(read - set(doc_env()))
    assert not missing, f"read from the environment but not in docs/deploy.md's env block: {missing}"


@pytest.fixture(scope="module")
def guide_env(tmp_path_factory):
    """The guide's example environment, made local: a fresh SQLite database (migrated), no Redis (the
    memory broker), loopback addresses, one process per pool, fresh secrets."""
    tmp = tmp_path_factory.mktemp("guide")
    metrics_dir = tmp / "metrics"
    metrics_dir.mkdir()
    env = base_env(**{
        **doc_env(),
        "SECRET_KEY": secrets.token_urlsafe(64),
        "WECOM_FIELD_KEYS": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp / 'guide.sqlite3'}",
        "REDIS_URL": None,
        "GUNICORN_BIND": None,
        "HOST": "127.0.0.1",
        "PORT": free_port(),
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "CELERY_NODE": None,
        "CALLBACK_CONCURRENCY": 1,
        "BULK_CONCURRENCY": 1,
        "CELERY_BEAT_SCHEDULE": tmp / "celerybeat-schedule",
        "WECOM_WORKER_METRICS_ADDR": "127.0.0.1",
        "STATIC_ROOT": tmp / "static",
    })
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return {"env": env, "tmp": tmp}


def _rule(command):
    for pattern, mode in RULES:
        if pattern.search(command):
            return mode
    return None


@pytest.mark.parametrize("command", [command for _label, command in DOCUMENTED], ids=[label for label, _ in DOCUMENTED])
def test_documented_command_runs(command, guide_env):
    mode = _rule(command)
    assert mode, f"docs/deploy.md has a command no test runs; add a rule in {__name__}.RULES: {command}"
    env = dict(guide_env["env"])
    if mode in ("run", "dry-run", "check-config"):
        suffix = {"run": "", "dry-run": " --dry-run", "check-config": " --check-config"}[mode]
        done = subprocess.run(["bash", "-c", command + suffix], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{command}{suffix} exited {done.returncode}:\n{output}"
        if " check --deploy" in command:
            # W021 (HSTS preload) is a decision the guide leaves to the operator; nothing else may show.
            assert set(re.findall(r"\(([a-z_]+\.[A-Z]\d+)\)", output)) <= {"security.W021"}, output
        if command.startswith("python -c "):
            assert len(done.stdout.strip()) >= 40, "a generated key should be long"
        return
    # A long-running process: started as documented, it must report ready, then stop on SIGTERM.
    if mode == "worker":
        env["WECOM_WORKER_METRICS_PORT"] = str(free_port())
    proc = Proc(re.sub(r"\W+", "-", command)[:60], command, env, guide_env["tmp"])
    try:
        wait_for(lambda: READY[mode].search(proc.output()), timeout=60, what=f"{command} to be ready", procs=[proc])
        if mode == "worker":
            scraped = wait_http_ok(f"http://127.0.0.1:{env['WECOM_WORKER_METRICS_PORT']}/metrics", procs=[proc])
            assert "wecom_rate_budget_waits_total" in scraped.text
    finally:
        proc.stop()
    assert not proc.running()


# Scale-out: two web nodes, four workers, one PostgreSQL and one Redis -----------------------------------


def _database_url(db):
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}{db.get('HOST') or '127.0.0.1'}{port}/{quote(db['NAME'], safe='')}"


def _fresh_redis_url(url):
    """The same Redis server, the next database index: the cluster's queues and cache start empty and
    do not mix with the test process's."""
    parts = urlsplit(url)
    index = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(index + 1) % 16}"))


def _samples(text, name, **labels):
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture
def cluster(transactional_db, tmp_path):
    """Starts processes from the Procfile on the test database and a fresh Redis database; stops them
    (before the test database is flushed) and empties that Redis database afterwards."""
    import redis
    from django.conf import settings

    redis_url = _fresh_redis_url(os.environ["REDIS_URL"])
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    procs = []
    common = {
        "DATABASE_URL": _database_url(settings.DATABASES["default"]),
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": f"scale-{uuid.uuid4().hex[:8]}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "DEBUG": "0",
        "SECURE": None,
        "WECOM_PUBLIC_BASE_URL": None,
        "WECOM_METRICS_TOKEN": None,
    }
    entries = procfile_entries(PROCFILE.read_text())

    def start(entry, name, **env):
        proc = Proc(name, entries[entry], base_env(**common, **env), tmp_path)
        procs.append(proc)
        return proc

    yield start, procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.stop()
    client.flushdb()
    client.close()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_two_web_nodes_and_four_workers_share_one_database_and_redis(cluster, tmp_path):
    from rest_framework.authtoken.models import Token

    from tests import factories
    from wecom_integration.models import CallbackEvent, SyncRun, WeComUser
    from wecom_integration.testing.callbacks import CallbackSender, build_contact_user_xml
    from wecom_integration.testing.server import FakeWeCom

    start, procs = cluster
    fake = FakeWeCom(users=300, departments=20, seed=10).start()
    try:
        tenant = factories.make_tenant("scale")
        config = factories.config_from_fake(tenant, fake)
        admin = factories.make_tenant_admin("scale-admin", tenant)
        api_token = Token.objects.create(user=admin).key

        webs = []
        for name in ("web1", "web2"):
            port = free_port()
            start("web", name, PORT=port, HOST="127.0.0.1", WEB_CONCURRENCY=1, WECOM_API_BASE=fake.api_base)
            webs.append(f"http://127.0.0.1:{port}")
        worker_metrics = []
        for entry, node in (("worker-callbacks", "callbacks1"), ("worker-callbacks", "callbacks2"),
                            ("worker-bulk", "bulk1"), ("worker-bulk", "bulk2")):
            metrics_dir = tmp_path / f"metrics-{node}"
            metrics_dir.mkdir()
            port = free_port()
            start(entry, node, CELERY_NODE=node, CALLBACK_CONCURRENCY=1, BULK_CONCURRENCY=1,
                  WECOM_API_BASE=fake.api_base, PROMETHEUS_MULTIPROC_DIR=metrics_dir, WECOM_WORKER_METRICS_PORT=port)
            if entry == "worker-callbacks":
                worker_metrics.append(f"http://127.0.0.1:{port}/metrics")

        for web in webs:
            ready = wait_http_ok(f"{web}/readyz", procs=procs)
            assert ready.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}
        for proc in procs[2:]:
            wait_for(lambda proc=proc: re.search(r"ready\.", proc.output()), timeout=90,
                     what=f"{proc.name} ready", procs=procs)

        # Each callback goes to both web nodes, as WeCom's retry of a slow answer may reach another node.
        token, aes_key = config.contact_token, config.contact_aes_key
        senders = [CallbackSender(f"{web}/wecom/callback/{tenant.pk}/contacts/", token, aes_key, fake.corp_id)
                   for web in webs]
        count = 40
        for i in range(count):
            userid = f"scale{i:03d}"
            fake.add_user(userid, f"Scale {i}", department=(1,))
            xml = build_contact_user_xml(fake.corp_id, "create_user", fake.org.user_json(fake.org.users[userid]))
            params, body = senders[i % 2].envelope(xml)
            for sender in (senders[i % 2], senders[(i + 1) % 2]):
                delivery = sender.post_envelope(params, body)
                assert delivery.ok, delivery.as_dict()

        # One more, with the request id a load balancer would add: it must reach the worker's log lines.
        request_id = f"scale-{uuid.uuid4().hex}"
        session = requests.Session()
        session.headers["X-Request-Id"] = request_id
        traced = CallbackSender(senders[1].url, token, aes_key, fake.corp_id, session=session)
        fake.add_user("scaletraced", "Traced", department=(1,))
        xml = build_contact_user_xml(fake.corp_id, "create_user", fake.org.user_json(fake.org.users["scaletraced"]))
        assert traced.post(xml).ok

        events = CallbackEvent.objects.filter(tenant=tenant, kind="contacts")
        wait_for(lambda: events.filter(status="handled").count() == count + 1, timeout=120,
                 what="every callback handled", procs=procs)
        assert events.count() == count + 1, "a callback delivered twice was stored twice"
        assert events.values("dedupe_key").distinct().count() == count + 1
        assert WeComUser.objects.filter(tenant=tenant, userid__startswith="scale").count() == count + 1

        def scrape(name, **labels):
            return sum(_samples(wait_http_ok(url, procs=procs).text, name, **labels) for url in worker_metrics)

        # Every event was handled by a callbacks worker, once, from the batches the web nodes published
        # (a worker counts just after its commit, so the counts may trail the rows for a moment).
        wait_for(lambda: scrape("wecom_callbacks_handled_total", kind="contacts") >= count + 1, timeout=30,
                 what="the workers' handled count", procs=procs)
        assert scrape("wecom_callbacks_handled_total", kind="contacts") == count + 1
        batches = scrape("wecom_tasks_total", task="wecom_integration.tasks.handle_callback_events", state="success")
        assert 1 <= batches <= count + 1
        worker_logs = "".join(proc.output() for proc in procs if proc.name.startswith("callbacks"))
        assert request_id in worker_logs, "the callback's request id did not follow it into its task"

        # A full contact sync through the API, started on one node and confirmed on the other.
        headers = {"X-Access-Token": api_token, "X-Tenant-Id": str(tenant.pk)}
        started = requests.post(f"{webs[0]}/api/wecom/sync/", json={"kind": "contacts"}, headers=headers, timeout=10)
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        run = wait_for(
            lambda: SyncRun.objects.filter(pk=run_id, status__in=["review", "succeeded", "failed"]).first(),
            timeout=180, what="the sync to finish its WeCom phase", procs=procs,
        )
        assert run.status != "failed", run.errors
        if run.status == "review":
            confirmed = requests.post(
                f"{webs[1]}/api/wecom/sync/{run_id}/confirm/",
                json={"accept_proposals": True, "create_unmatched": True}, headers=headers, timeout=60,
            )
            assert confirmed.status_code == 200, confirmed.text
        run.refresh_from_db()
        assert run.status in ("confirmed", "succeeded"), (run.status, run.errors)
        assert WeComUser.objects.filter(tenant=tenant, removed=False).count() == len(fake.org.users)

        # Six processes, one token per secret: they share it through Redis.
        assert fake.gettoken_calls["contacts"] == 1, dict(fake.gettoken_calls)
        assert all(calls == 1 for calls in fake.gettoken_calls.values()), dict(fake.gettoken_calls)

        for web in webs:
            scraped = wait_http_ok(f"{web}/metrics", procs=procs)
            assert "wecom_callbacks_received_total" in scraped.text
    finally:
        fake.stop()
