"""What hosts and running deployments rely on survives the move into rooms (issue 25, item 6)."""

import importlib
import sys
import warnings

import pytest
from celery import current_app
from django.utils.module_loading import import_string

from wecom_integration import _moved
from wecom_integration.callbacks import registry

# Every task name a deployment's routes, beat schedule and queued messages may hold. A new task adds a
# name here on purpose; a renamed one fails this test.
TASK_NAMES = {
    "wecom_integration.tasks.handle_callback_event",
    "wecom_integration.tasks.handle_callback_events",
    "wecom_integration.tasks.requeue_stale_callback_events",
    "wecom_integration.tasks.run_contact_sync",
    "wecom_integration.tasks.run_customer_sync",
    "wecom_integration.tasks.periodic_sync",
    "wecom_integration.tasks.send_message",
    "wecom_integration.tasks.reconcile_approvals",
    "wecom_integration.tasks.submit_membership_approvals",
    "wecom_integration.tasks.purge_old_rows",
    "wecom_integration.tasks.update_template_card",
}


def test_the_registered_task_names_are_the_ones_deployments_know():
    registered = {name for name in current_app.tasks if name.startswith("wecom_integration.")}
    registered = {name for name in registered if not name.startswith("wecom_integration.tests.")}
    assert registered == TASK_NAMES


def test_the_routes_and_beat_schedule_name_registered_tasks():
    from wecom_integration.celery_config import celery_settings

    conf = celery_settings()
    for name in conf["CELERY_TASK_ROUTES"]:
        assert name in current_app.tasks, name
    for entry in conf.get("CELERY_BEAT_SCHEDULE", {}).values():
        assert entry["task"] in current_app.tasks, entry


def test_the_tasks_module_still_exports_every_task():
    tasks = importlib.import_module("wecom_integration.tasks")
    for name in TASK_NAMES:
        assert getattr(tasks, name.rsplit(".", 1)[1]).name == name


@pytest.mark.parametrize("old,new", sorted(_moved.MOVED.items()))
def test_an_old_module_path_is_the_new_module_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == [
        f"{old} moved to {new}; the old path goes in the next release"
    ]


def test_old_dotted_paths_in_settings_still_resolve():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for path in (
            "wecom_integration.adapter.DefaultWeComAdapter",
            "wecom_integration.auth_backends.WeComBackend",
            "wecom_integration.middleware.RequestIdMiddleware",
            "wecom_integration.services.sync.start_sync",
            "wecom_integration.sync_tasks.run_customer_sync",
        ):
            assert callable(import_string(path)), path


def test_a_name_that_never_existed_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("wecom_integration.services.no_such_module")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("wecom_integration.no_such_room")


def test_every_kind_of_callback_event_has_its_row_in_the_table():
    table = registry.table()
    assert {kind: route.owner.rsplit(".", 1)[0] for kind, route in table.items()} == {
        "message": "wecom_integration.messaging.handlers",
        "event": "wecom_integration.login.handlers",
        "contact": "wecom_integration.directory.handlers",
        "customer": "wecom_integration.customers.handlers",
        "approval": "wecom_integration.approvals.handlers",
        "card": "wecom_integration.messaging.handlers",
    }
    assert registry.replier() is not None


def test_a_kind_cannot_be_claimed_by_two_rooms():
    with pytest.raises(ValueError, match="already handled by"):
        registry.handles("contact")(lambda row, event: None)
    assert registry.route_for("contact").owner.endswith("on_contact_change")
