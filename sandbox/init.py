"""``init``: the parent account, its service-account key pair, a VoiceIt master, the admin token.

Idempotent: on a database that already has a parent account nothing is created or changed;
the credential files are re-written from what is stored (``created: false`` in the result).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import money
from .store import DEPOSIT_TYPE, Store, last_row_id, utc_text
from .voiceit import create_master
from .vox_auth import hash_password

CURRENCIES = ("USD", "EUR", "RUR", "KZT")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def new_key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem


def init_sandbox(
    db_path: str,
    out_dir: str,
    *,
    balance: Decimal | str = Decimal("10000"),
    currency: str = "USD",
    account_name: str = "reseller-parent",
    account_email: str = "parent@reseller.example",
) -> dict[str, Any]:
    """Create (or re-use) the parent account and write the credential files into ``out_dir``.

    Files: ``credentials.json`` (Voximplant format: account_id, key_id, private_key, account_email),
    ``parent_api_key``, ``voiceit.json`` ({"api_key", "api_token"}), ``sandbox_admin_token``.
    """
    currency = currency.upper()
    if currency not in CURRENCIES:
        raise ValueError(f"currency must be one of {', '.join(CURRENCIES)}")
    units = money.parse(str(balance))
    store = Store(db_path)
    created = False
    password = None
    try:
        with store.write() as conn:
            parent = conn.execute(
                "SELECT account_id, account_email, api_key FROM accounts WHERE parent_id IS NULL ORDER BY account_id LIMIT 1"
            ).fetchone()
            if parent is None:
                created = True
                password = "Sandbox-" + secrets.token_urlsafe(9) + "9!"
                api_key = str(uuid.uuid4())
                cur = conn.execute(
                    "INSERT INTO accounts(parent_id, account_name, account_email, email_lower, password_hash, api_key, "
                    "created, active, currency, min_balance_to_notify) VALUES (NULL, ?, ?, ?, ?, ?, ?, 1, ?, 50000)",
                    (
                        account_name,
                        account_email,
                        account_email.lower(),
                        hash_password(password),
                        api_key,
                        utc_text(),
                        currency,
                    ),
                )
                account_id = last_row_id(cur)
                if units:
                    Store.add_transaction(
                        conn,
                        account_id=account_id,
                        amount=units,
                        currency=currency,
                        transaction_type=DEPOSIT_TYPE,
                        ts=int(time.time()),
                        description="Sandbox init: opening balance",
                    )
                private_pem, public_pem = new_key_pair()
                key_id = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO api_keys(key_id, account_id, public_key, private_key, roles, created) "
                    "VALUES (?, ?, ?, ?, 'Owner', ?)",
                    (key_id, account_id, public_pem, private_pem, int(time.time())),
                )
                vi_key, vi_token = create_master(conn, account_email)
                admin_token = secrets.token_urlsafe(24)
                Store.meta_set(conn, "admin_token", admin_token)
                Store.meta_set(conn, "voiceit_master_key", vi_key)
                Store.bump_accounts_version(conn)
                email = account_email
            else:
                account_id, email, api_key = int(parent[0]), parent[1], parent[2]
                key = conn.execute(
                    "SELECT key_id, private_key FROM api_keys WHERE account_id = ? AND private_key IS NOT NULL "
                    "ORDER BY created LIMIT 1",
                    (account_id,),
                ).fetchone()
                if key is None:
                    raise RuntimeError("the database has a parent account but no stored key pair; refusing to guess")
                key_id, private_pem = key[0], key[1]
                stored_key = store.meta_get("voiceit_master_key", conn)
                vi = conn.execute("SELECT api_token FROM vi_accounts WHERE api_key = ?", (stored_key,)).fetchone()
                if stored_key is None or vi is None:
                    raise RuntimeError("the database has no VoiceIt master account; refusing to guess")
                vi_key, vi_token = stored_key, vi[0]
                stored_token = store.meta_get("admin_token", conn)
                if stored_token:
                    admin_token = stored_token
                else:
                    admin_token = secrets.token_urlsafe(24)
                    Store.meta_set(conn, "admin_token", admin_token)
    finally:
        store.close()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    credentials = {"account_id": account_id, "key_id": key_id, "private_key": private_pem, "account_email": email}
    _write(out / "credentials.json", json.dumps(credentials, indent=2) + "\n")
    _write(out / "parent_api_key", api_key + "\n")
    _write(out / "voiceit.json", json.dumps({"api_key": vi_key, "api_token": vi_token}, indent=2) + "\n")
    _write(out / "sandbox_admin_token", admin_token + "\n")
    result = {
        "created": created,
        "account_id": account_id,
        "account_email": email,
        "key_id": key_id,
        "api_key": api_key,
        "voiceit_api_key": vi_key,
        "admin_token": admin_token,
        "out_dir": str(out),
    }
    if password is not None:
        result["account_password"] = password
    return result
