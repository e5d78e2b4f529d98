"""Old module paths, from before the app was laid out by capability, kept importable for one release.

A host that imports ``wecom_integration.services.sync`` or names ``wecom_integration.adapter.DefaultWeComAdapter``
in its settings gets the module at its new place, the very same module object (so patches and
``isinstance`` agree), and a ``DeprecationWarning`` naming the new path. The finder sits last on
``sys.meta_path``: it only answers for names no real module has. ``wecom_integration.tasks`` is not here:
it stays, the registry of every task under the names deployments know.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED = {
    "wecom_integration.admin.scoping": "wecom_integration.scoping",
    "wecom_integration.adapter": "wecom_integration.login.adapter",
    "wecom_integration.admin.config": "wecom_integration.configuration.admin",
    "wecom_integration.admin.directory": "wecom_integration.directory.admin",
    "wecom_integration.admin.events": "wecom_integration.callbacks.admin",
    "wecom_integration.admin.messaging": "wecom_integration.messaging.admin",
    "wecom_integration.api.messaging": "wecom_integration.messaging.api",
    "wecom_integration.api.sync": "wecom_integration.directory.api",
    "wecom_integration.api.urls_login": "wecom_integration.login.urls",
    "wecom_integration.api.urls_messaging": "wecom_integration.messaging.urls",
    "wecom_integration.api.urls_sync": "wecom_integration.directory.urls",
    "wecom_integration.auth_backends": "wecom_integration.login.backends",
    "wecom_integration.celery_signals": "wecom_integration.operations.celery_signals",
    "wecom_integration.forms": "wecom_integration.configuration.forms",
    "wecom_integration.health_urls": "wecom_integration.operations.urls",
    "wecom_integration.log_config": "wecom_integration.operations.log_config",
    "wecom_integration.messaging_tasks": "wecom_integration.messaging.tasks",
    "wecom_integration.middleware": "wecom_integration.operations.middleware",
    "wecom_integration.services.bindings": "wecom_integration.directory.bindings",
    "wecom_integration.services.callback_attempts": "wecom_integration.callbacks.attempts",
    "wecom_integration.services.callbacks": "wecom_integration.callbacks.services",
    "wecom_integration.services.configuration": "wecom_integration.configuration.services",
    "wecom_integration.services.customer_sync": "wecom_integration.customers.sync",
    "wecom_integration.services.customers": "wecom_integration.customers.services",
    "wecom_integration.services.dashboard": "wecom_integration.operations.dashboard",
    "wecom_integration.services.directory": "wecom_integration.directory.services",
    "wecom_integration.services.inbox": "wecom_integration.messaging.inbox",
    "wecom_integration.services.login": "wecom_integration.login.services",
    "wecom_integration.services.menu": "wecom_integration.messaging.menu",
    "wecom_integration.services.messaging": "wecom_integration.messaging.services",
    "wecom_integration.services.publisher": "wecom_integration.callbacks.publisher",
    "wecom_integration.services.sync": "wecom_integration.directory.sync",
    "wecom_integration.services.twostep": "wecom_integration.login.twostep",
    "wecom_integration.sync_tasks": "wecom_integration.tasks",  # the two syncs' tasks now live in two rooms
    "wecom_integration.views.callbacks": "wecom_integration.callbacks.views",
    "wecom_integration.views.domain": "wecom_integration.configuration.views",
    "wecom_integration.views.health": "wecom_integration.operations.health",
    "wecom_integration.views.login": "wecom_integration.login.views",
}

# Packages that no longer exist at all; importing a submodule of one must first find the package.
_GONE_PACKAGES = {"wecom_integration.services", "wecom_integration.views"}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str | None):
        self.new = new

    def create_module(self, spec):
        if self.new is None:
            module = types.ModuleType(spec.name, "Removed package; its modules moved (see wecom_integration._moved).")
            module.__path__ = []
            return module
        warnings.warn(
            f"{spec.name} moved to {self.new}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))
        if fullname in _GONE_PACKAGES:
            return importlib.util.spec_from_loader(fullname, _Alias(None), is_package=True)
        return None


def install() -> None:
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())
