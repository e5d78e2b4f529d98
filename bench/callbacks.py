"""Callback throughput and latency: in-process, and over gunicorn with PostgreSQL, Redis and a Celery worker.

    .venv/bin/python bench/callbacks.py [--seconds 6] [--rounds 5] [--concurrency 16] [--processes 4]

Prints:

(a) the median µs to verify + decrypt + parse one callback in-process (bench/callbacks_inprocess.py), and
    wechatpy 1.8.18's when installed: a fixed workload that says how fast this machine is against the one
    issue 19 was measured on (123 µs then), for reading its absolute goals (the worker's ms per event);
(b) against gunicorn on loopback as deployed (``gunicorn.conf.py``: 2 x CPUs + 1 sync workers unless
    --workers / --threads say otherwise), with PostgreSQL (DATABASE_URL,
    default postgres://postgres@127.0.0.1:5432/wecom_bench, dropped, created and migrated here) and Redis
    (REDIS_URL, default redis://127.0.0.1:6379/14, flushed here: keep that index for the bench) and a
    real worker (``celery -A config worker -Q callbacks,default -c 2``): sustained callbacks/s and
    p50/p99 latency of POST /wecom/callback/<tenant>/contacts/ next to a bare Django view that only
    answers "success" (bench/bench_urls.py, served in the same gunicorn), errors, lost events (sent and
    answered 200 - rows stored), then, once the worker has drained, how many were handled; and per
    request the CPU of gunicorn, the worker, the clients, PostgreSQL's backends of the bench's database
    and redis-server (read from /proc).

The headline is the server-side CPU per request: gunicorn + PostgreSQL + Redis for the bare view and for
the callback (issue 19's goal: bare/callback >= 0.5), and with the worker's CPU per event added (>= 0.3),
medians over the rounds. Throughput ratios follow it: on two cores the client processes cost about as
much CPU per request as the bare view's server side, so they pull every throughput ratio towards 1. Not
counted: PostgreSQL's shared processes (WAL writer, checkpointer) and other databases' backends.

The POST endpoint is measured twice. First with the worker paused (SIGSTOP) for the phase and let
go after it to drain what was stored: the endpoint's own throughput, with gunicorn, PostgreSQL, Redis and
the clients on these cores, as a deployment runs it (the workers on their own hosts); the worker's CPU
per event of that drain is printed. Then with the worker running, handling while the callbacks arrive, on
the same two cores: what one small box does with everything on it; the worker's CPU per event covers the
phase and its drain. The machine is shared and noisy, so the bare view, the paused-worker callback and the
running-worker callback alternate for --rounds rounds and each figure is the median of the rounds'.

Every callback is the in-process line's ~1.1 KB contact change (callbacks_inprocess.CONTACT_CHANGE) about
a distinct, unknown member (unique UserID), encrypted and signed beforehand by each client process, so
the client's own crypto is outside the timed loop; the bare view is sent the same requests (query string
and encrypted body), so only the view's work differs. Clients are several processes of threads, each
thread with its own requests.Session. Every phase runs for the same --seconds after a short warm-up, one
after the other. gunicorn and the worker are stopped at the end,
whatever happens. Prints figures only; asserts nothing.
"""

import argparse
import base64
import multiprocessing
import os
import queue
import resource
import runpy
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import in_process_medians_us, speed_line  # noqa: E402

VENV_BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/wecom_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
# Bounds: how long to wait for gunicorn to answer and for the worker to drain.
START_TIMEOUT = 30.0
DRAIN_TIMEOUT = 180.0
REQUEST_TIMEOUT = 10.0
# Services whose CPU per request is printed too: process name -> what its command line must contain (the
# database's name for PostgreSQL's backends, filled in by main(); a backend that exits loses its count).
SERVICES = {"postgres": "", "redis-server": ""}


# Services ----------------------------------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command, env, log_path):
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop()
    # A session of its own, so stopping it stops its children (gunicorn's and celery's workers) too.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    process.log = log
    return process


def stop(process):
    if process is None:
        return
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGCONT)  # a paused worker must run to hear the SIGTERM
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
    process.log.close()


