"""Voximplant authentication: service-account RS256 JWT and the legacy parameter schemes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, TypeGuard

import jwt
from cryptography.hazmat.primitives import serialization

from .options import Options


class VoxError(Exception):
    """An API error, answered as HTTP 200 ``{"error": {"code": N, "msg": "..."}}``."""

    def __init__(self, code: int, msg: str | None = None) -> None:
        super().__init__(msg or MESSAGES.get(code, "Error"))
        self.code = code
        self.msg = msg or MESSAGES.get(code, "Error")


# Texts follow the official client enums (apiclient-nodejs src/Enums.ts, apiclient-php Errors.php).
MESSAGES: dict[int, str] = {
    2: "Internal error",
    100: "Authorization failed",
    101: "Invalid arguments",
    102: "Missing 'cmd' parameter",
    103: "Unknown command",
    104: "Forbidden command",
    105: "The required output format type is not supported",
    106: "Account's name isn't unique",
    109: "The maximum number of users per account is reached",
    111: "Invalid date format",
    113: "Account's name must be at least 5 and up to 20 characters long",
    114: "Account's name should start with a letter and can contain latin characters, digits, hyphen",
    115: "The 'account_id' parameter is invalid",
    116: "The 'application_id' parameter is invalid",
    117: "The 'user_id' parameter is invalid",
    118: "User's name isn't unique",
    122: "User's name should be 3 to 50 characters long, start with a latin letter or a digit and contain "
    "latin letters, digits, hyphens and underscores",
    123: "Invalid date range",
    125: "Invalid money amount",
    127: "Insufficient money",
    128: "Account's email isn't unique",
    131: "The account isn't activated",
    134: "Required parameter is empty",
    136: "Invalid email",
    161: "The 'session_id' parameter is invalid",
    163: "The 'account_first_name' parameter length must be less than 50",
    164: "The 'account_last_name' parameter length must be less than 50",
    173: "The account name is forbidden by the black list. Try another name",
    177: "The 'parent_account_id' parameter is invalid",
    194: "The 'child_account_id' parameter is invalid",
    197: "The 'transaction_id' parameter is invalid",
    198: "The 'child_account_name' parameter is invalid",
    199: "The 'child_account_email' parameter is invalid",
    201: "The 'new_child_account_email' parameter is invalid",
    202: "The 'language_code' parameter is invalid",
    209: "The 'transaction_type' parameter is invalid",
    210: "The 'currency' parameter is invalid",
    211: "The 'account_custom_data' parameter length must be less than 8192",
    212: "The 'user_custom_data' parameter length must be less than 8192",
    225: "The payment amount is very low. The amount must be equal or greater than 0.01",
    226: "The payment amount is very low. The amount must be greater than 0.01",
    233: "The 'date' parameter is invalid",
    234: "The 'user_transaction_description' parameter length must be less than 120",
    235: "The 'account_transaction_description' parameter length must be less than 120",
    236: "The 'parent_transaction_description' parameter length must be less than 120",
    237: "The 'child_transaction_description' parameter length must be less than 120",
    303: "The 'payment_reference' parameter is ambiguous",
    304: "The 'payment_reference' parameter length must be less than 127",
    340: "Rate limit exceed",
    397: "Exceeded the children account count limit per day",
    398: "The 'callback_url' parameter is invalid",
    399: "The 'callback_salt' parameter length must be less than 40",
    416: "Repeat after 1 seconds",
    447: "Invalid token format.",
    454: "The token TTL exceeds the maximum limit.",
    455: "Token issued in the future.",
    456: "The token has expired.",
    463: "Blank password is not allowed. Please specify a new password at least 8 characters long.",
    464: "Password should be at least 8 characters long and contain uppercase characters (A-Z), lowercase "
    "characters (a-z), digits (0-9) and special characters",
    484: "HTTP request is rejected due to probable automatic request resend. Try again later.",
    485: "Specify the parameter",
    492: "The parameter is forbidden.",
    496: "The parameter is invalid.",
    514: "Account creation has already started",
    515: "The same operation has been performed recently. Please try again later.",
    523: "Password is too weak",
    524: "Password cannot contain spaces.",
    573: "Cannot transfer funds to this user",
}


def err(code: int, param: str | None = None) -> VoxError:
    """Errors whose message names a parameter (485, 492, 496, 499)."""
    if param is None:
        return VoxError(code)
    if code == 485:
        return VoxError(485, f"Specify the '{param}' parameter.")
    if code == 496:
        return VoxError(496, f"The '{param}' parameter is invalid.")
    if code == 492:
        return VoxError(492, f"The '{param}' parameter is forbidden.")
    if code == 458:
        return VoxError(458, f"Specify only one of the following parameters: {param}")
    if code == 134:
        return VoxError(134, f"Required parameter is empty: {param}")
    return VoxError(code)


def hash_password(password: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.sha256((salt + password).encode("utf-8")).hexdigest()
    return f"{salt}${digest}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored or "$" not in stored:
        return False
    salt, _, _ = stored.partition("$")
    return hmac.compare_digest(hash_password(password, salt), stored)


@dataclass
class Caller:
    account_id: int
    parent_id: int | None
    via: str  # "jwt" | "api_key" | "password"
    key_account_id: int | None = None


class KeyCache:
    """kid -> (account_id, public key object), loaded on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[int, Any]] = {}

    def get(self, conn: sqlite3.Connection, kid: str) -> tuple[int, Any] | None:
        with self._lock:
            hit = self._keys.get(kid)
        if hit is not None:
            return hit
        row = conn.execute("SELECT account_id, public_key FROM api_keys WHERE key_id = ?", (kid,)).fetchone()
        if row is None:
            return None
        key = serialization.load_pem_public_key(row[1].encode("ascii"))
        value = (int(row[0]), key)
        with self._lock:
            self._keys[kid] = value
        return value


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def verify_jwt(
    token: str, conn: sqlite3.Connection, keys: KeyCache, opts: Options, now: float | None = None
) -> tuple[int, int]:
    """Return ``(key_account_id, iss_account_id)`` or raise :class:`VoxError`.

    447 malformed / wrong alg / missing claims; 100 unknown kid or bad signature;
    454 exp - iat > max TTL; 455 iat in the future beyond the skew; 456 expired beyond the skew.
    """
    now = time.time() if now is None else now
    if token.count(".") != 2:
        raise VoxError(447)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise VoxError(447) from exc
    if header.get("alg") != "RS256":
        raise VoxError(447)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise VoxError(447)
    found = keys.get(conn, kid)
    if found is None:
        raise VoxError(100)
    key_account_id, public_key = found
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_iss": False,
                "verify_aud": False,
                "require": [],
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise VoxError(100) from exc
    except jwt.PyJWTError as exc:
        raise VoxError(447) from exc
    iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
    if not _is_number(iat) or not _is_number(exp):
        raise VoxError(447)
    if isinstance(iss, bool) or not (
        isinstance(iss, int) or (isinstance(iss, str) and iss.isascii() and iss.isdigit())
    ):
        raise VoxError(447)
    if exp <= iat:
        raise VoxError(447)
    if exp - iat > opts["jwt_max_ttl_seconds"]:
        raise VoxError(454)
    skew = opts["jwt_clock_skew_seconds"]
    if iat > now + skew:
        raise VoxError(455)
    if exp < now - skew:
        raise VoxError(456)
    return key_account_id, int(iss)
