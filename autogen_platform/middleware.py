"""Request ids (and the request's log context and access line), the body-size cap and the error envelope
for errors raised outside DRF views."""
import logging
import time
import uuid

from django.conf import settings

from . import logctx
from .errors import error_response

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("autogen_platform.access")
# Probes and scrapes: logged at DEBUG, so they do not drown the access lines.
QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}


def wants_envelope(request) -> bool:
    return request.path.startswith("/api/") or request.path in {"/healthz", "/readyz"}


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-Id", "")
        request.request_id = incoming if incoming.isalnum() and len(incoming) <= 64 else uuid.uuid4().hex
        started = time.monotonic()
        with logctx.bind(request_id=request.request_id):
            response = self.get_response(request)
            response["X-Request-Id"] = request.request_id
            _log_access(request, response, time.monotonic() - started)
        return response


def _log_access(request, response, seconds: float) -> None:
    """One line a request: method, path (never the query string: it may hold a token), status, duration, who."""
    level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
    if not access_logger.isEnabledFor(level):
        return
    who = {}
    user = getattr(request, "user", None)  # DRF sets the Django request's user when it authenticates
    if user is not None and getattr(user, "is_authenticated", False):
        who["user"] = user.pk
        # The membership the permission check loaded, if it did: no query here.
        membership = user._state.fields_cache.get("membership")
        if membership is not None:
            who["customer"] = membership.customer_id
    task = getattr(request, "log_task", None)  # the task a request created (POST /api/tasks/ sets it)
    if task is not None:
        who["task"] = task
    access_logger.log(
        level, "%s %s %s", request.method, request.path, response.status_code,
        extra={"method": request.method, "path": request.path, "status": response.status_code,
               "duration_ms": round(seconds * 1000, 1), **who},
    )


class ApiErrorMiddleware:
    """Refuses oversized bodies early and turns Django's own 404/405/500 pages into the envelope."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return error_response(
                "payload_too_large",
                f"Request body is {length} bytes; the limit is {settings.MAX_REQUEST_BODY_BYTES}",
                413,
                {"limit_bytes": settings.MAX_REQUEST_BODY_BYTES},
            )
        response = self.get_response(request)
        if wants_envelope(request) and response.status_code >= 400 and not _is_json(response):
            # Django's own pages (the resolver's 404, a debug page) never reach an API client.
            return _envelope_for(request, response.status_code)
        return response

    def process_exception(self, request, exception):
        if not wants_envelope(request):
            return None
        from django.core.exceptions import RequestDataTooBig

        if isinstance(exception, RequestDataTooBig):
            return error_response("payload_too_large", str(exception), 413)
        return None


STATUS_CODES = {
    400: "validation_error",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
}


def _is_json(response) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


def _envelope_for(request, status: int):
    if status >= 500:
        request_id = getattr(request, "request_id", uuid.uuid4().hex)
        return error_response("internal_error", "Internal server error", status, {"request_id": request_id})
    code = STATUS_CODES.get(status, "error")
    return error_response(code, code.replace("_", " ").capitalize(), status)


def handler404(request, exception=None):
    if wants_envelope(request):
        return error_response("not_found", "Not found", 404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    request_id = getattr(request, "request_id", uuid.uuid4().hex)
    return error_response("internal_error", "Internal server error", 500, {"request_id": request_id})


def handler403(request, exception=None):
    return error_response("permission_denied", "Permission denied", 403)


def handler400(request, exception=None):
    return error_response("validation_error", "Bad request", 400)
