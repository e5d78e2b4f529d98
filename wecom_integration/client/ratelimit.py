"""A client-side call budget per corp, shared by every process through Django's cache.

WeCom allows 10,000 calls per minute per corp and API, and punishes crossing it by blocking the corp
for 60 s (or an hour for the hourly limit): https://developer.work.weixin.qq.com/document/path/90454
A bulk sync that slows itself down finishes sooner than one that gets blocked, so each call takes one
unit from a fixed-window counter (``cache.add`` + ``cache.incr``, atomic on Redis) and, when the
window's budget is spent, sleeps until the next window.

WeCom counts calls in minute windows of its own whose start we cannot see. With a one-minute budget
window, a burst at the end of one of ours and another at the start of the next can fall in the same
WeCom minute — twice the limit — and the corp is blocked. So by default the per-minute budget is spread
over one-second windows: any 60 s span overlaps at most 61 of them, so ``per_minute // 61`` a second
never exceeds the budget in any WeCom minute, at a cost of under 2% of the rate.

WeCom has three more limits (doc 90454, and the facts file): 150,000 calls an hour per corp, and per
egress IP 20,000 a minute and 600,000 an hour, each blocking for a minute or an hour once crossed. The
budget covers them all:

- the IP's minute limit like the corp's: one-second windows of ``RATE_BUDGET_IP_PER_MINUTE // 61``, under
  one key for the whole deployment (one egress IP; give each egress IP its own cache or key prefix);
- the hours with a sliding window over minute buckets, ``RATE_BUDGET_PER_HOUR`` per corp and
  ``RATE_BUDGET_IP_PER_HOUR`` per IP. A unit is taken only if the current bucket and the 60 before it hold
  fewer than the limit. Any 60-minute span touches at most 61 consecutive buckets, and when its last call
  was taken those 61 buckets (which include every bucket of the span) held at most the limit: so no
  WeCom hour, wherever it starts, sees more. Spreading an hour over minutes, as the minute budget is
  spread over seconds, would slow a 100,000-member sync from 11 minutes to 44; the sliding window lets
  it run at the minute rate while the hour allows.

Reading 61 buckets per call would cost a Redis round trip of 61 keys each time, so a process reserves
hourly units in blocks (``HOUR_BLOCK``, 100) and spends them locally; a block reserved and not used within
the hour is simply counted (the budget errs on the safe side). Two processes reserving at once may
overshoot by a block each, which is why the defaults stay 10% under WeCom's figures.

When an hour is spent, the wait is the time until enough of the oldest buckets leave the window. Short
waits (under ``max_wait``) are slept; longer ones raise :class:`WeComRateLimited` with ``retry_after`` and
``scope`` "hour" so a task can wait instead of being blocked by WeCom for an hour
(:func:`hourly_headroom` lets a sync check before it starts).
"""

import hashlib
import math
import threading
import time

from django.core.cache import caches

from wecom_integration.client.counters import stats
from wecom_integration.client.errors import WeComRateLimited
from wecom_integration.conf import wecom_settings

WINDOW_SECONDS = 1.0
#: How many one-second windows any 60-second span can touch.
WINDOWS_PER_MINUTE = 61
#: Minute buckets of the sliding hour: the current one and the 60 before it.
HOUR_BUCKETS = 61
#: Hourly units a process reserves at once.
HOUR_BLOCK = 100
#: The deployment's egress IP, as the key its shared windows are counted under.
IP_SCOPE = "egress-ip"
#: The wall clock the windows are cut by (the benches and tests replace it to play an hour in seconds).
clock = time.time


