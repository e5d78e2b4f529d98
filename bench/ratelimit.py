"""The client's call budget: what each call costs, and two 100,000-member fallback syncs in one hour.

    .venv/bin/python bench/ratelimit.py [--calls 20000] [--members 100000]

1. Per-call cost of ``RateBudget.spend`` on the cache the settings give (Redis when REDIS_URL is set, else
   LocMem): the minute window alone (as before issue 20) against every window (corp and IP minute, corp
   and IP hour), in µs per call, interleaved rounds in one process.
2. A simulation on the real windows with a played clock (LocMem, no sleeping): a fallback sync asks one
   ``user/get`` per member at the minute budget's pace; a second one is started as soon as the first ends.
   Prints when each starts and ends, how long the second waits for the hour, and the most calls any
   60-minute span saw (WeCom's limit is 150,000). Asserts nothing.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.test import override_settings

    from wecom_integration.client import ratelimit

    big = {"RATE_BUDGET_PER_MINUTE": 10**9, "RATE_BUDGET_IP_PER_MINUTE": 10**9, "RATE_BUDGET_PER_HOUR": 10**10,
           "RATE_BUDGET_IP_PER_HOUR": 10**10}
    minute_only = {**big, "RATE_BUDGET_IP_PER_MINUTE": 0, "RATE_BUDGET_PER_HOUR": 0, "RATE_BUDGET_IP_PER_HOUR": 0}
    results = {"minute window only": [], "every window": []}
    for _ in range(args.rounds):
        for label, values in (("minute window only", minute_only), ("every window", big)):
            with override_settings(WECOM=values):
                budget = ratelimit.RateBudget(f"wwbench{time.time_ns()}")
                started = time.perf_counter()
                for _n in range(args.calls):
                    budget.spend("user/get")
                results[label].append((time.perf_counter() - started) / args.calls * 1e6)
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    for label, values in results.items():
        print(f"{label:<20} {statistics.median(values):7.1f} µs per call (median of {args.rounds}; {backend})")

    # The simulation: one call per member at the minute budget's pace, on a played clock.
    cache.clear()
    ratelimit.HourlyWindow.forget_reservations()
    now = [1_800_000_000.0]
    ratelimit.clock = lambda: now[0]
    per_minute = 9000
    with override_settings(WECOM={"RATE_BUDGET_PER_HOUR": 135_000, "RATE_BUDGET_IP_PER_HOUR": 540_000}):
        window = ratelimit.HourlyWindow("sim-corp", 135_000)
        calls = []  # the played time of every call

        def run_sync(label):
            needed = args.members
            wait = window.wait_for(needed, now[0]) or 0.0
            begin = now[0]
            now[0] += wait
            for _ in range(needed):
                while window.take(now[0]):
                    now[0] += 1.0
                calls.append(now[0])
                now[0] += 60.0 / per_minute
            print(f"{label}: waited {wait / 60:5.1f} min for the hour, ran {(now[0] - begin - wait) / 60:5.1f} min, "
                  f"ended at minute {(now[0] - calls[0]) / 60:5.1f}")

        run_sync("first sync ")
        run_sync("second sync")
    most, left = 0, 0
    for right, at in enumerate(calls):
        while calls[left] <= at - 3600:
            left += 1
        most = max(most, right - left + 1)
    print(f"most calls in any 60-minute span: {most:,} (budget 135,000; WeCom blocks past 150,000)")


if __name__ == "__main__":
    main()
