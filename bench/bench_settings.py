"""Settings for bench/callbacks.py only: the project's settings with a URLconf that adds a bare view."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"
