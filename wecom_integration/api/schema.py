"""The app's OpenAPI schema: its own endpoints only, generated with its own schema settings.

A host's DRF settings need not name drf-spectacular (DRF's default ``DEFAULT_SCHEMA_CLASS`` is its own
``AutoSchema``) and its ``SPECTACULAR_SETTINGS`` may describe its own API: the schema view uses
:class:`AppSchemaGenerator`, which keeps the endpoints whose views live in this app and gives each view
drf-spectacular's ``AutoSchema`` (keeping what ``@extend_schema`` declared on it), under
:data:`SCHEMA_SETTINGS`. Paths stay where the host mounted the app.
"""

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from rest_framework.settings import api_settings

# drf-spectacular settings the schema view applies (patched in for the request only).
SCHEMA_SETTINGS = {
    "TITLE": "WeCom integration API",
    "DESCRIPTION": "The API of django-wecom-integration: directory and sync, messages, the current tenant.",
    "VERSION": "0.1.0",
    "SCHEMA_PATH_PREFIX": None,
}

APP_MODULE_PREFIX = "wecom_integration."
# The schema and its docs page describe the API; they are not part of it.
EXCLUDED_URL_NAMES = ("api-schema", "api-docs")


def _is_app_view(callback):
    cls = getattr(callback, "cls", None)
    if cls is None or not cls.__module__.startswith(APP_MODULE_PREFIX):
        return False
    return getattr(cls, "schema_excluded", False) is False


class AppSchemaGenerator(SchemaGenerator):
    """drf-spectacular's generator, limited to this app's views and independent of the host's
    ``DEFAULT_SCHEMA_CLASS``."""

    def _initialise_endpoints(self):
        super()._initialise_endpoints()
        self.endpoints = [endpoint for endpoint in self.endpoints if _is_app_view(endpoint[3])]

    def create_view(self, callback, method, request=None):
        view = super().create_view(callback, method, request)
        schema = view.schema
        if not isinstance(schema, AutoSchema):
            self._set_schema_to_view(view, _spectacular_schema(schema.__class__)())
        return view


def _spectacular_schema(schema_class):
    """``schema_class`` (the host's default schema class, or what ``@extend_schema`` built on it) with
    drf-spectacular's ``AutoSchema`` placed right after what ``@extend_schema`` added, before the host's:
    the overrides' ``super()`` calls then reach drf-spectacular."""
    host_default = api_settings.DEFAULT_SCHEMA_CLASS
    if schema_class is host_default or not issubclass(schema_class, host_default):
        return AutoSchema
    return type("AppAutoSchema", (schema_class, AutoSchema, host_default), {})
