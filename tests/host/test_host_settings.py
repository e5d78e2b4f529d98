"""What a host project relies on, checked in this project: the WECOM settings and their aliases, the
apps reading no environment, the ready Celery configuration, the system checks and where sign-in lands.
tests/host/test_host_project.py checks the same from a generated host project installed from the wheel."""

import re
from pathlib import Path

import pytest
from celery import current_app
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, override_settings

from wecom_integration import celery_config, checks
from wecom_integration.conf import DEFAULTS, wecom_settings
from wecom_integration.login.adapter import get_adapter

ROOT = Path(__file__).resolve().parents[2]
APPS = ("wecom_integration", "tenants")


def test_the_apps_read_settings_never_the_environment():
    reads = re.compile(r"os\.environ|os\.getenv|getenv\(")
    offenders = [
        str(path.relative_to(ROOT))
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if reads.search(path.read_text())
    ]
    assert offenders == []


def test_wecom_keys_win_over_their_top_level_aliases():
    with override_settings(WECOM={}, WECOM_API_BASE="http://alias.invalid", METRICS_TOKEN="t-alias"):
        assert wecom_settings.API_BASE == "http://alias.invalid"
        assert wecom_settings.METRICS_TOKEN == "t-alias"
        with override_settings(WECOM={"API_BASE": "http://key.invalid"}):
            assert wecom_settings.API_BASE == "http://key.invalid"
    with override_settings(WECOM={}, WECOM_API_BASE=None):
        assert wecom_settings.API_BASE == DEFAULTS["API_BASE"]


def test_an_unknown_wecom_key_is_an_error():
    with override_settings(WECOM={"PUBLIC_BASE_ULR": "https://typo.example.com"}):
        with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_ULR"):
            getattr(wecom_settings, "API_BASE")  # noqa: B009 (reading is what raises)


def test_the_install_guide_lists_every_wecom_key():
    guide = (ROOT / "docs" / "install.md").read_text()
    missing = [key for key in DEFAULTS if f"`{key}`" not in guide]
    assert missing == []


def test_the_celery_configuration_is_ready_to_merge():
    merged = celery_config.celery_settings()
    assert merged["CELERY_TASK_ROUTES"]["wecom_integration.tasks.handle_callback_events"] == {"queue": "callbacks"}
    assert merged["CELERY_BEAT_SCHEDULE"] == celery_config.BEAT_SCHEDULE
    merged["CELERY_TASK_ROUTES"]["wecom_integration.tasks.send_message"]["queue"] = "mine"
    assert celery_config.TASK_ROUTES["wecom_integration.tasks.send_message"] == {"queue": "bulk"}
    assert celery_config.celery_settings(prefix=None)["task_acks_late"] is True
    # Every task routed or scheduled is one the app registers, under its unchanged name.
    names = set(celery_config.TASK_ROUTES) | {entry["task"] for entry in celery_config.BEAT_SCHEDULE.values()}
    assert names <= set(current_app.tasks), names - set(current_app.tasks)


def test_check_names_a_missing_sign_in_backend():
    with override_settings(AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"]):
        (error,) = checks.check_authentication_backend(None)
    assert error.id == "wecom_integration.E001"
    assert "wecom_integration.login.backends.WeComBackend" in error.msg
    assert checks.check_authentication_backend(None) == []


def test_check_warns_when_tasks_would_go_to_no_broker():
    conf = current_app.conf
    names = ("task_always_eager", "broker_url", "broker_write_url")
    saved = {name: conf[name] for name in names}
    try:
        conf.update(task_always_eager=False, broker_url=None, broker_write_url=None)
        (warning,) = checks.check_celery_broker(None)
        assert warning.id == "wecom_integration.W003"
        conf.update(broker_url="redis://127.0.0.1:6379/0")
        assert checks.check_celery_broker(None) == []
    finally:
        conf.update(saved)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "setting,staff,expected",
    [
        ("/accounts/profile/", True, "/admin/"),  # Django's default, a page this project does not serve
        ("/accounts/profile/", False, "/admin/"),  # no "/" either: the admin, which explains
        ("/somewhere/", False, "/somewhere/"),  # the host's own choice is kept as it is
    ],
)
def test_sign_in_lands_on_the_hosts_page_or_one_that_exists(setting, staff, expected):
    from tests.factories import make_user

    request = RequestFactory().get("/")
    request.user = make_user("lander", staff=staff)
    with override_settings(LOGIN_REDIRECT_URL=setting):
        assert get_adapter(request).get_login_redirect_url(request, None) == expected


@pytest.mark.django_db
def test_the_password_login_lands_on_the_admin_not_a_404(client):
    from tests.factories import make_user

    make_user("walker", password="pw-walk-1234", staff=True)
    with override_settings(LOGIN_REDIRECT_URL="/accounts/profile/"):
        response = client.post("/accounts/login/", {"username": "walker", "password": "pw-walk-1234"})
    assert (response.status_code, response["Location"]) == (302, "/admin/")
