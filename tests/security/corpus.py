"""One corpus of hostile input, for every test that throws input at the portal.

Each entry is a value class a person, a browser or an attacker can send: digits that are not
ASCII digits, fullwidth forms, control and direction characters, overlong text, dates at the
ends of the calendar with offsets that push them past it, signed zero, huge and negative
numbers, and JSON values of the wrong type. Text values go into query strings and form
fields; JSON values into API bodies as well."""

from __future__ import annotations

from typing import Any

# (value class, text) - what a query parameter or a form field can carry.
TEXT: list[tuple[str, str]] = [
    ("empty", ""),
    ("superscript digit", "²"),
    ("arabic-indic digits", "١٢٣"),
    ("fullwidth digits", "１２３"),
    ("digits then superscript", "12²"),
    ("fullwidth letters", "ＡＢＣ"),
    ("nul", "a\x00b"),
    ("control characters", "\x01\x1b[31m\x7f"),
    ("rtl override", "\u202eevil"),
    ("zero-width", "a\u200bb\ufeff"),
    ("overlong", "x" * 10_000),
    ("overlong digits", "9" * 10_000),
    ("minus zero", "-0"),
    ("negative", "-1"),
    ("huge integer", str(10**30)),
    ("float exponent", "1e309"),
    ("nan", "NaN"),
    ("decimal comma", "1,5"),
    ("date at the start with an offset", "0001-01-01T00:00:00+05:00"),
    ("date at the end with an offset", "9999-12-31T23:59:59-05:00"),
    ("date with the widest offset", "0001-01-01T00:00:00+23:59"),
    ("date only at the end", "9999-12-31"),
    ("impossible date", "2026-02-30"),
    ("year zero", "0000-01-01"),
    ("sql", "' OR 1=1 --"),
    ("html", '<script>alert("x")</script>'),
    ("emoji", "\U0001f4a9" * 50),
    ("word", "next"),
    ("crlf header", "a\r\nSet-Cookie: x=y"),
]

# JSON values that are not text: for API bodies.
JSON: list[tuple[str, Any]] = [
    ("null", None),
    ("true", True),
    ("zero int", 0),
    ("negative int", -1),
    ("huge int", 10**30),
    ("float", 0.1),
    ("negative zero float", -0.0),
    ("list", ["a", "b"]),
    ("object", {"a": {"b": 1}}),
    ("empty list", []),
    ("empty object", {}),
]

# Raw bodies that are not a JSON object at all (sent as application/json).
RAW_BODIES: list[tuple[str, bytes]] = [
    ("not json", b"{not json"),
    ("empty", b""),
    ("array", b"[1, 2, 3]"),
    ("number out of range", b'{"amount": 1e999}'),
    ("nan literal", b'{"amount": NaN}'),
    ("deep nesting", b"[" * 5000 + b"]" * 5000),
    ("invalid utf-8", b'{"name": "\xff\xfe"}'),
    ("nul in json", b'{"name": "a\\u0000b"}'),
    ("duplicate keys", b'{"name": "a", "name": "b"}'),
]

# Query parameter names views read, beyond the ones each list declares.
COMMON_PARAMETERS = (
    "q",
    "page",
    "cursor",
    "after",
    "before",
    "limit",
    "since",
    "until",
    "status",
    "state",
    "sort",
    "format",
    "from",
    "to",
    "date_from",
    "date_to",
    "start",
    "end",
    "tenant",
    "connection",
    "provider",
    "action",
    "kind",
    "next",
    "days",
    "ids",
)


def text_values() -> list[str]:
    return [value for _, value in TEXT]


def json_values() -> list[Any]:
    return [value for _, value in TEXT] + [value for _, value in JSON]
