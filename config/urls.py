from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

# This project's admin is the WeCom integration's; a host's admin keeps its own titles.
admin.site.site_header = _("WeCom integration")
admin.site.site_title = _("WeCom integration")
admin.site.index_title = _("Administration")

urlpatterns = [
    # First: WeCom's callbacks are the busiest requests, and Django tries the patterns in order.
    path("", include("wecom_integration.urls")),
    path("", include("wecom_integration.operations.urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    # Root-level files WeCom fetches (the trusted domain's WW_verify_<code>.txt).
    path("", include("wecom_integration.urls_root")),
]
