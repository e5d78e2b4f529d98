from django.urls import include, path

from wecom_integration.callbacks import views as callbacks

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
    path("", include("wecom_integration.directory.urls")),
    path("", include("wecom_integration.messaging.urls")),
    path("", include("wecom_integration.login.urls")),
    path("", include("wecom_integration.approvals.urls")),
    path("", include("wecom_integration.jssdk.urls")),
]
