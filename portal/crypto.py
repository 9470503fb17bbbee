"""Secrets kept in the database (child api keys, VoiceIt tokens) are MultiFernet tokens.

FIELD_ENCRYPTION_KEYS lists the keys newest first: new values use the first, old ones still
decrypt, and `reencrypt` moves a value onto the newest key (see the rotate_field_keys command).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt_json(value: dict[str, Any]) -> str:
    if not value:
        return ""
    return fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    if not token:
        return {}
    result: dict[str, Any] = json.loads(fernet().decrypt(token.encode()))
    return result


def reencrypt(token: str) -> str:
    if not token:
        return ""
    return fernet().rotate(token.encode()).decode()