def wait_until_up(url, process, timeout=START_TIMEOUT):
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see its log")
        try:
            if requests.post(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {timeout} s")


def group_cpu_seconds(pgid):
    """CPU seconds (user + system) used so far by every live process of the process group ``pgid``."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                data = stat.read()
        except OSError:
            continue
        # After "pid (comm) ": state ppid pgrp … with utime and stime the 12th and 13th of those.
        fields = data[data.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def group_switches(pgid):
    """Context switches (voluntary + involuntary) so far of every thread of the live processes of the
    process group ``pgid``: each wait for a socket, a lock or the GIL costs one, and on a virtual machine
    they cost more than most of the Python a request runs."""
    switches = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                data = stat.read()
            if int(data[data.rindex(")") + 2 :].split()[2]) != pgid:
                continue
            for task in os.listdir(f"/proc/{entry}/task"):
                with open(f"/proc/{entry}/task/{task}/status") as status:
                    switches += sum(int(line.split()[-1]) for line in status if "ctxt_switches:" in line)
        except (OSError, ValueError):
            continue
    return switches


def named_cpu_seconds(prefix, argument=""):
    """CPU seconds used so far by each live process whose command name starts with ``prefix`` and whose
    command line contains ``argument`` (PostgreSQL's backends of one database, redis-server), by pid: what
    the services cost per request, next to our processes. See :func:`spent_since`."""
    used = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                data = stat.read()
        except OSError:
            continue
        comm = data[data.index("(") + 1 : data.rindex(")")]
        if argument:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if argument.encode() not in cmdline.read():
                        continue
            except OSError:
                continue
        if comm.startswith(prefix):
            fields = data[data.rindex(")") + 2 :].split()
            used[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def spent_since(before, after):
    """CPU seconds between two :func:`named_cpu_seconds` readings: what each process alive at the end used
    since the first (all of it for one started since). A process that exited in between takes its count
    with it, which is why the bench keeps its database connections for the whole run."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# Load --------------------------------------------------------------------------------------------------


def contact_change(corp_id, userid, create_time):
    """The in-process line's contact change (callbacks_inprocess.CONTACT_CHANGE, ~1.1 KB: an update_user
    carrying every member field), addressed to ``corp_id`` and about ``userid``, which it renames to
    ``userid`` + "_new". Each is about a member the mirror does not have, so the worker creates one."""
    import callbacks_inprocess as inproc

    xml = inproc.CONTACT_CHANGE.replace(inproc.CORP_ID, corp_id)
    xml = xml.replace("<UserID><![CDATA[zhangsan]]>", f"<UserID><![CDATA[{userid}]]>")
    xml = xml.replace("<NewUserID><![CDATA[zhangsan001]]>", f"<NewUserID><![CDATA[{userid}_new]]>")
    return xml.replace(f"<CreateTime>{inproc.TIMESTAMP}</CreateTime>", f"<CreateTime>{create_time}</CreateTime>")


def _envelopes(spec, count, prefix):
    from wecom_integration.testing.callbacks import CallbackSender

    sender = CallbackSender("", spec["token"], spec["aes_key"], spec["corp_id"])
    now = int(time.time())
    out = []
    for n in range(count):
        params, body = sender.envelope(contact_change(spec["corp_id"], f"{prefix}{n}", now))
        out.append((urlencode(params), body))
    return out


def client_process(spec, target, threads, seconds, warmup, prefix, per_thread, results, barrier):
    """One client process: ``threads`` threads, each posting its own unique envelopes for ``seconds``."""
    import requests

    base = spec["callback_url"] if target == "callback" else spec["bare_url"]
    # The bare view gets the very same requests (query string and encrypted body), so that the two
    # phases differ only in what the view does with them.
    pools = [_envelopes(spec, per_thread, f"{prefix}t{i}_") for i in range(threads)]
    # Every process has prepared its envelopes before any starts posting.
    barrier.wait(timeout=300)
    start_at = time.monotonic() + 0.2
    measure_from = start_at + warmup
    end_at = measure_from + seconds
    out = {"latencies": [], "errors": 0, "ok": 0, "ok_warmup": 0, "exhausted": 0, "cpu": 0.0, "switches": 0}
    lock = threading.Lock()

    def run(i):
        session = requests.Session()
        latencies, errors, ok, ok_warmup = [], 0, 0, 0
        n = 0
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while True:
            now = time.monotonic()
            if now >= end_at:
                break
            if n >= len(pools[i]):
                with lock:
                    out["exhausted"] += 1
                break
            query, body = pools[i][n]
            url = f"{base}?{query}"
            n += 1
            started = time.monotonic()
            began = time.perf_counter()
            try:
                response = session.post(url, data=body, headers={"Content-Type": "text/xml"}, timeout=REQUEST_TIMEOUT)
                good = response.status_code == 200 and response.content == b"success"
            except requests.RequestException:
                good = False
            elapsed = time.perf_counter() - began
            if not good:
                errors += 1
            elif started < measure_from:
                ok_warmup += 1
            else:
                ok += 1
                latencies.append(elapsed)
        session.close()
        with lock:
            out["latencies"].extend(latencies)
            out["errors"] += errors
            out["ok"] += ok
            out["ok_warmup"] += ok_warmup

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    cpu_before = time.process_time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out["cpu"] = time.process_time() - cpu_before
    after = resource.getrusage(resource.RUSAGE_SELF)
    out["switches"] = after.ru_nvcsw + after.ru_nivcsw - usage.ru_nvcsw - usage.ru_nivcsw
    results.put(out)


def run_phase(spec, target, args, run_id):
    """All client processes against one target; returns merged figures."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    barrier = ctx.Barrier(args.processes)
    threads = max(1, args.concurrency // args.processes)
    # Enough envelopes for a generous rate; a thread that runs out stops (counted as "exhausted").
    per_thread = int(args.max_rate_per_thread * (args.seconds + args.warmup + 1))
    processes = [
        ctx.Process(
            daemon=True,
            target=client_process,
            args=(
                spec,
                target,
                threads,
                args.seconds,
                args.warmup,
                f"b{run_id}p{p}",
                per_thread,
                results,
                barrier,
            ),
        )
        for p in range(args.processes)
    ]
    for process in processes:
        process.start()
    merged = {"latencies": [], "errors": 0, "ok": 0, "ok_warmup": 0, "exhausted": 0, "cpu": 0.0, "switches": 0}
    deadline = time.monotonic() + args.seconds + args.warmup + 600
    received = 0
    while received < len(processes) and time.monotonic() < deadline:
        try:
            part = results.get(timeout=1)
        except queue.Empty:
            if any(process.exitcode not in (None, 0) for process in processes):
                raise RuntimeError("a client process failed") from None
            continue
        received += 1
        merged["latencies"].extend(part["latencies"])
        for key in ("errors", "ok", "ok_warmup", "exhausted", "cpu", "switches"):
            merged[key] += part[key]
    for process in processes:
        process.join(timeout=30)
    return merged


def summary(label, figures, seconds):
    latencies = sorted(figures["latencies"])
    rate = figures["ok"] / seconds
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else float("nan")
    print(
        f"{label:<40} {rate:9.0f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
        f"ok {figures['ok']}  errors {figures['errors']}"
        + (f"  (threads out of envelopes: {figures['exhausted']})" if figures["exhausted"] else "")
    )
    return rate


# Main --------------------------------------------------------------------------------------------------


def _round_ratios(bare, callback):
    """Each round's bare/callback server-side CPU ratio, the round's bare view against its own callback
    phase: how far the rounds spread around the median (on a shared machine, often more than a change moves
    it)."""
    return ", ".join(f"{b / c:.2f}" for b, c in zip(bare, callback, strict=False))


def _exit_on_sigterm(signum, frame):
    # `timeout` and CI send SIGTERM: turn it into SystemExit so the finally below stops our servers.
    raise SystemExit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per phase")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of bare view, paused, running")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each phase")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads in all")
    parser.add_argument("--processes", type=int, default=4, help="client processes sharing those threads")
    parser.add_argument("--max-rate-per-thread", type=int, default=400, help="envelopes prepared per thread-second")
    parser.add_argument(
        "--workers", type=int, help="gunicorn worker processes (default: gunicorn.conf.py's, 2 x CPUs + 1)"
    )
    parser.add_argument("--threads", type=int, help="gunicorn threads per worker (default: gunicorn.conf.py's, 1)")
    parser.add_argument("--celery-concurrency", type=int, default=2)
    parser.add_argument(
        "--linger",
        type=float,
        help="WECOM['CALLBACK_BATCH_LINGER'] for gunicorn and the worker (default: the app's, 0.1 s): how long a "
        "web process gathers stored ids into one message, so how many events a task handles at these rates",
    )
    parser.add_argument(
        "--interval",
        type=float,
        help="WECOM['CALLBACK_BATCH_INTERVAL'] for gunicorn (default: the app's, 0.5 s): under load, a web process "
        "sends one message per interval, so this sets how many events a task handles in the worker-running phase",
    )
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if not database_url.startswith("postgres"):
        sys.exit("DATABASE_URL must be PostgreSQL for this bench")

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    threshold = os.environ.get("DB_PREPARE_THRESHOLD", "5")
    print(f"DB_PREPARE_THRESHOLD={threshold!r} (docs/deploy.md; empty: never prepared)")
    ours_us, wechatpy_us = in_process_medians_us()
    print(f"(a) in-process verify+decrypt+parse: {ours_us:.1f} us/callback (median); {speed_line(wechatpy_us)}")

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "bench.bench_settings",
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        # Connections kept for the whole run, so PostgreSQL's CPU per request is read off live backends.
        "DB_CONN_MAX_AGE": "3600",
        # As docs/deploy.md advises for a direct connection to PostgreSQL: the callback INSERT (bound on the
        # server) is prepared after a connection ran it 5 times. Set DB_PREPARE_THRESHOLD= (empty) to measure
        # it unprepared, as behind pgbouncer in transaction mode before 1.21.
        "DB_PREPARE_THRESHOLD": os.environ.get("DB_PREPARE_THRESHOLD", "5"),
        "CELERY_DB_REUSE_MAX": "1000000",
        "DEBUG": "0",
    }
    if args.linger is not None:
        env["BENCH_CALLBACK_BATCH_LINGER"] = str(args.linger)
    if args.interval is not None:
        env["BENCH_CALLBACK_BATCH_INTERVAL"] = str(args.interval)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "LOG_LEVEL")})
    from bench.benchdb import fresh_database

    fresh_database(database_url)
    SERVICES["postgres"] = " " + urlparse(database_url).path.lstrip("/") + " "
    subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    import redis

    redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()

    import django

    django.setup()
    from django.db import connection

    from tenants.models import Tenant
    from wecom_integration.models import CallbackEvent, WeComConfig

    tenant = Tenant.objects.create(code="bench-callbacks", name="Bench callbacks")
    aes_key = base64.b64encode(secrets.token_bytes(32)).decode()[:-1]
    config = WeComConfig(
        tenant=tenant,
        corp_id="wwbench" + secrets.token_hex(5),
        agent_id=1000002,
        contact_token="bench" + secrets.token_hex(4),
        contact_aes_key=aes_key,
    )
    config.full_clean()
    config.save()
    connection.close()

    # gunicorn as deployed: gunicorn.conf.py, with its worker count and threads unless given here.
    deployed = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    workers = args.workers or deployed["workers"]
    threads = args.threads or deployed["threads"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    spec = {
        "token": config.contact_token,
        "aes_key": aes_key,
        "corp_id": config.corp_id,
        "callback_url": f"{base}/wecom/callback/{tenant.pk}/contacts/",
        "bare_url": f"{base}/bench/success/",
    }
    logs = ROOT / "db"
    logs.mkdir(exist_ok=True)
    gunicorn = worker = None
    try:
        gunicorn = start(
            [
                str(VENV_BIN / "gunicorn"),
                "config.wsgi",
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "-w",
                str(workers),
                "--threads",
                str(threads),
                "-b",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
            ],
            env,
            logs / "bench-gunicorn.log",
        )
        worker = start(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "config",
                "worker",
                "-Q",
                "callbacks,default",
                "-c",
                str(args.celery_concurrency),
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
            ],
            env,
            logs / "bench-celery.log",
        )
        wait_until_up(spec["bare_url"], gunicorn)
        print(
            f"(b) gunicorn -c gunicorn.conf.py -w {workers} --threads {threads} "
            f"({'gthread' if threads > 1 else 'sync'} workers), PostgreSQL, Redis, celery -c "
            f"{args.celery_concurrency}; {args.concurrency} client threads in {args.processes} processes; "
            f"{args.seconds:g} s per phase after {args.warmup:g} s warm-up; callback batch linger "
            f"{args.linger if args.linger is not None else 'the default'}, interval "
            f"{args.interval if args.interval is not None else 'the default'}"
        )
        groups = {"gunicorn": gunicorn.pid, "worker": worker.pid}
        # Each process's first requests and tasks import modules and open connections: a short unmeasured
        # phase of each kind first, so that no round's CPU per request carries a process's start-up.
        warm = argparse.Namespace(**{**vars(args), "seconds": 1.0, "warmup": 0.0})
        for target in ("bare", "callback"):
            run_phase(spec, target, warm, f"warm{target}{secrets.token_hex(3)}")
        warmed = CallbackEvent.objects.filter(tenant=tenant).count()
        began = time.monotonic()
        while time.monotonic() - began < DRAIN_TIMEOUT and worker.poll() is None:
            if CallbackEvent.objects.filter(tenant=tenant, status=CallbackEvent.Status.HANDLED).count() >= warmed:
                break
            time.sleep(0.25)
        # The machine is shared and noisy: the bare view, the deferred callback and the callback with the worker
        # running alternate for --rounds rounds, and each target is judged on the median of the rounds' figures,
        # each from adjacent phases.
        phases = []
        for round_number in range(1, args.rounds + 1):
            phases += [
                ("bare", f'[{round_number}] bare view ("success")', "bare", False),
                ("deferred", f"[{round_number}] POST callback, worker paused", "callback", True),
                ("shared", f"[{round_number}] POST callback, worker running", "callback", False),
            ]
        rates, ratios, seen = {}, {"deferred": [], "shared": []}, warmed
        # Server-side CPU per request of each phase (ms): gunicorn + PostgreSQL + Redis, and the worker's.
        server = {"bare": [], "deferred": [], "shared": []}
        worker_per_event = {"deferred": [], "shared": []}
        for name, label, target, paused in phases:
            if paused:
                os.killpg(worker.pid, signal.SIGSTOP)
            switches_before = group_switches(gunicorn.pid)
            before = {group: group_cpu_seconds(pgid) for group, pgid in groups.items()}
            before.update({service: named_cpu_seconds(service, SERVICES[service]) for service in SERVICES})
            figures = run_phase(spec, target, args, f"{name}{secrets.token_hex(3)}")
            cpu = {group: group_cpu_seconds(pgid) - before[group] for group, pgid in groups.items()}
            cpu.update(
                {
                    service: spent_since(before[service], named_cpu_seconds(service, SERVICES[service]))
                    for service in SERVICES
                }
            )
            switches = group_switches(gunicorn.pid) - switches_before
            cpu["clients"] = figures["cpu"]
            requests_made = max(1, figures["ok"] + figures["ok_warmup"] + figures["errors"])
            rates[name] = summary(label, figures, args.seconds)
            per_request = {key: value / requests_made * 1000 for key, value in cpu.items()}
            served = per_request["gunicorn"] + per_request["postgres"] + per_request["redis-server"]
            server[name].append(served)
            print(
                f"{'  CPU per request':<40} gunicorn {per_request['gunicorn']:.2f} ms   "
                f"worker {per_request['worker']:.2f} ms   "
                f"clients {per_request['clients']:.2f} ms   "
                f"postgres {per_request['postgres']:.2f} ms   "
                f"redis {per_request['redis-server']:.2f} ms   "
                f"(server side: {served:.2f} ms)"
            )
            print(
                f"{'  context switches per request':<40} gunicorn {switches / requests_made:.1f}   "
                f"clients {figures['switches'] / requests_made:.1f}"
            )
            if target != "callback":
                continue
            ratio = rates[name] / rates["bare"] if rates.get("bare") else float("nan")  # this round's bare view
            ratios[name].append(ratio)
            print(f"{'  ratio to the bare view before it':<40} {ratio:9.2f}")
            sent = figures["ok"] + figures["ok_warmup"]
            stored = CallbackEvent.objects.filter(tenant=tenant).count() - seen
            print(f"{'  answered 200 / rows stored':<40} {sent:9d} / {stored}   lost {sent - stored}")
            # The worker's CPU until the phase's events are handled: the drain after a paused phase, the
            # phase itself and its drain when the worker ran, per event stored.
            worker_cpu = 0.0 if paused else cpu["worker"]
            drain_from = group_cpu_seconds(worker.pid)
            if paused:
                os.killpg(worker.pid, signal.SIGCONT)
            began = time.monotonic()
            handled = 0
            while time.monotonic() - began < DRAIN_TIMEOUT:
                handled = (
                    CallbackEvent.objects.filter(tenant=tenant, status=CallbackEvent.Status.HANDLED).count() - seen
                )
                if handled >= stored or worker.poll() is not None:
                    break
                time.sleep(0.25)
            worker_cpu += group_cpu_seconds(worker.pid) - drain_from
            worker_per_event[name].append(worker_cpu / max(1, stored) * 1000)
            failed = CallbackEvent.objects.filter(tenant=tenant, status=CallbackEvent.Status.FAILED).count()
            print(
                f"{'  handled after drain':<40} {handled:9d}   failed {failed}   not handled {stored - handled}   "
                f"drained in {time.monotonic() - began:.1f} s"
            )
            print(
                f"{'  worker CPU per event':<40} {worker_per_event[name][-1]:9.2f} ms   "
                + ("(the drain after the phase)" if paused else "(during the phase and its drain)")
            )
            seen += stored
        median = statistics.median
        print()
        print("Headline: server-side CPU per request (gunicorn + PostgreSQL backends of the bench's database +")
        print("redis-server; the worker's where said), medians over the rounds; the clients are left out.")
        bare_cpu = median(server["bare"])
        print(f"{'  bare view':<40} {bare_cpu:9.2f} ms")
        if server["deferred"]:
            paused_cpu = median(server["deferred"])
            print(
                f"{'  callback, worker paused':<40} {paused_cpu:9.2f} ms   "
                f"ratio bare/callback {bare_cpu / paused_cpu:.2f} (goal >= 0.5)   "
                f"(each round against its own bare view: {_round_ratios(server['bare'], server['deferred'])})"
            )
            with_drain = paused_cpu + median(worker_per_event["deferred"])
            print(
                f"{'  callback + its handling (drain)':<40} {with_drain:9.2f} ms   "
                f"ratio bare/callback {bare_cpu / with_drain:.2f}   "
                f"(worker {median(worker_per_event['deferred']):.2f} ms/event after each paused phase)"
            )
        if server["shared"]:
            shared_worker = median(worker_per_event["shared"])
            pairs = zip(server["shared"], worker_per_event["shared"], strict=True)
            rounds_cpu = [served + handling for served, handling in pairs]
            running_cpu = median(rounds_cpu)
            print(
                f"{'  callback, worker running':<40} {running_cpu:9.2f} ms   "
                f"ratio bare/callback {bare_cpu / running_cpu:.2f} (goal >= 0.3)   "
                f"(worker {shared_worker:.2f} ms/event, goal <= 1.2; rounds: "
                f"{', '.join(f'{cpu:.2f}' for cpu in rounds_cpu)} ms; each round against its own bare view: "
                f"{_round_ratios(server['bare'], rounds_cpu)})"
            )
        if ratios["deferred"]:
            print(
                f"{'  throughput ratio, worker paused':<40} {median(ratios['deferred']):9.2f}   "
                f"(median; rounds: {', '.join(f'{r:.2f}' for r in ratios['deferred'])}; the clients share the "
                "cores, which pulls it towards 1)"
            )
        if ratios["shared"]:
            print(
                f"{'  throughput ratio, worker running':<40} {median(ratios['shared']):9.2f}   "
                f"(median; rounds: {', '.join(f'{r:.2f}' for r in ratios['shared'])}; all on these cores)"
            )
    finally:
        stop(gunicorn)
        stop(worker)


if __name__ == "__main__":
    main()
