"""Processes for the reliability tests and bench/load.py: a private redis-server, gunicorn and Celery
workers on the test database, and the callback load that the fake WeCom pushes through them.

The generic helpers (Proc, free_port, base_env, wait_for …) are test_scale_out's; this module adds what
the fault tests need on top: a Redis that can be restarted without touching anyone else's, a worker that
can be SIGKILLed, the beat-like sweep, and a paced load generator that records every delivery.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.operations.test_scale_out import (  # noqa: F401 (re-exported: one set of process helpers)
    BIN,
    PROCFILE,
    ROOT,
    Proc,
    base_env,
    free_port,
    http_get,
    procfile_entries,
    wait_for,
    wait_http_ok,
)

# The sweep task and the worker command. The worker also consumes "default", where the sweep goes unless
# CELERY_TASK_ROUTES sends it elsewhere (the bulk worker serves "default" in production).
REQUEUE_TASK = "wecom_integration.tasks.requeue_stale_callback_events"
WORKER_COMMAND = (
    "celery -A config worker -Q callbacks,default -n {node}@%h -c {concurrency} "
    "--without-gossip --without-mingle --loglevel INFO"
)


def redis_server_binary():
    """The redis-server executable, or None when this machine has none."""
    return shutil.which("redis-server")


def database_url(db):
    """A DATABASE_URL for Django's connection settings ``db`` (the pytest test database)."""
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}{db.get('HOST') or '127.0.0.1'}{port}/{quote(db['NAME'], safe='')}"


class RedisServer:
    """A redis-server of our own on a loopback port, without persistence, that can be restarted.

    The shared Redis on 6379 is other people's; restarting this one loses exactly what a production
    Redis without persistence loses (queued messages, unacked ones, the cache) and nothing else.
    """

    def __init__(self, log_dir, port=None):
        self.binary = redis_server_binary()
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        self.port = port or free_port()
        self.log_dir = Path(log_dir)
        self.proc = None
        self.restarts = 0

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout=20):
        command = (
            f"{self.binary} --port {self.port} --bind 127.0.0.1 --save '' --appendonly no "
            f"--daemonize no --dir {self.log_dir}"
        )
        self.proc = Proc(f"redis-{self.port}-{self.restarts}", command, base_env(), self.log_dir)
        wait_for(self.ping, timeout=timeout, what=f"redis-server on {self.port}", procs=[self.proc])
        return self

    def ping(self):
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1)
        try:
            return client.ping()
        except redis.RedisError:
            return False
        finally:
            client.close()

    def restart(self):
        """Kill it (SIGKILL: nothing is saved, nothing is flushed politely) and start it on the same port."""
        self.kill()
        self.restarts += 1
        return self.start()

    def kill(self):
        if self.proc is not None and self.proc.running():
            os.killpg(self.proc.popen.pid, signal.SIGKILL)
            self.proc.popen.wait(timeout=10)
        if self.proc is not None:
            self.proc.stop()

    def stop(self):
        if self.proc is not None:
            self.proc.stop(timeout=5)


