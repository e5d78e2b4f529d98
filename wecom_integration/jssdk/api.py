"""``GET /api/wecom/jssdk/?url=<page>``: the ``wx.config`` and ``wx.agentConfig`` parameters of a page of this
site, for any active member of the tenant (``X-Tenant-Id``). 400 for another site's page, 409 when the
tenant has no WeCom configuration, 502 when WeCom gave no ticket."""

import logging

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from wecom_integration.api.auth import request_tenant
from wecom_integration.api.base import TenantAPIMixin, method_schema
from wecom_integration.client import WeComError
from wecom_integration.conf import public_base_url
from wecom_integration.jssdk import services

logger = logging.getLogger(__name__)


class WxConfigSerializer(serializers.Serializer):
    beta = serializers.BooleanField()
    appId = serializers.CharField(help_text="the CorpID")  # noqa: N815 (the JS-SDK's own names)
    timestamp = serializers.IntegerField()
    nonceStr = serializers.CharField()  # noqa: N815
    signature = serializers.CharField()


class AgentConfigSerializer(serializers.Serializer):
    corpid = serializers.CharField()
    agentid = serializers.IntegerField()
    timestamp = serializers.IntegerField()
    nonceStr = serializers.CharField()  # noqa: N815
    signature = serializers.CharField()


class JSSDKConfigSerializer(serializers.Serializer):
    config = WxConfigSerializer(help_text="the parameters of wx.config")
    agentConfig = AgentConfigSerializer(help_text="the parameters of wx.agentConfig")  # noqa: N815


@extend_schema(
    parameters=[
        OpenApiParameter(name="X-Tenant-Id", type=int, location=OpenApiParameter.HEADER, required=False),
        OpenApiParameter(name="url", type=str, required=True, description="the page's URL (its # part is ignored)"),
    ],
    tags=["jssdk"],
)
class JSSDKConfigView(TenantAPIMixin, APIView):
    """The JS-SDK configuration (``wx.config``, ``wx.agentConfig``) of a page of this site."""

    serializer_class = JSSDKConfigSerializer

    @method_schema(responses={200: JSSDKConfigSerializer})
    def get(self, request):
        tenant = request_tenant(request)
        origins = {public_base_url(request), request.build_absolute_uri("/").rstrip("/")}
        try:
            url = services.check_url(request.query_params.get("url", ""), origins)
        except services.ForeignURL as exc:
            return Response({"error": "foreign_url", "message": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        config = getattr(tenant, "wecom_config", None)
        if config is None:
            return Response({"error": "not_configured", "message": "WeCom is not configured for this tenant"},
                            status=status.HTTP_409_CONFLICT)
        try:
            return Response(services.js_config(config, url))
        except WeComError as exc:
            logger.warning("JS-SDK ticket of tenant %s: %s", tenant.pk, exc)
            return Response({"error": "wecom_unreachable", "message": "WeCom gave no ticket", "errcode": exc.errcode},
                            status=status.HTTP_502_BAD_GATEWAY)
