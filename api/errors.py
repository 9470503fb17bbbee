"""The API's one error shape: ``{"error": {"code": str, "message": str, "fields"?: {name: [str]}}}``.

Every error an API client can see goes through here: DRF's exceptions, Django's Http404 and
PermissionDenied, the services' PortalError, anything unexpected (a 500 that says nothing
about the internals), and, through api.middleware, the errors Django produces before
or outside a DRF view (unknown URLs, oversized bodies)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.views import csrf
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from portal.errors import ERROR_CODES, ERROR_MESSAGES, Conflict, PortalError, error_body, error_response

logger = logging.getLogger("api")


@contextmanager
def refusals_as_conflict(codes: Collection[str]) -> Iterator[None]:
    """A service's refusal whose code is one of ``codes`` answers 409: the input was valid, the
    state of things (the tenant's, the transfer's, the provider's) refused it. Any other error
    goes on as it is."""
    try:
        yield
    except PortalError as exc:
        if exc.code not in codes or isinstance(exc, Conflict):
            raise
        raise Conflict(exc.message, field=exc.field, code=exc.code) from exc


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
    return ERROR_MESSAGES[400]


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
        code = ERROR_CODES.get(status) or code
        return Response(error_body(status, code, message), status=status, headers=headers)
    # Unexpected: log it with the traceback, say nothing about it to the client.
    set_rollback()
    logger.exception("unhandled API error", exc_info=exc)
    return Response(error_body(500), status=500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: under /api/ the JSON error shape (DRF views check CSRF themselves and
    answer the same way); elsewhere Django's own page."""
    if request.path.startswith("/api/"):
        return error_response(403, message=f"CSRF failed: {reason}" if reason else None)
    return csrf.csrf_failure(request, reason=reason)
