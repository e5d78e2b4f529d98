"""API authentication as JeecgBoot does it: the token in ``X-Access-Token``, the tenant in ``X-Tenant-Id``.

Tokens are DRF's (``python manage.py drf_create_token USERNAME``). The tenant defaults to 0, the default
tenant. A user who is not an active member of that tenant gets 403; superusers may act in every tenant.

Every API view takes its authentication and permissions from here (through
:class:`~wecom_integration.api.base.TenantAPIMixin`), never from the host's ``REST_FRAMEWORK``: a host
with DRF's defaults (AllowAny, session and basic authentication) still answers 401/403 to anonymous
calls. The role questions go to the adapter (:meth:`~wecom_integration.login.adapter.DefaultWeComAdapter.
is_tenant_member` and its neighbours), so a host can take roles from its own model.
"""

from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, permissions
from rest_framework.authentication import TokenAuthentication

from wecom_integration.conf import wecom_settings
from wecom_integration.extension import get_adapter
from wecom_integration.tenancy import default_tenant_id, get_tenant_model

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


def authentication_classes():
    """The API's authentication classes: ``X-Access-Token`` first (so an anonymous call is a 401 naming
    that header), then the host's own from ``WECOM["API_AUTHENTICATION_CLASSES"]``."""
    names = wecom_settings.API_AUTHENTICATION_CLASSES
    extra = [import_string(name) if isinstance(name, str) else name for name in names]
    return [AccessTokenAuthentication, *extra]


def request_tenant(request):
    """The tenant (of ``WECOM_TENANT_MODEL``) named by ``X-Tenant-Id``; without the header JeecgBoot's 0
    for the default tenant model, ``WECOM["DEFAULT_TENANT_ID"]`` when set, else 400. 400 for a malformed
    id, 404 for an unknown one."""
    if hasattr(request, "_wecom_tenant"):
        return request._wecom_tenant
    raw = request.META.get(TENANT_HEADER, "").strip()
    if raw == "":
        tenant_id = default_tenant_id()
        if tenant_id is None:
            raise exceptions.ValidationError({"X-Tenant-Id": _("X-Tenant-Id is required.")})
    else:
        try:
            tenant_id = int(raw)
        except ValueError:
            raise exceptions.ValidationError({"X-Tenant-Id": _("X-Tenant-Id must be an integer.")}) from None
    tenant = get_tenant_model()._default_manager.filter(pk=tenant_id).first()
    if tenant is None:
        raise exceptions.NotFound(_("Unknown tenant."))
    request._wecom_tenant = tenant
    return tenant


class IsTenantMember(permissions.BasePermission):
    """The authenticated user is an active member of the request's tenant (or a superuser)."""

    message = _("You are not an active member of this tenant.")
    code = "not_tenant_member"

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        return get_adapter(request).is_tenant_member(request.user, request_tenant(request))


class IsTenantAdmin(IsTenantMember):
    """An active admin member of the request's tenant (or a superuser)."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if get_adapter(request).is_tenant_admin(request.user, request_tenant(request)):
            return True
        # A member, but not an administrator: say so (permission instances live for one request).
        self.message = _("You are not an administrator of this tenant.")
        self.code = "not_tenant_admin"
        return False


class MaySendMessages(IsTenantMember):
    """May send messages in the request's tenant at all: a tenant admin, or an ordinary member where the
    tenant allows members to send. To whom is decided once the body is read: :func:`check_may_send`."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if get_adapter(request).may_send(request.user, request_tenant(request)):
            return True
        self.message = _("Only the administrators of this tenant may send messages.")
        self.code = "sending_not_allowed"
        return False


def check_may_send(request, tenant, *, to_all=False, parties=(), tags=()):
    """Raise PermissionDenied (403) unless the request's user may send to these recipients in ``tenant``:
    to everyone (@all), departments and tags only a tenant admin may send."""
    if not get_adapter(request).may_send(request.user, tenant, to_all=to_all, parties=parties, tags=tags):
        raise exceptions.PermissionDenied(
            _("Only the administrators of this tenant may send to everyone, to departments or to tags."),
            code="recipients_need_admin",
        )
