"""The app's OpenAPI schema: its own endpoints only, generated with its own schema settings.

A host's DRF settings need not name drf-spectacular (DRF's default ``DEFAULT_SCHEMA_CLASS`` is its own
``AutoSchema``) and its ``SPECTACULAR_SETTINGS`` may describe its own API: the schema view uses
:class:`AppSchemaGenerator`, which keeps the app's API views (each carries drf-spectacular's
``AutoSchema`` itself), under :data:`SCHEMA_SETTINGS`. Paths stay where the host mounted the app.
"""

from drf_spectacular.generators import SchemaGenerator

from wecom_integration.api.base import TenantAPIMixin

# drf-spectacular settings the schema view applies (patched in for the request only).
SCHEMA_SETTINGS = {
    "TITLE": "WeCom integration API",
    "DESCRIPTION": "The API of django-wecom-integration: directory and sync, messages, the current tenant.",
    "VERSION": "0.1.0",
    "SCHEMA_PATH_PREFIX": None,
}


class AppSchemaGenerator(SchemaGenerator):
    """drf-spectacular's generator, limited to this app's API views (those built on
    :class:`~wecom_integration.api.base.TenantAPIMixin`, which carry drf-spectacular's ``AutoSchema``
    themselves): the host's own DRF views, and its ``DEFAULT_SCHEMA_CLASS``, are none of its business."""

    def _initialise_endpoints(self):
        super()._initialise_endpoints()
        self.endpoints = [
            endpoint
            for endpoint in self.endpoints
            if issubclass(getattr(endpoint[3], "cls", object), TenantAPIMixin)
        ]
