"""Voximplant service-account credentials and JWT minting.

credentials.json is the result of ``CreateKey``: ``account_id``, ``key_id``, ``private_key``
(PEM), ``account_email``; older tooling keeps the raw ``{"result": {...}}`` wrapper, and
both forms are accepted. The token is RS256 with header ``kid`` = key id and claims
``iss`` = account id, ``iat``, ``exp`` (``exp - iat`` <= 3600 s). Tokens are cached and
re-minted ``refresh_margin`` seconds before they expire.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from providers.errors import ConfigurationError
from providers.redaction import Secret, register_secret

__all__ = ["JwtSigner", "ServiceAccountCredentials", "load_parent_api_key"]

_PROVIDER = "voximplant"
#: Hard ceiling from the docs: exp may be at most iat + 3600.
MAX_TOKEN_TTL = 3600


@dataclass(frozen=True)
class ServiceAccountCredentials:
    account_id: int
    key_id: str
    private_key: Secret
    account_email: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ServiceAccountCredentials:
        """Accept the flat CreateKey result or its ``{"result": {...}}`` wrapper."""
        inner: Any = data.get("result", data)
        # CreateKey's result has been seen both as an object and as a one-element list.
        if isinstance(inner, list) and len(inner) == 1:
            inner = inner[0]
        if not isinstance(inner, Mapping):
            raise ConfigurationError("credentials.json has no credentials object", provider=_PROVIDER)
        try:
            raw_id = inner["account_id"]
            key_id = inner["key_id"]
            private_key = inner["private_key"]
        except KeyError as exc:
            raise ConfigurationError(f"credentials.json lacks {exc.args[0]!r}", provider=_PROVIDER) from None
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or not str(raw_id).isdigit():
            raise ConfigurationError("credentials.json account_id is not an integer", provider=_PROVIDER)
        if not isinstance(key_id, str) or not key_id or not isinstance(private_key, str):
            raise ConfigurationError("credentials.json key_id/private_key must be strings", provider=_PROVIDER)
        register_secret(private_key)
        email = inner.get("account_email")
        return cls(
            account_id=int(raw_id),
            key_id=key_id,
            private_key=Secret(private_key),
            account_email=email if isinstance(email, str) else None,
        )

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> ServiceAccountCredentials:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read Voximplant credentials file: {exc.strerror}", provider=_PROVIDER
            ) from None
        try:
            data = json.loads(text)
        except ValueError:
            # Never echo the content: it holds the private key.
            raise ConfigurationError("Voximplant credentials file is not JSON", provider=_PROVIDER) from None
        if not isinstance(data, Mapping):
            raise ConfigurationError("Voximplant credentials file is not a JSON object", provider=_PROVIDER)
        return cls.from_mapping(data)


def load_parent_api_key(path: str | PathLike[str]) -> Secret:
    """The parent account's legacy API key: a file holding the key (surrounding blanks ignored)."""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read parent api key file: {exc.strerror}", provider=_PROVIDER) from None
    if not value:
        raise ConfigurationError("parent api key file is empty", provider=_PROVIDER)
    register_secret(value)
    return Secret(value)


class JwtSigner:
    """Mints and caches the Bearer token. Thread-safe.

    ``lifetime``: seconds from now to ``exp`` (official clients use 24-64 s; default 60).
    ``iat`` is backdated by ``iat_skew`` seconds to tolerate clock drift, as the official
    Python and Java clients do. ``clock`` returns UNIX seconds (inject one in tests).
    """

    def __init__(
        self,
        credentials: ServiceAccountCredentials,
        *,
        lifetime: int = 60,
        refresh_margin: int = 15,
        iat_skew: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lifetime <= refresh_margin:
            raise ValueError("lifetime must exceed refresh_margin")
        if lifetime + iat_skew > MAX_TOKEN_TTL:
            raise ValueError(f"exp - iat must not exceed {MAX_TOKEN_TTL} s")
        self.credentials = credentials
        self.lifetime = lifetime
        self.refresh_margin = refresh_margin
        self.iat_skew = iat_skew
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0
        try:
            key = load_pem_private_key(credentials.private_key.reveal().encode(), password=None)
        except (ValueError, TypeError):
            raise ConfigurationError("private_key is not an unencrypted PEM key", provider=_PROVIDER) from None
        if not isinstance(key, RSAPrivateKey):
            raise ConfigurationError("private_key is not an RSA key (RS256 needs one)", provider=_PROVIDER)
        self._key = key
        #: How many tokens were minted (observability; tests use it to see caching).
        self.minted = 0

    def __repr__(self) -> str:
        return f"JwtSigner(account_id={self.credentials.account_id}, key_id={self.credentials.key_id!r})"

    def token(self) -> str:
        with self._lock:
            now = int(self._clock())
            if self._token is None or now >= self._expires_at - self.refresh_margin:
                self._token = self._mint(now)
            return self._token

    def invalidate(self) -> None:
        """Drop the cached token (after the provider said it expired)."""
        with self._lock:
            self._token = None

    def _mint(self, now: int) -> str:
        exp = now + self.lifetime
        token = jwt.encode(
            {"iss": str(self.credentials.account_id), "iat": now - self.iat_skew, "exp": exp},
            self._key,
            algorithm="RS256",
            headers={"kid": self.credentials.key_id, "typ": "JWT"},
        )
        self._expires_at = exp
        self.minted += 1
        return token
