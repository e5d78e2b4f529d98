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
"""

import hashlib
import math
import time

from django.core.cache import caches

from wecom_integration.client.counters import stats
from wecom_integration.client.errors import WeComRateLimited
from wecom_integration.conf import wecom_settings

WINDOW_SECONDS = 1.0
#: How many one-second windows any 60-second span can touch.
WINDOWS_PER_MINUTE = 61


class RateBudget:
    """``per_window`` calls per ``window`` seconds for one corp.

    ``per_window`` defaults to RATE_BUDGET_PER_MINUTE spread over one-second windows (see the module
    docstring) and ``max_wait`` to RATE_BUDGET_MAX_WAIT, read at each call so a settings override applies
    to clients already built. A budget of 0 means no client-side limit.
    """

    def __init__(
        self, corp_id, *, window=WINDOW_SECONDS, per_window=None, max_wait=None, cache_alias="default"
    ):
        self.corp_hash = hashlib.sha256(corp_id.encode()).hexdigest()[:16]
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
        """Take one call from the budget, sleeping into the next window if this one is spent.

        Raises WeComRateLimited when the wait would exceed ``max_wait``.
        """
        limit = self.per_window
        if not limit:
            return
        cache = caches[self.cache_alias]
        # The counter outlives its window so a late incr never lands on a missing key, with at least a
        # second to spare because cache timeouts are whole seconds on Redis.
        key_timeout = max(2, math.ceil(self.window * 2))
        waited = 0.0
        # Each pass either returns, raises or sleeps into a later window; max_wait bounds the sleeping.
        while True:
            now = time.time()
            index = int(now // self.window)
            key = self.key(index)
            cache.add(key, 0, key_timeout)
            try:
                used = cache.incr(key)
            except ValueError:
                # Evicted between add and incr (LocMem under memory pressure): count this call as the
                # first of a fresh counter rather than failing it.
                cache.add(key, 1, key_timeout)
                used = 1
            if used <= limit:
                return
            wait = (index + 1) * self.window - now
            if waited + wait > self.max_wait:
                raise WeComRateLimited(
                    None,
                    "client-side rate budget exhausted",
                    path,
                    None,
                    retry_after=max(1, math.ceil(wait)),
                )
            stats.record("rate_budget_wait", corp=self.corp_hash, seconds=wait)
            # A hair past the boundary so the next pass lands in the new window.
            time.sleep(wait + 0.001)
            waited += wait
