"""System checks that catch an insecure or broken configuration at start-up (``manage.py check``,
``runserver``, ``migrate``): what a host got wrong is named here, not discovered later as a silent failure.

E001  the adapter's authentication backend is missing from AUTHENTICATION_BACKENDS: WeCom sign-in cannot
      log anyone in.
W001  SECRET_KEY is this repository's development key.
W002  no WECOM["FIELD_KEYS"]: secrets at rest are encrypted with a key derived from SECRET_KEY.
W003  Celery has no broker and does not run tasks eagerly: callbacks are stored but never handled.
"""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from wecom_integration.conf import wecom_settings


@register(Tags.security, deploy=True)
def check_field_keys(app_configs, **kwargs):
    problems = []
    if not wecom_settings.FIELD_KEYS:
        problems.append(
            Warning(
                'WECOM["FIELD_KEYS"] is not set: WeCom secrets are encrypted with a key derived from SECRET_KEY.',
                hint='Set WECOM["FIELD_KEYS"] (or WECOM_FIELD_KEYS) to a list holding a long random value, so '
                "that rotating SECRET_KEY does not make stored secrets unreadable.",
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


@register(Tags.security)
def check_authentication_backend(app_configs, **kwargs):
    """Sign-in with WeCom logs users in through the adapter's backend; without it Django refuses the
    session (the user lands back on the login page, with nothing said)."""
    from django.utils.module_loading import import_string

    backend = getattr(import_string(wecom_settings.ADAPTER), "backend_path", None)
    if not backend or backend in settings.AUTHENTICATION_BACKENDS:
        return []
    return [
        Error(
            f"{backend} is not in AUTHENTICATION_BACKENDS: signing in with WeCom cannot log anyone in.",
            hint=f'Add "{backend}" to AUTHENTICATION_BACKENDS, after Django\'s ModelBackend.',
            id="wecom_integration.E001",
        )
    ]


@register()
def check_celery_broker(app_configs, **kwargs):
    """The app's tasks go to the host's Celery app (the current one). With no broker URL and no eager
    mode they would go to Celery's built-in default, an AMQP server on localhost that a host rarely has:
    callbacks would be stored and answered, then never handled."""
    from celery import current_app

    conf = current_app.conf
    if conf.task_always_eager or conf.broker_url or conf.broker_write_url:
        return []
    return [
        Warning(
            "Celery has no broker URL and does not run tasks eagerly: WeCom callbacks, syncs and sends "
            "would be queued nowhere a worker reads.",
            hint="Create the project's Celery app (configured from Django's settings) and set its broker, "
            "e.g. CELERY_BROKER_URL = \"redis://…\"; or CELERY_TASK_ALWAYS_EAGER = True on a laptop. "
            "See docs/install.md.",
            id="wecom_integration.W003",
        )
    ]
