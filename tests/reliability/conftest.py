"""What the reliability tests share: a private redis-server that can be killed and restarted."""

import os

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.procs import RedisServer, redis_server_binary

IN_CI = REQUIRE_SERVICES or bool(os.environ.get("CI"))


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server; skipped only where the binary is missing, and never in CI."""
    if redis_server_binary() is None:
        if IN_CI:
            pytest.fail("redis-server is not installed, and CI must run the reliability tests")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
