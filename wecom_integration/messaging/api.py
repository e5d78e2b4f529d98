"""Messaging over HTTP: JeecgBoot's test-push endpoint (a public contract), the message log, and the
OpenAPI schema with its docs page.

``POST /sys/thirdApp/sendMessageTest`` answers JeecgBoot's envelope ``{success, message, code, result,
timestamp}`` for every outcome, errors included, with the matching HTTP status. Unlike JeecgBoot,
``success`` is false whenever WeCom reported an error. Error envelopes add ``error``, a stable code
(``not_authenticated``, ``not_tenant_admin``, ``wecom_unreachable`` …), and never carry exception text,
URLs or hosts; the details of a failed delivery go to the log.

Who may send: a tenant admin to anyone; an ordinary member only where the tenant's WeCom configuration
allows members to send ("members may send messages", off by default), only to chosen receivers, never
with ``sendAll`` (@all).
"""

import json
import logging
import re
import time

from django.apps import apps
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.settings import patched_settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, generics, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from wecom_integration.api.auth import IsTenantAdmin, MaySendMessages, check_may_send, request_tenant
from wecom_integration.api.base import TenantAPIMixin, method_schema
from wecom_integration.api.schema import SCHEMA_SETTINGS, AppSchemaGenerator
from wecom_integration.messaging import services as messaging
from wecom_integration.models import MessageLog

logger = logging.getLogger(__name__)

#: JeecgBoot's name for WeCom in ``app``; its other apps (DINGTALK …) are not ours.
WECHAT_ENTERPRISE = "WECHAT_ENTERPRISE"
CODE_OK = 200
CODE_ERROR = 500

TENANT_PARAMETER = OpenApiParameter(
    name="X-Tenant-Id",
    type=int,
    location=OpenApiParameter.HEADER,
    required=False,
    description=gettext_lazy("The tenant to act in; 0 (the default tenant) when absent."),
)


class AccessTokenScheme(OpenApiAuthenticationExtension):
    """Describes ``X-Access-Token`` in the schema (drf-spectacular would otherwise document DRF's
    ``Authorization: Token`` header, which the parent class also reads)."""

    target_class = "wecom_integration.api.auth.AccessTokenAuthentication"
    name = "AccessToken"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Access-Token"}


def envelope(success, message, result=None, error=None):
    """JeecgBoot's ``Result``: code 200 when ``success``, 500 otherwise; timestamp in milliseconds. An
    error envelope adds ``error``, the stable code of what went wrong."""
    body = {
        "success": success,
        "message": str(message),
        "code": CODE_OK if success else CODE_ERROR,
        "result": result,
        "timestamp": int(time.time() * 1000),
    }
    if not success:
        body["error"] = error or "error"
    return body


def _first_message(detail):
    """The first human-readable message in DRF's error detail (a string, list or dict of them)."""
    if isinstance(detail, dict):
        for value in detail.values():
            return _first_message(value)
        return ""
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else ""
    return str(detail)


