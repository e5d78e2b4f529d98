"""The three callback URLs WeCom posts to, one per kind of callback, each with its own Token and
EncodingAESKey: ``/wecom/callback/<tenant_id>/app/``, ``.../contacts/`` and ``.../customers/``.

:class:`CallbackView` fixes ``get()`` (URL verification) and ``post()`` (a message or event) for all
three; a subclass only names its kind. The work is in :mod:`wecom_integration.callbacks.services`.
A refused callback gets a 4xx with a short generic body and one log line with the reason (never a
secret or the request's values); nothing is stored for it but, throttled and bounded, a note of the
outcome for the configuration page (:mod:`wecom_integration.callbacks.attempts`).
"""

import logging
from urllib.parse import parse_qsl

from django.db import DatabaseError
from django.http import HttpResponse
from django.views import View

from wecom_integration import observability
from wecom_integration.callbacks import attempts as callback_attempts
from wecom_integration.callbacks import services as callbacks
from wecom_integration.callbacks.services import CallbackRefused
from wecom_integration.conf import wecom_settings

logger = logging.getLogger("wecom_integration.callbacks")

_QUERY_PARAMS = ("msg_signature", "timestamp", "nonce", "echostr")
# WeCom sends four; a proxy or a tracking tag may add a few. Django's own limit is 1,000.
_MAX_QUERY_FIELDS = 64
_STATUS_TEXT = {400: "bad request", 403: "forbidden", 404: "not found", 413: "too large", 503: "unavailable"}


class CallbackView(View):
    """Base of the callback views. Subclasses set ``kind`` to a key of ``WeComConfig.CALLBACK_KINDS``.

    https://developer.work.weixin.qq.com/document/path/90930
    """

    kind = ""
    http_method_names = ["get", "post"]

    @classmethod
    def as_view(cls, **initkwargs):
        # WeCom signs its callbacks and sends no CSRF token: exempt, as csrf_exempt would mark the view, without
        # method_decorator's wrapper built again on every request.
        view = super().as_view(**initkwargs)
        view.csrf_exempt = True
        return view

    def get(self, request, tenant_id):
        """URL verification: answer the decrypted ``echostr`` exactly, as text/plain."""
        return self._answer(request, tenant_id, self._verify)

    def post(self, request, tenant_id):
        """A message or event: store it once, answer "success" or an encrypted passive reply."""
        return self._answer(request, tenant_id, self._receive)

    # The fixed part ---------------------------------------------------------------------------------

    def _verify(self, request, tenant_id):
        query = _query(request)
        # Base64 has no spaces: one here is a "+" that something on the way decoded as a form would.
        echostr = query["echostr"].replace(" ", "+")
        echo = callbacks.verify_url(
            tenant_id,
            self.kind,
            msg_signature=query["msg_signature"],
            timestamp=query["timestamp"],
            nonce=query["nonce"],
            echostr=echostr,
        )
        return HttpResponse(echo.encode("utf-8"), content_type="text/plain; charset=utf-8")

    def _receive(self, request, tenant_id):
        query = _query(request)
        # The usual answer, built before receive() waits on the database rather than after: a process
        # that has waited comes back to cold caches, where building it costs twice as much (issue 19).
        success = HttpResponse(callbacks.SUCCESS.body, content_type=callbacks.SUCCESS.content_type)
        answer = callbacks.receive(
            tenant_id,
            self.kind,
            msg_signature=query["msg_signature"],
            timestamp=query["timestamp"],
            nonce=query["nonce"],
            body=_read_body(request),
            request_id=observability.get_request_id() or "",
        )
        if answer.body == callbacks.SUCCESS.body and answer.content_type == callbacks.SUCCESS.content_type:
            return success
        return HttpResponse(answer.body, content_type=answer.content_type)

    def _answer(self, request, tenant_id, step):
        method = "verify" if request.method == "GET" else "deliver"
        try:
            response = step(request, tenant_id)
        except CallbackRefused as exc:
            callback_attempts.record(tenant_id, self.kind, method, exc.reason, exc.code)
            observability.record_callback_refused(self.kind, exc.reason)
            observability.log_event(
                logger,
                "callback.refused",
                level=logging.WARNING,
                tenant=tenant_id,
                kind=self.kind,
                method=request.method,
                reason=exc.reason,
                code=exc.code,
                status=exc.status,
                remote=request.META.get("REMOTE_ADDR", ""),
            )
            return _refusal(exc.status)
        except DatabaseError:
            # Nothing was stored, and it is not the caller's fault: WeCom retries a failed delivery.
            observability.record_callback_refused(self.kind, "database_error")
            logger.exception("WeCom callback not stored: database error (tenant=%s kind=%s)", tenant_id, self.kind)
            return _refusal(503)
        except Exception:
            # Whatever went wrong, the event is either not stored (WeCom retries it) or stored (the
            # retry is answered as a duplicate), so a 400 loses nothing.
            observability.record_callback_refused(self.kind, "unexpected_error")
            logger.exception("WeCom callback failed unexpectedly (tenant=%s kind=%s)", tenant_id, self.kind)
            return _refusal(400)
        # Usually no I/O at all: see services/callback_attempts.py.
        callback_attempts.record(tenant_id, self.kind, method)
        return response


