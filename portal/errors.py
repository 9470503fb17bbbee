"""The one application error type. Services raise it; HTML views show `message` on the page
(on `field` when set), the API renders it in its one JSON error shape."""

from __future__ import annotations

from typing import Any


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


class Conflict(PortalError):
    status = 409


class NotAllowed(PortalError):
    status = 403
