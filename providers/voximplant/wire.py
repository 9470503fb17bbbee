"""Voximplant wire format: parameter encoding, response parsing, error-code mapping.

Encoding: lists ``;``-joined, booleans ``true``/``false``, timestamps
``YYYY-MM-DD HH:mm:ss`` (we always send UTC and ask for ``timezone=Etc/GMT``), dates
``YYYY-MM-DD``, decimals as plain numbers (never exponent notation).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from providers.errors import (
    AuthenticationError,
    Duplicate,
    InsufficientFunds,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    Unsupported,
)

PROVIDER = "voximplant"

ParamValue = str | int | bool | Decimal | date | datetime | Sequence[int] | Sequence[str] | None

__all__ = [
    "PROVIDER",
    "ParamValue",
    "encode_params",
    "error_from_body",
    "format_timestamp",
    "parse_bool",
    "parse_date",
    "parse_decimal",
    "parse_int",
    "parse_timestamp",
    "zone",
]

_TS_FORMAT = "%Y-%m-%d %H:%M:%S"


def zone(name: str) -> tzinfo:
    if name in ("UTC", "Etc/GMT", "Etc/UTC", "GMT"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"unknown timezone {name!r}", provider=PROVIDER, field="timezone") from None


def format_timestamp(value: datetime, tz: tzinfo = UTC) -> str:
    """Aware datetime -> ``YYYY-MM-DD HH:mm:ss`` in ``tz``. Naive datetimes are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument("naive datetime: pass an aware datetime", provider=PROVIDER)
    return value.astimezone(tz).strftime(_TS_FORMAT)


def _encode_one(name: str, value: object, tz: tzinfo) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidArgument(f"{name} must be a finite number", provider=PROVIDER, field=name)
        return format(value, "f")
    if isinstance(value, float):
        # Money never travels as float; refuse rather than round silently.
        raise InvalidArgument(f"{name}: use Decimal, not float", provider=PROVIDER, field=name)
    if isinstance(value, datetime):
        return format_timestamp(value, tz)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        parts = [_encode_one(name, item, tz) for item in value]
        if any(";" in part for part in parts):
            raise InvalidArgument(f"{name}: list items cannot contain ';'", provider=PROVIDER, field=name)
        return ";".join(parts)
    raise TypeError(f"cannot encode {name}={type(value).__name__}")


def encode_params(params: Mapping[str, object], *, tz: tzinfo = UTC) -> dict[str, str]:
    """Form fields for ``params``; ``None`` values are left out."""
    return {name: _encode_one(name, value, tz) for name, value in params.items() if value is not None}


# -- parsing ---------------------------------------------------------------------------


def _malformed(what: str, method: str | None) -> OutcomeUnknown:
    # A success answer we cannot read: for a write the effect is unknown, so say so.
    return OutcomeUnknown(f"malformed response: {what}", provider=PROVIDER, method=method)


def parse_decimal(value: Any, what: str, method: str | None = None) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _malformed(f"{what} is a boolean", method)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise _malformed(f"{what} is not a number", method) from None
    else:
        raise _malformed(f"{what} is not a number", method)
    if not result.is_finite():
        raise _malformed(f"{what} is not finite", method)
    return result


def parse_int(value: Any, what: str, method: str | None = None) -> int:
    if isinstance(value, bool):
        raise _malformed(f"{what} is a boolean", method)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    raise _malformed(f"{what} is not an integer", method)


def parse_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return None


def parse_timestamp(value: Any, tz: tzinfo, what: str, method: str | None = None) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise _malformed(f"{what} is not a timestamp", method)
    try:
        return datetime.strptime(value, _TS_FORMAT).replace(tzinfo=tz)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _malformed(f"{what} is not a timestamp", method) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def parse_date(value: Any) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


# -- errors ----------------------------------------------------------------------------

# code -> (kind, field), from the codes and meanings in Voximplant's API reference.
_AUTH = {100, 104, 135, 137, 161, 447, 454, 455, 456}
_RATE = {162, 340, 416}
# Internal failures reported in a JSON body: the server may have done part of the work.
_INTERNAL = {1, 2, 4, 5}
_NOT_FOUND = {
    115: "account_id",
    116: "application_id",
    117: "user_id",
    194: "child_account_id",
    197: "transaction_id",
    198: "child_account_name",
    199: "child_account_email",
}
_DUPLICATE = {
    106: "account_name",
    118: "user_name",
    128: "account_email",
    # 303: several earlier transactions carry this payment_reference. Reported as a
    # duplicate, not a bad argument: money under that reference already moved.
    303: "payment_reference",
    484: None,  # rejected as a probable automatic resend
    514: "account_name",  # account creation has already started
    515: None,  # the same operation was performed recently
}
_INVALID = {
    101: None,
    102: "cmd",
    105: "output",
    109: None,
    110: "plan_subscription_template_id",
    111: None,
    112: "account_password",
    113: "account_name",
    114: "account_name",
    122: "user_name",
    123: "to_date",
    125: "amount",
    131: None,
    134: None,
    136: "account_email",
    173: "account_name",
    177: "parent_account_id",
    195: None,
    196: None,
    201: "new_child_account_email",
    202: "language_code",
    209: "transaction_type",
    210: "currency",
    211: "account_custom_data",
    212: "account_custom_data",
    225: "amount",
    226: "amount",
    233: "date",
    234: "user_transaction_description",
    235: "account_transaction_description",
    236: "child_transaction_description",
    237: "parent_transaction_description",
    304: "payment_reference",
    318: "amount",
    397: None,
    398: "callback_url",
    399: "callback_salt",
    426: "plan_type",
    458: None,
    463: "account_password",
    464: "account_password",
    485: None,
    491: "amount",
    492: None,
    496: None,
    499: None,
    523: "account_password",
    524: "account_password",
    573: "user_id",
}
# Generic codes whose message names the parameter: "specify the 'amount' parameter".
_NAMED_PARAM = re.compile(r"['\"`]([a-z][a-z0-9_]*)['\"`]")


def _field_from_message(message: str) -> str | None:
    match = _NAMED_PARAM.search(message)
    return match.group(1) if match else None


def error_from_body(
    error: Mapping[str, Any], *, method: str, http_status: int | None, retry_after: float | None = None
) -> ProviderError:
    """The typed error for a ``{"code": …, "msg": …}`` object."""
    raw_code = error.get("code")
    code: int | None
    try:
        code = int(raw_code) if raw_code is not None and not isinstance(raw_code, bool) else None
    except (TypeError, ValueError):
        code = None
    message = str(error.get("msg") or error.get("message") or "provider error")
    kw: dict[str, Any] = {"provider": PROVIDER, "code": code, "method": method, "http_status": http_status}
    if code in _AUTH:
        return AuthenticationError(message, **kw)
    if code == 103:
        # "Unknown command": the method is gone from this API (TransferMoneyToChildAccount
        # may be; the docs do not say) -- a missing capability, not a bad argument.
        return Unsupported(message, **kw)
    if code in _RATE:
        return RateLimited(message, retry_after=retry_after, refused_before_execution=True, **kw)
    if code in _INTERNAL:
        return OutcomeUnknown(message, **kw)
    if code == 127:
        return InsufficientFunds(message, field="amount", **kw)
    if code in _NOT_FOUND:
        return NotFound(message, field=_NOT_FOUND[code], **kw)
    if code in _DUPLICATE:
        return Duplicate(message, field=_DUPLICATE[code], **kw)
    if code in _INVALID:
        return InvalidArgument(message, field=_INVALID[code] or _field_from_message(message), **kw)
    return ProviderError(message, **kw)
