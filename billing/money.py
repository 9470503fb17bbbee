"""Money amounts in billing: the currency's decimal places applied to the one amount rule of
portal/inputs.py. Decimal only; amounts people type are refused, never rounded.

``Decimal()`` alone is too lenient for money typed by a person or sent by a client: it takes
``NaN``, ``Infinity``, ``1e309``, ``" 10"``, Unicode digits (``"١٠"``, ``"１０"``) and signs.
"""

from __future__ import annotations

from decimal import Decimal

from billing import conf
from portal import inputs

MAX_AMOUNT = inputs.MAX_AMOUNT  # Transfer.amount is Decimal(12, 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-conf.places(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit (used for display and for provider balances only;
    amounts people enter are refused, never rounded)."""
    return amount.quantize(quantum(currency))


def parse_amount(value: object, *, currency: str, field: str = "amount") -> Decimal:
    """A positive amount with at most the currency's decimal places, or PortalError(field)."""
    return inputs.amount(value, places=conf.places(currency), currency=currency, field=field)


def parse_typed_amount(value: object, *, currency: str, field: str = "amount") -> Decimal:
    """:func:`parse_amount` for a form: "10,50" and "1,000.50" are read (portal/inputs.py)."""
    return inputs.typed_amount(value, places=conf.places(currency), currency=currency, field=field)


def check_amount(amount: Decimal, *, currency: str, field: str = "amount") -> Decimal:
    return inputs.check_amount(amount, places=conf.places(currency), currency=currency, field=field)


def clean_text(value: object, *, field: str, max_length: int, required: bool = True) -> str:
    """Free text kept in the audit trail (a reason, a note), by the one text rule."""
    return inputs.text(value, field=field, label=field, max_length=max_length, required=required)
