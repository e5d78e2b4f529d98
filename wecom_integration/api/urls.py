from django.urls import path

from . import views

urlpatterns = [
    path("api/tenant/", views.CurrentTenantView.as_view(), name="api-tenant"),
]