class EnvelopeMixin:
    """Wraps every error answer of a view (401, 403, 400 …) in the envelope, keeping its status."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        detail = response.data
        if isinstance(exc, exceptions.ValidationError):
            response.data = envelope(False, _first_message(detail), {"errors": detail}, "invalid")
        else:
            response.data = envelope(False, detail["detail"], None, detail["code"])
        return response


# Serializers (they document the contract in the schema too) -----------------------------------------


class SendMessageTestRequestSerializer(serializers.Serializer):
    app = serializers.CharField(help_text=gettext_lazy("The third-party app; must be WECHAT_ENTERPRISE."))
    receiver = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text=gettext_lazy("Comma-separated usernames of the tenant's members; or use sendAll."),
    )
    sendAll = serializers.BooleanField(  # noqa: N815 - JeecgBoot's field name
        required=False,
        default=False,
        help_text=gettext_lazy("Send to every member in the app's visible range (@all) instead of receiver."),
    )
    content = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text=gettext_lazy(
            "The text to send, at most 2048 bytes in UTF-8; with msgType template_card, the card as JSON text."
        ),
    )
    msgType = serializers.ChoiceField(  # noqa: N815 - named in JeecgBoot's style
        choices=["text", "template_card"],
        required=False,
        default="text",
        help_text=gettext_lazy(
            "Not JeecgBoot's: \"template_card\" sends `content` (WeCom's template_card object as JSON text) as a "
            "template card. JeecgBoot's own client never sends it, so its messages stay texts."
        ),
    )

    def validate_app(self, value):
        if value != WECHAT_ENTERPRISE:
            raise serializers.ValidationError(
                _("Unrecognised third-party app (不识别的第三方APP): %(app)s. Use WECHAT_ENTERPRISE.") % {"app": value}
            )
        return value

    def validate(self, attrs):
        # The service's rules (empty, over 2048 UTF-8 bytes; a card's), so both paths say the same thing.
        try:
            attrs["message"] = _message_from_content(attrs.get("msgType", "text"), attrs["content"])
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"content": exc.messages}) from None
        receivers = [name.strip() for name in attrs.get("receiver", "").split(",") if name.strip()]
        if receivers and attrs.get("sendAll"):
            raise serializers.ValidationError(_("Give either receiver or sendAll, not both."))
        if not receivers and not attrs.get("sendAll"):
            raise serializers.ValidationError(_("Give receiver (comma-separated usernames) or sendAll: true."))
        attrs["receivers"] = receivers
        return attrs


def _message_from_content(msgtype, content):
    """The message ``content`` describes: a text, or a template card given as JSON text."""
    if msgtype != "template_card":
        return messaging.Message.text(content)
    try:
        card = json.loads(content)
    except ValueError:
        raise serializers.ValidationError({"content": _("A template card is given as JSON text.")}) from None
    return messaging.Message.template_card(card)


class SendMessageTestResultSerializer(serializers.Serializer):
    msgid = serializers.CharField(allow_blank=True, help_text=gettext_lazy("WeCom's msgid of the message."))
    msgids = serializers.ListField(
        child=serializers.CharField(), help_text=gettext_lazy("Every msgid (one per message/send call).")
    )
    invalid_receivers = serializers.ListField(
        child=serializers.CharField(), help_text=gettext_lazy("Receivers WeCom called invalid, as usernames.")
    )
    unbound_receivers = serializers.ListField(
        child=serializers.CharField(), help_text=gettext_lazy("Receivers with no WeCom binding; not sent to.")
    )
    log_id = serializers.IntegerField(allow_null=True, help_text=gettext_lazy("The message log entry."))
    status = serializers.CharField(allow_blank=True)
    errcode = serializers.IntegerField(help_text=gettext_lazy("WeCom's errcode; 0 when none."))
    errmsg = serializers.CharField(allow_blank=True)


def _envelope_serializer(name, result):
    return inline_serializer(
        name=name,
        fields={
            "success": serializers.BooleanField(),
            "message": serializers.CharField(),
            "code": serializers.IntegerField(help_text=gettext_lazy("200 ok, 500 error (JeecgBoot's codes).")),
            "result": result,
            "timestamp": serializers.IntegerField(help_text=gettext_lazy("Milliseconds since the epoch.")),
            "error": serializers.CharField(
                required=False,
                help_text=gettext_lazy(
                    "Error answers only: a stable code, e.g. not_authenticated, not_tenant_member, "
                    "not_tenant_admin, sending_not_allowed, recipients_need_admin, invalid, not_configured, "
                    "unknown_receivers, wecom_configuration, rate_limited, wecom_refused, wecom_unreachable."
                ),
            ),
        },
    )


SEND_RESULT_ENVELOPE = _envelope_serializer("SendMessageTestResponse", SendMessageTestResultSerializer(allow_null=True))
ERROR_ENVELOPE = _envelope_serializer("ErrorResponse", serializers.JSONField(allow_null=True))


# The test-push endpoint -------------------------------------------------------------------------------


_URL = re.compile(r"\S+://\S+")


def _public_errmsg(log):
    """WeCom's errmsg as an API client may read it: none for a failure without a WeCom errcode (the text
    of a network error names hosts), and without the URLs WeCom appends ("more info at https://…")."""
    if not log.errcode:
        return ""
    return _URL.sub("", log.errmsg).rstrip(" ,")


def _result(log=None, resolution=None, tenant=None):
    resolution = resolution or messaging.Resolution()
    if log is None:
        invalid = []
    else:
        invalid = messaging.usernames_for(tenant, log.invalid_users, resolution.by_userid)
    return {
        "msgid": (log.msgids[0] if log and log.msgids else ""),
        "msgids": list(log.msgids) if log else [],
        "invalid_receivers": invalid,
        "unbound_receivers": list(resolution.unbound),
        "log_id": log.pk if log else None,
        "status": log.status if log else "",
        "errcode": log.errcode if log else 0,
        "errmsg": _public_errmsg(log) if log else "",
    }


class SendMessageTestView(EnvelopeMixin, TenantAPIMixin, APIView):
    """JeecgBoot's ``POST /sys/thirdApp/sendMessageTest``: send a text to some members or to all.

    A tenant admin may send; an ordinary member only where the tenant allows members to send, and never
    with ``sendAll``."""

    parser_classes = [JSONParser]
    permission_classes = [MaySendMessages]

    @method_schema(
        operation_id="sendMessageTest",
        summary="Send a test message (JeecgBoot's test push)",
        description=(
            "Sends `content` as a WeCom text message to `receiver` (comma-separated usernames of the "
            "tenant's members, mapped through their WeCom bindings) or, with `sendAll: true`, to everyone "
            "in the app's visible range. Every answer, errors included, is JeecgBoot's envelope; "
            "`success` is false whenever WeCom reported an error, and `error` holds a stable code. Nothing "
            "is sent for an invalid request.\n\n"
            "**Who may send.** The tenant's administrators. Ordinary members only where the tenant's WeCom "
            'configuration allows members to send ("members may send messages", off by default), and '
            "then only to `receiver`: `sendAll` (@all) always needs an administrator (403 "
            "`recipients_need_admin`); a member of a tenant that does not allow it gets 403 "
            "`sending_not_allowed`.\n\n"
            "https://developer.work.weixin.qq.com/document/path/90236"
        ),
        request=SendMessageTestRequestSerializer,
        parameters=[TENANT_PARAMETER],
        responses={
            200: SEND_RESULT_ENVELOPE,
            400: OpenApiResponse(
                ERROR_ENVELOPE,
                description="Unknown app, bad receivers or content, or WeCom not configured for the tenant.",
            ),
            401: OpenApiResponse(ERROR_ENVELOPE, description="No or bad X-Access-Token."),
            403: OpenApiResponse(
                ERROR_ENVELOPE,
                description=(
                    "Not an active member of the tenant; a member where members may not send; or a member "
                    "asking for sendAll."
                ),
            ),
            404: OpenApiResponse(ERROR_ENVELOPE, description="Unknown tenant."),
            502: OpenApiResponse(
                SEND_RESULT_ENVELOPE, description="WeCom refused the message, or could not be reached."
            ),
            503: OpenApiResponse(SEND_RESULT_ENVELOPE, description="WeCom's frequency limit."),
        },
        tags=["messaging"],
    )
    def post(self, request):
        serializer = SendMessageTestRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        tenant = request_tenant(request)
        check_may_send(request, tenant, to_all=data["sendAll"])
        try:
            outgoing = messaging.prepare(
                tenant,
                data["message"],
                usernames=data["receivers"],
                to_all=data["sendAll"],
                sender=request.user,
                source="test-push",
            )
        except messaging.NotConfigured as exc:
            return Response(envelope(False, exc.message, error="not_configured"), status=status.HTTP_400_BAD_REQUEST)
        except messaging.RecipientError as exc:
            body = envelope(False, " ".join(exc.messages), _result(resolution=exc.resolution), exc.code)
            body["result"]["unknown_receivers"] = list(exc.resolution.unknown)
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        except DjangoValidationError as exc:
            return Response(
                envelope(False, " ".join(exc.messages), error="invalid"), status=status.HTTP_400_BAD_REQUEST
            )

        log = messaging.deliver(outgoing.log)
        result = _result(log, outgoing.resolution, tenant)
        if messaging.is_success(log):
            if result["invalid_receivers"] or result["unbound_receivers"]:
                message = _("Message sent; some receivers could not be reached.")
            else:
                message = _("Message sent.")
            return Response(envelope(True, message, result))
        # The details (WeCom's errmsg, a network error's text) go to the log only; the client's answer
        # carries a message and a stable code.
        logger.warning(
            "sendMessageTest: message %s of tenant %s failed: errcode %s: %s",
            log.pk,
            tenant.pk,
            log.errcode,
            log.errmsg,
        )
        code = status.HTTP_503_SERVICE_UNAVAILABLE if messaging.is_rate_limited(log) else status.HTTP_502_BAD_GATEWAY
        message = messaging.describe_failure(log, detail=False)
        return Response(envelope(False, message, result, messaging.failure_code(log)), status=code)


# The message log ----------------------------------------------------------------------------------------


class MessageLogSerializer(serializers.ModelSerializer):
    sender = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = MessageLog
        fields = (
            "id",
            "created_at",
            "sender",
            "source",
            "msgtype",
            "content",
            "touser",
            "toparty",
            "totag",
            "status",
            "msgids",
            "invalid_users",
            "out_of_range_users",
            "invalid_parties",
            "invalid_tags",
            "errcode",
            "errmsg",
            "calls",
            "task_id",
            "recalled_at",
        )
        read_only_fields = fields


SEND_TYPES = ("text", "markdown", "textcard", "news", "template_card")


class SendMessageSerializer(serializers.Serializer):
    msgtype = serializers.ChoiceField(choices=SEND_TYPES, help_text=gettext_lazy("WeCom's msgtype."))
    content = serializers.JSONField(
        help_text=gettext_lazy(
            "WeCom's object of that msgtype: {content} for text and markdown, {title, description, url, btntxt} "
            "for textcard, {articles} for news, the template_card object (card_type and its fields) for a card."
        )
    )
    usernames = serializers.ListField(
        child=serializers.CharField(), required=False, default=list,
        help_text=gettext_lazy("Usernames of the tenant's members, sent to the WeCom member each is bound to."),
    )
    userids = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    parties = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    to_all = serializers.BooleanField(
        required=False, default=False, help_text=gettext_lazy("Every member in the app's visible range (@all).")
    )

    def validate(self, attrs):
        try:
            attrs["message"] = _message_from_json(attrs["msgtype"], attrs["content"])
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"content": exc.messages}) from None
        if attrs["to_all"] and (attrs["usernames"] or attrs["userids"] or attrs["parties"]):
            raise serializers.ValidationError(_("Choose either everyone or some receivers, not both."))
        return attrs


def _message_from_json(msgtype, content):
    """A Message from the msgtype and WeCom's object for it; ValidationError when it does not fit."""
    if not isinstance(content, dict):
        raise DjangoValidationError(_("content must be a JSON object."))
    if msgtype == "template_card":
        return messaging.Message.template_card(content)
    if msgtype == "news":
        return messaging.Message.news(content.get("articles") or [])
    if msgtype == "textcard":
        return messaging.Message.textcard(
            str(content.get("title") or ""), str(content.get("description") or ""), str(content.get("url") or ""),
            str(content.get("btntxt") or ""),
        )
    factory = messaging.Message.text if msgtype == "text" else messaging.Message.markdown
    return factory(str(content.get("content") or ""))


