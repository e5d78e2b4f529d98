"""The API's thin views: authenticate, resolve the tenant, hand to a service, answer."""

from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from wecom_integration.api.auth import request_tenant
from wecom_integration.api.base import TenantAPIMixin
from wecom_integration.extension import get_adapter


class CurrentTenantSerializer(serializers.Serializer):
    tenant_id = serializers.IntegerField()
    tenant_code = serializers.CharField()
    tenant_name = serializers.CharField()
    username = serializers.CharField()
    role = serializers.CharField(allow_null=True)
    wecom_configured = serializers.BooleanField()


class CurrentTenantView(TenantAPIMixin, APIView):
    """Who the token belongs to and in which tenant this request acts (``X-Tenant-Id``)."""

    serializer_class = CurrentTenantSerializer

    def get(self, request):
        tenant = request_tenant(request)
        adapter = get_adapter(request)
        role = adapter.membership_role(request.user, tenant)
        data = {
            "tenant_id": tenant.pk,
            "tenant_code": adapter.tenant_code(tenant),
            "tenant_name": str(getattr(tenant, "name", tenant)),
            "username": request.user.get_username(),
            "role": role or ("superuser" if request.user.is_superuser else None),
            "wecom_configured": hasattr(tenant, "wecom_config"),
        }
        return Response(CurrentTenantSerializer(data).data)
