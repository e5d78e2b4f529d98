"""Opt-in helpers for a host that wants the app's log format; the app itself configures no logging.

``logging_config(fmt="json")`` returns a ``LOGGING`` dict: one line per record on stderr, with the request
id that follows a callback into its task and the secret scrubber as a last line of defence (see
observability.py). A host may use it whole, or take its ``filters`` and ``formatters`` into its own::

    from wecom_integration.operations.log_config import logging_config
    LOGGING = logging_config(fmt="json", level="INFO")

Celery configures its workers' logging itself. ``use_django_logging_in_workers()``, called in the host's
Celery app module, makes the host's workers apply Django's ``LOGGING`` instead (connecting a
``setup_logging`` receiver is what turns Celery's own set-up off, so it is the host's choice, never the
app's)::

    app = Celery("hostproj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    use_django_logging_in_workers()
"""

import logging.config

FORMATS = ("plain", "json")


def logging_config(fmt="plain", level="INFO"):
    """A ``LOGGING`` dict writing every record to stderr in ``fmt`` ("plain" or "json"), scrubbed of
    credentials and carrying the request id."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "scrub_secrets": {"()": "wecom_integration.observability.SecretScrubFilter"},
            "request_id": {"()": "wecom_integration.observability.RequestIdFilter"},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
            "json": {"()": "wecom_integration.observability.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": fmt,
                "filters": ["request_id", "scrub_secrets"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.request": {"level": "ERROR"}},
    }


def _apply_django_logging(**kwargs):
    from django.conf import settings

    if settings.LOGGING:
        logging.config.dictConfig(settings.LOGGING)


def use_django_logging_in_workers():
    """Make Celery workers started from this process apply Django's ``LOGGING`` instead of Celery's own
    logging set-up. Call it once in the host's Celery app module. Idempotent."""
    from celery import signals

    signals.setup_logging.connect(_apply_django_logging, weak=False, dispatch_uid="wecom_django_logging")
