"""Probes and metrics, for a host to mount where its load balancer and Prometheus look::

    path("", include("wecom_integration.operations.urls")),   # /healthz, /readyz, /metrics

Kept apart from ``wecom_integration.urls`` because a host may already serve probes of its own, or want
them at the root while the app's pages live under a prefix. See views/health.py for what each answers.
"""

from django.urls import path

from wecom_integration.operations import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
]
