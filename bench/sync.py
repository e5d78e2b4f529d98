"""The contact sync at scale, against the fake WeCom in this process.

    .venv/bin/python bench/sync.py [--users 100000] [--departments 5000] [--worlds old,2022]
                                   [--fallback-users 20000] [--per-minute 6000] [--skip-fallback]

Part 1, in each world of ``--worlds`` (the fake's rate limits off, the client's budget off): the first
sync of ``--users`` members in ``--departments`` departments, the confirm that binds them all, a second
sync with nothing changed, and a third after 1% of the members changed (the fake's org is mutated
directly, without callbacks). The *old* world reads everything with the contact-sync Secret
(``department/list`` + ``user/list``); the *2022* world (the fake ``restricted``: the contact-sync
Secret lists ids only, 48009 for details) takes ids from it (``department/simplelist``,
``user/list_id``) and names, departments and positions from the app Secret (``department/list`` +
``user/list``), the app seeing the whole corp. For each step it prints the wall time; the CPU
time of this process, of the PostgreSQL backend (read from /proc: the server runs on this machine) and
of Python's garbage collector in it (on a machine shared with other work, what a step cost shows better
in these than in the wall time); the database queries (counted with ``connection.execute_wrapper``),
the rows written (the rowcount of INSERT/UPDATE/DELETE; the run's own progress rows are shown apart)
and the peak memory (the process's peak RSS over the step, reset through /proc/self/clear_refs, minus
the RSS before it). Then where the time of an unchanged re-sync goes, part by part (issue 19 item 5):
the fake's encoding, our HTTP reads, decoding (the standard library's json next to msgspec), turning
members into fields, the diff against the mirror. Then the worlds side by side.

Part 2, the 2022 world's worst case with WeCom's limits (the fake restricted, its app seeing each
member one by one, so no bulk list holds them, and limited to ``--per-minute`` calls per API per
minute): a sync of ``--fallback-users`` members through user/list_id + user/get with the client's
budget set just under the limit. It prints any 45009 received (target: none) and the time measured
against the time the limit implies (calls / per-minute; target: at most 1.1x).

First it prints this machine's speed against issue 19's (bench/machine.py), for reading the absolute goals.

Databases: a fresh SQLite file by default; with DATABASE_URL set (e.g.
postgres://postgres@127.0.0.1:5432/wecom_bench) that database, created if missing. Its tables are
emptied first, so the name must contain "bench" (or pass --i-know-this-empties-the-database).
"""

import argparse
import atexit
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MIRROR_TABLES = (
    "wecom_integration_wecomuser",
    "wecom_integration_department",
    "wecom_integration_binding",
    "wecom_integration_auditlog",
    "wecom_integration_syncproposal",
    "tenants_membership",
    "auth_user",
)