class Cluster:
    """gunicorn (the Procfile's web) and Celery workers on one database and one Redis."""

    def __init__(self, log_dir, database, redis_url, api_base, extra_env=None):
        self.log_dir = Path(log_dir)
        self.env = {
            "DATABASE_URL": database,
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": f"rel-{os.getpid()}-{random.getrandbits(24):06x}",
            "WECOM_API_BASE": api_base,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "DEBUG": "0",
            "SECURE": None,
            "WECOM_PUBLIC_BASE_URL": None,
            "WECOM_METRICS_TOKEN": None,
            **(extra_env or {}),
        }
        self.procs = []
        self.web_url = ""
        self._workers = 0

    def _start(self, name, command, **env):
        proc = Proc(name, command, base_env(**self.env, **env), self.log_dir)
        self.procs.append(proc)
        return proc

    def start_web(self, workers=2, threads=1, timeout=60):
        """The Procfile's web: ``workers`` processes of ``threads`` threads (gthread past one)."""
        port = free_port()
        command = procfile_entries(PROCFILE.read_text())["web"]
        proc = self._start("web", command, PORT=port, HOST="127.0.0.1", WEB_CONCURRENCY=workers,
                           GUNICORN_THREADS=threads, GUNICORN_MAX_REQUESTS=0)
        self.web_url = f"http://127.0.0.1:{port}"
        # Any answer will do (a 404 included): the workers are up and Django is loaded.
        wait_for(lambda: http_get(f"{self.web_url}/wecom/callback/0/contacts/") is not None, timeout=timeout,
                 what="gunicorn to answer", procs=[proc])
        return proc

    def start_worker(self, concurrency=2, wait=True, timeout=90):
        self._workers += 1
        node = f"rel{self._workers}"
        proc = self._start(f"worker-{node}", WORKER_COMMAND.format(node=node, concurrency=concurrency))
        if wait:
            wait_for(lambda: "ready." in proc.output(), timeout=timeout, what=f"{node} ready", procs=[proc])
        return proc

    @staticmethod
    def kill(proc):
        """SIGKILL a process group at once: the main worker and its pool, mid-task, as a lost node."""
        try:
            os.killpg(proc.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.popen.wait(timeout=10)
        return proc.popen.returncode

    def logs(self, lines=40):
        return "\n".join(proc.tail(lines) for proc in self.procs)

    def stop(self):
        for proc in self.procs:
            proc.stop(timeout=15)


class Supervisor:
    """Keeps one Celery worker running, as systemd's ``Restart=always`` or Kubernetes would: a worker that
    exits is started again, at most ``max_restarts`` times. Call it from one long-lived thread (the main
    one): Proc ties each process to the thread that started it."""

    def __init__(self, cluster, concurrency=2, max_restarts=3):
        self.cluster = cluster
        self.concurrency = concurrency
        self.max_restarts = max_restarts
        self.workers = [cluster.start_worker(concurrency=concurrency)]
        self.killed = []  # return codes of the workers SIGKILLed on purpose
        self.restarts = []  # why a worker had to be started again

    @property
    def current(self):
        return self.workers[-1]

    def kill(self):
        """SIGKILL the running worker with its pool, mid-task, and start a new one at once."""
        self.killed.append(Cluster.kill(self.current))
        self.workers.append(self.cluster.start_worker(concurrency=self.concurrency, wait=False))

    def ensure(self):
        """True when a worker runs (after starting a new one if the last exited and restarts are left)."""
        if self.current.running():
            return True
        if len(self.restarts) >= self.max_restarts:
            return False
        lines = self.current.output().strip().splitlines()
        self.restarts.append(f"{self.current.name} exited {self.current.popen.returncode}: "
                             f"{lines[-1][:300] if lines else ''}")
        self.workers.append(self.cluster.start_worker(concurrency=self.concurrency, wait=False))
        return True


def send_requeue(redis_url, older_than):
    """Send the requeue sweep to the workers through the broker, as celery beat would, on the queue the
    project's CELERY_TASK_ROUTES give it."""
    from celery import Celery
    from django.conf import settings

    route = getattr(settings, "CELERY_TASK_ROUTES", {}).get(REQUEUE_TASK, {})
    queue = route.get("queue") or getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    # Not the current app: the test process's shared tasks must stay bound to the project's (eager) app.
    sender = Celery("rel-beat", broker=redis_url, set_as_current=False)
    sender.conf.broker_connection_timeout = 2
    try:
        sender.send_task(REQUEUE_TASK, kwargs={"older_than": older_than}, queue=queue,
                         retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5})
    finally:
        sender.close()


# The load ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Op:
    """One callback WeCom will push: a member created, changed or removed, or a message to the app."""

    kind: str  # "create" | "update" | "delete" | "message"
    userid: str
    seq: int
    # Delivered twice, the second time with the same envelope: WeCom's retry after an answer it missed.
    twice: bool = False


def plan_operations(count, *, rate, seed=9, prefix="ld", message_share=0.35, existing=(), twice_share=0.1):
    """``count`` operations in the order they are pushed.

    Members are created under fresh userids; an update or a delete of a member comes at least three
    seconds of pushing (3 × ``rate`` operations) after its previous change, because WeCom's CreateTime is
    in whole seconds and two changes of one member in the same second cannot be ordered by anyone.
    Messages come from ``existing`` members and carry unique MsgIds; ``twice_share`` of them are
    delivered twice.
    """
    rng = random.Random(seed)
    gap = max(1, int(3 * rate))
    ready = deque()  # (seq of the last change, userid, changes so far)
    ops = []
    existing = list(existing) or ["sys"]
    created = 0
    for seq in range(count):
        roll = rng.random()
        if roll < message_share:
            ops.append(Op("message", rng.choice(existing), seq, twice=rng.random() < twice_share))
            continue
        due = ready and ready[0][0] <= seq - gap
        if due and roll < message_share + 0.25:
            _last, userid, changes = ready.popleft()
            if changes < 2 and rng.random() < 0.8:
                ops.append(Op("update", userid, seq))
                ready.append((seq, userid, changes + 1))
            else:
                ops.append(Op("delete", userid, seq))
            continue
        userid = f"{prefix}{created:06d}"
        created += 1
        ops.append(Op("create", userid, seq))
        ready.append((seq, userid, 0))
    return ops


