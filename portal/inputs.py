"""The input rules, one place for each: free text, email, account name, money amounts, the
low-balance threshold, dates. HTML forms, API serializers and services all call these, so one
value gets one answer wherever it is typed. Each rule raises :class:`PortalError` naming the
field, with a sentence a person can act on; none ever rounds, guesses or strips what a person
meant (amounts are refused, never rounded).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from portal.errors import PortalError

# Characters that change how text reads without being seen: every C0/C1 control except the
# line breaks and tab of multi-line text, and the Unicode direction marks, embeddings,
# overrides and isolates (a reason reading "refund" can otherwise store "dnufer").
INVISIBLE = frozenset(
    "\u200e\u200f\u061c"  # left-to-right, right-to-left and Arabic letter marks
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # isolates
)
MULTILINE_ALLOWED = frozenset("\r\n\t")


def has_invisible(text: str, *, multiline: bool = False) -> bool:
    for ch in text:
        if ch in INVISIBLE:
            return True
        if unicodedata.category(ch) == "Cc" and not (multiline and ch in MULTILINE_ALLOWED):
            return True
    return False


def is_ascii_digits(value: object, *, max_length: int = 18) -> bool:
    """True for 1 to ``max_length`` ASCII digits and nothing else: the one test before int() of
    an id, a page or a cursor from a request. str.isdigit() is not it: "²", "١٢" and "１２" are
    digits to it, yet int() refuses the first and reads the others as numbers nobody typed."""
    return isinstance(value, str) and 0 < len(value) <= max_length and value.isascii() and value.isdigit()


def text(
    value: object,
    *,
    field: str,
    label: str,
    max_length: int,
    required: bool = False,
    multiline: bool = False,
) -> str:
    """Free text (names, notes, reasons): stripped, bounded, no invisible characters."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise PortalError(_("Enter the %(label)s as text.") % {"label": _(label)}, field=field)
    result = value.strip()
    if required and not result:
        raise PortalError(_("Enter the %(label)s.") % {"label": _(label)}, field=field, code="required")
    if len(result) > max_length:
        raise PortalError(
            _("The %(label)s can be at most %(max)s characters (this one has %(length)s).")
            % {"label": _(label), "max": max_length, "length": len(result)},
            field=field,
            code="too_long",
        )
    if has_invisible(result, multiline=multiline):
        raise PortalError(
            _("The %(label)s contains an invisible control character; retype it.") % {"label": _(label)},
            field=field,
            code="invalid_characters",
        )
    return result


def reason(value: object, *, field: str = "reason") -> str:
    """Why staff did something: required, one to 500 characters, kept in the audit trail."""
    return text(value, field=field, label=gettext_noop("reason"), max_length=500, required=True)


def email(value: object, *, field: str, label: str = gettext_noop("email address"), required: bool = True) -> str:
    raw = "" if value is None else value
    if not isinstance(raw, str):
        raise PortalError(_("Enter the %(label)s as text.") % {"label": _(label)}, field=field)
    if "\r" in raw or "\n" in raw:
        raise PortalError(_("The %(label)s must be a single line.") % {"label": _(label)}, field=field)
    result = raw.strip()
    if not result:
        if required:
            raise PortalError(_("Enter the %(label)s.") % {"label": _(label)}, field=field, code="required")
        return ""
    if len(result) > 254:
        raise PortalError(
            _("The %(label)s can be at most 254 characters.") % {"label": _(label)}, field=field, code="too_long"
        )
    if has_invisible(result):
        raise PortalError(
            _("The %(label)s contains an invisible character; retype it.") % {"label": _(label)}, field=field
        )
    try:
        validate_email(result)
    except ValidationError:
        raise PortalError(
            _("Enter a valid %(label)s, like name@example.com.") % {"label": _(label)}, field=field
        ) from None
    return result


ACCOUNT_NAME_RE = re.compile(r"[a-z][a-z0-9-]{4,19}")


def account_name(value: object, *, field: str = "account_name") -> str:
    """A provider account name: 5 to 20 of a-z, 0-9 and '-', starting with a letter."""
    name = "" if value is None else value
    if not isinstance(name, str) or not name.strip():
        raise PortalError("Enter the account name.", field=field, code="required")
    if not 5 <= len(name) <= 20:
        raise PortalError(f"The account name must be 5 to 20 characters long (this one has {len(name)}).", field=field)
    # fullmatch: "abcde\n" must fail, which a "$"-anchored match would let through.
    if not ACCOUNT_NAME_RE.fullmatch(name):
        if not ("a" <= name[0] <= "z"):
            raise PortalError("The account name must start with a lowercase latin letter (a-z).", field=field)
        raise PortalError(
            "The account name may contain only lowercase latin letters (a-z), digits and hyphens.", field=field
        )
    return name


