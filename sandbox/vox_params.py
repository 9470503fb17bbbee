"""Voximplant emulation: request parameters and the checks the methods share."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import money
from .options import Options
from .vox_auth import VoxError, err

ALL = "all"
NAME_RE = re.compile(r"[a-z][a-z0-9-]*")
EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+",
    re.ASCII,
)
DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
URL_RE = re.compile(r"https?://[^\s/?#]+[^\s]*", re.ASCII)
WEAK_PASSWORDS = {"password1!", "p@ssw0rd", "p@ssword1", "qwerty123!", "qwerty1!", "passw0rd!", "welcome1!"}

LANGUAGE_CODES = frozenset(
    "aa ab af am ar as ay az ba be bg bh bi bn bo br ca co cs cy da de dz el en eo es et eu fa fi fj fo fr fy ga gd "
    "gl gn gu ha hi he hr hu hy ia id ie ik in is it iu iw ja ji jw ka kk kl km kn ko ks ku ky la ln lo lt lv mg mi "
    "mk ml mn mo mr ms mt my na ne nl no oc om or pa pl ps pt qu rm rn ro ru rw sa sd sg sh si sk sl sm sn so sq sr "
    "ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ug uk ur uz vi vo wo xh yi yo za zh zu".split()
)


class Params:
    def __init__(self, raw: dict[str, str], opts: Options) -> None:
        self.raw = raw
        self.opts = opts

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def given(self, name: str) -> bool:
        """Present and not blank (a blank optional parameter counts as absent)."""
        value = self.raw.get(name)
        return value is not None and value.strip() != ""

    @overload
    def text(self, name: str, default: str) -> str: ...
    @overload
    def text(self, name: str, default: None = None) -> str | None: ...
    def text(self, name: str, default: str | None = None) -> str | None:
        """The raw value when given, else ``default``."""
        return self.raw[name] if self.given(name) else default

    def required(self, name: str) -> str:
        if name not in self.raw:
            raise err(485, name)
        value = self.raw[name]
        if value.strip() == "":
            raise err(134, name)
        return value

    @overload
    def flag(self, name: str, default: bool) -> bool: ...
    @overload
    def flag(self, name: str, default: None = None) -> bool | None: ...
    def flag(self, name: str, default: bool | None = None) -> bool | None:
        """``true``/``false`` (and ``1``/``0`` where the options allow numeric booleans)."""
        if not self.given(name):
            return default
        value = self.raw[name].strip().lower()
        if value == "true":
            return True
        if value == "false":
            return False
        if self.opts["numeric_booleans"] and value in ("1", "0"):
            return value == "1"
        raise err(496, name)

    @overload
    def integer(self, name: str, default: int, *, code: int = ..., minimum: int = ...) -> int: ...
    @overload
    def integer(self, name: str, default: None = None, *, code: int = ..., minimum: int = ...) -> int | None: ...
    def integer(self, name: str, default: int | None = None, *, code: int = 496, minimum: int = 0) -> int | None:
        """A base-10 ASCII integer of at least ``minimum``; ``code`` is the error for a bad one."""
        if not self.given(name):
            return default
        value = self.raw[name].strip()
        if not value.lstrip("-").isdigit() or not value.isascii():
            raise err(code, name) if code in (496, 485) else VoxError(code)
        number = int(value)
        if number < minimum:
            raise err(code, name) if code == 496 else VoxError(code)
        return number

    def intlist(self, name: str, *, allow_all: bool, code: int) -> list[int] | str | None:
        if not self.given(name):
            return None
        value = self.raw[name].strip()
        if value.lower() == ALL:
            if not allow_all:
                raise VoxError(code)
            return ALL
        out: dict[int, None] = {}  # each id once, in the order given (a dict: a list lookup is quadratic)
        for item in value.split(";"):
            item = item.strip()
            if not item.isascii() or not item.isdigit():
                raise VoxError(code)
            number = int(item)
            if number <= 0:
                raise VoxError(code)
            out[number] = None
        return list(out)

    def strlist(self, name: str) -> list[str] | None:
        if not self.given(name):
            return None
        return [s for s in (x.strip() for x in self.raw[name].split(";")) if s]


# --- validation helpers -------------------------------------------------------------------------


def validate_name(name: str, opts: Options) -> None:
    if not 5 <= len(name) <= 20:
        raise VoxError(113)
    if not NAME_RE.fullmatch(name):
        raise VoxError(114)
    if name in {n.strip() for n in opts["blacklisted_names"].split(";") if n.strip()}:
        raise VoxError(173)


def validate_email(email: str, code: int = 136) -> None:
    if len(email) > 254 or not EMAIL_RE.fullmatch(email):
        raise VoxError(code)


def validate_password(password: str) -> None:
    if password == "":
        raise VoxError(463)
    if any(ch.isspace() for ch in password):
        raise VoxError(524)
    if (
        len(password) < 8
        or not any("a" <= c <= "z" for c in password)
        or not any("A" <= c <= "Z" for c in password)
        or not any("0" <= c <= "9" for c in password)
        or all(c.isalnum() for c in password)
    ):
        raise VoxError(464)
    if password.lower() in WEAK_PASSWORDS:
        raise VoxError(523)


def validate_tz(name: str, param: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise err(496, param) from exc
    return name


def parse_decimal_param(p: Params, name: str) -> int | None:
    text = p.text(name)
    if text is None:
        return None
    try:
        return money.parse(text.strip(), allow_round=True)
    except money.AmountError as exc:
        raise err(496, name) from exc


def parse_datetime(text: str, tz: ZoneInfo, code: int = 111) -> int:
    text = text.strip()
    if not DATETIME_RE.fullmatch(text):
        raise VoxError(code)
    try:
        dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
    except ValueError as exc:
        raise VoxError(code) from exc
    return int(dt.timestamp())


def parse_date(text: str, code: int = 233) -> datetime:
    text = text.strip()
    if not DATE_RE.fullmatch(text):
        raise VoxError(code)
    try:
        return datetime.strptime(text, "%Y-%m-%d")
    except ValueError as exc:
        raise VoxError(code) from exc


def rates(opts: Options) -> dict[str, Decimal]:
    return {cur: Decimal(rate) for cur, rate in opts["currency_rates"].items()}
