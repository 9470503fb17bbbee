"""A tiny JSON writer that renders money exactly.

``Money(units)`` values are written as exact decimal numbers (see :func:`sandbox.money.fmt`);
``Decimal`` values are written from their exact text. Everything else follows ``json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

# json's own escaper: the C accelerator wherever CPython has it.
from json.encoder import encode_basestring_ascii as _esc
from typing import Any

from .money import fmt


class Money(int):
    """An integer count of ten-thousandths that serialises as an exact decimal number."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Money({fmt(int(self))})"


# A JSON string literal for ``text`` (ASCII only, as json.dumps writes it); the C function
# itself, with no Python wrapper: a page of 1,000 accounts calls it 7,000 times.
esc: Callable[[str], str] = _esc


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError("non-finite Decimal")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


def _write(obj: Any, out: list[str]) -> None:
    # The exact types a reply is made of, most frequent first; anything else goes to _write_other.
    t = type(obj)
    if t is str:
        out.append(_esc(obj))
    elif t is Money:
        out.append(fmt(int(obj)))
    elif t is bool:
        out.append("true" if obj else "false")
    elif t is int:
        out.append(int.__repr__(obj))
    elif obj is None:
        out.append("null")
    elif t is dict:
        # Each member is followed by ","; the last "," becomes the closing brace.
        out.append("{")
        for key, value in obj.items():
            out.append(_esc(str(key)))
            out.append(":")
            _write(value, out)
            out.append(",")
        if obj:
            out[-1] = "}"
        else:
            out.append("}")
    elif t is list or t is tuple:
        out.append("[")
        for value in obj:
            _write(value, out)
            out.append(",")
        if obj:
            out[-1] = "]"
        else:
            out.append("]")
    elif t is RawJSON:
        out.append(obj.text)
    else:
        _write_other(obj, out)


def _write_other(obj: Any, out: list[str]) -> None:
    """Decimals, floats, and subclasses of dict, list and tuple."""
    t = type(obj)
    if t is Decimal:
        out.append(_decimal_text(obj))
    elif t is float:
        out.append(json.dumps(obj, allow_nan=False))
    elif isinstance(obj, dict):
        _write(dict(obj), out)
    elif isinstance(obj, list | tuple):
        _write(list(obj), out)
    else:
        raise TypeError(f"cannot serialise {t.__name__}")


class RawJSON:
    """Pre-rendered JSON text embedded as is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def dumps(obj: Any) -> str:
    out: list[str] = []
    _write(obj, out)
    return "".join(out)