def setup_database(args):
    """Point Django at the bench database and migrate it; returns a description."""
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        directory = tempfile.mkdtemp(prefix="wecom-bench-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{Path(directory) / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("REDIS_URL", None)  # the budget and tokens in local memory: one process
    import dj_database_url

    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    name = str(config.get("NAME", ""))
    if config["ENGINE"].endswith("postgresql"):
        if "bench" not in name and not args.i_know_this_empties_the_database:
            sys.exit(f"refusing to empty database {name!r}: its name does not contain 'bench'")
        _create_postgres_database(config)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if config["ENGINE"].endswith("postgresql"):
        call_command("flush", interactive=False, verbosity=0)
    from django.db import connection

    return f"{connection.vendor} ({name})"


def _create_postgres_database(config):
    import psycopg

    params = {"host": config.get("HOST") or "127.0.0.1", "port": config.get("PORT") or 5432,
              "user": config.get("USER") or "postgres", "dbname": "postgres", "autocommit": True}
    if config.get("PASSWORD"):
        params["password"] = config["PASSWORD"]
    with psycopg.connect(**params, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (config["NAME"],)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{config["NAME"]}"')


DML = re.compile(r'^\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)
SEPARATE = {"wecom_integration_syncrun": "run progress", "wecom_integration_syncproposal": "proposals"}


class Meter:
    """Counts queries and written rows on the default connection, by table.

    On PostgreSQL a statement's rows are its rowcount. SQLite reports no rowcount for an INSERT …
    RETURNING before its rows are fetched, so there the connection's ``total_changes`` is read as
    each statement starts, and the difference is put down to the statement before (whose rows Django
    has fetched by then). The run's own row (progress) and its proposals are shown apart.
    """

    def __init__(self, connection):
        self.connection = connection
        self.queries = 0
        self.by_table = {}
        self.sqlite = connection.vendor == "sqlite"
        self._last_table = None
        self._mark = self._total_changes()

    def _total_changes(self):
        if not self.sqlite:
            return 0
        self.connection.ensure_connection()
        return self.connection.connection.total_changes

    def _settle(self):
        if self.sqlite:
            now = self._total_changes()
            if self._last_table:
                self.by_table[self._last_table] = self.by_table.get(self._last_table, 0) + now - self._mark
            self._mark = now

    def __call__(self, execute, sql, params, many, context):
        self.queries += 1
        self._settle()
        match = DML.match(sql)
        result = execute(sql, params, many, context)
        table = match.group(1) if match else None
        if self.sqlite:
            self._last_table = table
        elif table:
            self.by_table[table] = self.by_table.get(table, 0) + max(context["cursor"].rowcount, 0)
        return result

    def finish(self):
        self._settle()
        self._last_table = None

    @property
    def rows(self):
        return sum(n for table, n in self.by_table.items() if table not in SEPARATE)

    def apart(self):
        parts = {}
        for table, label in SEPARATE.items():
            parts[label] = self.by_table.get(table, 0)
        return ", ".join(f"+{n} {label}" for label, n in parts.items())


def rss_kib(field):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


#: The figures of each measured step, for the side-by-side summary: label -> (seconds, queries, rows).
FIGURES = {}


def measure(label, func):
    """Run ``func`` and print its figures; returns its result."""
    from django.db import connection

    meter = Meter(connection)
    before = rss_kib("VmRSS")
    reset_peak()
    server = server_cpu(connection)
    collector = GarbageClock()
    cpu = time.process_time()
    started = time.perf_counter()
    with connection.execute_wrapper(meter), collector:
        result = func()
    meter.finish()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    server = server_cpu(connection) - server if server is not None else None
    peak = rss_kib("VmHWM")
    FIGURES[label] = (seconds, meter.queries, meter.rows, max(0, peak - before) / 1024, cpu, server)
    busy = (f"cpu {cpu:6.2f} s" + (f" + server {server:5.2f} s" if server is not None else "")
            + f", gc {collector.seconds:5.2f} s")
    print(
        f"{label:<34} {seconds:8.2f} s ({busy})  {meter.queries:7d} queries  {meter.rows:8d} rows written"
        f"  ({meter.apart()})  peak RSS {peak / 1024:7.1f} MiB"
        f" (+{max(0, peak - before) / 1024:.1f} MiB)",
        flush=True,
    )
    return result


class GarbageClock:
    """Time spent in Python's cyclic garbage collector while it is entered (all threads). In this bench
    the fake WeCom's organisation lives in the same process, so each full collection also walks the
    fake's 100,000 members: a cost a sync against WeCom does not pay."""

    def __init__(self):
        self.seconds = 0.0
        self._started = {}

    def _callback(self, phase, info):
        import threading

        key = threading.get_ident()
        if phase == "start":
            self._started[key] = time.perf_counter()
        elif key in self._started:
            self.seconds += time.perf_counter() - self._started.pop(key)

    def __enter__(self):
        import gc

        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc):
        import gc

        gc.callbacks.remove(self._callback)


def server_cpu(connection):
    """The CPU seconds the PostgreSQL backend of ``connection`` has used (it runs on this machine), or
    None on SQLite (its work is this process's). With ``time.process_time()`` it says how much work a
    step was, which a machine shared with other work does not change as much as the wall time."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


STEPS = ("first sync", "confirm (bind or create all)", "second sync", "third sync")
WORLD_LABELS = {"old": "old world (contact Secret reads all)", "2022": "2022 world (ids + app Secret)"}


def full_lists(args, world="old"):
    from tests.factories import config_from_fake, make_tenant
    from wecom_integration.client import RateBudget
    from wecom_integration.directory import sync
    from wecom_integration.models import SyncRun
    from wecom_integration.testing import FakeWeCom

    print(f"\nPart 1, {WORLD_LABELS[world]}: {args.users:,} members in {args.departments:,} departments, "
          "no rate limits")
    started = time.perf_counter()
    fake = FakeWeCom(users=args.users, departments=args.departments, seed=11, restricted=world == "2022").start()
    print(f"  (fake org generated and listening in {time.perf_counter() - started:.1f} s: {fake.org.stats()})")
    try:
        tenant = make_tenant(f"bench-{world}")
        config = config_from_fake(tenant, fake)

        def client(kind="contacts"):
            # Budget off: the fake's limits are off too, and this part measures our own work.
            return sync.sync_client(config, kind, api_base=fake.api_base,
                                    rate_budget=RateBudget(config.corp_id, per_window=0))

        def one_sync():
            run = sync.execute_contact_run(sync.create_run(tenant).pk, client=client(),
                                           app_client=lambda: client("app"))
            if run.status not in (SyncRun.Status.REVIEW, SyncRun.Status.SUCCEEDED):
                raise SystemExit(f"sync failed: {run.errors}")
            if run.fallback_mode != (world == "2022"):
                raise SystemExit(f"the sync did not detect the {world} world")
            return run

        def step(label, func):
            result = measure(label, func)
            FIGURES[(world, label.split(",")[0])] = FIGURES.pop(label)
            return result

        first = step("first sync", one_sync)
        print(f"    fetch {first.counts['fetch_seconds']} s; {first.counts['users']}")
        print(f"    proposals {first.counts['proposals']}")
        confirm = step(
            "confirm (bind or create all)",
            lambda: sync.confirm_run(first, accept_proposals=True, create_unmatched=True),
        )
        print(f"    {confirm}")
        second = step("second sync, nothing changed", one_sync)
        print(f"    fetch {second.counts['fetch_seconds']} s; {second.counts['users']}")
        changed = mutate(fake.org, args.users // 100)
        third = step(f"third sync, {changed} members changed", one_sync)
        print(f"    fetch {third.counts['fetch_seconds']} s; {third.counts['users']}; left {third.counts['left']}")
        print(f"  calls the fake served (3 syncs): {dict(fake.calls)}")
        FIGURES[(world, "calls")] = sum(fake.calls.values())
        FIGURES[(world, "fetch")] = (first.counts["fetch_seconds"], second.counts["fetch_seconds"])
        # After the third sync the mirror holds what the fake holds again: what an unchanged re-sync sees.
        resync_breakdown(fake, tenant, client("app" if world == "2022" else "contacts"), second)
    finally:
        fake.stop()


def resync_breakdown(fake, tenant, client, run):
    """Where an unchanged re-sync's time goes, each part measured alone on this one thread (the sync
    itself overlaps them on its worker threads, and the fake serves from this process too): the fake
    building and encoding its ``user/list`` answers (WeCom's work, not ours), our HTTP reads of them,
    decoding them (the standard library's ``json``, as the client did before issue 19, next to what it
    does now), turning each member into fields, and the diff against the mirror, written nowhere
    (rolled back). ``run`` is the measured unchanged re-sync, for its fetch and save times."""
    import gc

    from django.db import transaction

    from wecom_integration.client.api.user import MemberListAnswer
    from wecom_integration.client.base import decode_answer
    from wecom_integration.client.session import get_session
    from wecom_integration.directory import sync
    from wecom_integration.directory.services import department_fields_from_api, fingerprint, user_fields_from_api

    departments = {int(d["id"]): department_fields_from_api(d) for d in client.department.list()}
    queries = [{"department_id": dept_id, **({"fetch_child": 1} if recursive else {})}
               for dept_id, recursive in sync.plan_user_lists(departments)]
    token = client.access_token
    clock = time.perf_counter
    parts = {}

    # The fake's share is timed where it serves (its thread, in this process): its _dispatch, wrapped
    # for these calls only.
    served = [0.0, 0]
    dispatch = fake._dispatch

    def timed_dispatch(*args):
        started = clock()
        answer = dispatch(*args)
        served[0] += clock() - started
        served[1] += len(answer[1]) if isinstance(answer, tuple) else 0
        return answer

    session, url = get_session(), f"{client.api_base}/cgi-bin/user/list"
    responses = []
    fake._dispatch = timed_dispatch
    try:
        gc.collect()
        started = clock()
        for query in queries:
            response = session.get(url, params={**query, "access_token": token}, timeout=client.timeout)
            response.content  # noqa: B018 - read the body
            responses.append(response)
        parts["http"] = clock() - started - served[0]
    finally:
        del fake._dispatch
    parts["fake"], size = served

    def timed(func):
        gc.collect()  # each part pays for its own garbage, not for the part before
        started = clock()
        result = func()
        return clock() - started, result

    # Each answer decoded the three ways and turned into fields, then dropped, as the sync does.
    for key in ("json", "msgspec", "decode", "convert"):
        parts[key] = 0.0
    users = {}
    gc.collect()
    for response in responses:
        started = clock()
        response.json()
        parts["json"] += clock() - started
        started = clock()
        decode_answer(response)
        parts["msgspec"] += clock() - started
        started = clock()
        answer = decode_answer(response, MemberListAnswer)
        parts["decode"] += clock() - started
        started = clock()
        for data in answer.get("userlist") or ():
            userid = data.get("userid")
            if userid and userid not in users:
                users[userid] = user_fields_from_api(data)
        parts["convert"] += clock() - started
    responses.clear()
    parts["fingerprints"], _ = timed(lambda: [fingerprint(fields) for fields in users.values()])

    def diff():
        with transaction.atomic():
            counts = sync.apply_snapshot(tenant, sync.Snapshot(departments=departments, users=users),
                                         int(time.time()))
            transaction.set_rollback(True)
        return counts

    parts["diff"], counts = timed(diff)
    started = clock()
    gc.collect()
    parts["collection"] = clock() - started
    tracked = len(gc.get_objects())
    fetch = run.counts["fetch_seconds"]
    print(f"  unchanged re-sync, {len(users):,} members in {len(queries)} user/list answers of "
          f"{size / 1e6:.1f} MB; the measured run: fetch {fetch:.2f} s (4 threads), mirror and proposals "
          f"{run.counts['seconds'] - fetch:.2f} s. Each part alone, on one thread:")
    rows = (
        ("the fake building and encoding its answers (not ours)", parts["fake"]),
        ("our HTTP reads of the answers", parts["http"]),
        ("decoding: requests' json() (json.loads, before)", parts["json"]),
        ("decoding: msgspec, every key", parts["msgspec"]),
        ("decoding: msgspec, the mirrored keys (now)", parts["decode"]),
        ("members into fields (user_fields_from_api)", parts["convert"]),
        ("diff against the mirror, nothing written", parts["diff"]),
        ("  of which fingerprints", parts["fingerprints"]),
    )
    for label, seconds in rows:
        print(f"    {label:<56} {seconds:6.2f} s")
    print(f"    rows the diff would write: {counts['rows_written']}")
    print(f"    one full garbage collection: {parts['collection']:.2f} s over {tracked:,} objects, the fake's "
          f"organisation among them (a sync against WeCom does not carry it)")
    FIGURES[("breakdown", tenant.pk)] = parts


def print_side_by_side(worlds):
    """The worlds' figures next to each other (what issue 22's closing note quotes)."""
    if len(worlds) < 2:
        return
    print(f"\nSide by side, {', '.join(WORLD_LABELS[w] for w in worlds)}:")
    print(f"  {'step':<30}" + "".join(f"{w + ' world':>40}" for w in worlds))
    for label in STEPS:
        cells = []
        for world in worlds:
            seconds, queries, rows, memory, _cpu, _server = FIGURES[(world, label)]
            cells.append(f"{seconds:8.2f} s {queries:6d} q {rows:7d} rows {memory:6.1f} MiB")
        print(f"  {label:<30}" + "".join(f"{c:>40}" for c in cells))
    print(f"  {'fetch of 1st / 2nd sync':<30}"
          + "".join(f"{'%.2f s / %.2f s' % FIGURES[(w, 'fetch')]:>40}" for w in worlds))
    print(f"  {'WeCom calls, 3 syncs':<30}" + "".join(f"{FIGURES[(w, 'calls')]:>40,}" for w in worlds))


def mutate(org, count):
    """Change ``count`` members in place, as WeCom would between two syncs (no callbacks sent)."""
    import random

    rng = random.Random(5)
    with org.lock:
        users = rng.sample([u for u in org.users.values() if u.status == 1], count)
        departments = [d for d in org.departments if d != 1]
        for n, user in enumerate(users):
            kind = n % 20
            if kind == 0:
                org.remove_user(user)  # left the company
            elif kind == 1:
                user.status = 2  # disabled
            elif kind < 6:
                org.move_user(user, (rng.choice(departments),))
            elif kind < 9:
                user.name = user.name + "二"
            else:
                user.position = "新岗位"
    return count


def fallback_with_limits(args):
    from django.test import override_settings

    from tests.factories import config_from_fake, make_tenant
    from wecom_integration.client import RateBudget
    from wecom_integration.directory import sync
    from wecom_integration.models import SyncRun
    from wecom_integration.testing import FakeWeCom

    users, per_minute = args.fallback_users, args.per_minute
    print(f"\nPart 2: {users:,} members, 2022 world, the app seeing each member one by one (one user/get each), "
          f"the fake limited to {per_minute:,}/min per API")
    fake = FakeWeCom(users=users, departments=max(2, users // 20), seed=12, restricted=True).start()
    fake.set_visible_range(users=list(fake.org.users))
    fake.set_rate_limit(per_minute=per_minute, block_seconds=60)
    try:
        tenant = make_tenant("bench-fallback")
        config = config_from_fake(tenant, fake)
        limited = []
        stop = threading.Event()

        with override_settings(WECOM={"API_BASE": fake.api_base, "RATE_BUDGET_PER_MINUTE": per_minute}):
            budget = RateBudget(config.corp_id)
            print(f"  client budget: {budget.per_window} calls per {budget.window:g} s window "
                  f"({budget.per_window * 60 / budget.window:,.0f}/min)")

            def run():
                result = sync.execute_contact_run(
                    sync.create_run(tenant).pk, client=sync.contacts_client(config),
                    app_client=sync.app_client_factory(config),
                )
                stop.set()
                return result

            result = measure("fallback sync with rate limits", run)
        limited = [e for e in result.errors if e.get("errcode") in (45009, 45033)]
        calls = fake.calls["user/get"]
        implied = calls / per_minute * 60
        seconds = result.counts.get("seconds") or result.duration or 0
        print(f"  status {result.status}, fallback_mode {result.fallback_mode}, user/get calls {calls:,}")
        print(f"  45009/45033 received: {len(limited)}")
        print(f"  measured {seconds:.1f} s vs implied {implied:.1f} s ({calls:,} calls at {per_minute:,}/min): "
              f"{seconds / implied:.3f}x (target <= 1.1x)")
        if result.status != SyncRun.Status.REVIEW:
            print(f"  errors: {result.errors}")
    finally:
        fake.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--departments", type=int, default=5_000)
    parser.add_argument("--fallback-users", type=int, default=20_000)
    parser.add_argument("--per-minute", type=int, default=6_000)
    parser.add_argument("--worlds", default="old,2022",
                        help="Part 1's worlds, comma-separated: old, 2022 (default both, side by side)")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-fallback", action="store_true")
    parser.add_argument("--i-know-this-empties-the-database", action="store_true")
    args = parser.parse_args()
    database = setup_database(args)
    import logging

    logging.getLogger("wecom_integration").setLevel(logging.WARNING)
    from machine import in_process_medians_us, speed_line

    print(f"database: {database}; CPUs: {os.cpu_count()}; {speed_line(in_process_medians_us()[1])}", flush=True)
    worlds = [w.strip() for w in args.worlds.split(",") if w.strip()]
    unknown = set(worlds) - set(WORLD_LABELS)
    if unknown:
        parser.error(f"unknown worlds: {sorted(unknown)}")
    if not args.skip_full:
        for world in worlds:
            full_lists(args, world)
        print_side_by_side(worlds)
    if not args.skip_fallback:
        fallback_with_limits(args)


if __name__ == "__main__":
    main()
