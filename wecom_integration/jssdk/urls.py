from django.urls import path

from wecom_integration.jssdk import api

urlpatterns = [
    path("api/wecom/jssdk/", api.JSSDKConfigView.as_view(), name="api-jssdk"),
]
