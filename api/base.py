"""Pieces every API view shares: strict input serializers, strict money, the fetch helpers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from portal import inputs
from portal.errors import PortalError

# Fields that choose whose data a write touches, or with what power. A write may never set
# them from the body: the tenant comes from the URL (staff) or the login (customers), the
# provider id from the provider, the role from the token or the console.
FORBIDDEN_WRITE_FIELDS = frozenset(
    {
        "tenant",
        "tenant_id",
        "tenant_uuid",
        "child_account_id",
        "provider_account_id",
        "provider_account_ref",
        "role",
        "roles",
        "group",
        "groups",
        "is_staff",
        "is_superuser",
        "user",
        "user_id",
        "owner",
    }
)


class StrictInput(serializers.Serializer):
    """Input serializer that refuses fields it does not declare, instead of ignoring them, so a
    client that tries to set ``tenant``, ``child_account_id`` or ``role`` learns it cannot."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Send a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            errors = {}
            for name in unknown[:20]:
                name = str(name)[:100]
                errors[name] = ["This field may not be set." if name in FORBIDDEN_WRITE_FIELDS else "Unknown field."]
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


# Above zero, at most 9999999999.99, at most two decimals, no leading zeros (portal/inputs.py).
@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^([1-9][0-9]{0,9}(\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9]))$",
        "example": "10.50",
    }
)
class MoneyField(serializers.Field):
    """A positive amount with at most two decimals, as a JSON *string* ("10.50") or integer,
    by the one amount rule (portal/inputs.py); the service then checks the currency's places.

    Refuses what Decimal() would take but a person did not mean: floats (binary rounding),
    NaN/Infinity, exponents, Unicode digits ("١٠"), surrounding spaces, commas, signs, zero."""

    default_error_messages = {
        "invalid": 'Give the amount as a string such as "10.50" (at most two decimals, above zero).',
    }

    def to_internal_value(self, data: Any) -> Decimal:
        if not isinstance(data, (str, int)) or isinstance(data, bool):
            self.fail("invalid")
        try:
            return inputs.amount(data, places=2, currency="", field=self.field_name or "amount")
        except PortalError:
            self.fail("invalid")
        raise AssertionError("unreachable")  # pragma: no cover - fail() raises

    def to_representation(self, value: Any) -> str:
        return str(value)


class SafeText(serializers.CharField):
    """CharField that refuses invisible control and text-direction characters, by the one rule
    of portal/inputs.py (multi-line text keeps its line breaks and tabs)."""

    def __init__(self, *, multiline: bool = False, **kwargs: Any) -> None:
        self.multiline = multiline
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or not isinstance(data, (str, int)):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if inputs.has_invisible(value, multiline=self.multiline):
            raise serializers.ValidationError("Remove the invisible control or text-direction characters.")
        return value


@extend_schema_field(
    {
        "type": "string",
        "nullable": True,
        # portal/inputs.py's rule: plain digits without leading zeros, at most two decimals
        # (zeros after them aside), spaces around trimmed; blank clears it.
        "pattern": r"^\s*((0|[1-9][0-9]{0,7})(\.[0-9]{1,2}0{0,10})?)?\s*$",
        "example": "12.50",
    }
)
class ThresholdField(serializers.Field):
    """The low-balance threshold, by the one rule of portal/inputs.py; null or "" clears it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal | None:
        try:
            return inputs.threshold(data, field=self.field_name or "low_balance_threshold")
        except PortalError as exc:
            raise serializers.ValidationError(exc.message) from None

    def to_representation(self, value: Any) -> str | None:
        return None if value is None else str(value)


def decimal_str(value: Any) -> str | None:
    return None if value is None else str(value)


def validated_input(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The request body checked by ``serializer_class``; a 400 with each field's error otherwise."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