def _refusal(status):
    return HttpResponse(_STATUS_TEXT.get(status, "refused"), status=status, content_type="text/plain; charset=utf-8")


def _query(request):
    """The four parameters WeCom sends, each once at most ("" when absent).

    Read off the query string as ``request.GET`` would read it (``parse_qsl``, UTF-8, "+" as a space,
    blank values kept) but without building the QueryDict, which cost as much as the rest of the view's
    own work bar the INSERT; more than ``_MAX_QUERY_FIELDS`` fields are refused as Django refuses more
    than DATA_UPLOAD_MAX_NUMBER_FIELDS.
    """
    raw = request.META.get("QUERY_STRING", "")
    if raw.isascii() and "%" not in raw and "+" not in raw:
        # WeCom's own query (hex, digits and letters): nothing to unquote, so split it as parse_qsl would.
        fields = raw.split("&")
        if len(fields) > _MAX_QUERY_FIELDS:
            raise CallbackRefused("too_many_parameters")
        pairs = [field.partition("=")[::2] for field in fields if field]
        return _known_values(pairs)
    if not raw.isascii():
        # WSGI hands the bytes over as Latin-1; Django reads them as UTF-8 when they are.
        raw = raw.encode("iso-8859-1")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raw = raw.decode("iso-8859-1")
    try:
        pairs = parse_qsl(
            raw,
            keep_blank_values=True,
            encoding="utf-8",
            errors="replace",
            max_num_fields=_MAX_QUERY_FIELDS,
        )
    except ValueError:
        raise CallbackRefused("too_many_parameters") from None
    return _known_values(pairs)


def _known_values(pairs):
    values = dict.fromkeys(_QUERY_PARAMS, "")
    seen = set()
    for name, value in pairs:
        if name in values:
            if name in seen:
                raise CallbackRefused("repeated_parameter")
            seen.add(name)
            values[name] = value
    return values


def _read_body(request):
    """The request body, refused (413) past ``CALLBACK_MAX_BODY`` by its Content-Length or its size."""
    limit = wecom_settings.CALLBACK_MAX_BODY
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit():
        raise CallbackRefused("bad_content_length")
    if int(length) > limit:
        raise CallbackRefused("body_too_large", status=413)
    body = request.read(limit + 1)
    if len(body) > limit:
        raise CallbackRefused("body_too_large", status=413)
    return body


class AppCallbackView(CallbackView):
    """App messages and events (接收消息), answered with passive replies when there is one."""

    kind = "app"


class ContactCallbackView(CallbackView):
    """Contact changes (通讯录变更)."""

    kind = "contacts"


class CustomerCallbackView(CallbackView):
    """Customer changes (客户变更)."""

    kind = "customers"
