from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WeComIntegrationConfig(AppConfig):
    name = "wecom_integration"
    label = "wecom_integration"
    verbose_name = _("WeCom (企业微信)")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers system checks)
