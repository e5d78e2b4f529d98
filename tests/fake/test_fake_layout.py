"""The fake WeCom's layout: one module per API group under wecom_integration/testing/fake/, each small, the
routing table merged from the groups' fragments, and the old import paths still working."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import wecom_integration.testing as testing
from wecom_integration.testing.fake import core

GROUPS = ("user", "department", "oauth", "message", "externalcontact", "menu", "media", "approval", "jssdk",
          "groupchat", "tag", "customertag", "card")
MAX_LINES = 600


def test_no_testing_module_is_over_600_lines():
    root = Path(testing.__file__).parent
    sizes = {str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines()) for p in root.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_routes_are_the_groups_fragments_each_with_a_handler():
    fragments = [{"gettoken"}] + [set(importlib.import_module(f"{core.__package__}.{g}").ROUTES) for g in GROUPS]
    assert sum(len(f) for f in fragments) == len(core.ROUTES)
    assert set().union(*fragments) == set(core.ROUTES)
    for api, route in core.ROUTES.items():
        assert callable(getattr(core.FakeWeCom, route.handler, None)), api


def test_an_api_routed_twice_is_refused():
    route = core.ROUTES["gettoken"]
    with pytest.raises(RuntimeError, match="gettoken"):
        core._merge_routes({"gettoken": route}, {"gettoken": route})


def test_old_import_paths_still_work():
    from wecom_integration.testing import org, server

    assert server.FakeWeCom is core.FakeWeCom is testing.FakeWeCom
    assert server.ROUTES is core.ROUTES
    assert server.CALLBACK_KINDS == ("app", "contacts", "customers")
    for name in ("FakeWeComError", "serve_until_signalled", "_RateLimiter", "_Faults", "_HTTPServer", "_Handler",
                 "ERRMSG", "_ApiError", "_Request", "_Route"):
        assert hasattr(server, name), name
    for name in ("Org", "User", "Department", "ExternalContact", "Follow", "SENSITIVE_USER_FIELDS",
                 "dept_user_json", "decode_cursor"):
        assert hasattr(org, name), name
    assert org.Org is testing.Org