# ASCII digits only (re.ASCII keeps \d from matching other scripts), no sign, no exponent, no
# spaces, a dot as the only separator.
_DECIMAL_RE = re.compile(r"(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,12})?", re.ASCII)
MAX_AMOUNT = Decimal("9999999999.99")  # a transfer's amount column holds 12 digits, 2 after the dot


def plain_decimal(value: object, *, field: str, code: str, example: str) -> Decimal:
    """A plain decimal from text, an int or a Decimal; never a float or a bool."""
    if isinstance(value, bool) or value is None:
        raise PortalError(f"Enter an amount, like {example}.", field=field, code=code)
    if isinstance(value, float):
        raise PortalError(
            "Send the amount as a string or a decimal, not a floating-point number.", field=field, code=code
        )
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PortalError(f"Enter an amount, like {example}.", field=field, code=code)
        return value
    if not isinstance(value, str) or not _DECIMAL_RE.fullmatch(value):
        raise PortalError(
            f"Enter the amount as plain digits with a dot, like {example}.",
            field=field,
            code=code,
        )
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern already guarantees a number
        raise PortalError(f"Enter an amount, like {example}.", field=field, code=code) from None


def amount(value: object, *, places: int, currency: str, field: str = "amount") -> Decimal:
    """A positive money amount with at most the currency's ``places`` decimals."""
    result = plain_decimal(value, field=field, code="amount_invalid", example="10 or 10.50")
    return check_amount(result, places=places, currency=currency, field=field)


def check_amount(value: Decimal, *, places: int, currency: str, field: str = "amount") -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise PortalError("Enter a valid amount.", field=field, code="amount_invalid")
    if value <= 0:
        raise PortalError("The amount must be greater than zero.", field=field, code="amount_not_positive")
    # Before quantize: quantizing 1e309 to cents exceeds the context precision and raises.
    if value > MAX_AMOUNT:
        raise PortalError("The amount is too large.", field=field, code="amount_too_large")
    quantum = Decimal(1).scaleb(-places)
    if value != value.quantize(quantum):
        raise PortalError(
            f"{currency} amounts have at most {places} decimal places.", field=field, code="amount_precision"
        )
    return value.quantize(quantum)


# What a person types into a form (never the API, which keeps the plain dot format above):
# digits, at most one decimal separator (a dot or a comma), and optional thousands separators
# (comma, dot, space, no-break space, apostrophe) between groups of three digits.
_GROUPED_RE = re.compile(r"[0-9]{1,3}(?:([,. \u00a0\u202f'])[0-9]{3})*", re.ASCII)
_SPACES = " \u00a0\u202f"


def typed_decimal(value: object, *, field: str, code: str, example: str) -> object:
    """A number as typed in a form, rewritten to the plain dot format (``"10,00"``, ``"10.00"``
    and ``"10"`` are ten; ``"1,000.50"``, ``"1.000,50"`` and ``"1 000,50"`` are a thousand and a
    half). ``"1,000"`` or ``"1.000"`` alone could be a thousand or one, so it is refused with
    what to type instead. Anything that is not text goes on unchanged to the strict rule."""
    if not isinstance(value, str):
        return value
    raw = value.strip()
    if not raw or not raw.isascii() and not all(ch.isascii() or ch in _SPACES for ch in raw):
        return raw
    last = max(raw.rfind("."), raw.rfind(","))
    if last == -1:
        integer, fraction, separator = raw, "", ""
    else:
        integer, fraction, separator = raw[:last], raw[last + 1 :], raw[last]
    grouped = _GROUPED_RE.fullmatch(integer) if integer else None
    if separator and grouped is None and not integer.isdigit():
        # "10,000,5": separators that are neither one decimal mark nor thousands groups.
        raise PortalError(f"Enter the amount like {example}.", field=field, code=code)
    group_mark = grouped.group(1) if grouped else None
    if separator and group_mark == separator:
        # "1,000,000" (only one kind of mark, every group of three): thousands, no decimals.
        whole = raw.translate({ord(separator): None})
        if fraction.isdigit() and len(fraction) == 3:
            return whole
        raise PortalError(f"Enter the amount like {example}.", field=field, code=code)
    if separator and fraction.isdigit() and len(fraction) == 3 and group_mark is None and integer.isdigit():
        if integer != "0" and len(integer) <= 3:
            raise PortalError(
                f'"{raw}" could mean {integer}{fraction} or {integer}.{fraction}: type {integer}{fraction} '
                f"for {integer}{fraction}, or {integer}.{fraction[:2]} with at most two digits after the separator.",
                field=field,
                code=code,
            )
    digits = integer.translate({ord(ch): None for ch in ",. '" + _SPACES}) if group_mark else integer
    if not fraction and separator:
        raise PortalError(f"Enter the digits after the separator, like {example}.", field=field, code=code)
    return f"{digits}.{fraction}" if separator else digits


