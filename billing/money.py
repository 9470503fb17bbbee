"""Parsing and checking amounts. Decimal only; the one place amounts from people are read.

``Decimal()`` alone is too lenient for money typed by a person or sent by a client: it takes
``NaN``, ``Infinity``, ``1e309``, ``" 10"``, Unicode digits (``"١٠"``, ``"１０"``) and signs.
(RELIABILITY.md §6 B1.)
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from billing import conf
from portal.errors import PortalError

# ASCII digits only (re.ASCII keeps \d from matching other scripts), no sign, no exponent,
# no spaces, a dot as the only separator.
_AMOUNT_RE = re.compile(r"(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,12})?", re.ASCII)
MAX_AMOUNT = Decimal("9999999999.99")  # Transfer.amount is Decimal(12, 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-conf.places(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit (used for display and for provider balances only;
    amounts people enter are refused, never rounded)."""
    return amount.quantize(quantum(currency))


def parse_amount(value: object, *, currency: str, field: str = "amount") -> Decimal:
    """A positive amount with at most the currency's decimal places, or PortalError(field)."""
    if isinstance(value, bool) or value is None:
        raise PortalError("Enter an amount.", field=field, code="amount_invalid")
    if isinstance(value, float):
        raise PortalError(
            "Send the amount as a string or a decimal, not a floating-point number.", field=field, code="amount_invalid"
        )
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        if not _AMOUNT_RE.fullmatch(value):
            raise PortalError(
                "Enter the amount as plain digits with a dot, e.g. 10 or 10.50.", field=field, code="amount_invalid"
            )
        try:
            amount = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern already guarantees a number
            raise PortalError("Enter a valid amount.", field=field, code="amount_invalid") from None
    else:
        raise PortalError("Enter a valid amount.", field=field, code="amount_invalid")
    return check_amount(amount, currency=currency, field=field)


def check_amount(amount: Decimal, *, currency: str, field: str = "amount") -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise PortalError("Enter a valid amount.", field=field, code="amount_invalid")
    if amount <= 0:
        raise PortalError("The amount must be greater than zero.", field=field, code="amount_not_positive")
    # Before quantize: quantizing 1e309 to cents exceeds the context precision and raises.
    if amount > MAX_AMOUNT:
        raise PortalError("The amount is too large.", field=field, code="amount_too_large")
    q = quantum(currency)
    if amount != amount.quantize(q):
        raise PortalError(
            f"{currency} amounts have at most {conf.places(currency)} decimal places.",
            field=field,
            code="amount_precision",
        )
    return amount.quantize(q)


_BIDI_OR_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069\u200e\u200f]")


def clean_text(value: object, *, field: str, max_length: int, required: bool = True) -> str:
    """Free text kept in the audit trail: no NUL/control characters or bidi overrides (B8)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise PortalError("Enter text.", field=field)
    text = value.strip()
    if required and not text:
        raise PortalError("This field is required.", field=field, code="required")
    if len(text) > max_length:
        raise PortalError(f"At most {max_length} characters.", field=field, code="too_long")
    if _BIDI_OR_CONTROL.search(text):
        raise PortalError("Remove control or text-direction characters.", field=field, code="invalid_characters")
    return text