@dataclass
class LoadResult:
    """What the load saw: per operation the HTTP outcome, tries and latency, and the run's figures."""

    statuses: dict = field(default_factory=dict)  # seq -> final HTTP status (None: never answered)
    tries: dict = field(default_factory=dict)  # seq -> tries used by the sender
    latencies: list = field(default_factory=list)  # seconds per callback, retries included
    started: float = 0.0
    finished: float = 0.0
    events: list = field(default_factory=list)  # (seconds into the run, what happened)

    @property
    def seconds(self):
        return max(1e-9, self.finished - self.started)

    @property
    def rate(self):
        return len(self.statuses) / self.seconds

    def percentile(self, q):
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self):
        return statistics.median(self.latencies) if self.latencies else 0.0

    @property
    def failed(self):
        return {seq: status for seq, status in self.statuses.items() if status != 200}

    @property
    def retried(self):
        return sum(1 for tries in self.tries.values() if tries > 1)


class _Resender:
    """WeCom's second delivery of the very same envelope, for messages marked ``twice``: one sender per
    thread (a requests.Session is not shared between threads)."""

    def __init__(self, fake, url, token, aes_key):
        self.fake, self.args = fake, (url, token, aes_key, fake.corp_id)
        self.local = threading.local()

    def push_twice(self, op):
        from wecom_integration.testing.callbacks import CallbackSender, build_message_xml

        sender = getattr(self.local, "sender", None)
        if sender is None:
            sender = self.local.sender = CallbackSender(*self.args, timeout=self.fake.callback_timeout,
                                                        tries=self.fake.callback_tries)
        fake = self.fake
        xml = build_message_xml(fake.corp_id, op.userid, fake.agent_id, content=f"load message {op.seq} (twice)",
                                create_time=int(fake.now()))
        params, body = sender.envelope(xml, agent_id=fake.agent_id)
        first = sender.post_envelope(params, body)
        second = sender.post_envelope(params, body)
        # The worse of the two is what counts: both must be answered 200.
        return [second if first.ok else first]


def _push(fake, op, resender=None):
    if op.twice and resender is not None:
        return resender.push_twice(op)
    if op.kind == "create":
        return fake.add_user(op.userid, f"Load {op.userid}", department=(1,), position="new")
    if op.kind == "update":
        return fake.update_user(op.userid, name=f"Load {op.userid} #{op.seq}", position=f"p{op.seq}")
    if op.kind == "delete":
        return fake.delete_user(op.userid)
    return fake.send_app_message(op.userid, content=f"load message {op.seq}")


def run_load(fake, ops, *, rate, threads=48, actions=(), deadline=None, app_callback=None):
    """Push ``ops`` through ``fake`` at ``rate`` per second from a pool of ``threads`` senders, each with
    WeCom's retry policy (fake.callback_timeout, fake.callback_tries). ``actions`` are (fraction of the
    operations, callable) run, on the calling thread, when the pushing gets there (kill a worker, restart
    Redis); the senders go on meanwhile. Messages marked ``twice`` are delivered twice to ``app_callback``
    (url, token, aes_key) when given. Waits for every push; bounded by ``deadline`` seconds if given."""
    resender = _Resender(fake, *app_callback) if app_callback else None
    result = LoadResult()
    lock = threading.Lock()
    # Never more than two pushes per sender waiting: a stalled receiver slows the pacing, nothing piles up.
    slots = threading.BoundedSemaphore(threads * 2)
    pending = sorted(((int(fraction * len(ops)), action) for fraction, action in actions), key=lambda a: a[0])

    def push(op):
        began = time.monotonic()
        try:
            deliveries = _push(fake, op, resender)
        except Exception as exc:  # a fake-side error is a failed delivery, reported with the rest
            deliveries = []
            with lock:
                result.events.append((began - result.started, f"push {op} raised {exc!r}"))
        finally:
            slots.release()
        elapsed = time.monotonic() - began
        status = deliveries[0].status if deliveries else None
        with lock:
            result.statuses[op.seq] = status
            result.tries[op.seq] = deliveries[0].attempts if deliveries else 0
            result.latencies.append(elapsed)

    def run_action(action):
        # On this (the calling) thread: the processes an action starts are told to die with the thread
        # that started them (PR_SET_PDEATHSIG in Proc), so a short-lived thread would take them along.
        at = time.monotonic() - result.started
        action()
        took = time.monotonic() - result.started - at
        with lock:
            result.events.append((at, f"{getattr(action, '__name__', 'action')} (took {took:.2f} s)"))

    result.started = time.monotonic()
    stop_at = None if deadline is None else result.started + deadline
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wecom-push") as pool:
        for index, op in enumerate(ops):
            while pending and pending[0][0] <= index:
                run_action(pending.pop(0)[1])
            due = result.started + index / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if stop_at is not None and time.monotonic() > stop_at:
                break
            slots.acquire()
            pool.submit(push, op)
    result.finished = time.monotonic()
    return result


