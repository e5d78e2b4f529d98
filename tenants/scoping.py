"""Which tenants a user may administer or act in. Superusers: all of them (None)."""

from .models import Membership


def admin_tenant_ids(user):
    """Ids of tenants the user administers, or None for a superuser (every tenant)."""
    if not user.is_authenticated or not user.is_active:
        return set()
    if user.is_superuser:
        return None
    cache = getattr(user, "_admin_tenant_ids", None)
    if cache is None:
        cache = set(
            Membership.objects.active()
            .filter(user=user, role=Membership.Role.ADMIN)
            .values_list("tenant_id", flat=True)
        )
        user._admin_tenant_ids = cache
    return cache


def is_active_member(user, tenant_id):
    if user.is_superuser:
        return True
    return Membership.objects.active().filter(user=user, tenant_id=tenant_id).exists()