@extend_schema(parameters=[TENANT_PARAMETER], tags=["messaging"])
class MessageLogListView(TenantAPIMixin, generics.ListCreateAPIView):
    """The tenant's sent messages, newest first (tenant administrators); POST sends one (who may send: as
    for the test push)."""

    serializer_class = MessageLogSerializer
    permission_classes = [IsTenantAdmin]

    def get_permissions(self):
        if self.request.method == "POST":
            return [MaySendMessages()]
        return super().get_permissions()

    def get_queryset(self):
        return MessageLog.objects.filter(tenant=request_tenant(self.request)).select_related("sender")

    @method_schema(
        operation_id="sendMessage",
        summary="Send a message (text, markdown, textcard, news or a template card)",
        description=(
            "Sends `content`, WeCom's object of `msgtype`, to the members bound to `usernames`, to WeCom "
            "`userids`, to departments (`parties`) or, with `to_all`, to everyone in the app's visible range, "
            "and answers its message log entry. A template card (`card_type` text_notice, news_notice, "
            "button_interaction, vote_interaction or multiple_interaction) is checked against WeCom's rules; an "
            "interactive card without a `task_id` gets one, and its clicks are answered with a card update "
            "(the host adapter's `template_card_update`).\n\n"
            "**Who may send.** As for the test push: the tenant's administrators; ordinary members only where "
            'the tenant allows members to send, and then only to `usernames` and `userids` (`to_all` and '
            "`parties` need an administrator: 403 `recipients_need_admin`).\n\n"
            "https://developer.work.weixin.qq.com/document/path/90236"
        ),
        request=SendMessageSerializer,
        responses={
            201: MessageLogSerializer,
            400: OpenApiResponse(description="Invalid message or receivers, or WeCom not configured."),
            403: OpenApiResponse(description="Not allowed to send, or not to these receivers."),
            502: OpenApiResponse(MessageLogSerializer, description="WeCom refused the message or was unreachable."),
            503: OpenApiResponse(MessageLogSerializer, description="WeCom's frequency limit."),
        },
    )
    def post(self, request, *args, **kwargs):
        tenant = request_tenant(request)
        serializer = SendMessageSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        check_may_send(request, tenant, to_all=data["to_all"], parties=data["parties"])
        try:
            log = messaging.send(
                tenant, data["message"], users=data["userids"], parties=data["parties"],
                usernames=data["usernames"], to_all=data["to_all"], sender=request.user, source="api",
            )
        except messaging.NotConfigured as exc:
            return Response({"detail": exc.message, "code": "not_configured"}, status=status.HTTP_400_BAD_REQUEST)
        except messaging.RecipientError as exc:
            return Response({"detail": " ".join(exc.messages), "code": exc.code}, status=status.HTTP_400_BAD_REQUEST)
        except DjangoValidationError as exc:
            return Response({"detail": " ".join(exc.messages), "code": "invalid"}, status=status.HTTP_400_BAD_REQUEST)
        body = MessageLogSerializer(log).data
        if messaging.is_success(log):
            return Response(body, status=status.HTTP_201_CREATED)
        code = status.HTTP_503_SERVICE_UNAVAILABLE if messaging.is_rate_limited(log) else status.HTTP_502_BAD_GATEWAY
        return Response(body, status=code)