# After the load ----------------------------------------------------------------------------------------


def drain(tenant, expected, *, redis_url, supervisor, period=5.0, older_than=15, timeout=300.0):
    """Wait until ``expected`` events of ``tenant`` are handled; returns (seconds waited, sweeps sent).

    The requeue sweep goes through the broker as beat sends it, whenever a period passed without progress:
    as beat would with an interval longer than the backlog takes to drain. (The sweep cannot tell a lost
    task from one still queued, so sweeping during a long queue only queues duplicates.) ``supervisor``
    starts the worker again if it exited.
    """
    from wecom_integration.models import CallbackEvent

    handled = CallbackEvent.objects.filter(tenant=tenant, status=CallbackEvent.Status.HANDLED)
    began = time.monotonic()
    sweeps, last = 0, -1
    while time.monotonic() - began < timeout:
        done = handled.count()
        if done >= expected:
            break
        if supervisor.ensure() and done == last:
            send_requeue(redis_url, older_than)
            sweeps += 1
        last = done
        time.sleep(period)
    return time.monotonic() - began, sweeps


def mirror_mismatches(tenant, fake, userids):
    """Members in ``userids`` whose mirror row differs from the fake's organisation."""
    from wecom_integration.models import WeComUser

    rows = {row.userid: row for row in WeComUser.objects.filter(tenant=tenant, userid__in=list(userids))}
    wrong = []
    for userid in sorted(userids):
        row, truth = rows.get(userid), fake.org.users.get(userid)
        if truth is None:
            if row is None or not row.removed:
                wrong.append((userid, "deleted in WeCom", "missing" if row is None else "not removed"))
            continue
        if row is None:
            wrong.append((userid, "missing from the mirror"))
            continue
        expected = (truth.name, list(truth.departments), truth.position, truth.main_department, truth.status, False)
        got = (row.name, row.departments, row.position, row.main_department, row.status, row.removed)
        if expected != got:
            wrong.append((userid, expected, got))
    return wrong


def outcome(tenant, ops, fake):
    """What the load left in the database, against what was pushed: counts of events stored, unique,
    handled, handled in more than one attempt, inbox rows per message, and members differing from WeCom."""
    from collections import Counter

    from wecom_integration.models import CallbackEvent, InboxMessage

    events = CallbackEvent.objects.filter(tenant=tenant)
    kinds = Counter(op.kind for op in ops)
    inbox = Counter(
        InboxMessage.objects.filter(tenant=tenant, direction=InboxMessage.Direction.IN).values_list(
            "event_id", flat=True
        )
    )
    stored = events.count()
    unique = events.values("kind", "dedupe_key").distinct().count()
    handled = events.filter(status=CallbackEvent.Status.HANDLED).count()
    touched = {op.userid for op in ops if op.kind != "message"}
    wrong = mirror_mismatches(tenant, fake, touched)
    return {
        "pushed": len(ops),
        "messages": kinds["message"],
        "stored": stored,
        "unique": unique,
        "stored_app": events.filter(kind="app").count(),
        "handled": handled,
        "statuses": dict(Counter(events.values_list("status", flat=True))),
        "more_than_one_attempt": events.exclude(attempts=1).count(),
        "inbox_messages": len(inbox),
        "inbox_duplicates": sum(count - 1 for count in inbox.values()),
        "members_touched": len(touched),
        "members_wrong": wrong,
        # Lost: pushed but never stored, or stored and never handled; duplicated: stored or handled twice.
        "lost": (len(ops) - unique) + (stored - handled),
        "duplicated": (stored - unique) + events.filter(attempts__gt=1).count() + sum(
            count - 1 for count in inbox.values()
        ),
    }
