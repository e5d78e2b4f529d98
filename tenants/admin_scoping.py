"""The admin scoping mixin now lives in the WeCom app (it works with any ``WECOM_TENANT_MODEL``, issue 24);
re-exported here for the ``tenants`` app's own admin."""

from wecom_integration.scoping import (  # noqa: F401
    TenantScopedAdminMixin,
    UserChoiceAdminMixin,
    admin_tenant_ids,
    user_search_fields,
)
