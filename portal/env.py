"""The one place settings are read from the environment.

Every reader fails loudly (ImproperlyConfigured naming the variable) on a value it cannot
use, and every reader accepts ``NAME_FILE`` pointing at a file that holds the value, so
secrets can come from mounted files instead of the process environment.
"""

from __future__ import annotations

import builtins
import json as _json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    def __init__(self, environ: Mapping[builtins.str, builtins.str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: builtins.str) -> builtins.str | None:
        file_name = self._environ.get(f"{name}_FILE")
        if file_name:
            try:
                return Path(file_name).read_text().strip()
            except OSError as exc:
                raise ImproperlyConfigured(f"{name}_FILE={file_name!r} cannot be read: {exc.strerror}") from exc
        return self._environ.get(name)

    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str:
        value = self.raw(name)
        if value is None or value == "":
            if default is None:
                raise ImproperlyConfigured(f"{name} must be set")
            return default
        return value

    def bool(self, name: builtins.str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")

    def int(self, name: builtins.str, default: int, *, minimum: int | None = None) -> int:
        value = self.raw(name)
        if value is None or value.strip() == "":
            return default
        try:
            number = int(value.strip())
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name}={number} must be at least {minimum}")
        return number

    def list(self, name: builtins.str, default: builtins.list[builtins.str]) -> builtins.list[builtins.str]:
        value = self.raw(name)
        if value is None:
            return list(default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def decimal(self, name: builtins.str, default: builtins.str, *, minimum: Decimal | None = None) -> Decimal:
        value = self.str(name, default).strip()
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ImproperlyConfigured(f"{name}={value!r} is not a decimal number") from None
        if not number.is_finite() or (minimum is not None and number < minimum):
            raise ImproperlyConfigured(f"{name}={value!r} must be a finite number of at least {minimum}")
        return number

    def json(self, name: builtins.str, default: dict[builtins.str, object]) -> dict[builtins.str, object]:
        """A JSON object (e.g. RESELLER_COMPANY); unset or empty gives ``default``."""
        value = self.raw(name)
        if value is None or value.strip() == "":
            return dict(default)
        try:
            parsed = _json.loads(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise ImproperlyConfigured(f"{name} must be a JSON object")
        return parsed

    def url(self, name: builtins.str, default: builtins.str, *, schemes: tuple[builtins.str, ...]) -> builtins.str:
        value = self.str(name, default)
        scheme = urlsplit(value).scheme
        if scheme not in schemes:
            raise ImproperlyConfigured(f"{name}={_safe_url(value)!r} must use one of the schemes {', '.join(schemes)}")
        return value

    def database(self, name: builtins.str, default: builtins.str) -> dict[builtins.str, object]:
        value = self.str(name, default)
        try:
            return parse_database_url(value)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}={_safe_url(value)!r}: {exc}") from None


def _safe_url(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


@dataclass(frozen=True)
class _Engine:
    engine: str
    default_port: int | None


_ENGINES = {
    "sqlite": _Engine("django.db.backends.sqlite3", None),
    "postgres": _Engine("django.db.backends.postgresql", 5432),
    "postgresql": _Engine("django.db.backends.postgresql", 5432),
}


def parse_database_url(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    engine = _ENGINES.get(parts.scheme)
    if engine is None:
        raise ValueError(f"unsupported scheme {parts.scheme!r} (use sqlite:/// or postgres://)")
    if parts.scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as most URL readers do.
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            raise ValueError("a SQLite URL needs a file path")
        return {
            "ENGINE": engine.engine,
            "NAME": path,
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
            "TEST": {"NAME": str(Path(path).with_name("test_" + Path(path).name))},
        }
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError("a PostgreSQL URL needs a database name")
    try:
        port = parts.port or engine.default_port
    except ValueError:
        raise ValueError("the port is not a number") from None
    options: dict[str, object] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return {
        "ENGINE": engine.engine,
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": options,
    }
