"""The one application error type and the one JSON error shape.

Services raise :class:`PortalError`; HTML views show `message` on the page (on `field` when
set), the REST API renders it as ``{"error": {"code", "message", "fields"?}}`` built here, so
middleware outside the API (a closed tenant's session, say) answers in the same shape."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


class PortalError(Exception):
    status = 400

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str = "invalid",
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class FieldErrors(PortalError):
    """Several refusals at once, one per wrong field, so a form shows them all together. Its
    own message, field and code are the first one's: a caller that shows a single error (the
    API, a redirect with a message) still shows a true one."""

    def __init__(self, errors: list[PortalError]) -> None:
        first = errors[0]
        super().__init__(first.message, field=first.field, code=first.code, status=first.status, details=first.details)
        self.errors = list(errors)


class ErrorCollector:
    """Run each field's rule, keep every PortalError, raise them together at the end."""

    def __init__(self) -> None:
        self.errors: list[PortalError] = []

    def check(self, rule: Any, *args: Any, **kwargs: Any) -> Any:
        """``rule(*args, **kwargs)``, or None after recording its PortalError."""
        try:
            return rule(*args, **kwargs)
        except FieldErrors as exc:
            self.errors.extend(exc.errors)
        except PortalError as exc:
            self.errors.append(exc)
        return None

    def fields(self) -> set[str | None]:
        return {e.field for e in self.errors}

    def raise_if_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise FieldErrors(self.errors)


class Conflict(PortalError):
    status = 409


class NotAllowed(PortalError):
    status = 403


ERROR_CODES = {
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
ERROR_MESSAGES = {
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
        "code": code or ERROR_CODES.get(status, "error"),
        "message": message or ERROR_MESSAGES.get(status, "The request failed."),
    }
    if fields:
        error["fields"] = fields
    return {"error": error}


def error_response(
    status: int, code: str | None = None, message: str | None = None, fields: dict[str, list[str]] | None = None
) -> JsonResponse:
    """For code outside DRF views (middleware, the catch-all route)."""
    return JsonResponse(error_body(status, code, message, fields), status=status)
