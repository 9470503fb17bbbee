"""The OpenAPI schema by audience, and what every operation documents besides its success.

Two schemas: the staff one (every operation; staff logins and staff tokens only) and the
customer one (the operations a customer may call: ``/api/v1/me`` and ``/api/v1/customer/...``).
A customer asking for the staff schema gets the same 404 as for any path that does not exist.

The postprocessing hook adds to every operation the error responses it can give, all in the
one JSON error shape of ``portal/errors.py``, and writes the bounds the views enforce on the
shared query parameters (limit, cursor, since, dates, ...), so a client generated from the
schema, or a fuzzer reading it, knows them."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from api.pagination import MAX_LIMIT
from api.reselling_plans import PLAN_CREATE_RULES
from api.tenants import CONNECTION_RE
from billing.conf import transfer_limit
from portal.errors import ERROR_MESSAGES
from portal.inputs import INVISIBLE, MULTILINE_ALLOWED
from portal.roles import has_perm
from providers.voximplant.users import USER_NAME_RE

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
    # A connection's uuid or its numeric id, as the tenant list reads it.
    "connection": {"type": "string", "maxLength": 36, "pattern": f"^({CONNECTION_RE.pattern})$"},
}
# Header parameters, as api/idempotency.py checks them: 1-255 printable ASCII characters (no
# space at either end, which HTTP would strip).
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[!-~]([ -~]*[!-~])?$"},
}


def _char_class(characters: frozenset[str] | str) -> str:
    return "".join(f"\\u{ord(ch):04x}" for ch in sorted(characters))


# The characters portal/inputs.py refuses in text: every C0/C1 control and the direction marks,
# embeddings, overrides and isolates; multi-line text keeps its line breaks and tab.
_CONTROLS = "\\u0000-\\u001f\\u007f-\\u009f"
_REFUSED_SINGLE = _CONTROLS + _char_class(INVISIBLE)
_REFUSED_MULTI = "\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f" + _char_class(INVISIBLE)
assert MULTILINE_ALLOWED == frozenset("\r\n\t")  # the three the multi-line class lets through


def text_pattern(*, multiline: bool, blank: bool) -> str:
    """Text without the refused characters; not blank (after trimming) unless ``blank``."""
    refused = _REFUSED_MULTI if multiline else _REFUSED_SINGLE
    if blank:
        return f"^[^{refused}]*$"
    return f"^[^{refused}]*[^{refused}\\s][^{refused}]*$"


class SafeTextExtension(OpenApiSerializerFieldExtension):
    """api.base.SafeText in request bodies: the pattern of the characters it accepts."""

    target_class = "api.base.SafeText"

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = dict(auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True))
        if direction == "request":
            field = self.target
            schema["pattern"] = text_pattern(
                multiline=field.multiline, blank=field.allow_blank or not field.trim_whitespace
            )
        return schema


# Rules of request-body fields that their serializers do not state but the services enforce
# (portal/inputs.py, tenants/services/validation.py), by schema component and field.
ACCOUNT_NAME = {"type": "string", "minLength": 5, "maxLength": 20, "pattern": r"^[a-z][a-z0-9-]{4,19}$"}
PASSWORD = {
    "type": "string",
    "writeOnly": True,
    "minLength": 12,
    "maxLength": 64,
    # Voximplant's rule, the strictest: an uppercase and a lowercase letter, a digit and a
    # character that is none of those.
    "pattern": r"^(?=[\s\S]*[A-Z])(?=[\s\S]*[a-z])(?=[\s\S]*[0-9])(?=[\s\S]*[^A-Za-z0-9])[^\u0000]{12,64}$",
}
EMAIL = {"type": "string", "format": "email", "maxLength": 254}
# A PBX user's name, the provider's rule (tenants.services.users.validate_user_name).
PBX_USER_NAME = {"type": "string", "minLength": 3, "maxLength": 50, "pattern": f"^{USER_NAME_RE.pattern}$"}
EMAIL_OR_EMPTY = {"oneOf": [EMAIL, {"type": "string", "maxLength": 0}]}
BODY_RULES: dict[str, dict[str, dict[str, Any]]] = {
    "TenantCreateIn": {"account_name": ACCOUNT_NAME, "password": PASSWORD},
    "TenantCloneIn": {"account_name": ACCOUNT_NAME, "password": PASSWORD},
    "PatchedTenantEditIn": {
        "account_name": ACCOUNT_NAME,
        "password": PASSWORD,
        "account_email": EMAIL,
        "contact_email": EMAIL_OR_EMPTY,
    },
    "PbxUserCreateIn": {"user_name": PBX_USER_NAME, "password": PASSWORD},
    "PatchedPbxUserUpdateIn": {"user_name": PBX_USER_NAME},
}


# Rules across fields of one request body, by schema component.
COMPONENT_RULES: dict[str, dict[str, Any]] = {"PlanCreateIn": PLAN_CREATE_RULES}


def customer_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Preprocessing hook of the customer schema: only the operations a customer may call."""
    return [e for e in endpoints if e[0] == "/api/v1/me" or e[0].startswith("/api/v1/customer/")]


