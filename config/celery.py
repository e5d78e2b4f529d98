"""The Celery app. With no REDIS_URL, tasks run eagerly in-process (see settings)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from wecom_integration.operations.log_config import use_django_logging_in_workers  # noqa: E402

app = Celery("wecom")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# This project's workers write the same (JSON, scrubbed) lines as its web processes.
use_django_logging_in_workers()
