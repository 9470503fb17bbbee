"""Money as people read it: one function for every page, email and message.

``money(Decimal("1234.5"), "USD")`` is ``"1,234.50 USD"`` in English and ``"1 234,50 USD"``
in Russian: the currency's decimals, the active language's thousands and decimal separators
(Django's number formats), the currency code always after the number. Nothing is converted.

Decimals per currency: USD, EUR, RUR/RUB, GBP and KZT show 2 (KZT keeps its tiyn because
the providers bill calls in fractions of a tenge and move money in steps of 0.01), JPY 0, any
other currency 2. A provider gives balances with 4 decimals; a page shows them rounded half-even
to the currency's decimals, and :func:`exact` (for a ``title`` attribute and for CSV files)
keeps every digit the provider sent.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from django.utils import formats

#: Minor units per currency, the one table (billing.conf reads it for amounts people type).
CURRENCY_PLACES: dict[str, int] = {"USD": 2, "EUR": 2, "RUR": 2, "RUB": 2, "KZT": 2, "GBP": 2, "JPY": 0}
DEFAULT_PLACES = 2

NO_VALUE = "—"


def places(currency: str | None) -> int:
    return CURRENCY_PLACES.get((currency or "").upper(), DEFAULT_PLACES)


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool | float):
        return None
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def number(value: object, currency: str | None) -> str:
    """The amount alone, with the currency's decimals and the language's separators."""
    amount = _decimal(value)
    if amount is None:
        return NO_VALUE
    decimals = places(currency)
    rounded = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)
    if rounded == 0:
        rounded = abs(rounded)  # "-0.00" reads as a debt nobody has
    return formats.number_format(rounded, decimal_pos=decimals, use_l10n=True, force_grouping=True)


def money(value: object, currency: str | None) -> str:
    """``"1,234.56 USD"``; a missing amount is a dash, without a currency."""
    text = number(value, currency)
    if text == NO_VALUE:
        return text
    return f"{text} {(currency or '').upper()}".rstrip()


def hides_digits(value: object, currency: str | None) -> bool:
    """Does the display round away digits that the stored value has (non-zero ones)?"""
    amount = _decimal(value)
    if amount is None:
        return False
    quantum = Decimal(1).scaleb(-places(currency))
    return amount != amount.quantize(quantum, rounding=ROUND_HALF_EVEN)


def exact(value: object, currency: str | None = None) -> str:
    """Every digit as stored (for titles and CSV): a plain dot, no grouping, never rounded."""
    amount = _decimal(value)
    if amount is None:
        return ""
    text = format(amount, "f")
    return f"{text} {currency.upper()}" if currency else text
