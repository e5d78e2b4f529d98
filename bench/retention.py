"""How fast retention removes old callback events on PostgreSQL while callbacks keep arriving.

    .venv/bin/python bench/retention.py [--rows 1000000] [--rate 200] [--batch-size 5000]

On a database of its own (``BENCH_DATABASE_URL``, default postgres://postgres@127.0.0.1:5432/wecom_bench_retention,
dropped and created afresh): ``--rows`` handled app callbacks 100 days old are written with COPY, then
signed app messages are delivered through the real callback view at ``--rate`` per second from a thread
(each its own connection; receipt only, handling switched off) for a few seconds alone, and again while
``wecom_purge``'s code deletes the old rows in batches. Prints the purge's rows per second and time, the
table's size per million rows, and the callbacks' latency (p50/p99) before and during the purge with how
many failed. The machine is shared: compare the two latency lines within one run. Asserts nothing.
"""

import argparse
import io
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/wecom_bench_retention"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    args = parser.parse_args()

    from benchdb import fresh_database

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    fresh_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import logging

    logging.disable(logging.INFO)
    from django.core.management import call_command
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0)

    from tests.factories import make_config, make_tenant
    from wecom_integration.callbacks import services as callbacks
    from wecom_integration.models import CallbackEvent
    from wecom_integration.operations import retention
    from wecom_integration.testing.callbacks import CallbackSender, build_message_xml

    tenant = make_tenant("retention")
    config = make_config(tenant)
    callbacks.enqueue = lambda event_id: None  # receipt only: no handling, no broker

    # The old rows, with COPY (the ORM would take minutes for a million).
    started = time.perf_counter()
    table = CallbackEvent._meta.db_table
    import datetime as dt

    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=100)).isoformat()
    xml = build_message_xml(config.corp_id, "zhangsan", config.agent_id, content="x" * 400, msg_id=1)
    xml = xml.replace("\t", " ").replace("\n", " ").replace("\\", "\\\\")
    columns = ("tenant_id, kind, dedupe_key, msg_type, event, change_type, subject, from_user, create_time, xml, "
               "status, attempts, error, request_id, received_at, handled_at")
    with connection.cursor() as cursor:
        raw = cursor.connection
        with raw.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            chunk = io.StringIO()
            for n in range(args.rows):
                chunk.write(f"{tenant.pk}\tapp\tmsg:old{n}\ttext\t\t\t\tzhangsan\t0\t{xml}\thandled\t1\t\t\t"
                            f"{old}\t{old}\n")
                if n % 50_000 == 49_999:
                    copy.write(chunk.getvalue())
                    chunk = io.StringIO()
            copy.write(chunk.getvalue())
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("SELECT pg_total_relation_size(%s)", [table])
        size = cursor.fetchone()[0]
    print(f"{args.rows:,} old events written in {time.perf_counter() - started:.1f} s; table with indexes "
          f"{size / 2**20:.0f} MiB = {size / 2**20 / (args.rows / 1e6):.0f} MiB per million rows")

    token, key = config.callback_credentials("app")
    path = f"/wecom/callback/{tenant.pk}/app/"
    sender = CallbackSender(path, token, key, config.corp_id)
    msg_ids = iter(range(10_000_000, 20_000_000))

    def deliver_for(stop, latencies, failures):
        client = Client()
        interval = 1.0 / args.rate
        following = time.perf_counter()
        while not stop.is_set():
            params, body = sender.envelope(build_message_xml(config.corp_id, "lisi", config.agent_id, content="hi",
                                                             msg_id=next(msg_ids)))
            query = "&".join(f"{k}={v}" for k, v in params.items())
            began = time.perf_counter()
            try:
                answer = client.post(f"{path}?{query}", data=body, content_type="text/xml")
                ok = answer.status_code == 200
            except Exception:  # noqa: BLE001 - a failure is a figure here
                ok = False
            latencies.append(time.perf_counter() - began)
            if not ok:
                failures.append(1)
            following += interval
            time.sleep(max(0.0, following - time.perf_counter()))
        connections.close_all()

    def phase(work):
        stop, latencies, failures = threading.Event(), [], []
        thread = threading.Thread(target=deliver_for, args=(stop, latencies, failures))
        thread.start()
        began = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - began
        stop.set()
        thread.join()
        return result, seconds, latencies, failures

    def line(name, latencies, failures, seconds):
        ordered = sorted(latencies)
        p99 = ordered[int(len(ordered) * 0.99) - 1] if ordered else 0
        return (f"{name:<16} {len(latencies):6d} callbacks in {seconds:5.1f} s ({len(latencies) / seconds:5.0f}/s), "
                f"p50 {statistics.median(ordered) * 1000:6.1f} ms, p99 {p99 * 1000:6.1f} ms, failed {len(failures)}")

    _none, base_seconds, base_lat, base_fail = phase(lambda: time.sleep(args.baseline_seconds))
    counts, purge_seconds, purge_lat, purge_fail = phase(
        lambda: retention.purge_tenant(tenant.pk, batch_size=args.batch_size)
    )
    deleted = counts["callback events (app)"]
    print(f"purge: {deleted:,} events deleted in {purge_seconds:.1f} s = {deleted / purge_seconds:,.0f} rows/s "
          f"(batches of {args.batch_size})")
    print(line("before the purge", base_lat, base_fail, base_seconds))
    print(line("during the purge", purge_lat, purge_fail, purge_seconds))
    kept = CallbackEvent.objects.filter(tenant=tenant).count()
    print(f"left: {kept} events (the ones delivered during the bench, all younger than the retention)")


if __name__ == "__main__":
    main()
