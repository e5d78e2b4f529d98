"""This repository's settings with a host's own organisation model instead of the ``tenants`` app
(tests/host/test_tenant_model.py runs tests/orghost/scenarios.py with them)."""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS, WECOM

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "tenants"] + ["tests.orghost"]
WECOM_TENANT_MODEL = "orghost.Organization"
WECOM = {**WECOM, "ADAPTER": "tests.orghost.adapter.OrgAdapter"}
