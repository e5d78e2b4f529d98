"""What every API view (``/api/``, ``/sys/``) shares, whatever the host's ``REST_FRAMEWORK`` says.

:class:`TenantAPIMixin` goes first in each view's bases. It fixes the authentication (``X-Access-Token``
plus the host's ``WECOM["API_AUTHENTICATION_CLASSES"]``), the default permission (an active member of the
``X-Tenant-Id`` tenant; views needing more name a stricter class), JSON in and out, pagination, the
drf-spectacular schema and the error answers. Error answers carry a translated message and a stable
``code`` and never exception text: an unexpected exception is logged and answered with a plain 500.
"""

import inspect
import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from wecom_integration.api.auth import IsTenantMember, authentication_classes

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class Pagination(PageNumberPagination):
    """100 rows a page, changeable with ``?page_size=`` up to 1000 (not the host's PAGE_SIZE)."""

    page_size = PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE


def error_code(exc):
    """The stable code of an API exception: DRF's (``not_authenticated``, ``permission_denied`` …) or
    the one our code raised it with."""
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else getattr(exc, "default_code", "error")


def exception_handler(exc, context):
    """DRF's handler, without the host's ``EXCEPTION_HANDLER``: ``{"detail": message, "code": code}``
    for refusals, DRF's field errors for invalid bodies, and a plain 500 for anything unexpected (the
    traceback goes to the log, not into the answer)."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        view = context.get("view")
        logger.error("API view %s failed", type(view).__name__, exc_info=(type(exc), exc, exc.__traceback__))
        return Response(
            {"detail": str(_("The server could not answer this request.")), "code": "server_error"},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, exceptions.ValidationError):
        data = exc.detail  # our own field messages, the contract's shape
    else:
        data = {"detail": str(exc.detail), "code": error_code(exc)}
    return Response(data, status=exc.status_code, headers=headers)


class TenantAPIMixin:
    """Goes first in the bases of every API view. See the module's docstring."""

    permission_classes = [IsTenantMember]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    pagination_class = Pagination
    versioning_class = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # drf-spectacular's inspector whatever DEFAULT_SCHEMA_CLASS is (read without DRF's descriptor,
        # which would hand out the host's class); an inherited or @extend_schema one is kept.
        if not isinstance(inspect.getattr_static(cls, "schema", None), AutoSchema):
            cls.schema = AutoSchema()

    def get_authenticators(self):
        return [cls() for cls in authentication_classes()]

    def get_exception_handler(self):
        return exception_handler


def method_schema(**kwargs):
    """drf-spectacular's ``@extend_schema`` for a view method, built on drf-spectacular's AutoSchema: the
    plain decorator builds on the host's DEFAULT_SCHEMA_CLASS, and DRF's own breaks the schema."""

    def decorator(method):
        method.kwargs = {"schema": AutoSchema}
        return extend_schema(**kwargs)(method)

    return decorator
