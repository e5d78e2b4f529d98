"""What operators see: Prometheus metrics, structured JSON logs and the request id that ties them together.

Metrics
    Module-level ``prometheus_client`` objects, fed by the small ``record_*`` functions below (callers never
    touch the metric objects, so names and labels stay in one place) and by a listener on the WeCom
    client's ``listeners`` hook (API calls, token fetches, retries, rate-budget waits). Labels are bounded
    sets (callback kind, refusal reason, API path, errcode, task name): never a tenant, user or corp, which
    would grow without limit; those go in the logs.

    With several processes per host (gunicorn workers, Celery prefork children) each process counts on
    its own. Setting the environment variable ``PROMETHEUS_MULTIPROC_DIR`` before the process starts
    switches prometheus_client to its multi-process mode (one mmap file per process in that directory);
    with the same directory in ``WECOM["METRICS_MULTIPROC_DIR"]``, ``metrics_registry()`` merges them.
    This repository's ``gunicorn.conf.py`` prepares the directory for the web processes and
    ``celery_signals`` for the workers.

Logs
    ``log_event(logger, "callback.handled", tenant=3, kind="contacts", outcome="ok", duration_ms=12)``
    writes one line. With ``JsonFormatter`` it is a JSON object carrying the request id; with a plain
    formatter it reads ``callback.handled tenant=3 kind=contacts …``. ``SecretScrubFilter`` on the handler
    is the last line of defence: anything that looks like ``access_token=…``, ``corpsecret=…`` or a
    Bearer token is masked whatever logger produced it.

Request ids
    ``RequestIdMiddleware`` takes ``X-Request-Id`` (or makes one) and sets the context variable read
    here; ``celery_signals`` carries it in the task message headers and restores it in the worker, so a
    callback's log lines and its task's log lines share one id.
"""

import json
import logging
import os
import re
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

# Metrics ------------------------------------------------------------------------------------------------