@extend_schema(parameters=[TENANT_PARAMETER], tags=["messaging"])
class MessageLogDetailView(TenantAPIMixin, generics.RetrieveAPIView):
    """One sent message of the tenant: recipients, status, msgids and the recipients WeCom rejected."""

    serializer_class = MessageLogSerializer
    permission_classes = [IsTenantAdmin]

    def get_queryset(self):
        return MessageLog.objects.filter(tenant=request_tenant(self.request)).select_related("sender")


# The schema and its docs page ---------------------------------------------------------------------------

SCHEMA_URL_NAME = "wecom_integration:api-schema"


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema of the app's API endpoints (none of the host's), whatever the host's DRF and
    drf-spectacular settings; public, so integrators can read it before a token."""

    authentication_classes = []
    permission_classes = [AllowAny]
    generator_class = AppSchemaGenerator
    schema = None  # not an endpoint of the API: left out of every schema generator
    custom_settings = SCHEMA_SETTINGS


class DocsView(SpectacularSwaggerView):
    """Swagger UI for the schema from this server's own static files (drf-spectacular-sidecar), never a
    CDN; without the sidecar app installed, a plain page listing the operations."""

    authentication_classes = []
    permission_classes = [AllowAny]
    url_name = SCHEMA_URL_NAME
    schema = None
    title = SCHEMA_SETTINGS["TITLE"]
    custom_settings = SCHEMA_SETTINGS

    @staticmethod
    def _sidecar():
        # Swagger UI's template is drf-spectacular's; its files are the sidecar's (the "swagger" extra).
        return apps.is_installed("drf_spectacular_sidecar") and apps.is_installed("drf_spectacular")

    @staticmethod
    def _swagger_ui_resource(filename):
        from drf_spectacular.views import _get_sidecar_url

        return _get_sidecar_url(f"swagger-ui-dist/{filename}")

    @staticmethod
    def _swagger_ui_favicon():
        from drf_spectacular.views import _get_sidecar_url

        return _get_sidecar_url("swagger-ui-dist/favicon-32x32.png")

    def get(self, request, *args, **kwargs):
        if self._sidecar():
            return super().get(request, *args, **kwargs)
        with patched_settings(SCHEMA_SETTINGS):
            schema = AppSchemaGenerator().get_schema(request=None, public=True)
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
            (
                (method.upper(), path, operation.get("summary") or operation.get("description", "")[:120])
                for path, operations in sorted(schema.get("paths", {}).items())
                for method, operation in operations.items()
                if isinstance(operation, dict)
            ),
        )
        page = format_html(
            "<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
            "<h1>{title}</h1><p><a href='{schema}'>{schema_label}</a></p>"
            "<table><thead><tr><th>{method}</th><th>{path}</th><th>{summary}</th></tr></thead>"
            "<tbody>{rows}</tbody></table></body></html>",
            title=self.title,
            schema=reverse(SCHEMA_URL_NAME),
            schema_label=_("OpenAPI schema (YAML)"),
            method=_("Method"),
            path=_("Path"),
            summary=_("Summary"),
            rows=rows,
        )
        return HttpResponse(page)


__all__ = [
    "DocsView",
    "MessageLogDetailView",
    "MessageLogListView",
    "SchemaView",
    "SendMessageTestView",
    "envelope",
]
