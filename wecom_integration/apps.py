from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WeComIntegrationConfig(AppConfig):
    name = "wecom_integration"
    label = "wecom_integration"
    verbose_name = _("WeCom (企业微信)")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers system checks)

        # Celery tasks live in one module per area; importing them here registers them with every worker
        # and host project, whatever autodiscovery finds.
        from . import messaging_tasks, sync_tasks, tasks  # noqa: F401

        # The audit log records membership approvals whether they come from the admin or the API.
        from .services import bindings  # noqa: F401
