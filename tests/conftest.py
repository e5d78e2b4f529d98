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
    from wecom_integration.client.ratelimit import HourlyWindow
    from wecom_integration.client.tokens import clear_memo

    cache.clear()
    clear_memo()
    HourlyWindow.forget_reservations()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = eager
    cache.clear()


PLAIN_STATIC_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


@pytest.fixture(scope="session", autouse=True)
def _static_files_without_collectstatic(tmp_path_factory):
    """The project names static files by their hash, from the manifest that collectstatic writes; tests
    render pages without running collectstatic, so they use Django's plain storage and an empty STATIC_ROOT.
    tests/host/test_static_files.py and tests/e2e/test_demo_server.py run collectstatic and the manifest."""
    from django.test.utils import override_settings

    with override_settings(STORAGES=PLAIN_STATIC_STORAGES, STATIC_ROOT=str(tmp_path_factory.mktemp("static"))):
        yield