class HourlyWindow:
    """A sliding hour over minute buckets in the cache, for one scope (a corp, or the egress IP)."""

    _local: dict[str, int] = {}
    _lock = threading.Lock()

    def __init__(self, scope, limit, cache_alias="default"):
        self.scope = scope
        self.limit = limit
        self.cache_alias = cache_alias

    def _key(self, bucket):
        return f"wecom:budget:h:{self.scope}:{bucket}"

    def _counts(self, now):
        current = int(now // 60)
        buckets = list(range(current - HOUR_BUCKETS + 1, current + 1))
        found = caches[self.cache_alias].get_many([self._key(b) for b in buckets])
        return current, [(b, int(found.get(self._key(b)) or 0)) for b in buckets]

    def used(self, now=None):
        return sum(count for _b, count in self._counts(clock() if now is None else now)[1])

    def headroom(self, now=None):
        """Units the hour still allows (what is reserved but unspent counts as used)."""
        return max(0, self.limit - self.used(now))

    def wait_for(self, units, now=None):
        """Seconds until ``units`` more fit in the window (0: they fit now); None if they never can."""
        if units > self.limit:
            return None
        now = clock() if now is None else now
        _current, counts = self._counts(now)
        used = sum(count for _b, count in counts)
        if used + units <= self.limit:
            return 0.0
        for bucket, count in counts:
            used -= count
            if used + units <= self.limit:
                # That bucket leaves the window when the bucket HOUR_BUCKETS after it begins.
                return max(0.0, (bucket + HOUR_BUCKETS) * 60 - now)
        return None

    def take(self, now):
        """Take one unit; 0.0 when taken, else the seconds until one can be."""
        key = self.scope
        with self._lock:
            if self._local.get(key, 0) > 0:
                self._local[key] -= 1
                return 0.0
        current, counts = self._counts(now)
        free = self.limit - sum(count for _b, count in counts)
        if free <= 0:
            return self.wait_for(1, now) or 60.0
        # Blocks shrink with small limits (tests, tiny deployments) so reservations never waste much.
        block = min(HOUR_BLOCK, max(1, self.limit // 1000), free)
        cache = caches[self.cache_alias]
        bucket_key = self._key(current)
        cache.add(bucket_key, 0, HOUR_BUCKETS * 60 + 60)
        try:
            cache.incr(bucket_key, block)
        except ValueError:
            cache.add(bucket_key, block, HOUR_BUCKETS * 60 + 60)
        with self._lock:
            self._local[key] = self._local.get(key, 0) + block - 1
        return 0.0

    @classmethod
    def forget_reservations(cls):
        """Drop this process's reserved units (tests that clear the cache)."""
        with cls._lock:
            cls._local.clear()


def hourly_headroom(corp_id, cache_alias="default"):
    """How many more calls the hour allows this corp, the smaller of its own and the egress IP's window."""
    corp = HourlyWindow(_corp_hash(corp_id), wecom_settings.RATE_BUDGET_PER_HOUR, cache_alias)
    ip = HourlyWindow(IP_SCOPE, wecom_settings.RATE_BUDGET_IP_PER_HOUR, cache_alias)
    room = [w.headroom() for w in (corp, ip) if w.limit]
    return min(room) if room else None


def hourly_wait(corp_id, units, cache_alias="default"):
    """Seconds until ``units`` calls fit in this corp's and the IP's hour (0 now; None never)."""
    waits = []
    for window in (HourlyWindow(_corp_hash(corp_id), wecom_settings.RATE_BUDGET_PER_HOUR, cache_alias),
                   HourlyWindow(IP_SCOPE, wecom_settings.RATE_BUDGET_IP_PER_HOUR, cache_alias)):
        if window.limit:
            wait = window.wait_for(units)
            if wait is None:
                return None
            waits.append(wait)
    return max(waits, default=0.0)


def _exhausted(name):
    return "client-side rate budget exhausted" if name == "minute" else f"client-side {name} budget exhausted"


def _corp_hash(corp_id):
    return hashlib.sha256(corp_id.encode()).hexdigest()[:16]


class RateBudget:
    """``per_window`` calls per ``window`` seconds for one corp.

    ``per_window`` defaults to RATE_BUDGET_PER_MINUTE spread over one-second windows (see the module
    docstring) and ``max_wait`` to RATE_BUDGET_MAX_WAIT, read at each call so a settings override applies
    to clients already built. A budget of 0 means no client-side limit.
    """

    def __init__(
        self, corp_id, *, window=WINDOW_SECONDS, per_window=None, max_wait=None, cache_alias="default"
    ):
        self.corp_hash = _corp_hash(corp_id)
        self.window = float(window)
        self._per_window = per_window
        self._max_wait = max_wait
        self.cache_alias = cache_alias

    @property
    def per_window(self):
        if self._per_window is not None:
            return self._per_window
        per_minute = wecom_settings.RATE_BUDGET_PER_MINUTE
        if not per_minute:
            return 0
        if self.window >= 60:
            # A window of a minute or more (tests, hourly budgets) takes the setting as it is.
            return per_minute
        return max(1, int(per_minute * self.window) // WINDOWS_PER_MINUTE)

    @property
    def max_wait(self):
        return self._max_wait if self._max_wait is not None else wecom_settings.RATE_BUDGET_MAX_WAIT

    def key(self, window_index):
        return f"wecom:budget:{self.corp_hash}:{int(self.window * 1000)}:{window_index}"

    def spend(self, path=""):
        """Take one call from every window (the corp's and the IP's minute, the corp's and the IP's hour),
        sleeping when one is spent for less than ``max_wait``.

        Raises WeComRateLimited when the wait would exceed ``max_wait`` (``scope`` says which window).
        """
        waited = self._spend_window(self.corp_hash, self.per_window, path, "minute")
        if self._per_window is None:
            ip_per_minute = wecom_settings.RATE_BUDGET_IP_PER_MINUTE
            if ip_per_minute:
                ip_limit = max(1, int(ip_per_minute * self.window) // WINDOWS_PER_MINUTE)
                waited += self._spend_window(IP_SCOPE, ip_limit, path, "ip-minute", waited)
            for scope, limit, name in ((self.corp_hash, wecom_settings.RATE_BUDGET_PER_HOUR, "hour"),
                                       (IP_SCOPE, wecom_settings.RATE_BUDGET_IP_PER_HOUR, "ip-hour")):
                if limit:
                    waited += self._spend_hour(HourlyWindow(scope, limit, self.cache_alias), path, name, waited)

    def _spend_hour(self, window, path, name, waited):
        slept = 0.0
        while True:
            wait = window.take(clock())
            if not wait:
                return slept
            if waited + slept + wait > self.max_wait:
                raise WeComRateLimited(
                    None, _exhausted(name), path, None,
                    retry_after=max(1, math.ceil(wait)), scope=name,
                )
            stats.record("rate_budget_wait", corp=self.corp_hash, seconds=wait)
            time.sleep(wait + 0.001)
            slept += wait

    def _spend_window(self, scope, limit, path, name, waited=0.0):
        """One unit of a fixed window of ``self.window`` seconds under ``scope``; the seconds slept."""
        if not limit:
            return 0.0
        cache = caches[self.cache_alias]
        started_waiting = waited
        # The counter outlives its window so a late incr never lands on a missing key, with at least a
        # second to spare because cache timeouts are whole seconds on Redis.
        key_timeout = max(2, math.ceil(self.window * 2))
        waited = started_waiting
        # Each pass either returns, raises or sleeps into a later window; max_wait bounds the sleeping.
        while True:
            now = clock()
            index = int(now // self.window)
            key = self.key(index) if scope == self.corp_hash else self.key(index).replace(self.corp_hash, scope, 1)
            # One round trip in the common case (the window's counter exists): incr first, create the
            # counter only when it is missing, and incr again if another process created it meanwhile.
            try:
                used = cache.incr(key)
            except ValueError:
                if cache.add(key, 1, key_timeout):
                    used = 1
                else:
                    try:
                        used = cache.incr(key)
                    except ValueError:
                        # Evicted again (LocMem under memory pressure): count this call as the first.
                        used = 1
            if used <= limit:
                return waited - started_waiting
            wait = (index + 1) * self.window - now
            if waited + wait > self.max_wait:
                raise WeComRateLimited(
                    None,
                    _exhausted(name),
                    path,
                    None,
                    retry_after=max(1, math.ceil(wait)),
                    scope=name,
                )
            stats.record("rate_budget_wait", corp=self.corp_hash, seconds=wait)
            # A hair past the boundary so the next pass lands in the new window.
            time.sleep(wait + 0.001)
            waited += wait