def typed_amount(value: object, *, places: int, currency: str, field: str = "amount") -> Decimal:
    """:func:`amount` for a value typed in a form: a comma may stand for the dot and thousands
    may be grouped (:func:`typed_decimal`)."""
    text_value = typed_decimal(value, field=field, code="amount_invalid", example="10, 10.50 or 10,50")
    try:
        return amount(text_value, places=places, currency=currency, field=field)
    except PortalError as exc:
        if exc.code == "amount_invalid":
            exc.message = "Enter the amount as digits with one decimal separator, like 10, 10.50 or 10,50."
        raise


MAX_THRESHOLD = Decimal("99999999.99")


def threshold(value: object, *, field: str = "low_balance_threshold") -> Decimal | None:
    """The low-balance alert threshold: empty clears it; otherwise 0 to 99,999,999.99 with at
    most two decimals. The same rule on create, clone, import, the billing panel, the customer's
    alert form and the API."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, str):
        value = value.strip()
    refusal = PortalError(
        "Enter a threshold of zero or more, at most 99999999.99, like 5 or 12.50.",
        field=field,
        code="threshold_invalid",
    )
    try:
        result = plain_decimal(value, field=field, code="threshold_invalid", example="5 or 12.50")
    except PortalError:
        raise refusal from None
    if result < 0 or result > MAX_THRESHOLD:
        raise refusal
    if result != result.quantize(Decimal("0.01")):
        raise PortalError("Use at most two decimals, like 12.50.", field=field, code="threshold_invalid")
    return result


def typed_threshold(value: object, *, field: str = "low_balance_threshold") -> Decimal | None:
    """:func:`threshold` for a value typed in a form (a comma may stand for the dot)."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    return threshold(
        typed_decimal(value, field=field, code="threshold_invalid", example="5, 12.50 or 12,50"), field=field
    )


FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9998, 12, 31)


def iso_date(value: object, *, field: str, label: str) -> date | None:
    """A calendar date written YYYY-MM-DD; empty is None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value.strip(), re.ASCII):
        raise PortalError(
            _("Enter the %(label)s as YYYY-MM-DD.") % {"label": _(label)}, field=field, code="date_invalid"
        )
    try:
        parsed = date.fromisoformat(value.strip())
    except ValueError:
        raise PortalError(
            _("The %(label)s is not a real date.") % {"label": _(label)}, field=field, code="date_invalid"
        ) from None
    # A day either side must still be a date, so a range query never overflows.
    if not FIRST_DAY <= parsed <= LAST_DAY:
        raise PortalError(
            _("The %(label)s is outside the range of dates the portal keeps (%(first)s–%(last)s).")
            % {"label": _(label), "first": FIRST_DAY.year, "last": LAST_DAY.year},
            field=field,
            code="date_range",
        )
    return parsed


# A calendar month, YYYY-MM, years 1900 to 2999 (the API schema declares the same pattern).
MONTH_PATTERN = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"


def iso_month(value: object, *, field: str, label: str = gettext_noop("month")) -> date | None:
    """A calendar month written YYYY-MM, as its first day; empty is None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(MONTH_PATTERN, value.strip(), re.ASCII):
        raise PortalError(
            _("Enter the %(label)s as YYYY-MM, between 1900-01 and 2999-12.") % {"label": _(label)},
            field=field,
            code="date_invalid",
        )
    year, month = value.strip().split("-")
    return date(int(year), int(month), 1)


def aware_datetime(value: object, *, field: str, label: str = gettext_noop("date-time")) -> datetime | None:
    """An ISO 8601 date-time with a time zone, as UTC; empty is None. A moment whose UTC time
    falls outside the calendar (0001-01-01T00:00+05:00, 9999-12-31T23:59-05:00) is refused
    here, with the field named, instead of overflowing in the database query."""
    if value is None or value == "":
        return None
    refusal = PortalError(
        _("Give the %(label)s as an ISO 8601 date-time with a time zone, like 2026-01-31T12:00:00+00:00.")
        % {"label": _(label)},
        field=field,
        code="datetime_invalid",
    )
    if not isinstance(value, str) or len(value) > 40 or not value.isascii():
        raise refusal
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        raise refusal from None
    if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
        raise refusal
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise PortalError(
            _("The %(label)s is outside the range of dates the portal keeps.") % {"label": _(label)},
            field=field,
            code="datetime_range",
        ) from None


def date_range(start: date | None, end: date | None, *, field: str = "start") -> None:
    if start is not None and end is not None and start > end:
        raise PortalError("The start date is after the end date.", field=field, code="date_range")
