"""Fixtures for the provider-client tests: the sandbox as the real server.

Every client test runs twice: in-process (``SandboxTransport``) and over a real socket
(``sandbox.server.start_in_thread``). Faults and options go through the sandbox's admin
HTTP surface in both modes, as a test against a deployed sandbox would.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers import RetryPolicy, build_client
from providers.voiceit import VoiceItClient
from providers.voximplant import VoximplantClient

#: Fast, bounded retries for tests: real backoff maths, no real waiting.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.005)


class Sleeps(list[float]):
    """A ``sleep`` that records the requested waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@dataclasses.dataclass
class SandboxEnv:
    mode: str  # "inproc" | "socket"
    db_path: Path
    out_dir: Path
    admin_token: str
    base_url: str
    app: Any
    transport_factory: Callable[[], httpx.BaseTransport | None]
    info: dict[str, Any]
    _clients: list[Any] = dataclasses.field(default_factory=list)
    _admin_client: httpx.Client | None = None

    @property
    def credentials_path(self) -> Path:
        return self.out_dir / "credentials.json"

    @property
    def parent_api_key_path(self) -> Path:
        return self.out_dir / "parent_api_key"

    @property
    def voiceit_path(self) -> Path:
        return self.out_dir / "voiceit.json"

    @property
    def account_id(self) -> int:
        return int(self.info["account_id"])

    # -- clients --------------------------------------------------------------------------

    def vox(self, **kwargs: Any) -> VoximplantClient:
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("sleep", Sleeps())
        kwargs.setdefault("timeout", (2.0, 5.0))
        client = build_client(
            "voximplant",
            base_url=self.base_url,
            credentials_path=kwargs.pop("credentials_path", self.credentials_path),
            parent_api_key_path=kwargs.pop("parent_api_key_path", self.parent_api_key_path),
            transport=kwargs.pop("transport", self.transport_factory()),
            **kwargs,
        )
        self._clients.append(client)
        return client

    def voiceit(self, **kwargs: Any) -> VoiceItClient:
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("sleep", Sleeps())
        kwargs.setdefault("timeout", (2.0, 5.0))
        client = build_client(
            "voiceit",
            base_url=self.base_url,
            voiceit_credentials_path=kwargs.pop("voiceit_credentials_path", self.voiceit_path),
            transport=kwargs.pop("transport", self.transport_factory()),
            **kwargs,
        )
        self._clients.append(client)
        return client

    # -- admin surface ----------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if self._admin_client is None:
            # One client for the test: building an httpx.Client loads CA certificates (~0.1 s).
            self._admin_client = httpx.Client(base_url=self.base_url, transport=self.transport_factory(), timeout=10)
        response = self._admin_client.request(
            method, f"/_sandbox/{path}", json=body, headers={"X-Sandbox-Token": self.admin_token}
        )
        response.raise_for_status()
        return response

    def set_faults(self, rules: list[dict[str, Any]], seed: int = 1) -> None:
        self.admin("PUT", "faults", {"seed": seed, "rules": rules})

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def set_options(self, **options: Any) -> None:
        self.admin("PUT", "options", options)

    def store(self) -> Any:
        from sandbox.store import Store

        return Store(str(self.db_path))

    def close(self) -> None:
        for client in self._clients:
            client.close()
        if self._admin_client is not None:
            self._admin_client.close()


@pytest.fixture(scope="module")
def _sandbox_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """One initialised sandbox database per module, copied per test (init mints an RSA key)."""
    from sandbox.init import init_sandbox

    base = tmp_path_factory.mktemp("sandbox-template")
    db_path = base / "sandbox.sqlite3"
    out_dir = base / "creds"
    info = init_sandbox(str(db_path), str(out_dir))
    return db_path, out_dir, info


def _copy_sandbox(template: tuple[Path, Path, dict[str, Any]], dest: Path) -> tuple[Path, Path]:
    import shutil
    import sqlite3

    db_path, out_dir, _ = template
    dest_db = dest / "sandbox.sqlite3"
    # sqlite backup API: a consistent copy even with WAL files around.
    src = sqlite3.connect(str(db_path))
    dst = sqlite3.connect(str(dest_db))
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    shutil.copytree(out_dir, dest / "creds")
    return dest_db, dest / "creds"


@pytest.fixture(params=["inproc", "socket"])
def env(request: pytest.FixtureRequest, _sandbox_files: Any, tmp_path: Path) -> Iterator[SandboxEnv]:
    """A fresh sandbox (own database) reached in-process or over a real socket."""
    yield from _make_env(request.param, _sandbox_files, tmp_path)


@pytest.fixture
def socket_env(_sandbox_files: Any, tmp_path: Path) -> Iterator[SandboxEnv]:
    """A fresh sandbox on a real socket only (for faults that need one, e.g. TLS)."""
    yield from _make_env("socket", _sandbox_files, tmp_path)


def _make_env(mode: str, template: Any, tmp_path: Path) -> Iterator[SandboxEnv]:
    db_path, out_dir = _copy_sandbox(template, tmp_path)
    admin_token = (out_dir / "sandbox_admin_token").read_text().strip()
    info = dict(template[2])
    if mode == "inproc":
        from sandbox.app import SandboxApp
        from sandbox.transport import SandboxTransport

        app = SandboxApp(str(db_path), admin_token=admin_token)
        transports: list[SandboxTransport] = []

        def factory() -> httpx.BaseTransport:
            transport = SandboxTransport(app)
            transports.append(transport)
            return transport

        sandbox_env = SandboxEnv("inproc", db_path, out_dir, admin_token, "http://sandbox.test", app, factory, info)
        try:
            yield sandbox_env
        finally:
            sandbox_env.close()
            for transport in transports:
                transport.close()
            app.close()
    else:
        from sandbox.server import start_in_thread

        running = start_in_thread(str(db_path), admin_token=admin_token)
        sandbox_env = SandboxEnv(
            "socket", db_path, out_dir, admin_token, running.base_url, running.app, lambda: None, info
        )
        try:
            yield sandbox_env
        finally:
            sandbox_env.close()
            running.shutdown()


@pytest.fixture
def vox_inproc(_sandbox_files: Any, tmp_path: Path) -> Iterator[tuple[SandboxEnv, VoximplantClient]]:
    """One in-process sandbox and client shared by all examples of a Hypothesis test."""
    for sandbox_env in _make_env("inproc", _sandbox_files, tmp_path):
        yield sandbox_env, sandbox_env.vox()


@pytest.fixture
def vox(env: SandboxEnv) -> VoximplantClient:
    return env.vox()


@pytest.fixture
def voiceit(env: SandboxEnv) -> VoiceItClient:
    return env.voiceit()


@pytest.fixture
def closed_port() -> int:
    """A localhost port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
