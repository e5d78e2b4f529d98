from django.urls import include, path

from .views import callbacks

app_name = "wecom_integration"

urlpatterns = [
    # Public contract: these paths are pasted into WeCom's admin.
    path("wecom/callback/<int:tenant_id>/app/", callbacks.AppCallbackView.as_view(), name="callback-app"),
    path(
        "wecom/callback/<int:tenant_id>/contacts/",
        callbacks.ContactCallbackView.as_view(),
        name="callback-contacts",
    ),
    path(
        "wecom/callback/<int:tenant_id>/customers/",
        callbacks.CustomerCallbackView.as_view(),
        name="callback-customers",
    ),
    path("", include("wecom_integration.api.urls")),
    path("", include("wecom_integration.api.urls_sync")),
    path("", include("wecom_integration.api.urls_messaging")),
    path("", include("wecom_integration.api.urls_login")),
]
