"""Which tenants a user may administer or act in. Superusers: all of them (None)."""

from wecom_integration.scoping import admin_tenant_ids  # noqa: F401

from .models import Membership


def is_active_member(user, tenant_id):
    if user.is_superuser:
        return True
    return Membership.objects.active().filter(user=user, tenant_id=tenant_id).exists()
