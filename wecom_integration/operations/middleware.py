"""Request ids: one per HTTP request, carried into log lines and Celery tasks, echoed to the client."""

from wecom_integration.observability import (
    REQUEST_ID_HEADER,
    clean_request_id,
    new_request_id,
    reset_request_id,
    set_request_id,
)


class RequestIdMiddleware:
    """Give every request an id: the ``X-Request-Id`` header a proxy or client sent (if it is a short,
    plain token), else a new one. It is set as ``request.request_id``, made current for log lines and
    task messages for the duration of the request, and returned in the response's ``X-Request-Id``.

    Put it first in ``MIDDLEWARE`` so that every other middleware's log lines carry the id.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        request.request_id = request_id
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response[REQUEST_ID_HEADER] = request_id
        return response
