"""Money as integer ten-thousandths (4 decimal places), never float.

Every balance and amount in the sandbox database is an INTEGER count of 1/10000 of a
currency unit. Conversion to and from text is exact; JSON numbers are written from
these integers by :func:`fmt` so nothing ever passes through a binary float.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

SCALE = 10000
PLACES = 4

_AMOUNT_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)


class AmountError(ValueError):
    """The text is not an acceptable amount."""


def fmt(units: int) -> str:
    """Render integer ten-thousandths as the shortest exact JSON number (``0.4``, ``-12``, ``68.5598``)."""
    if units < 0:
        return "-" + fmt(-units)
    whole, frac = divmod(units, SCALE)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:04d}".rstrip("0")


def to_decimal(units: int) -> Decimal:
    return Decimal(units).scaleb(-PLACES).quantize(Decimal("0.0001"))


def from_decimal(value: Decimal, *, allow_round: bool = False) -> int:
    """Decimal to units; more than 4 places is an error unless ``allow_round`` (half-even)."""
    if not value.is_finite():
        raise AmountError("not a finite number")
    scaled = value.scaleb(PLACES)
    if scaled != scaled.to_integral_value():
        if not allow_round:
            raise AmountError("more than 4 decimal places")
        scaled = scaled.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return int(scaled)


def parse(text: str, *, allow_round: bool = False) -> int:
    """Parse a wire amount strictly: ASCII digits, optional leading '-', optional '.digits'.

    Rejects whitespace, '+', exponents, NaN/Infinity, Unicode digits, commas.
    """
    if not isinstance(text, str) or not _AMOUNT_RE.fullmatch(text):
        raise AmountError("invalid amount syntax")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards
        raise AmountError("invalid amount") from exc
    return from_decimal(value, allow_round=allow_round)


def convert(units: int, rate_from: Decimal, rate_to: Decimal) -> int:
    """Convert between currencies given both rates per USD; rounds half-even to 4 places."""
    if rate_from == rate_to:
        return units
    value = Decimal(units) * rate_to / rate_from
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
