import os

import pytest
from django.core.cache import cache

# The fake WeCom's fixtures, and the check that no secret reached any log line of the whole run.
pytest_plugins = ["wecom_integration.testing.pytest_plugin", "tests.leakcheck"]

HAS_REDIS = bool(os.environ.get("REDIS_URL"))
HAS_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")
REQUIRE_SERVICES = os.environ.get("WECOM_REQUIRE_SERVICES") == "1"


def pytest_collection_modifyitems(config, items):
    """Tests marked `services` need PostgreSQL + Redis; in CI (WECOM_REQUIRE_SERVICES=1) they must run."""
    if HAS_REDIS and HAS_POSTGRES:
        return
    if REQUIRE_SERVICES:
        raise pytest.UsageError("WECOM_REQUIRE_SERVICES=1 but DATABASE_URL/REDIS_URL are not PostgreSQL/Redis")
    skip = pytest.mark.skip(reason="needs PostgreSQL and Redis (set DATABASE_URL and REDIS_URL; .ci/run does)")
    for item in items:
        if "services" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _english_by_default(settings):
    """The product defaults to Chinese; tests read English unless they ask for a language."""
    from django.utils import translation

    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def _clean_cache_and_eager_celery():
    """Each test starts with an empty cache; Celery runs tasks inline unless a test starts a real worker."""
    from config.celery import app
    from wecom_integration.client.tokens import clear_memo

    cache.clear()
    clear_memo()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = eager
    cache.clear()
