"""The error envelope of the public contract: `{"error": {"code", "message", "details"}}`."""
import logging
import uuid

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """Base of every domain error: a stable code, a message for people, details for programs."""

    code = "internal_error"
    status = 500
    message = "Internal error"

    def __init__(self, message=None, *, code=None, details=None, status=None, headers=None):
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)


class ValidationFailed(ApplicationError):
    code, status, message = "validation_error", 400, "Invalid input"


class NotFound(ApplicationError):
    code, status, message = "not_found", 404, "Not found"


class PermissionDeniedError(ApplicationError):
    code, status, message = "permission_denied", 403, "You do not have permission to perform this action"


class Conflict(ApplicationError):
    code, status, message = "conflict", 409, "Conflict"


class KillswitchEngaged(ApplicationError):
    code, status, message = "killswitch_engaged", 423, "The killswitch is engaged: no new tasks start"


class QuotaExceeded(ApplicationError):
    code, status, message = "quota_exceeded", 429, "Quota exceeded"


class RateLimited(ApplicationError):
    code, status, message = "rate_limited", 429, "Too many requests"


def error_body(code, message, details=None):
    return {"error": {"code": code, "message": str(message), "details": details or {}}}


def error_response(code, message, status, details=None, headers=None):
    response = JsonResponse(error_body(code, message, details), status=status)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def _plain(detail):
    """DRF's ErrorDetail strings (nested in dicts and lists) -> plain JSON values."""
    if isinstance(detail, dict):
        return {key: _plain(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_plain(value) for value in detail]
    return str(detail)


def _flatten_validation(detail):
    """DRF's ValidationError detail -> {field: [messages]}; errors of no field go under `non_field_errors`."""
    if isinstance(detail, dict):
        return {key: _plain(value) if isinstance(value, (dict, list)) else [str(value)] for key, value in detail.items()}
    return {"non_field_errors": [str(v) for v in detail] if isinstance(detail, list) else [str(detail)]}


def _request_id(request):
    return getattr(request, "request_id", None) or uuid.uuid4().hex


def exception_handler(exc, context):
    """DRF exception handler: every error, DRF's own included, leaves in the envelope."""
    request = context.get("request")
    headers = {}
    if isinstance(exc, ApplicationError):
        set_rollback()
        body = error_body(exc.code, exc.message, exc.details)
        if exc.status == 500:
            body["error"]["details"].setdefault("request_id", _request_id(request))
        return Response(body, status=exc.status, headers=exc.headers)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, drf_exceptions.APIException):
        set_rollback()
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait) + 1)
        code, message, details = _classify(exc)
        return Response(error_body(code, message, details), status=exc.status_code, headers=headers)
    # Anything else is a bug: log it with the request id, show no trace.
    request_id = _request_id(request)
    logger.exception("unhandled error request_id=%s", request_id)
    set_rollback()
    return Response(
        error_body("internal_error", "Internal server error", {"request_id": request_id}), status=500
    )


def _classify(exc):
    if isinstance(exc, drf_exceptions.ValidationError):
        return "validation_error", "Invalid input", _flatten_validation(exc.detail)
    if isinstance(exc, drf_exceptions.ParseError):
        return "validation_error", f"Malformed request body: {exc.detail}", {}
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return "unsupported_media_type", f"{exc.detail} Send JSON: Content-Type: application/json", {}
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        return "not_authenticated", str(exc.detail), {}
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        detail = exc.detail
        if isinstance(detail, dict):
            message = str(detail.get("detail", "Invalid token"))
        else:
            message = str(detail)
        return "token_invalid", message, {}
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return "permission_denied", str(exc.detail), {}
    if isinstance(exc, drf_exceptions.NotFound):
        return "not_found", "Not found", {}
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return "method_not_allowed", str(exc.detail), {}
    if isinstance(exc, drf_exceptions.NotAcceptable):
        return "not_acceptable", str(exc.detail), {}
    if isinstance(exc, drf_exceptions.Throttled):
        return "rate_limited", str(exc.detail), {}
    if exc.status_code == 413:
        return "payload_too_large", str(exc.detail), {}
    if exc.status_code == 409:
        return "conflict", str(exc.detail), {}
    return "error", str(exc.detail), {}