CALLBACKS_RECEIVED = Counter(
    "wecom_callbacks_received",
    "Callback requests by kind and outcome: accepted (stored and queued), duplicate (a retry of a stored "
    "event) or refused.",
    ["kind", "outcome"],
)
CALLBACKS_REFUSED = Counter(
    "wecom_callbacks_refused", "Callback requests refused, by reason (signature, decrypt, receiveid …).",
    ["kind", "reason"],
)
CALLBACKS_HANDLED = Counter("wecom_callbacks_handled", "Callback events handled successfully.", ["kind"])
CALLBACKS_FAILED = Counter(
    "wecom_callbacks_failed", "Callback handling attempts that raised (a retried event counts each time).",
    ["kind"],
)
CALLBACK_LAG = Histogram(
    "wecom_callback_handling_lag_seconds",
    "Seconds from a callback's receipt by the web process to the end of its handling in a worker.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
SYNC_RUNS = Counter("wecom_sync_runs", "Sync runs finished, by kind and outcome.", ["kind", "outcome"])
SYNC_DURATION = Histogram(
    "wecom_sync_duration_seconds",
    "Duration of a sync run, by kind.",
    ["kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
SYNC_PHASE_DURATION = Histogram(
    "wecom_sync_phase_duration_seconds",
    "Duration of one phase of a sync run.",
    ["kind", "phase"],
    buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600),
)
API_CALLS = Counter("wecom_api_calls", "WeCom API calls by path and errcode ('network' when no answer).",
                    ["path", "errcode"])
API_CALL_DURATION = Histogram(
    "wecom_api_call_duration_seconds",
    "Duration of one WeCom API request.",
    ["path"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_RETRIES = Counter("wecom_api_retries", "WeCom API calls repeated, by reason (token, busy, network).",
                      ["reason"])
TOKEN_FETCHES = Counter("wecom_token_fetches", "gettoken calls, by secret kind.", ["kind"])
RATE_BUDGET_WAITS = Counter("wecom_rate_budget_waits", "Times a call waited for the per-corp rate budget.")
RATE_BUDGET_WAIT_SECONDS = Counter(
    "wecom_rate_budget_wait_seconds", "Seconds spent waiting for the per-corp rate budget."
)
MESSAGES_SENT = Counter(
    "wecom_messages_sent", "Messages sent through message/send, by type and outcome (sent, partial, failed).",
    ["msgtype", "outcome"],
)
TASKS = Counter("wecom_tasks", "Celery tasks finished, by task and state.", ["task", "state"])
TASK_DURATION = Histogram(
    "wecom_task_duration_seconds",
    "Celery task run time, by task.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800),
)


def _label(value):
    # Labels must stay a bounded, printable set even if a caller passes something unexpected.
    text = str(value) if value not in (None, "") else "none"
    return text[:64]


# The counters of record_callback_received by (kind, duplicate): its labels() lookup on every callback cost
# more than the increment. Bounded: a kind is one of the three callback URLs'.
_received_counters: dict = {}


def record_callback_received(kind, *, duplicate=False):
    """Count a verified callback request: stored and queued, or recognised as a retry of a stored one."""
    counter = _received_counters.get((kind, duplicate))
    if counter is None:
        counter = CALLBACKS_RECEIVED.labels(_label(kind), "duplicate" if duplicate else "accepted")
        if len(_received_counters) < 64:
            _received_counters[(kind, duplicate)] = counter
    counter.inc()


def record_callback_refused(kind, reason):
    """Count a callback request refused before it was stored (bad signature, undecryptable, …)."""
    CALLBACKS_RECEIVED.labels(_label(kind), "refused").inc()
    CALLBACKS_REFUSED.labels(_label(kind), _label(reason)).inc()


def record_callback_handled(kind, received_at=None):
    """Count a handled callback event; ``received_at`` (an aware datetime) feeds the lag histogram."""
    CALLBACKS_HANDLED.labels(_label(kind)).inc()
    if received_at is not None:
        lag = (datetime.now(UTC) - received_at).total_seconds()
        CALLBACK_LAG.labels(_label(kind)).observe(max(lag, 0.0))


def record_callbacks_handled(rows):
    """:func:`record_callback_handled` for a batch of handled CallbackEvent rows: one count per kind, and
    each row's lag observed (the labelled children looked up once per kind, not once per row)."""
    now = datetime.now(UTC)
    by_kind = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row.received_at)
    for kind, received in by_kind.items():
        label = _label(kind)
        CALLBACKS_HANDLED.labels(label).inc(len(received))
        lag = CALLBACK_LAG.labels(label)
        for received_at in received:
            if received_at is not None:
                lag.observe(max((now - received_at).total_seconds(), 0.0))


def record_callback_failed(kind):
    """Count a callback handling attempt that raised."""
    CALLBACKS_FAILED.labels(_label(kind)).inc()


def record_sync_run(kind, outcome, duration_seconds=None):
    """Count a finished sync run (outcome: succeeded, review, failed …) and observe its duration."""
    SYNC_RUNS.labels(_label(kind), _label(outcome)).inc()
    if duration_seconds is not None:
        SYNC_DURATION.labels(_label(kind)).observe(max(float(duration_seconds), 0.0))


def record_sync_phase(kind, phase, duration_seconds):
    """Observe the duration of one sync phase (departments, members, matching …)."""
    SYNC_PHASE_DURATION.labels(_label(kind), _label(phase)).observe(max(float(duration_seconds), 0.0))


def record_message_sent(msgtype, outcome):
    """Count one message/send outcome: sent, partial (some recipients invalid) or failed."""
    MESSAGES_SENT.labels(_label(msgtype), _label(outcome)).inc()


def record_task(task_name, state, duration_seconds=None):
    """Count a finished Celery task and observe its run time (``celery_signals`` calls this)."""
    TASKS.labels(_label(task_name), _label(state)).inc()
    if duration_seconds is not None:
        TASK_DURATION.labels(_label(task_name)).observe(max(float(duration_seconds), 0.0))


def multiprocess_dir():
    """The prometheus_client multi-process directory (``WECOM["METRICS_MULTIPROC_DIR"]``), or None in
    single-process mode."""
    from wecom_integration.conf import wecom_settings

    return wecom_settings.METRICS_MULTIPROC_DIR or None


def metrics_registry():
    """The registry to expose: the merged per-process files in multi-process mode, else the default."""
    path = multiprocess_dir()
    if not path:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def prune_multiprocess_dir(path=None):
    """Delete the metric files of processes that no longer run (a previous run's). Returns the count.

    Call it when a process tree starts, before its children write: files of live processes are kept,
    so two process trees sharing a directory do not erase each other.
    """
    path = path or multiprocess_dir()
    if not path or not os.path.isdir(path):
        return 0
    removed = 0
    for name in os.listdir(path):
        if not name.endswith(".db"):
            continue
        pid = name[:-3].rsplit("_", 1)[-1]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        try:
            os.remove(os.path.join(path, name))
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Request ids ---------------------------------------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-Id"
# Ids come from clients and land in logs and headers: only a short, inert alphabet is accepted.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
_request_id = ContextVar("wecom_request_id", default=None)


def new_request_id():
    """A fresh request id (32 hex characters)."""
    return uuid.uuid4().hex


def clean_request_id(value):
    """``value`` if it is an acceptable request id (1-64 of ``A-Za-z0-9._:@-``), else None."""
    if isinstance(value, str) and _REQUEST_ID_RE.match(value):
        return value
    return None


def get_request_id():
    """The request id of the current request or task, or None."""
    return _request_id.get()


def set_request_id(value):
    """Make ``value`` the current request id; returns a token for ``reset_request_id``."""
    return _request_id.set(value)


def reset_request_id(token):
    """Restore the request id that was current before ``set_request_id`` returned ``token``."""
    _request_id.reset(token)


@contextmanager
def request_id_context(value=None):
    """Run a block under ``value`` (or a new id) as the current request id; yields the id."""
    value = clean_request_id(value) or new_request_id()
    token = _request_id.set(value)
    try:
        yield value
    finally:
        _request_id.reset(token)


# Secret scrubbing ----------------------------------------------------------------------------------------

# name=value, name: value and "name": "value" for anything named like a credential.
_SECRET_PAIR = re.compile(
    r"""(?ix)
    (["']?\b(?:\w*token|corpsecret|\w*secret|encoding_?aes_?key|\w*aes_key|password|passwd)["']?
     \s*[=:]\s*["']?)
    [^\s&"',;)}\]\\]+
    """
)
# "Authorization: Bearer …" / DRF's "Token …": real credentials are long, English words after "token" are not.
_BEARER = re.compile(r"(?i)\b(bearer|token)(\s+)[A-Za-z0-9._~+/=-]{16,}")
# Keys of log_event fields whose values are never written.
_SECRET_KEY = re.compile(
    r"(?i)^(?:.*secret|.*_token|token|access_token|password|passwd|authorization|.*aes_key|encoding_?aes_?key)$"
)


# Neither pattern can match a text that holds none of the words "token", "secret", "aes", "passw" and "bearer",
# case aside. Most log text holds none, and looking for them costs a fraction of the patterns' scan: each log
# line runs several scrubs (issue 19).
# The only non-ASCII characters that re's IGNORECASE matches to an ASCII letter of those words.
_FOLD_TO_ASCII = {0x17F: "s", 0x212A: "k"}  # long s, Kelvin sign


def _may_hold_secret(text):
    lowered = (text if text.isascii() else text.translate(_FOLD_TO_ASCII)).lower()
    return "token" in lowered or "secret" in lowered or "aes" in lowered or "passw" in lowered or "bearer" in lowered


def scrub_text(text):
    """``text`` with credential-looking values (``access_token=…``, ``"corpsecret": "…"``, Bearer …) masked."""
    text = str(text)
    if not _may_hold_secret(text):
        return text
    text = _SECRET_PAIR.sub(r"\1***", text)
    return _BEARER.sub(r"\1\2***", text)


def _field_value(key, value):
    if _SECRET_KEY.match(key):
        return "***"
    if hasattr(value, "_meta") and hasattr(value, "pk"):
        # A model instance: its primary key identifies it without dragging its fields into the log.
        return value.pk
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple | set):
        return [_field_value("", item) for item in value]
    if isinstance(value, dict):
        return {str(k): _field_value(str(k), v) for k, v in value.items()}
    return scrub_text(str(value))


_SPACE = re.compile(r"\s")  # the characters str.isspace() calls space, every one of them


def _plain(value):
    if isinstance(value, str) and value and not _SPACE.search(value):
        return value
    if type(value) is int:  # noqa: E721 (not bool, not an int subclass with its own str)
        return str(value)  # what json.dumps writes for it
    return json.dumps(value, ensure_ascii=False, default=str)


# Logs ----------------------------------------------------------------------------------------------------


def log_event(logger, event, *, level=logging.INFO, exc_info=None, **fields):
    """Write one structured log line for ``event`` with ``fields`` (tenant, kind, outcome, duration_ms …).

    ``logger`` is a Logger or a logger name. Model instances are logged as their primary key; fields named
    like credentials (``*secret``, ``*_token``, ``*aes_key``, ``password``) are masked, and strings are
    scrubbed, so passing a secret by mistake does not leak it.
    """
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    if not logger.isEnabledFor(level):
        return
    clean = {key: _field_value(key, value) for key, value in fields.items()}
    message = event + "".join(f" {key}={_plain(value)}" for key, value in clean.items())
    logger.log(
        level, "%s", message, exc_info=exc_info, stacklevel=2,
        extra={"wecom_event": event, "wecom_fields": clean},
    )


@contextmanager
def timed_event(logger, event, **fields):
    """Log ``event`` when the block ends, with ``duration_ms`` and ``outcome`` (ok, or the exception's
    class name, re-raised). Yields a dict: keys set on it are logged too (counts found by the block)."""
    extra = {}
    started = time.monotonic()
    outcome = "ok"
    try:
        yield extra
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log_event(logger, event, level=level, **{**fields, **extra, "outcome": outcome, "duration_ms": duration_ms})


# Names a JSON line reserves for itself; a field with one of these names is written as "field_<name>".
_RESERVED = frozenset({"ts", "level", "logger", "event", "message", "request_id", "exc"})


def _record_request_id(record):
    # django.request logs a failed response after the middleware returned, but passes the request along.
    return (
        getattr(record, "request_id", None)
        or getattr(getattr(record, "request", None), "request_id", None)
        or get_request_id()
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, request_id, then ``event`` and its fields for
    ``log_event`` lines, or ``message`` for any other record, and ``exc`` for a traceback. Messages and
    tracebacks are scrubbed of credentials (``log_event`` fields already are)."""

    def format(self, record):
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        request_id = _record_request_id(record)
        if request_id and request_id != "-":
            entry["request_id"] = request_id
        event = getattr(record, "wecom_event", None)
        if event:
            entry["event"] = event
            for key, value in (getattr(record, "wecom_fields", None) or {}).items():
                entry[f"field_{key}" if key in _RESERVED else key] = value
        else:
            entry["message"] = scrub_text(record.getMessage())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = scrub_text(record.exc_text)
        if record.stack_info:
            entry["stack"] = scrub_text(self.formatStack(record.stack_info))
        # Scrubbed before encoding: masking the encoded line could cut a JSON escape in half.
        return json.dumps(entry, ensure_ascii=False, default=str)


class SecretScrubFilter(logging.Filter):
    """Masks credential-looking values in every record's message and traceback (attach it to handlers)."""

    def filter(self, record):
        message = record.getMessage()
        scrubbed = scrub_text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            # Formatted here so the scrubbed text is what every formatter prints (they reuse exc_text).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        return True


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (``-`` outside a request or task) for plain format strings."""

    def filter(self, record):
        if not getattr(record, "request_id", None):
            record.request_id = _record_request_id(record) or "-"
        return True


# The WeCom client's counters hook ------------------------------------------------------------------------

api_logger = logging.getLogger("wecom_integration.api")


def on_client_event(event, data):
    """Listener for ``wecom_integration.client.listeners``: metrics and one log line per WeCom call."""
    if event == "call":
        errcode = data.get("errcode", 0)
        path = data.get("path", "")
        API_CALLS.labels(_label(path), _label(errcode if errcode is not None else 0)).inc()
        seconds = data.get("seconds")
        if seconds is not None:
            API_CALL_DURATION.labels(_label(path)).observe(max(float(seconds), 0.0))
        fields = dict(data)
        if seconds is not None:
            fields.pop("seconds")
            fields["duration_ms"] = round(float(seconds) * 1000, 1)
        fields["outcome"] = "ok" if errcode in (0, None) else "error"
        log_event(api_logger, "wecom.call", **fields)
    elif event == "gettoken":
        TOKEN_FETCHES.labels(_label(data.get("kind"))).inc()
        log_event(api_logger, "wecom.gettoken", **data)
    elif event == "retry":
        API_RETRIES.labels(_label(data.get("reason"))).inc()
    elif event == "rate_budget_wait":
        RATE_BUDGET_WAITS.inc()
        RATE_BUDGET_WAIT_SECONDS.inc(max(float(data.get("seconds") or 0.0), 0.0))
        log_event(api_logger, "wecom.rate_budget_wait", **data)


def install():
    """Hook the metrics and logs onto the WeCom client's listeners. Idempotent; AppConfig.ready() calls it
    (and imports ``celery_signals``, whose receivers connect on import)."""
    from wecom_integration.client import listeners

    if on_client_event not in listeners:
        listeners.append(on_client_event)
    # The Celery signal receivers connect when AppConfig.ready() imports operations.celery_signals.
