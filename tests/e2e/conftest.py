"""Browser tests: headless Debian Chromium driven by Playwright for Python against pytest-django's
``live_server``. No browser is downloaded: the binary is ``$WECOM_CHROMIUM``, else ``chromium`` on the
PATH. Without one the tests are skipped on a laptop, and fail in CI (``CI`` or ``WECOM_REQUIRE_SERVICES``
set), where .ci/run installs Debian's package.

Screenshots go to ``$WECOM_SCREENSHOTS_DIR`` (``make screenshots`` points it at docs/screenshots/), else
to a temporary directory, so an ordinary test run leaves the work tree as it was.
"""

import os
import shutil
from pathlib import Path

import pytest

MUST_RUN = bool(os.environ.get("CI") or os.environ.get("WECOM_REQUIRE_SERVICES"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 800}


def find_chromium():
    """Debian's chromium: $WECOM_CHROMIUM, else the first of chromium / chromium-browser on the PATH."""
    candidates = [os.environ.get("WECOM_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                  "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _unavailable(reason):
    if MUST_RUN:
        pytest.fail(f"{reason}: the browser tests must run in CI (CI or WECOM_REQUIRE_SERVICES is set)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_executable():
    path = find_chromium()
    if path is None:
        _unavailable("no chromium binary found (set WECOM_CHROMIUM or install Debian's chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    return path


@pytest.fixture(scope="module")
def playwright_driver(chromium_executable):
    """Playwright's sync API runs an event loop in this thread while it is started; the ORM calls made
    between browser steps are still plain synchronous calls, so Django's async-safety guard is lifted,
    for these tests only."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as driver:
            yield driver
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def open_browser(playwright_driver, chromium_executable, tmp_path):
    """Factory: ``open_browser(locale)`` starts Chromium with a new profile and the browser language
    ``locale`` (its Accept-Language); returns a new page. Everything is closed after the test."""
    contexts = []

    def open_(locale="en-US"):
        profile = tmp_path / f"profile-{len(contexts)}"
        context = playwright_driver.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            locale=locale,
            timezone_id="Asia/Shanghai",
        )
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.pages[0] if context.pages else context.new_page()

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def screenshots_dir(tmp_path):
    configured = os.environ.get("WECOM_SCREENSHOTS_DIR")
    path = Path(configured) if configured else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
