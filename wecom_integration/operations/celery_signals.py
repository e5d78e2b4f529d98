"""Celery signal receivers: the request id across the broker, task metrics and worker metrics.

The app is a guest in the host's Celery: every receiver here acts on the app's own tasks only (names
starting ``wecom_integration.``), and none configures logging. A host that wants its workers to log
with Django's ``LOGGING`` (the app's JSON lines) opts in with :func:`wecom_integration.operations.log_config.
use_django_logging_in_workers`, as this repository's ``config/celery.py`` does.

- ``before_task_publish`` puts the current request id in the message headers; ``task_prerun`` makes it
  current again in the worker (falling back to the task id), so the log lines of a callback's web
  request and of its task share one id. The id is restored in ``task_postrun``.
- ``task_postrun`` counts the task by state and observes its run time (``wecom_tasks_total``,
  ``wecom_task_duration_seconds``) and logs one ``celery.task`` line.
- ``worker_init`` serves the worker's metrics on ``WECOM["WORKER_METRICS_PORT"]`` (bound to
  ``WECOM["WORKER_METRICS_ADDR"]``, default 127.0.0.1) when set. Prefork children count in their own
  processes, so set ``PROMETHEUS_MULTIPROC_DIR`` and ``WECOM["METRICS_MULTIPROC_DIR"]`` (one directory
  per worker) for their counts to be seen.

Receivers connect when this module is imported: AppConfig.ready imports it beside ``observability.install()``.
"""

import logging
import os
import time

from celery import signals
from django.db import close_old_connections, connections

from wecom_integration import observability
from wecom_integration.observability import (
    get_request_id,
    log_event,
    reset_request_id,
    set_request_id,
)

logger = logging.getLogger(__name__)

# The message header that carries the request id (protocol 2 headers become task.request attributes).
REQUEST_ID_HEADER = "wecom_request_id"
# Every task of the app is named under this prefix (tasks.py, sync_tasks.py, messaging_tasks.py).
TASK_PREFIX = "wecom_integration."


def is_own_task(task_or_name):
    """True for one of the app's tasks (a task object or a task name); the host's are left alone."""
    name = task_or_name if isinstance(task_or_name, str) else getattr(task_or_name, "name", None)
    return bool(name) and name.startswith(TASK_PREFIX)


# task id -> (context token, start time) between prerun and postrun, in the process running the task.
_running = {}


@signals.before_task_publish.connect(weak=False, dispatch_uid="wecom_request_id_publish")
def attach_request_id(sender=None, headers=None, **kwargs):
    """Put the current request id in the outgoing message's headers of one of the app's tasks."""
    if not is_own_task(sender):
        return
    request_id = get_request_id()
    if request_id and headers is not None and not headers.get(REQUEST_ID_HEADER):
        headers[REQUEST_ID_HEADER] = request_id


def _incoming_request_id(task):
    request = getattr(task, "request", None)
    value = getattr(request, REQUEST_ID_HEADER, None)
    if not value:
        value = (getattr(request, "headers", None) or {}).get(REQUEST_ID_HEADER)
    return observability.clean_request_id(value)


@signals.task_prerun.connect(weak=False, dispatch_uid="wecom_request_id_prerun")
def restore_request_id(sender=None, task_id=None, task=None, **kwargs):
    """Make the published request id current while the task runs (an eager task keeps the caller's)."""
    if not is_own_task(task if task is not None else sender):
        return
    if not getattr(getattr(task, "request", None), "is_eager", False) and not any(
        conn.in_atomic_block for conn in connections.all(initialized_only=True)
    ):
        close_old_connections()
    request_id = _incoming_request_id(task) or get_request_id() or observability.clean_request_id(task_id)
    token = set_request_id(request_id)
    _running[task_id] = (token, time.monotonic())


@signals.task_postrun.connect(weak=False, dispatch_uid="wecom_request_id_postrun")
def finish_task(sender=None, task_id=None, task=None, state=None, **kwargs):
    """Record the task's metrics and log line, then restore the previous request id."""
    if task_id not in _running:
        # Not one of the app's tasks (prerun skipped it): the host's tasks are not ours to count.
        return
    token, started = _running.pop(task_id, (None, None))
    duration = time.monotonic() - started if started is not None else None
    name = getattr(task, "name", None) or str(sender)
    state = (state or "unknown").lower()
    observability.record_task(name, state, duration)
    fields = {"task": name, "task_id": task_id, "outcome": state}
    if duration is not None:
        fields["duration_ms"] = round(duration * 1000, 1)
    log_event(logger, "celery.task", level=logging.INFO if state != "failure" else logging.WARNING, **fields)
    if token is not None:
        try:
            reset_request_id(token)
        except ValueError:
            # Created in another context (a pool that ran prerun elsewhere): nothing to restore here.
            pass


@signals.worker_init.connect(weak=False, dispatch_uid="wecom_worker_metrics")
def serve_worker_metrics(**kwargs):
    """Prune stale metric files and, with ``WECOM["WORKER_METRICS_PORT"]`` set, serve /metrics for this
    worker."""
    from wecom_integration.conf import wecom_settings

    observability.prune_multiprocess_dir()
    port = wecom_settings.WORKER_METRICS_PORT
    if not port:
        return
    from prometheus_client import start_http_server

    addr = wecom_settings.WORKER_METRICS_ADDR or "127.0.0.1"
    start_http_server(int(port), addr=addr, registry=observability.metrics_registry())
    log_event(logger, "worker.metrics", addr=addr, port=int(port), multiprocess=bool(observability.multiprocess_dir()))


@signals.worker_process_shutdown.connect(weak=False, dispatch_uid="wecom_worker_process_dead")
def mark_child_dead(pid=None, **kwargs):
    """Let the multi-process collector forget an exited prefork child's live gauges."""
    if observability.multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
