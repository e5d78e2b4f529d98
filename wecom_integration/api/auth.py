"""API authentication as JeecgBoot does it: the token in ``X-Access-Token``, the tenant in ``X-Tenant-Id``.

Tokens are DRF's (``python manage.py drf_create_token USERNAME``). The tenant defaults to 0, the default
tenant. A user who is not an active member of that tenant gets 403; superusers may act in every tenant.
"""

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, permissions
from rest_framework.authentication import TokenAuthentication

from tenants.models import DEFAULT_TENANT_ID, Tenant
from tenants.scoping import is_active_member

TENANT_HEADER = "HTTP_X_TENANT_ID"


class AccessTokenAuthentication(TokenAuthentication):
    """DRF token authentication reading ``X-Access-Token`` (also accepts ``Authorization: Token …``)."""

    def authenticate(self, request):
        token = request.META.get("HTTP_X_ACCESS_TOKEN")
        if token is None:
            return super().authenticate(request)
        token = token.strip()
        if not token:
            raise exceptions.AuthenticationFailed(_("The X-Access-Token header is empty."))
        return self.authenticate_credentials(token)

    def authenticate_header(self, request):
        # A header makes DRF answer 401 (not 403) when the token is missing or bad.
        return "X-Access-Token"


def request_tenant(request):
    """The Tenant named by ``X-Tenant-Id`` (default 0); 400 for a malformed id, 404 for an unknown one."""
    if hasattr(request, "_wecom_tenant"):
        return request._wecom_tenant
    raw = request.META.get(TENANT_HEADER, "").strip()
    if raw == "":
        tenant_id = DEFAULT_TENANT_ID
    else:
        try:
            tenant_id = int(raw)
        except ValueError:
            raise exceptions.ValidationError({"X-Tenant-Id": _("X-Tenant-Id must be an integer.")}) from None
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise exceptions.NotFound(_("Unknown tenant."))
    request._wecom_tenant = tenant
    return tenant


class IsTenantMember(permissions.BasePermission):
    """The authenticated user is an active member of the request's tenant (or a superuser)."""

    message = _("You are not an active member of this tenant.")

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        tenant = request_tenant(request)
        return is_active_member(request.user, tenant.pk)


class IsTenantAdmin(IsTenantMember):
    """An active admin member of the request's tenant (or a superuser)."""

    message = _("You are not an administrator of this tenant.")

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if request.user.is_superuser:
            return True
        from tenants.models import Membership

        return (
            Membership.objects.active()
            .filter(user=request.user, tenant=request_tenant(request), role=Membership.Role.ADMIN)
            .exists()
        )
