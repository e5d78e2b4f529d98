from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WeComIntegrationConfig(AppConfig):
    name = "wecom_integration"
    label = "wecom_integration"
    verbose_name = _("WeCom (企业微信)")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The composition root: the one place that knows every room.
        # checks: registers the system checks. tasks: every room's Celery tasks under their contract names,
        # registered with every worker and host project whatever autodiscovery finds. handlers: each room
        # declares the callback events it handles in callbacks.registry. observability: metrics on the
        # client's listeners, Celery request-id propagation, task metrics.
        from wecom_integration import checks, handlers, observability, tasks  # noqa: F401
        from wecom_integration.directory import bindings
        from wecom_integration.operations import celery_signals  # noqa: F401
        from wecom_integration.tenancy import connect_default_backend

        connect_default_backend(bindings.record_membership_decision)
        observability.install()
