"""The host's own tenant model (issue 24 item 1): ``WECOM_TENANT_MODEL`` and the adapter's membership
questions. The swapped set-up runs in its own process (tests/orghost/scenarios.py with
tests.orghost.settings: a model is swapped before the apps load, as a host does it)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tenants.models import Tenant
from wecom_integration import tenancy
from wecom_integration.models import WeComConfig

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_tenant_model_is_the_tenants_app():
    assert tenancy.tenant_model_label() == "tenants.Tenant"
    assert tenancy.get_tenant_model() is Tenant
    assert WeComConfig._meta.get_field("tenant").related_model is Tenant
    assert Tenant._meta.swappable == "WECOM_TENANT_MODEL"


def test_only_the_tenancy_module_imports_the_tenants_app():
    """A host's own ``tenants`` package must never be imported by mistake, and ``tenants`` need not be
    installed: nothing in wecom_integration imports it but wecom_integration/tenancy.py."""
    importers = []
    for path in (ROOT / "wecom_integration").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name == "tenants" or name.startswith("tenants.") for name in names):
                importers.append(str(path.relative_to(ROOT)))
    assert sorted(set(importers)) == ["wecom_integration/tenancy.py"]


@pytest.mark.django_db
def test_an_api_call_without_the_tenant_header_uses_tenant_zero_or_the_configured_default(client, settings):
    from django.test import override_settings

    from wecom_integration.tenancy import default_tenant_id

    assert default_tenant_id() == 0
    with override_settings(WECOM={"DEFAULT_TENANT_ID": 7}):
        assert default_tenant_id() == 7


def test_a_host_with_its_own_organisation_model():
    """check, migrate (clean), wecom_configure --tenant-id, a sync and its confirm, sendMessageTest and the
    admin's scoping, with ``tenants`` not installed and memberships answered by the host's adapter."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.orghost.settings"}
    env.pop("DATABASE_URL", None)  # its own in-memory SQLite test database
    env.pop("WECOM_REQUIRE_SERVICES", None)  # ...which CI's "services must run" guard would refuse
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "--ds=tests.orghost.settings",
         "tests/orghost/scenarios.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
