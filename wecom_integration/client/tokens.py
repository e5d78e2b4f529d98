"""Access tokens: one per (corp, secret), shared by all processes, fetched once at a time.

https://developer.work.weixin.qq.com/document/path/91039 : a token lasts ``expires_in`` (7200) seconds,
WeCom may invalidate it earlier, and gettoken is itself rate limited, so every worker must share one
token per secret instead of fetching its own.

- The store (``CacheTokenStore``, Django's cache by default) keeps ``{"token", "expires_at"}`` under a
  key made of the CorpID, the secret kind and a truncated sha256 of the secret: the secret itself never
  reaches the cache.
- A token is stored for ``expires_in - TOKEN_REFRESH_MARGIN`` seconds, so it is replaced before WeCom
  expires it and an in-flight call never carries a token about to die.
- Fetching is single-flight: within a process a per-key thread lock; across processes a lock taken
  with ``add`` (SET NX on Redis). The winner calls gettoken; the others poll the store until the new
  token appears, for at most TOKEN_LOCK_TIMEOUT seconds.
- Each process remembers tokens it has seen until their stored expiry, saving a cache round-trip per
  call. Invalidating drops the token from memory and from the store.

Host projects with their own storage pass any object with ``CacheTokenStore``'s five methods as
``token_store``.
"""

import hashlib
import math
import os
import threading
import time
import uuid

from django.core.cache import caches

from wecom_integration.client.errors import WeComNetworkError
from wecom_integration.conf import wecom_settings


def token_key(corp_id, kind, secret, api_base=""):
    """The store key for one secret's token. The API base is hashed in too, so a token issued by one
    server (a test fake, a proxy) is never offered to another."""
    digest = hashlib.sha256(f"{api_base}\n{corp_id}\n{kind}\n{secret}".encode()).hexdigest()[:24]
    return f"wecom:token:{corp_id}:{kind}:{digest}"


class CacheTokenStore:
    """Tokens in a Django cache. ``add`` is atomic on Redis and within one process on LocMem; with
    LocMem each process has its own cache, so single-flight then holds per process only."""

    def __init__(self, cache_alias="default"):
        self.cache_alias = cache_alias

    @property
    def cache(self):
        return caches[self.cache_alias]

    def get(self, key):
        """The stored ``{"token": str, "expires_at": float}`` or None."""
        return self.cache.get(key)

    def set(self, key, entry, timeout):
        self.cache.set(key, entry, timeout)

    def delete(self, key, token=None):
        """Delete the entry; with ``token``, only if it still holds that token (another worker may have
        stored a fresh one meanwhile, which must survive)."""
        if token is not None:
            entry = self.cache.get(key)
            if not entry or entry.get("token") != token:
                return
        self.cache.delete(key)

    def acquire_lock(self, key, owner, timeout):
        return self.cache.add(key, owner, timeout)

    def release_lock(self, key, owner):
        if self.cache.get(key) == owner:
            self.cache.delete(key)


# Tokens this process has seen: key -> (token, expires_at), each valid until its stored expiry.
_memo = {}
_memo_lock = threading.Lock()
# One thread lock per key, so the threads of a process wait on each other instead of polling the store.
_flight_locks = {}


def _memo_get(key):
    item = _memo.get(key)
    if item and item[1] > time.time():
        return item[0]
    return None


def _memo_put(key, token, expires_at):
    with _memo_lock:
        _memo[key] = (token, expires_at)


def _memo_drop(key, token=None):
    with _memo_lock:
        item = _memo.get(key)
        if item and (token is None or item[0] == token):
            del _memo[key]


def clear_memo():
    """Forget every token this process remembers (tests call this with ``cache.clear()``)."""
    with _memo_lock:
        _memo.clear()


def _flight_lock(key):
    with _memo_lock:
        lock = _flight_locks.get(key)
        if lock is None:
            lock = _flight_locks[key] = threading.Lock()
        return lock


def _after_fork_in_child():
    global _memo_lock
    # Locks held by other threads at fork time would stay held forever in the child.
    _memo_lock = threading.Lock()
    _flight_locks.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _valid(entry):
    return bool(entry) and entry.get("expires_at", 0) > time.time() and bool(entry.get("token"))


def stored_lifetime(expires_in):
    """Seconds to keep a token that WeCom says lives ``expires_in`` seconds. The refresh margin is
    capped at half the lifetime so a short-lived token is still reused."""
    expires_in = float(expires_in)
    return max(expires_in - wecom_settings.TOKEN_REFRESH_MARGIN, expires_in / 2)


class AccessTokens:
    """The token of one (corp, secret). ``fetch()`` calls gettoken and returns (token, expires_in)."""

    poll_interval = 0.02
    max_poll_interval = 0.2

    def __init__(self, key, fetch, store):
        self.key = key
        self.lock_key = key + ":lock"
        self._fetch = fetch
        self.store = store

    def get(self):
        token = _memo_get(self.key)
        if token:
            return token
        lock_timeout = wecom_settings.TOKEN_LOCK_TIMEOUT
        lock = _flight_lock(self.key)
        if not lock.acquire(timeout=lock_timeout + 1):
            raise WeComNetworkError(None, "timed out waiting for the access token", "gettoken")
        try:
            token = _memo_get(self.key)
            if token:
                return token
            entry = self.store.get(self.key)
            if _valid(entry):
                _memo_put(self.key, entry["token"], entry["expires_at"])
                return entry["token"]
            return self._fetch_single_flight(lock_timeout)
        finally:
            lock.release()

    def refresh(self):
        """Fetch a new token now, whatever is stored (the admin's "Test connection")."""
        return self._fetch_and_store()

    def invalidate(self, token=None):
        """Forget the token (only if it is still ``token``, when given) so the next call fetches anew."""
        _memo_drop(self.key, token)
        self.store.delete(self.key, token)

    def _fetch_single_flight(self, lock_timeout):
        owner = uuid.uuid4().hex
        # A bit longer than the lock lives, so a lock abandoned by a killed worker expires and is taken
        # over before waiters give up.
        deadline = time.monotonic() + lock_timeout + 1
        interval = self.poll_interval
        while True:
            if self.store.acquire_lock(self.lock_key, owner, max(1, math.ceil(lock_timeout))):
                try:
                    # The previous holder may have stored a token between our read and our lock.
                    entry = self.store.get(self.key)
                    if _valid(entry):
                        _memo_put(self.key, entry["token"], entry["expires_at"])
                        return entry["token"]
                    return self._fetch_and_store()
                finally:
                    self.store.release_lock(self.lock_key, owner)
            entry = self.store.get(self.key)
            if _valid(entry):
                _memo_put(self.key, entry["token"], entry["expires_at"])
                return entry["token"]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WeComNetworkError(
                    None, "timed out waiting for another worker to fetch the access token", "gettoken"
                )
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, self.max_poll_interval)

    def _fetch_and_store(self):
        token, expires_in = self._fetch()
        lifetime = stored_lifetime(expires_in)
        expires_at = time.time() + lifetime
        self.store.set(self.key, {"token": token, "expires_at": expires_at}, max(1, math.ceil(lifetime)))
        _memo_put(self.key, token, expires_at)
        return token
