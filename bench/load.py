"""Callbacks under load and faults, with figures: the run of tests/reliability/test_load_faults.py, at a
rate and size you choose.

    .venv/bin/python bench/load.py --rate 300 --count 20000 --kill-worker --restart-redis

Starts a private redis-server (no persistence) on a free loopback port, gunicorn (the Procfile's web,
--web-workers processes of --web-threads threads) and one Celery worker (-c --worker-concurrency) on
PostgreSQL (--database-url, default postgres://postgres@127.0.0.1:5432/wecom_bench_load, dropped, created and
migrated here), and a fake WeCom that pushes --count encrypted contact changes and app messages at --rate
per second with WeCom's policy (5 s, 3 tries). With --kill-worker the worker is SIGKILLed (with its pool)
35% of the way and started again; with --restart-redis, Redis is killed and started empty at 65%. Then
the worker drains the backlog, the requeue sweep recovering lost tasks; a worker that exits on its own
(Celery's Redis transport can crash when the broker goes away) is started again, as a deployment's
process supervisor would, and reported.

Prints the sustained callbacks per second, p50/p99 latency of a delivery (retries included), how many
deliveries needed a retry or never got a 200, the CPU per delivery of each part during the push (this
process's senders and fake WeCom, gunicorn, the worker, PostgreSQL's backends of the bench's database,
redis-server; read from /proc every half second) and the rate that CPU allows on this machine's cores,
this machine's speed against issue 19's (bench/machine.py), and, from the database: events lost (pushed and not stored,
or stored and never handled), duplicated (stored twice, handled in more than one attempt, or in the inbox
twice) and members whose mirror differs from WeCom. Asserts nothing. Stops every process it started and
deletes its tenant, whatever happens.
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/wecom_bench_load"
TICK = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds each part of the run uses between ``start()`` and ``stop()``, read from /proc every
    ``period`` seconds, so a process SIGKILLed or restarted on the way (the worker, Redis) keeps what it
    used up to its last reading. ``roles()`` answers {role: process group ids} at each reading; PostgreSQL's
    backends are those whose command line names ``database``; this process is read with process_time()."""

    def __init__(self, roles, database, period=0.5):
        self.roles = roles
        self.database = database.encode()
        self.period = period
        self.first, self.last, self.role_of = {}, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._own = 0.0

    def _read(self, baseline=False):
        groups = {pgid: role for role, pgids in self.roles().items() for pgid in pgids}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    data = stat.read()
                role = self.role_of.get(pid)
                fields = data[data.rindex(")") + 2 :].split()
                if role is None:
                    role = groups.get(int(fields[2]))
                    if role is None and data[data.index("(") + 1 :].startswith("postgres"):
                        with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                            role = "postgres" if self.database in cmdline.read() else None
                    if role is None:
                        continue
                    self.role_of[pid] = role
            except (OSError, ValueError):
                continue
            used = (int(fields[11]) + int(fields[12])) / TICK
            # A process seen at the start counts from there; one started since, from nothing.
            self.first.setdefault(pid, used if baseline else 0.0)
            self.last[pid] = used

    def _run(self):
        while not self._stop.wait(self.period):
            self._read()

    def start(self):
        self._own = time.process_time()
        self._read(baseline=True)
        self._thread.start()
        return self

    def stop(self):
        """{role: CPU seconds}, "this process" included."""
        self._stop.set()
        self._thread.join()
        self._read()
        spent = {"this process": time.process_time() - self._own}
        for pid, used in self.last.items():
            role = self.role_of[pid]
            spent[role] = spent.get(role, 0.0) + used - self.first[pid]
        return spent


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300.0, help="callbacks pushed per second (default 300)")
    parser.add_argument("--count", type=int, default=20_000, help="callbacks in all (default 20000)")
    parser.add_argument("--kill-worker", action="store_true", help="SIGKILL the worker 35%% of the way")
    parser.add_argument("--restart-redis", action="store_true", help="kill and restart Redis 65%% of the way")
    parser.add_argument("--threads", type=int, default=48, help="concurrent senders (default 48)")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait for the backlog")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    return parser.parse_args()