def document_errors_and_bounds(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook (both schemas): error responses and parameter bounds."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
    strict_bodies(result)
    body_rules(schemas)
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            statuses = ALWAYS + (WRITES if method != "get" else ())
            for status in statuses:
                responses.setdefault(status, {"description": ERROR_DESCRIPTIONS[status]})
            for status, response in responses.items():
                # An error status an operation declares itself (a GET's 409) has the one shape too.
                if status in ERROR_DESCRIPTIONS and "content" not in response:
                    response["content"] = {"application/json": {"schema": reference}}
            for parameter in operation.get("parameters", []):
                table = {"query": PARAMETER_SCHEMAS, "header": HEADER_SCHEMAS}.get(parameter.get("in", ""), {})
                bounds = table.get(parameter.get("name", ""))
                if bounds:
                    # A pattern the operation states itself is its own rule and wins.
                    own = parameter.get("schema", {})
                    parameter["schema"] = {**own, **bounds, **({"pattern": own["pattern"]} if "pattern" in own else {})}
    return result


FRACTION = r"(\.[0-9]{1,2})?"


def amount_at_most(limit: Decimal) -> str | None:
    """A pattern of the positive amounts (at most two decimals, no leading zeros) up to
    ``limit``; None for a limit below 1, which no such pattern is kept for."""
    limit = limit.quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
    if limit < 1:
        return None
    whole, fraction = f"{limit:f}".split(".")
    branches = [r"0\.([1-9][0-9]?|0[1-9])"]
    if len(whole) >= 2:
        branches.append(f"[1-9][0-9]{{0,{len(whole) - 2}}}{FRACTION}")
    for i, digit in enumerate(whole):
        low, high = (1 if i == 0 else 0), int(digit) - 1
        if high >= low:
            rest = len(whole) - i - 1
            branches.append(f"{whole[:i]}[{low}-{high}]" + (f"[0-9]{{{rest}}}" if rest else "") + FRACTION)
    tenths, cents = int(fraction[0]), int(fraction[1])
    tails = [f"[0-{tenths}]", f"{tenths}[0-{cents}]"] + ([f"[0-{tenths - 1}][0-9]"] if tenths else [])
    branches.append(f"{whole}(\\.({'|'.join(tails)}))?")
    return "^(" + "|".join(branches) + ")$"


def body_rules(schemas: dict[str, Any]) -> None:
    limited = amount_at_most(transfer_limit())
    for component in ("TransferCreateIn", "UserTransferIn"):
        transfer = schemas.get(component, {}).get("properties", {}).get("amount")
        if transfer is not None and limited:  # the transfer limit of billing/conf.py, as it is set now
            transfer["pattern"] = limited
            transfer["description"] = f"Above zero and at most {transfer_limit()} (the transfer limit)."
    for name, rule in COMPONENT_RULES.items():
        if name in schemas:
            schemas[name].update(rule)
    for name, fields in BODY_RULES.items():
        properties = schemas.get(name, {}).get("properties", {})
        for field, rule in fields.items():
            if field in properties:
                keep = {k: v for k, v in properties[field].items() if k in ("description", "default")}
                properties[field] = {**rule, **keep}


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
