from django.urls import path

from wecom_integration import converters  # noqa: F401 (registers the <wecomid:...> path converter)
from wecom_integration.jssdk import api, views

urlpatterns = [
    path("api/wecom/jssdk/", api.JSSDKConfigView.as_view(), name="api-jssdk"),
    # Public contract: the sidebar's URL is entered in WeCom's admin (客户联系 → 聊天工具栏).
    path("wecom/sidebar/<int:tenant_id>/", views.sidebar, name="sidebar"),
    path("wecom/sidebar/<int:tenant_id>/customer/<wecomid:external_userid>/", views.customer, name="sidebar-customer"),
    path("wecom/sidebar/<int:tenant_id>/group/<wecomid:chat_id>/", views.group, name="sidebar-group"),
]
