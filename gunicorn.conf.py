"""Gunicorn settings for the web process: ``gunicorn -c gunicorn.conf.py config.wsgi`` (the Procfile's web).

Everything comes from the environment (docs/deploy.md lists it):

PORT / HOST            where to listen (default 0.0.0.0:8000); GUNICORN_BIND overrides both
WEB_CONCURRENCY        worker processes (default 2 × CPUs + 1, at most 8)
GUNICORN_THREADS       threads per worker (default 1: sync workers; more switches to gthread)
GUNICORN_TIMEOUT       seconds before a silent worker is killed and replaced (default 30)
GUNICORN_MAX_REQUESTS  requests before a worker is recycled, with 10 % jitter (default 0: never; each
                       recycled worker leaves its metrics file behind for every scrape to read)
FORWARDED_ALLOW_IPS    proxies trusted for X-Forwarded-* (default 127.0.0.1)
LOG_FORMAT             json: one JSON object per access-log line, like the application's logs
PROMETHEUS_MULTIPROC_DIR
                       where workers keep their metrics so /metrics shows the sum of all of them; when
                       unset and more than one worker runs, a private temporary directory is used
"""

import multiprocessing
import os
import shutil
import tempfile

_cpus = multiprocessing.cpu_count()

bind = os.environ.get("GUNICORN_BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * _cpus + 1, 8)))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
# WeCom gives a callback 5 s; a request still running after this is stuck, not slow.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# The app is loaded in each worker after the fork: metrics files, database connections and the HTTP session
# must belong to the worker, and the multi-process directory must be set before prometheus_client loads.
preload_app = False
if os.path.isdir("/dev/shm"):
    # Heartbeat files on tmpfs: on a container's overlay disk a slow fsync can get healthy workers killed.
    worker_tmp_dir = "/dev/shm"

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# %(U)s is the path without its query string; the request id is the one RequestIdMiddleware answered with.
if os.environ.get("LOG_FORMAT", "").lower() == "json":
    access_log_format = (
        '{"event": "http.request", "remote": "%(h)s", "method": "%(m)s", "path": "%(U)s", "status": %(s)s, '
        '"bytes": "%(B)s", "duration_ms": %(M)s, "request_id": "%({x-request-id}o)s"}'
    )
else:
    access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'

_own_metrics_dir = None


def on_starting(server):
    """Prepare the metrics directory before any worker exists: a previous run's counts must not add up."""
    global _own_metrics_dir
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path and server.cfg.workers > 1:
        path = _own_metrics_dir = tempfile.mkdtemp(prefix="wecom-metrics-")
        # Workers are forked from this process and inherit the variable.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))


def child_exit(server, worker):
    """A worker exited: drop its live gauges (its counters stay, so totals never go backwards)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the temporary metrics directory this config created, if any."""
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


def worker_exit(server, worker):
    """A worker is stopping: send the callback ids it has not published yet (they are stored either way;
    this spares them the requeue sweep's wait)."""
    try:
        from wecom_integration.callbacks.services import publisher
    except Exception:  # the app never loaded in this worker
        return
    publisher.flush()
