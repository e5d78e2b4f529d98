"""Settings for bench/callbacks.py only: the project's settings with a URLconf that adds a bare view, and
the callback batch linger and interval of bench/callbacks.py's --linger and --interval when given."""

import os

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"

if os.environ.get("BENCH_CALLBACK_BATCH_LINGER"):
    WECOM = {**WECOM, "CALLBACK_BATCH_LINGER": float(os.environ["BENCH_CALLBACK_BATCH_LINGER"])}  # noqa: F405
if os.environ.get("BENCH_CALLBACK_BATCH_INTERVAL"):
    WECOM = {**WECOM, "CALLBACK_BATCH_INTERVAL": float(os.environ["BENCH_CALLBACK_BATCH_INTERVAL"])}  # noqa: F405
