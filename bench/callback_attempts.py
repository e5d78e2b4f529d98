"""What noting callback attempts (services/callback_attempts.py) costs the successful delivery path.

    .venv/bin/python bench/callback_attempts.py [--calls 2000] [--rounds 3]

In-process, through Django's test client and the real callback view (SQLite in a temporary file, or
DATABASE_URL; the cache of the settings: Redis when REDIS_URL is set): signed app-message deliveries,
each a distinct MsgId, answered 200. Prints, per round, callbacks/s with the note as shipped and with it
switched off, then the cache operations and CallbackAttempt INSERTs the note made per request (the
design's bound: at most one cache operation per request, no extra database write per callback). Celery
runs eagerly with the handling switched off, so only the receipt is measured. Prints figures only;
asserts nothing.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="wecom-attempts-bench-")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()
    import logging

    logging.disable(logging.INFO)  # one log line per callback would dominate the figures
    call_command("migrate", verbosity=0)

    from tests.factories import make_config, make_tenant
    from wecom_integration.callbacks import attempts as callback_attempts
    from wecom_integration.callbacks import services as callbacks
    from wecom_integration.testing.callbacks import CallbackSender, build_message_xml

    tenant = make_tenant(f"bench{int(time.time())}")
    config = make_config(tenant)
    token, key = config.callback_credentials("app")
    url = f"/wecom/callback/{tenant.pk}/app/"
    sender = CallbackSender(url, token, key, config.corp_id)
    callbacks.enqueue = lambda event_id: None  # receipt only: no handling, no broker
    client = Client()
    msg_id = [0]

    def envelopes(n):
        out = []
        for _ in range(n):
            msg_id[0] += 1
            xml = build_message_xml(config.corp_id, "zhangsan", config.agent_id, content="hi", msg_id=msg_id[0])
            out.append(sender.envelope(xml))
        return out

    def run(batch):
        started = time.perf_counter()
        for params, body in batch:
            query = "&".join(f"{k}={v}" for k, v in params.items())
            response = client.post(f"{url}?{query}", data=body, content_type="text/xml")
            assert response.status_code == 200, response.content
        return len(batch) / (time.perf_counter() - started)

    class Counting:
        def __init__(self, wrapped):
            self.wrapped, self.ops = wrapped, 0

        def __getattr__(self, name):
            attr = getattr(self.wrapped, name)

            def counted(*a, **kw):
                self.ops += 1
                return attr(*a, **kw)

            return counted if callable(attr) else attr

    record = callback_attempts.record
    on, off = [], []
    run(envelopes(200))  # warm-up
    for _ in range(args.rounds):
        callback_attempts.record = record
        on.append(run(envelopes(args.calls)))
        callback_attempts.record = lambda *a, **kw: None
        off.append(run(envelopes(args.calls)))
    callback_attempts.record = record

    callback_attempts.forget_throttle()
    counting = Counting(callback_attempts.cache)
    callback_attempts.cache = counting
    counting.wrapped.clear()
    with CaptureQueriesContext(connection) as queries:
        run(envelopes(args.calls))
    inserts = sum(
        1 for q in queries.captured_queries if q["sql"].startswith("INSERT") and "callbackattempt" in q["sql"]
    )
    print(f"database: {connection.vendor}; cache: {type(counting.wrapped).__name__}")
    print(f"callbacks/s with the attempt note:    median {statistics.median(on):8.0f}  rounds {[round(x) for x in on]}")
    print(
        f"callbacks/s without it:               median {statistics.median(off):8.0f}  rounds {[round(x) for x in off]}"
    )
    print(f"ratio with/without: {statistics.median(on) / statistics.median(off):.3f}")
    print(
        f"over {args.calls} successful deliveries: {counting.ops} cache operation(s) "
        f"({counting.ops / args.calls:.4f} per request), {inserts} CallbackAttempt INSERT(s)"
    )


if __name__ == "__main__":
    main()
