"""Token sharing under load: 2 processes x 16 threads, 2,000 API calls, from a cold cache.

    .venv/bin/python bench/tokens.py [--processes 2] [--threads 16] [--calls 2000] [--start-method fork]

Prints the gettoken calls the fake WeCom saw per secret kind (target: exactly 1 each, however many
workers start at once) and the calls per second. Tokens are shared through Redis: REDIS_URL is used,
or redis://127.0.0.1:6379/15 when unset; the bench writes under its own key prefix and deletes only
those keys afterwards.
"""

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def setup_django(prefix):
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["CACHE_KEY_PREFIX"] = prefix
    import django

    django.setup()


def worker(index, args, target, barrier, results):
    """One process: ``args.threads`` threads sharing the process's session and token memo."""
    setup_django(target["prefix"])
    from wecom_integration.client import WeComClient
    from wecom_integration.client import session as session_module

    # With fork, the parent's session object came along in memory; the client must not use it.
    fresh_session = session_module._session is None or session_module._session_pid != os.getpid()
    clients = {
        kind: WeComClient(target["corp_id"], target[kind], kind, api_base=target["api_base"])
        for kind in ("app", "contacts")
    }
    userids = target["userids"]
    per_process = args.calls // args.processes
    errors = []

    def run(thread_index, count):
        barrier.wait()
        try:
            for n in range(count):
                # Alternate secrets and APIs so both tokens are wanted at once from the first call.
                client = clients["app" if (thread_index + n) % 2 else "contacts"]
                if n % 3:
                    client.user.get(userids[(thread_index * 31 + n) % len(userids)])
                else:
                    client.department.simplelist()
        except Exception as exc:
            errors.append(repr(exc))

    counts = [
        per_process // args.threads + (1 if t < per_process % args.threads else 0)
        for t in range(args.threads)
    ]
    threads = [threading.Thread(target=run, args=(t, counts[t])) for t in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(
        {
            "process": index,
            "pid": os.getpid(),
            "fresh_session": fresh_session and session_module.get_session() is not None,
            "calls": per_process,
            "errors": errors[:5],
        }
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--start-method", choices=("fork", "spawn"), default="fork")
    args = parser.parse_args()

    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = DEFAULT_REDIS_URL
        print(f"REDIS_URL unset: using {DEFAULT_REDIS_URL} for cross-process token sharing")
    prefix = f"wecom-bench-{uuid.uuid4().hex[:8]}"
    setup_django(prefix)

    import multiprocessing

    from django.core.cache import cache

    from wecom_integration.client import session as session_module
    from wecom_integration.testing import FakeWeCom

    fake = FakeWeCom(users=200, departments=20, seed=1).start()
    # Build the parent's session first, so a forked child proves it makes its own.
    session_module.get_session()
    try:
        userids = sorted(fake.org.users)
        target = {
            "api_base": fake.api_base,
            "corp_id": fake.corp_id,
            "app": fake.secret,
            "contacts": fake.contact_secret,
            "userids": userids,
            "prefix": prefix,
        }
        ctx = multiprocessing.get_context(args.start_method)
        barrier = ctx.Barrier(args.processes * args.threads + 1)
        results = ctx.Queue()
        processes = [
            ctx.Process(target=worker, args=(i, args, target, barrier, results))
            for i in range(args.processes)
        ]
        for process in processes:
            process.start()
        barrier.wait(timeout=120)
        started = time.perf_counter()
        reports = [results.get(timeout=600) for _ in processes]
        elapsed = time.perf_counter() - started
        for process in processes:
            process.join(timeout=60)
        total = sum(r["calls"] for r in reports)
        print(f"processes={args.processes} threads/process={args.threads} start_method={args.start_method}")
        print(f"API calls: {total} in {elapsed:.2f} s = {total / elapsed:,.0f} calls/s")
        print(
            f"gettoken calls seen by the fake: {dict(sorted(fake.gettoken_calls.items()))} (target: 1 each)"
        )
        print(f"calls by path: {dict(sorted(fake.calls.items()))}")
        print(
            f"distinct child PIDs: {len({r['pid'] for r in reports})}, "
            f"each with its own HTTP session: {all(r['fresh_session'] for r in reports)}"
        )
        for report in reports:
            if report["errors"]:
                print(f"process {report['process']} errors: {report['errors']}")
        ok = all(fake.gettoken_calls.get(kind) == 1 for kind in ("app", "contacts"))
        print("RESULT:", "OK" if ok else "MORE THAN ONE gettoken PER SECRET")
    finally:
        fake.stop()
        cache.delete_many(list(bench_keys(cache, prefix)))
    return 0 if ok else 1


def bench_keys(cache, prefix):
    """The Django-level keys this run wrote (the prefix is ours alone, so nothing else is touched)."""
    client = cache._cache.get_client(None)
    for raw in client.scan_iter(match=f"{prefix}:*"):
        # Django's key format is "<prefix>:<version>:<key>".
        yield raw.decode().split(":", 2)[2]


if __name__ == "__main__":
    sys.exit(main())
