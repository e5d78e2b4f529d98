"""What one wait inside a request costs the CPU that runs after it (issue 19's paused-worker ratio).

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/wecom_bench .venv/bin/python bench/wait_cost.py [--requests N]

The callback differs from bench/callbacks.py's bare view by its work and by one wait: the INSERT's round trip
to PostgreSQL, during which the process sleeps and others run on its core. This bench serves the bare view
(bench/bench_urls.py) in-process through Django's WSGI handler and reads the thread's CPU time per request,
with nothing before each request, after a sleep of 0.3 ms (about the INSERT's round trip) or 1 ms, and after
a ``SELECT 1`` on the database (a real round trip; on SQLite there is nothing to wait for). The sleep's own
CPU, measured alone, is printed beside it. The rows take turns, one batch each per round; medians over the
rounds are printed. Nothing is written to the database; prints figures only and asserts nothing.
"""

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.bench_settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DB_CONN_MAX_AGE", "3600")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per row per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the median is reported")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    app = WSGIHandler()
    body = b"<xml><ToUserName><![CDATA[ww]]></ToUserName><Encrypt><![CDATA[" + b"A" * 1300 + b"]]></Encrypt></xml>"

    def request():
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/bench/success/",
            "QUERY_STRING": "msg_signature=0123456789abcdef0123456789abcdef01234567&timestamp=1700000000&nonce=42",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "text/xml",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
        }
        status = []
        response = app(environ, lambda s, headers, exc_info=None: status.append(s))
        b"".join(response)
        response.close()
        if not status[0].startswith("200"):
            raise RuntimeError(f"the bare view answered {status[0]}")

    def round_trip():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    rows = {
        "back to back": lambda: request(),
        "after a 0.3 ms sleep": lambda: (time.sleep(0.0003), request()),
        "after a 1 ms sleep": lambda: (time.sleep(0.001), request()),
        "after SELECT 1": lambda: (round_trip(), request()),
        "0.3 ms sleep alone": lambda: time.sleep(0.0003),
        "SELECT 1 alone": round_trip,
    }
    for fn in rows.values():  # imports, the connection, the first request's set-up
        fn()
    cpu = {label: [] for label in rows}
    for _ in range(args.rounds):
        for label, fn in rows.items():
            start = time.thread_time()
            for _ in range(args.requests):
                fn()
            cpu[label].append((time.thread_time() - start) / args.requests * 1e6)
    median = {label: statistics.median(values) for label, values in cpu.items()}
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; database {connection.vendor}; "
        f"thread CPU per request, median of {args.rounds} interleaved rounds x {args.requests}"
    )
    base = median["back to back"]
    for label, us in median.items():
        extra = "" if label == "back to back" or "alone" in label else f"   (+{us - base:.1f} us)"
        print(f"  {label:<24} {us:8.1f} us{extra}")
    for wait, alone in (("after a 0.3 ms sleep", "0.3 ms sleep alone"), ("after SELECT 1", "SELECT 1 alone")):
        print(
            f"  {wait}: the request's own CPU grew by {median[wait] - median[alone] - base:.1f} us "
            f"beyond the wait's own {median[alone]:.1f} us"
        )


if __name__ == "__main__":
    main()
