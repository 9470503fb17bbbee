"""The OpenAPI schema by audience, and what every operation documents besides its success.

Two schemas: the staff one (every operation; staff logins and staff tokens only) and the
customer one (the operations a customer may call: ``/api/v1/me`` and ``/api/v1/customer/...``).
A customer asking for the staff schema gets the same 404 as for any path that does not exist.

The postprocessing hook adds to every operation the error responses it can give, all in the
one JSON error shape of ``portal/errors.py``, and writes the bounds the views enforce on the
shared query parameters (limit, cursor, since, dates, ...), so a client generated from the
schema, or a fuzzer reading it, knows them."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from api.pagination import MAX_LIMIT
from portal.errors import ERROR_MESSAGES
from portal.roles import has_perm

ERROR_SCHEMA_NAME = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The one error shape of every API answer with a 4xx or 5xx status.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string", "example": ERROR_MESSAGES[400]},
                "fields": {
                    "type": "object",
                    "description": "Field name -> messages, for input that was refused.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}
ERROR_DESCRIPTIONS = {
    "400": "The request is not valid (see error.fields).",
    "401": "No credentials, or credentials that are not valid.",
    "403": "The caller's role does not allow this, or a session write without its CSRF token.",
    "404": "Not found (also for another tenant's objects).",
    "405": "The method is not allowed on this path.",
    "406": "The Accept header asks for a type the API does not speak.",
    "409": "Conflicts with the current state, or an Idempotency-Key in use.",
    "413": "The request body is too large.",
    "415": "The request body is not JSON.",
    "429": "Too many requests; see Retry-After.",
    "500": "An unexpected error (logged).",
    "503": "The provider or a dependency is not answering; try again later.",
}
# Every operation can answer these; writes also 409, 413 and 415.
ALWAYS = ("400", "401", "403", "404", "405", "406", "429", "500", "503")
WRITES = ("409", "413", "415")

# Bounds of the shared query parameters, as the views check them.
PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    "cursor": {"type": "string", "maxLength": 40, "pattern": "^[A-Za-z0-9_-]*$"},
    "since": {"type": "string", "format": "date-time", "maxLength": 40},
    "date_from": {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    "date_to": {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    "q": {"type": "string", "maxLength": 100},
    "action": {"type": "string", "maxLength": 100},
    # Empty (or blank) means "no filter", as the views read it.
    "currency": {"type": "string", "pattern": r"^\s*([A-Za-z]{3})?\s*$"},
    "balance_min": {"type": "string", "pattern": r"^-?[0-9]{1,12}(\.[0-9]{1,4})?$"},
    "balance_max": {"type": "string", "pattern": r"^-?[0-9]{1,12}(\.[0-9]{1,4})?$"},
    "tenant": {"type": "string", "format": "uuid"},
    "connection": {"type": "string", "maxLength": 36},
}


def customer_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Preprocessing hook of the customer schema: only the operations a customer may call."""
    return [e for e in endpoints if e[0] == "/api/v1/me" or e[0].startswith("/api/v1/customer/")]


def document_errors_and_bounds(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook (both schemas): error responses and parameter bounds."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
    strict_bodies(result)
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            statuses = ALWAYS + (WRITES if method != "get" else ())
            for status in statuses:
                responses.setdefault(
                    status,
                    {"description": ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": reference}}},
                )
            for parameter in operation.get("parameters", []):
                bounds = PARAMETER_SCHEMAS.get(parameter.get("name", "")) if parameter.get("in") == "query" else None
                if bounds:
                    parameter["schema"] = {**parameter.get("schema", {}), **bounds}
    return result


def strict_bodies(result: dict[str, Any]) -> None:
    """Request bodies are StrictInput serializers (api/base.py): a field they do not declare
    is refused, so their schemas say additionalProperties: false."""
    schemas = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                target = schemas.get(ref.rsplit("/", 1)[-1]) if ref else media.get("schema")
                if isinstance(target, dict) and target.get("type", "object") == "object":
                    target["additionalProperties"] = False


class StaffOnly(BasePermission):
    """The staff schema: staff sessions and staff tokens. Customers get a 404, as for a path
    that does not exist (the anonymous get DRF's 401)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if not has_perm(request.user, "console.view"):
            raise exceptions.NotFound()
        return True
