"""The API's thin views: authenticate, resolve the tenant, hand to a service, answer."""

from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.models import Membership

from .auth import request_tenant
from .base import TenantAPIMixin


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
        membership = Membership.objects.filter(user=request.user, tenant=tenant).first()
        data = {
            "tenant_id": tenant.pk,
            "tenant_code": tenant.code,
            "tenant_name": tenant.name,
            "username": request.user.get_username(),
            "role": membership.role if membership else ("superuser" if request.user.is_superuser else None),
            "wecom_configured": hasattr(tenant, "wecom_config"),
        }
        return Response(CurrentTenantSerializer(data).data)
