"""Fixtures for the sandbox's own tests: raw HTTP (httpx) with our own JWT signing (PyJWT).

No Django and no ``providers`` imports: these tests read the provider docs independently.
"""

from __future__ import annotations

import functools
import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.api_jws import PyJWS

from sandbox.app import SandboxApp
from sandbox.init import init_sandbox
from sandbox.server import start_in_thread
from sandbox.store import Store
from sandbox.transport import SandboxTransport

STRONG_PASSWORD = "Str0ng!Passw0rd"


@functools.lru_cache(maxsize=8)
def _load_key(pem: str) -> Any:
    # Loading (and validating) an RSA key costs ~60 ms; sign with a cached key object.
    return serialization.load_pem_private_key(pem.encode(), password=None)


def sign(payload: dict[str, Any], private_key: str, kid: str | None, alg: str = "RS256") -> str:
    """Sign any payload (PyJWT's jwt.encode refuses a numeric iss, the docs' bash script sends one)."""
    key: Any = _load_key(private_key) if alg == "RS256" else private_key
    headers = {"typ": "JWT"}
    if kid is not None:
        headers["kid"] = kid
    return PyJWS().encode(json.dumps(payload).encode(), key, algorithm=alg, headers=headers)


class Env:
    """One initialised sandbox database plus an HTTP client (in-process or over a socket)."""

    def __init__(self, db_path: Path, out_dir: Path, client: httpx.Client, app: SandboxApp) -> None:
        self.db_path = db_path
        self.out_dir = out_dir
        self.client = client
        self.app = app
        self.creds = json.loads((out_dir / "credentials.json").read_text())
        self.account_id = int(self.creds["account_id"])
        self.api_key = (out_dir / "parent_api_key").read_text().strip()
        self.voiceit_creds = json.loads((out_dir / "voiceit.json").read_text())
        self.admin_token = (out_dir / "sandbox_admin_token").read_text().strip()
        self.store = Store(str(db_path))

    # --- Voximplant --------------------------------------------------------------------------

    def token(
        self,
        *,
        iss: Any = None,
        iat: float | None = None,
        ttl: float = 60,
        kid: Any = "default",
        key: str | None = None,
    ) -> str:
        now = time.time() if iat is None else iat
        payload = {"iss": self.account_id if iss is None else iss, "iat": int(now), "exp": int(now + ttl)}
        return sign(payload, key or self.creds["private_key"], self.creds["key_id"] if kid == "default" else kid)

    def vox_raw(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        style: str = "path",
        http: str = "POST",
        token: str | None | bool = True,
        encoding: str = "form",
    ) -> httpx.Response:
        params = {k: str(v) for k, v in (params or {}).items()}
        headers = {}
        if token is True:
            token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"/platform_api/{method}" if style == "path" else "/platform_api"
        if style == "cmd":
            params = {"cmd": method, **params}
        if http == "GET" or encoding == "query":
            return self.client.request(http, url, params=params, headers=headers)
        if encoding == "multipart":
            files = {k: (None, v) for k, v in params.items()}
            return self.client.post(url, files=files, headers=headers)
        return self.client.post(url, data=params, headers=headers)

    def vox(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        response = self.vox_raw(method, params, **kw)
        assert response.status_code == 200, response.text
        return response.json()

    def ok(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        body = self.vox(method, params, **kw)
        assert "error" not in body, body
        return body

    def error_code(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> int:
        body = self.vox(method, params, **kw)
        assert "error" in body, body
        assert set(body["error"]) == {"code", "msg"}
        return int(body["error"]["code"])

    def add_child(self, name: str | None = None, **extra: Any) -> dict[str, Any]:
        name = name or ("c" + uuid.uuid4().hex[:12])
        params = {
            "account_name": name,
            "account_email": f"{name}@example.com",
            "account_password": STRONG_PASSWORD,
            "parent_account_id": self.account_id,
            "parent_account_api_key": self.api_key,
            "active": "true",
        }
        params.update(extra)
        body = self.ok("AddAccount", params)
        body["account_name"] = name
        return body

    def transfer(self, child_id: Any, amount: Any, **extra: Any) -> dict[str, Any]:
        return self.vox("TransferMoneyToChildAccount", {"child_account_id": child_id, "amount": amount, **extra})

    def balance(self, account_id: int) -> Any:
        return self.store.account(account_id)["balance"]

    # --- VoiceIt / admin -------------------------------------------------------------------------

    @property
    def master(self) -> tuple[str, str]:
        return self.voiceit_creds["api_key"], self.voiceit_creds["api_token"]

    def admin(self, method: str, path: str, body: Any = None, token: str | None = "default") -> httpx.Response:
        headers = {}
        if token == "default":
            token = self.admin_token
        if token:
            headers["X-Sandbox-Token"] = token
        return self.client.request(method, f"/_sandbox/{path}", json=body, headers=headers)

    def set_options(self, **changes: Any) -> None:
        response = self.admin("PUT", "options", changes)
        assert response.status_code == 200, response.text


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sandbox-template")
    db, out = base / "db.sqlite3", base / "out"
    init_sandbox(str(db), str(out))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db, out


def _copy(template: tuple[Path, Path], dest: Path) -> tuple[Path, Path]:
    db, out = template
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, dest / "db.sqlite3")
    shutil.copytree(out, dest / "out")
    return dest / "db.sqlite3", dest / "out"


@pytest.fixture
def env(template_db: tuple[Path, Path], tmp_path: Path) -> Iterator[Env]:
    """In-process: httpx.Client over sandbox.transport.SandboxTransport."""
    db, out = _copy(template_db, tmp_path / "sb")
    app = SandboxApp(str(db))
    transport = SandboxTransport(app)
    client = httpx.Client(transport=transport, base_url="http://sandbox.local", timeout=10)
    e = Env(db, out, client, app)
    try:
        yield e
    finally:
        client.close()
        app.close()
        e.store.close()


@pytest.fixture
def live(template_db: tuple[Path, Path], tmp_path: Path) -> Iterator[Env]:
    """Over a real socket: sandbox.server.start_in_thread."""
    db, out = _copy(template_db, tmp_path / "sb")
    token = (out / "sandbox_admin_token").read_text().strip()
    running = start_in_thread(str(db), admin_token=token)
    client = httpx.Client(base_url=running.base_url, timeout=10)
    e = Env(db, out, client, running.app)
    e.running = running  # type: ignore[attr-defined]
    try:
        yield e
    finally:
        client.close()
        running.shutdown()
        e.store.close()


@pytest.fixture(params=["inprocess", "socket"])
def both(request: pytest.FixtureRequest) -> Env:
    """The same test in-process and over a real socket."""
    return request.getfixturevalue("env" if request.param == "inprocess" else "live")


__all__ = ["Env", "sign", "STRONG_PASSWORD", "jwt"]
