"""pytest plugin: after the whole run, no secret appears in any log line. Registered in tests/conftest.py::

    pytest_plugins = [..., "tests.leakcheck"]

(or for one run: ``pytest -p tests.leakcheck``). It collects every secret the run creates — each saved
WeComConfig's secrets, Tokens and EncodingAESKeys, every fake WeCom's secrets and the access tokens it
issues, DRF API tokens, SECRET_KEY and WECOM_FIELD_KEYS — and every log record of the test process
(a handler on the root logger, whatever level the loggers let through), plus the log files of the
processes the tests started (gunicorn, Celery, redis: the ``*.log`` files under pytest's temporary
directory). At the end of the session any secret found in them fails the run (exit status 1) with a
report saying where, the secret itself masked.

Secrets shorter than MIN_LENGTH are not tracked: the published test vectors use the token "123456", which
would match any number in any log line and protects nothing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

MIN_LENGTH = 8
# Log files bigger than this are read in part (head and tail): a runaway log must not stall the report.
MAX_LOG_BYTES = 64 * 1024 * 1024
_NGRAM = MIN_LENGTH


class _Secrets:
    """Secret values, indexed by their first MIN_LENGTH characters for a linear scan of text."""

    def __init__(self):
        self._lock = threading.Lock()
        self.by_prefix: dict[str, set[str]] = {}
        self.sources: dict[str, str] = {}

    def add(self, value, source):
        if not isinstance(value, str) or len(value) < MIN_LENGTH:
            return
        with self._lock:
            self.by_prefix.setdefault(value[:_NGRAM], set()).add(value)
            self.sources.setdefault(value, source)

    def __len__(self):
        return len(self.sources)

    def found_in(self, text):
        """The secrets that occur in ``text``."""
        found = set()
        by_prefix = self.by_prefix
        for index in range(len(text) - _NGRAM + 1):
            candidates = by_prefix.get(text[index : index + _NGRAM])
            if candidates:
                found.update(secret for secret in candidates if text.startswith(secret, index))
        return found


class _Capture(logging.Handler):
    """Keeps the text of every record once (a message logged a thousand times is scanned once)."""

    def __init__(self):
        super().__init__(level=logging.NOTSET)
        self.texts: dict[str, str] = {}

    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is the test's problem, not a leak
            text = str(record.msg)
        parts = [text]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            parts.append(record.stack_info)
        # Structured loggers put values in extra attributes; those are log output too.
        parts.extend(str(value) for key, value in vars(record).items() if key not in _STANDARD_ATTRS)
        joined = "\n".join(parts)
        self.texts.setdefault(joined, record.name)


_STANDARD_ATTRS = set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime"}

SECRETS = _Secrets()
CAPTURE = _Capture()


def _mask(secret):
    return f"{secret[:3]}…{secret[-2:]} ({len(secret)} chars)"


def _collect_config(sender, instance, **kwargs):
    for name in getattr(instance, "WRITE_ONLY_FIELDS", ()):
        SECRETS.add(getattr(instance, name, ""), f"WeComConfig.{name} of tenant {instance.tenant_id}")


def _collect_api_token(sender, instance, **kwargs):
    SECRETS.add(getattr(instance, "key", ""), "API token")


def _instrument_fake():
    """Learn each fake WeCom's secrets when it is built and each access token when it is issued."""
    try:
        from wecom_integration.testing.server import FakeWeCom
    except ImportError:
        return
    if getattr(FakeWeCom, "_leakcheck", False):
        return
    init, issue = FakeWeCom.__init__, FakeWeCom._issue_token

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        for name in ("secret", "contact_secret", "customer_secret"):
            SECRETS.add(getattr(self, name, ""), f"FakeWeCom.{name}")

    def _issue_token(self, kind):
        token, expires_in = issue(self, kind)
        SECRETS.add(token, f"access_token ({kind}) issued by the fake WeCom")
        return token, expires_in

    FakeWeCom.__init__ = __init__
    FakeWeCom._issue_token = _issue_token
    FakeWeCom._leakcheck = True


def _attach():
    root = logging.getLogger()
    if CAPTURE not in root.handlers:
        root.addHandler(CAPTURE)


def pytest_sessionstart(session):
    # Django is set up by now (pytest-django does it while loading the conftests), so its LOGGING dictConfig
    # has already replaced the root handlers and will not remove this one.
    from django.conf import settings
    from django.db.models.signals import post_save

    _attach()
    _instrument_fake()
    SECRETS.add(settings.SECRET_KEY, "SECRET_KEY")
    for key in getattr(settings, "WECOM_FIELD_KEYS", []) or []:
        SECRETS.add(key, "WECOM_FIELD_KEYS")
    post_save.connect(_collect_config, sender="wecom_integration.WeComConfig", dispatch_uid="leakcheck-config")
    post_save.connect(_collect_api_token, sender="authtoken.Token", dispatch_uid="leakcheck-token")


def pytest_runtest_setup(item):
    # A test may reconfigure logging (override_settings(LOGGING=...)); put the handler back.
    _attach()


def _process_logs(session):
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return []
    try:
        base = factory.getbasetemp()
    except (OSError, ValueError):
        return []
    return sorted(Path(base).rglob("*.log"))


def _read(path):
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if size <= MAX_LOG_BYTES:
            return handle.read().decode("utf-8", "replace")
        head = handle.read(MAX_LOG_BYTES // 2)
        handle.seek(size - MAX_LOG_BYTES // 2)
        return (head + handle.read()).decode("utf-8", "replace")


_SCANNED = {"files": 0}


def find_leaks(session=None):
    """[(where, masked secret, what it is)] for every secret found in the captured logs."""
    leaks = []
    for text, logger in CAPTURE.texts.items():
        for secret in SECRETS.found_in(text):
            leaks.append((f"log record of {logger!r}", _mask(secret), SECRETS.sources[secret]))
    for path in _process_logs(session) if session is not None else []:
        try:
            text = _read(path)
        except OSError:
            continue
        _SCANNED["files"] += 1
        for secret in SECRETS.found_in(text):
            leaks.append((f"process log {path}", _mask(secret), SECRETS.sources[secret]))
    return sorted(set(leaks))


_REPORT: list = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    if not len(SECRETS):
        return
    _REPORT[:] = find_leaks(session)
    if _REPORT and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not _REPORT:
        terminalreporter.write_line(
            f"leakcheck: {len(SECRETS)} secrets, {len(CAPTURE.texts)} distinct log records and "
            f"{_SCANNED['files']} process logs: no secret logged"
        )
        return
    terminalreporter.section("secrets found in logs (leakcheck)", red=True, bold=True)
    for where, masked, what in _REPORT[:200]:
        terminalreporter.write_line(f"{what} [{masked}] in {where}")
    if len(_REPORT) > 200:
        terminalreporter.write_line(f"… and {len(_REPORT) - 200} more")