def main():
    args = parse_args()
    from machine import in_process_medians_us, speed_line

    from bench.benchdb import fresh_database

    machine = speed_line(in_process_medians_us()[1])
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {machine}", flush=True)

    fresh_database(args.database_url)
    log_dir = Path(tempfile.mkdtemp(prefix="wecom-bench-load-"))

    from tests.procs import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        sys.exit("redis-server is not installed")
    redis_server = RedisServer(log_dir).start()
    os.environ.update(DATABASE_URL=args.database_url, REDIS_URL=redis_server.url(0),
                      DJANGO_SETTINGS_MODULE="config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()
    from django.core.management import call_command

    from tests.factories import config_from_fake, make_tenant
    from tests.procs import Cluster, Supervisor, drain, outcome, plan_operations, run_load
    from wecom_integration.testing import FakeWeCom

    call_command("migrate", verbosity=0, interactive=False)
    fake = FakeWeCom(users=60, departments=6, seed=21).start()
    cluster = Cluster(log_dir, args.database_url, redis_server.url(0), fake.api_base)
    tenant = None
    try:
        tenant = make_tenant(f"bench{int(time.time())}")
        config = config_from_fake(tenant, fake)
        cluster.start_web(workers=args.web_workers, threads=args.web_threads)
        supervisor = Supervisor(cluster, concurrency=args.worker_concurrency)
        base = f"{cluster.web_url}/wecom/callback/{tenant.pk}"
        fake.register_callback(f"{base}/contacts/", config.contact_token, config.contact_aes_key, "contacts")
        fake.register_callback(f"{base}/app/", config.app_token, config.app_aes_key, "app")

        def kill_worker():
            supervisor.kill()

        def restart_redis():
            redis_server.restart()

        actions = []
        if args.kill_worker:
            actions.append((0.35, kill_worker))
        if args.restart_redis:
            actions.append((0.65, restart_redis))
        ops = plan_operations(args.count, rate=args.rate, existing=sorted(fake.org.users), prefix=f"b{tenant.pk}-")
        print(f"pushing {len(ops)} callbacks at {args.rate:.0f}/s (logs in {log_dir}) …", flush=True)
        dbname = args.database_url.rsplit("/", 1)[-1]
        meter = CpuMeter(
            lambda: {
                "gunicorn": [proc.popen.pid for proc in cluster.procs if proc.name == "web"],
                "worker": [proc.popen.pid for proc in supervisor.workers],
                "redis": [redis_server.proc.popen.pid],
            },
            dbname,
        ).start()
        load = run_load(fake, ops, rate=args.rate, threads=args.threads, actions=actions,
                        deadline=args.count / args.rate * 5 + 120,
                        app_callback=(f"{base}/app/", config.app_token, config.app_aes_key))
        spent = meter.stop()
        print(f"pushed in {load.seconds:.1f} s; draining …", flush=True)
        drained, sweeps = drain(tenant, len(ops), redis_url=redis_server.url(0),
                                supervisor=supervisor, timeout=args.drain_timeout)
        result = outcome(tenant, ops, fake)

        print()
        print(f"callbacks pushed        {len(load.statuses)} of {len(ops)} at a target of {args.rate:.0f}/s"
              f" ({sum(op.twice for op in ops)} messages delivered twice, as WeCom's retries do)")
        print(f"sustained rate          {load.rate:.1f} callbacks/s over {load.seconds:.1f} s")
        print(f"latency p50 / p99       {load.p50 * 1000:.1f} ms / {load.percentile(0.99) * 1000:.1f} ms"
              " (a delivery, WeCom's retries included)")
        print(f"retried by the sender   {load.retried}")
        print(f"never answered 200      {len(load.failed)}")
        deliveries = len(load.statuses) + sum(op.twice for op in ops) + load.retried
        per = {role: seconds / max(deliveries, 1) * 1000 for role, seconds in spent.items()}
        order = ("this process", "gunicorn", "worker", "postgres", "redis")
        print("CPU per delivery (push)  " + "   ".join(f"{role} {per.get(role, 0.0):.2f} ms" for role in order)
              + "   (this process: the senders and the fake WeCom)")
        server = per.get("gunicorn", 0.0) + per.get("postgres", 0.0) + per.get("redis", 0.0)
        total = sum(per.values())
        cores = os.cpu_count() or 1
        with_worker = server + per.get("worker", 0.0)
        print(f"  server side {server:.2f} ms, with the worker {with_worker:.2f} ms, all {total:.2f} ms;"
              f" {cores} cores give {cores * 1000 / args.rate:.2f} ms per delivery at {args.rate:.0f}/s, so the CPU"
              f" this run took allows {cores * 1000 / total if total else 0:.0f}/s here")
        for at, what in load.events:
            print(f"  at {at:6.1f} s          {what}")
        print(f"drained                 {drained:.1f} s after the last push, {sweeps} requeue sweeps")
        for why in supervisor.restarts:
            print(f"worker started again    {why}")
        print(f"stored / unique         {result['stored']} / {result['unique']}")
        print(f"statuses                {result['statuses']}")
        print(f"lost                    {result['lost']}")
        print(f"duplicated              {result['duplicated']} (more than one attempt: "
              f"{result['more_than_one_attempt']}, inbox duplicates: {result['inbox_duplicates']})")
        print(f"members unlike WeCom    {len(result['members_wrong'])} of {result['members_touched']}")
        for row in result["members_wrong"][:5]:
            print(f"  {row}")
    finally:
        cluster.stop()
        redis_server.stop()
        fake.stop()
        if tenant is not None:
            tenant.delete()


if __name__ == "__main__":
    main()
