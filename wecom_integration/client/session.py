"""One ``requests.Session`` per process, so every call reuses pooled keep-alive connections.

A session must not cross a fork (the child would share the parent's sockets), so it is keyed by PID
and rebuilt in a forked child. urllib3 never retries: the errcode policy in ``base.py`` decides.
"""

import os
import threading

import requests
from requests.adapters import HTTPAdapter

# Celery threads/gevent and the bench use up to a few dozen concurrent calls per process.
POOL_MAXSIZE = 32

_lock = threading.Lock()
_session = None
_session_pid = None


def get_session():
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        with _lock:
            if _session is None or _session_pid != pid:
                _session = _new_session()
                _session_pid = pid
    return _session


def _new_session():
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_MAXSIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "django-wecom-integration"
    return session


def _after_fork_in_child():
    global _lock, _session, _session_pid
    # The parent may have held the lock while forking; the child starts with a fresh one.
    _lock = threading.Lock()
    _session = None
    _session_pid = None


os.register_at_fork(after_in_child=_after_fork_in_child)
