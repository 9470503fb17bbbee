"""Keeping secrets out of reprs, logs and exception messages.

Secrets travel inside :class:`Secret`, whose ``repr``/``str`` never show the value; the
value comes out only through :meth:`Secret.reveal`, which is called at the HTTP seam.
Text that may echo a secret back (provider error messages) goes through :func:`redact`.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Iterable

__all__ = ["Secret", "redact", "register_secret"]

_MASK = "***"

# Shapes that are secret whatever their value: JWTs, PEM private keys, Authorization header
# values, VoiceIt tokens, and `name=value` pairs for secret-looking parameter names.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
        "[private key " + _MASK + "]",
    ),
    # JWTs (header.payload.signature, each base64url; the header always starts "eyJ").
    (re.compile(r"eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){1,2}|eyJ[A-Za-z0-9_-]{10,}"), _MASK),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + _MASK),
    (re.compile(r"\btok_[A-Za-z0-9]+"), "tok_" + _MASK),
    (
        re.compile(
            r"(?i)\b((?:parent_account_|admin_user_)?(?:api_?key|api_?token|password|"
            r"private_key|session_id|callback_salt|account_password|secret)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+"
        ),
        r"\1" + _MASK,
    ),
)

_known_lock = threading.Lock()
_known: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret value so that :func:`redact` masks it wherever it appears.

    Clients register their own long-lived credentials (private key, api keys, master
    token). Secrets found in results (a child's api key) are not registered: there can be
    hundreds of thousands of them, and they never reach a message we build.

    Values shorter than 8 characters are not registered: masking every occurrence of a
    short string would mangle ordinary text and such values are not credentials anyway.
    """
    if len(value) >= 8:
        with _known_lock:
            _known.add(value)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Mask known secret values and secret-shaped substrings in ``text``."""
    with _known_lock:
        values = sorted(_known.union(v for v in extra if len(v) >= 8), key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, _MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Secret:
    """A string that does not show itself.

    ``repr()``, ``str()`` and f-strings give ``***``; equality is constant-time;
    pickling and copying keep working. Call :meth:`reveal` at the last moment.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return "Secret('" + _MASK + "')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))
