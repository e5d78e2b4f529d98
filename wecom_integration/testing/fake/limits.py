"""Rate limits and fault injection, as FakeWeCom's dispatcher applies them to every API call.

* rate limits per corp per API like doc 90454 (45009 with the minute/hour blocks), per caller IP over
  every API (20,000 a minute, 600,000 an hour, the same blocks; WeCom names no other errcode for them, so
  45009), and an optional concurrency limit (45033): https://developer.work.weixin.qq.com/document/path/90454;
* fault injection with a seeded random: errcodes, dropped connections, answers slower than the
  client's timeout (the work is still done, like a real slow WeCom), added latency.

FakeWeCom.set_rate_limit and FakeWeCom.set_faults (core) configure these.
"""

from __future__ import annotations

import random
import threading


class _Faults:
    def __init__(self, error_rate, errcodes, latency, drop_rate, timeout_rate, timeout_seconds, paths, seed):
        rates = {"error_rate": error_rate, "drop_rate": drop_rate, "timeout_rate": timeout_rate}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if error_rate + drop_rate + timeout_rate > 1.0:
            raise ValueError("error_rate + drop_rate + timeout_rate must not exceed 1")
        if error_rate and not errcodes:
            raise ValueError("error_rate needs errcodes to choose from")
        self.error_rate = error_rate
        self.errcodes = tuple(errcodes)
        self.latency = latency
        self.drop_rate = drop_rate
        self.timeout_rate = timeout_rate
        self.timeout_seconds = timeout_seconds
        self.paths = None if paths is None else frozenset(_normalise_api(p) for p in paths)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def applies(self, api: str) -> bool:
        return self.paths is None or api in self.paths

    def draw(self) -> tuple[str | None, int]:
        """One roll per request; the three outcomes are exclusive so the rates mean what they say."""
        with self._lock:
            r = self._rng.random()
            if r < self.drop_rate:
                return "drop", 0
            if r < self.drop_rate + self.timeout_rate:
                return "timeout", 0
            if r < self.drop_rate + self.timeout_rate + self.error_rate:
                return "error", self._rng.choice(self.errcodes)
            return None, 0


def _normalise_api(path: str) -> str:
    path = path.strip("/")
    return path[len("cgi-bin/"):] if path.startswith("cgi-bin/") else path


class _RateLimiter:
    """Per-API fixed windows like doc 90454: crossing the minute limit blocks that API for
    ``block_seconds``, crossing the hour limit for ``hour_block_seconds``.
    https://developer.work.weixin.qq.com/document/path/90454"""

    def __init__(self):
        self.enabled = False
        self.per_minute = 10_000
        self.per_hour = 150_000
        self.block_seconds = 60.0
        self.hour_block_seconds = 3600.0
        self.ip_per_minute = 20_000
        self.ip_per_hour = 600_000
        # The corp's calls over all its APIs in an hour: the reading of doc 90454 (per corp), stricter
        # than the per-API reading, so the fake enforces both.
        self.corp_per_hour = 150_000
        self.concurrency: int | None = None
        self._state: dict[str, list] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._state.clear()

    def check(self, api: str, now: float, client_ip: str | None = None) -> int | None:
        """45009 when this call crosses (or falls in the block of) its API's limits for the corp or its
        IP's limits over all APIs; None when it may go."""
        with self._lock:
            if client_ip is not None:
                code = self._count(f"ip:{client_ip}", now, self.ip_per_minute, self.ip_per_hour)
                if code is not None:
                    return code
            code = self._count("corp", now, 10**12, self.corp_per_hour)
            if code is not None:
                return code
            return self._count(api, now, self.per_minute, self.per_hour)

    def _count(self, key: str, now: float, per_minute: int, per_hour: int) -> int | None:
        # [minute window start, minute count, hour window start, hour count, blocked until, block kind]
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = [now, 0, now, 0, 0.0, None]
        if st[5] is not None:
            if now < st[4]:
                return 45009
            if st[5] == "hour":
                st[2], st[3] = now, 0
            st[0], st[1], st[5] = now, 0, None
        if now - st[0] >= 60:
            st[0], st[1] = now, 0
        if now - st[2] >= 3600:
            st[2], st[3] = now, 0
        st[1] += 1
        st[3] += 1
        if st[3] > per_hour:
            st[4], st[5] = now + self.hour_block_seconds, "hour"
            return 45009
        if st[1] > per_minute:
            st[4], st[5] = now + self.block_seconds, "minute"
            return 45009
        return None
