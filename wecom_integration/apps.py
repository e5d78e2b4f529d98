from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WeComIntegrationConfig(AppConfig):
    name = "wecom_integration"
    label = "wecom_integration"
    verbose_name = _("WeCom (企业微信)")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # checks: registers the system checks. The tasks modules: one per area; importing them registers
        # them with every worker and host project, whatever autodiscovery finds. bindings: the audit log
        # records membership approvals whether they come from the admin or the API.
        # observability: metrics on the client's listeners, Celery request-id propagation, task metrics.
        from . import checks, messaging_tasks, observability, sync_tasks, tasks  # noqa: F401
        from .tenancy import connect_default_backend

        connect_default_backend()
        observability.install()
