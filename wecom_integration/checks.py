"""System checks that catch an insecure or broken configuration at start-up."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def check_field_keys(app_configs, **kwargs):
    problems = []
    if not getattr(settings, "WECOM_FIELD_KEYS", None):
        problems.append(
            Warning(
                "WECOM_FIELD_KEYS is not set: WeCom secrets are encrypted with a key derived from SECRET_KEY.",
                hint="Set WECOM_FIELD_KEYS to a long random value so that rotating SECRET_KEY does not "
                "make stored secrets unreadable.",
                id="wecom_integration.W002",
            )
        )
    if getattr(settings, "SECRET_KEY", "") == getattr(settings, "DEV_SECRET_KEY", None):
        problems.append(
            Warning(
                "SECRET_KEY is the development default.",
                hint="Set the SECRET_KEY environment variable.",
                id="wecom_integration.W001",
            )
        )
    return problems
