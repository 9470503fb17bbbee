"""The API's one error shape: ``{"error": {"code": str, "message": str, "fields"?: {name: [str]}}}``.

Every error an API client can see goes through here: DRF's exceptions, Django's Http404 and
PermissionDenied, the services' PortalError, anything unexpected (a 500 that says nothing
about the internals), and, through portal.api.middleware, the errors Django produces before
or outside a DRF view (unknown URLs, oversized bodies)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from portal.errors import PortalError

logger = logging.getLogger("portal.api")

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
}
_MESSAGES = {
    400: "The request is not valid.",
    401: "Authentication credentials were not provided or are not valid.",
    403: "You may not do this.",
    404: "Not found.",
    405: "This method is not allowed here.",
    413: "The request body is too large.",
    429: "Too many requests.",
    500: "Something went wrong on our side. It has been logged.",
}


def error_body(
    status: int, code: str | None = None, message: str | None = None, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code or _CODES.get(status, "error"),
        "message": message or _MESSAGES.get(status, "The request failed."),
    }
    if fields:
        error["fields"] = fields
    return {"error": error}


def error_response(
    status: int, code: str | None = None, message: str | None = None, fields: dict[str, list[str]] | None = None
) -> JsonResponse:
    """For code outside DRF views (middleware, the catch-all route)."""
    return JsonResponse(error_body(status, code, message, fields), status=status)


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested validation detail as {"a.b": ["message", ...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                out.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def _first_message(fields: dict[str, list[str]]) -> str:
    for name, messages in fields.items():
        if messages:
            return messages[0] if name == "non_field_errors" else f"{name}: {messages[0]}"
    return _MESSAGES[400]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, PortalError):
        set_rollback()
        fields = {exc.field: [exc.message]} if exc.field else None
        return Response(error_body(exc.status, exc.code, exc.message, fields), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body(413), status=413)
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return Response(error_body(400), status=400)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        set_rollback()
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        status = exc.status_code
        if isinstance(exc, exceptions.ValidationError):
            fields = _flatten(exc.detail)
            return Response(error_body(400, "invalid", _first_message(fields), fields), status=400, headers=headers)
        detail = exc.detail
        message = str(detail) if not isinstance(detail, (dict, list)) else None
        code = getattr(detail, "code", None) if not isinstance(detail, (dict, list)) else None
        # DRF's codes are stable words ("not_found", "throttled"...); keep ours for the status.
        code = _CODES.get(status) or code
        return Response(error_body(status, code, message), status=status, headers=headers)
    # Unexpected: log it with the traceback, say nothing about it to the client.
    set_rollback()
    logger.exception("unhandled API error", exc_info=exc)
    return Response(error_body(500), status=500)
