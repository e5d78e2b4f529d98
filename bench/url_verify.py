"""Cold URL verification: how long the first GET of WeCom's echostr check takes after the server starts.

    .venv/bin/python bench/url_verify.py [--rounds 5]

When an admin saves a callback URL, WeCom sends one signed GET with an encrypted ``echostr`` and wants the
plaintext back within 1 second (doc 90930); if that GET is the first request a freshly started server gets,
its lazy start-up (the worker importing Django, the URLconf, the first database connection, the decryption
key) counts against that second. It prints, first, a fresh process that loads Django as a worker does and
then answers its first GET (the cold request after start-up, which should be well under 1 s); then each
round starts gunicorn as deployed (``gunicorn.conf.py``, one sync
worker, SQLite in a temporary directory, no Redis), sends the GET the moment the port accepts connections
and times it (cold, including the worker's boot), then times a second GET (warm). Prints the median and
the worst of each; asserts nothing. https://developer.work.weixin.qq.com/document/path/90930
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from callbacks import free_port, start, stop  # noqa: E402

from wecom_integration.testing.callbacks import CallbackSender  # noqa: E402

VENV_BIN = Path(sys.executable).parent
TOKEN = "QDG6eK"
ENCODING_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "ww1436e0e65a779aee"
START_TIMEOUT = 60

SETUP = f"""
import django
django.setup()
from wecom_integration.configuration.services import configure_tenant
tenant, _ = configure_tenant(tenant_code="bench", values={{
    "corp_id": "{CORP_ID}", "agent_id": 1000002, "secret": "s" * 43,
    "contact_token": "{TOKEN}", "contact_aes_key": "{ENCODING_AES_KEY}"}})
print(tenant.pk)
"""


# A fresh interpreter: the WSGI module loaded as a worker loads it, then the first GET through Django's handler.
IN_PROCESS = f"""
import sys, time
started = time.perf_counter()
import django
django.setup()
from config.wsgi import application
loaded = time.perf_counter()
from django.test import Client
from wecom_integration.testing.callbacks import CallbackSender
sender = CallbackSender("http://unused/", "{TOKEN}", "{ENCODING_AES_KEY}", "{CORP_ID}")
client = Client(HTTP_HOST="127.0.0.1")
figures = []
for echostr in ("5927782489442352469", "5927782489442352470"):
    timestamp, nonce = str(int(time.time())), "437374425"
    encrypted, signature = sender.crypto.encrypt(echostr, nonce, timestamp)
    params = {{"msg_signature": signature, "timestamp": timestamp, "nonce": nonce, "echostr": encrypted}}
    begun = time.perf_counter()
    response = client.get("/wecom/callback/%s/contacts/" % sys.argv[1], params)
    figures.append(time.perf_counter() - begun)
    assert response.content == echostr.encode(), response.content
print(loaded - started, *figures)
"""


def wait_for_port(port, process):
    """Until the port accepts a TCP connection (no HTTP request, so the first GET stays the first)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"gunicorn did not listen within {START_TIMEOUT} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wecom-url-verify-") as tmp:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "1",
            "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PROMETHEUS_MULTIPROC_DIR": tmp,
        }
        env.pop("REDIS_URL", None)
        python = str(VENV_BIN / "python")
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        tenant_id = int(
            subprocess.run([python, "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        loads, firsts, seconds = [], [], []
        for _ in range(args.rounds):
            run = subprocess.run(
                [python, "-c", IN_PROCESS, str(tenant_id)], cwd=ROOT, env=env, capture_output=True, text=True
            )
            if run.returncode:
                raise RuntimeError(run.stderr[-2000:])
            out = run.stdout.split()
            for figures, value in zip((loads, firsts, seconds), out[-3:], strict=True):
                figures.append(float(value))
        cold, warm = [], []
        for _ in range(args.rounds):
            port = free_port()
            env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
            server = start(
                [str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "config.wsgi:application"],
                env,
                Path(tmp) / "gunicorn.log",
            )
            try:
                wait_for_port(port, server)
                url = f"http://127.0.0.1:{port}/wecom/callback/{tenant_id}/contacts/"
                sender = CallbackSender(url, TOKEN, ENCODING_AES_KEY, CORP_ID, timeout=30, tries=1)
                for figures in (cold, warm):
                    started = time.perf_counter()
                    sender.check_url()
                    figures.append(time.perf_counter() - started)
            finally:
                stop(server)
    print(f"URL verification in a fresh process (Django set up as a WSGI worker does), {args.rounds} rounds:")
    print(f"  loading Django and the app: median {statistics.median(loads) * 1000:.0f} ms")
    print(
        f"  first GET after the load (the cold request): median {statistics.median(firsts) * 1000:.1f} ms, "
        f"worst {max(firsts) * 1000:.1f} ms"
    )
    print(f"  second GET: median {statistics.median(seconds) * 1000:.1f} ms")
    print(f"URL verification over gunicorn (1 sync worker, SQLite), {args.rounds} rounds; WeCom allows 1 s:")
    print(
        f"  cold (first GET as soon as the port listens, worker boot included): "
        f"median {statistics.median(cold) * 1000:.0f} ms, worst {max(cold) * 1000:.0f} ms"
    )
    print(f"  warm (the next GET): median {statistics.median(warm) * 1000:.1f} ms, worst {max(warm) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
