from django.urls import path

from wecom_integration.api import views

urlpatterns = [
    path("api/tenant/", views.CurrentTenantView.as_view(), name="api-tenant"),
]
