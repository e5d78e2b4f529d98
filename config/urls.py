from django.contrib import admin
from django.urls import include, path

from wecom_integration.views import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    # Root-level files WeCom fetches (the trusted domain's WW_verify_<code>.txt).
    path("", include("wecom_integration.urls_root")),
    path("", include("wecom_integration.urls")),
]
