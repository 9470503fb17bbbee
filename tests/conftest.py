"""Fixtures shared by the whole suite: the personas, a live sandbox, provider connections."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import PASSWORD

__all__ = ["PASSWORD", "purge_broker", "screenshot", "start_worker"]


# --- database ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """A SQLite test database file of this run's own (named after the process), so two runs in
    one working tree never share, flush or delete each other's database."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    name = db.get("TEST", {}).get("NAME")
    if db["ENGINE"].endswith("sqlite3") and name and not str(name).startswith("file:") and name != ":memory:":
        path = Path(name)
        db["TEST"]["NAME"] = str(path.with_name(f"{path.stem}_{os.getpid()}{path.suffix}"))


def _is_transactional(request: pytest.FixtureRequest) -> bool:
    names = set(request.fixturenames)
    if names & {"transactional_db", "live_server"}:
        return True
    marker = request.node.get_closest_marker("django_db")
    return bool(marker and marker.kwargs.get("transaction"))


@pytest.fixture(autouse=True)
def _audit_flush_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """SQLite has no TRUNCATE, so the test framework empties tables after transactional
    tests with DELETE, which the append-only audit trigger refuses unless a row sits in
    portal_audit_unlock (see the portal 0002 migration). Each test starts locked."""
    transactional = _is_transactional(request)
    uses_db = transactional or "db" in request.fixturenames
    if not uses_db:
        yield
        return
    # Set the database fixture up first, so it is torn down (flushed) after this one.
    request.getfixturevalue("transactional_db" if transactional else "db")
    from django.db import connection

    sqlite = connection.vendor == "sqlite"
    if sqlite:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM portal_audit_unlock")
    yield
    if sqlite and transactional:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO portal_audit_unlock (reason) VALUES ('test flush')")


# --- two-factor sign-in ----------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_login: force_login does not pass the second factor (2FA's own tests)")


@pytest.fixture(autouse=True)
def _force_login_passes_the_second_factor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Client.force_login already skips the password page; here it also skips the code page:
    a user who needs a second factor (staff, a team that requires it) gets a real confirmed TOTP
    device and a session verified with it, and every session counts as freshly re-authenticated.
    The product is unchanged: only test clients that call force_login are affected. Tests of
    two-factor sign-in itself opt out with @pytest.mark.real_login (tests/twofactor.py has
    helpers that go through the real pages)."""
    if request.node.get_closest_marker("real_login"):
        return
    from django.test import Client

    from tests.twofactor import PLAIN_FORCE_LOGIN, mark_reauthenticated, mark_verified

    def force_login(self: Client, user: Any, backend: str | None = None) -> None:
        from portal.twofactor import needs_two_factor

        PLAIN_FORCE_LOGIN(self, user, backend)
        if needs_two_factor(user):
            mark_verified(self, user)
        else:
            mark_reauthenticated(self)

    monkeypatch.setattr(Client, "force_login", force_login)


# --- personas ---------------------------------------------------------------------------
# Every test that needs a reseller staff member or a customer takes one of these; tests that
# need someone else build them with tests.factories.


@pytest.fixture
def reseller_admin(db: None) -> Any:
    from tests.factories import UserFactory

    return UserFactory(username="admin1", role="reseller_admin")


@pytest.fixture
def reseller_billing(db: None) -> Any:
    from tests.factories import UserFactory

    return UserFactory(username="billing1", role="reseller_billing")


@pytest.fixture
def reseller_support(db: None) -> Any:
    from tests.factories import UserFactory

    return UserFactory(username="support1", role="reseller_support")


@pytest.fixture
def no_role_user(db: None) -> Any:
    """Logged in, but without any role."""
    from tests.factories import UserFactory

    return UserFactory(username="nobody1", role=None)


@pytest.fixture
def customer_tenant(db: None) -> Any:
    """The customers' company: Acme Telecom, 42.50 USD, an alert at 10, three days of history
    (10, 20, 42.50), on a connection whose provider is never called."""
    from tests.factories import TenantFactory, balance_history

    tenant = TenantFactory(company_name="Acme Telecom", balance="42.50", low_balance_threshold="10")
    balance_history(tenant, ["10", "20", "42.50"])
    return tenant


@pytest.fixture
def customer_owner(customer_tenant: Any) -> Any:
    from tests.factories import CustomerFactory

    return CustomerFactory(username="acme-owner", tenant=customer_tenant)


@pytest.fixture
def customer_viewer(customer_tenant: Any) -> Any:
    from tests.factories import CustomerFactory

    return CustomerFactory(username="acme-viewer", tenant=customer_tenant, role="customer_viewer")


@pytest.fixture
def other_customer(db: None) -> Any:
    """The owner of another company (Other Corp, 999.00 USD): a customer, but not Acme's."""
    from tests.factories import CustomerFactory, TenantFactory

    return CustomerFactory(username="other-owner", tenant=TenantFactory(company_name="Other Corp", balance="999.00"))


# --- the sandbox ------------------------------------------------------------------------


@dataclasses.dataclass
class Sandbox:
    """A live sandbox on a real socket, with its own state file and credentials."""

    base_url: str
    db_path: Path
    out_dir: Path
    admin_token: str
    running: Any

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
        return int(json.loads(self.credentials_path.read_text())["account_id"])

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        response = httpx.request(
            method,
            f"{self.base_url}/_sandbox/{path}",
            json=body,
            headers={"X-Sandbox-Token": self.admin_token},
            timeout=10,
        )
        response.raise_for_status()
        return response

    def set_faults(self, rules: list[dict[str, Any]], seed: int = 1) -> None:
        self.admin("PUT", "faults", {"seed": seed, "rules": rules})

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def store(self) -> Any:
        from sandbox.store import Store

        return Store(str(self.db_path))


@pytest.fixture(scope="session")
def _sandbox_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One initialised sandbox (state file and credential files) for the whole run: init mints
    an RSA key pair, too slow to repeat for every test. Each test gets a copy."""
    from sandbox.init import init_sandbox

    base = tmp_path_factory.mktemp("sandbox-template")
    db_path, out_dir = base / "sandbox.sqlite3", base / "sandbox-creds"
    init_sandbox(str(db_path), str(out_dir))
    return db_path, out_dir


def _copy_sandbox(template: tuple[Path, Path], db_path: Path, out_dir: Path) -> None:
    import sqlite3

    source_db, source_out = template
    # SQLite's backup API gives a consistent copy whatever journal files lie beside it.
    source, target = sqlite3.connect(str(source_db)), sqlite3.connect(str(db_path))
    try:
        with target:
            source.backup(target)
    finally:
        source.close()
        target.close()
    shutil.copytree(source_out, out_dir)


@pytest.fixture
def sandbox(tmp_path: Path, _sandbox_template: tuple[Path, Path]) -> Iterator[Sandbox]:
    """A sandbox of this test's own: a fresh copy of the initialised state, served on a real socket."""
    from sandbox.server import start_in_thread

    db_path = tmp_path / "sandbox.sqlite3"
    out_dir = tmp_path / "sandbox-creds"
    _copy_sandbox(_sandbox_template, db_path, out_dir)
    admin_token = (out_dir / "sandbox_admin_token").read_text().strip()
    running = start_in_thread(str(db_path), admin_token=admin_token)
    try:
        yield Sandbox(running.base_url, db_path, out_dir, admin_token, running)
    finally:
        running.shutdown()
        shutil.rmtree(out_dir, ignore_errors=True)


@pytest.fixture
def vox_connection(db: None, sandbox: Sandbox) -> Any:
    from tests.factories import ProviderConnectionFactory

    return ProviderConnectionFactory(
        name="Voximplant (sandbox)",
        kind="voximplant",
        base_url=sandbox.base_url,
        credentials_path=str(sandbox.credentials_path),
        parent_api_key_path=str(sandbox.parent_api_key_path),
        parent_account_id=sandbox.account_id,
        currency="USD",
    )


@pytest.fixture
def voiceit_connection(db: None, sandbox: Sandbox) -> Any:
    from tests.factories import ProviderConnectionFactory

    return ProviderConnectionFactory(
        name="VoiceIt (sandbox)",
        kind="voiceit",
        base_url=sandbox.base_url,
        voiceit_credentials_path=str(sandbox.voiceit_path),
        currency="USD",
    )


# --- browser ----------------------------------------------------------------------------


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        message = "Debian's chromium package is not installed (make test installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; under CI a skipped browser test is a failure")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the ORM calls the
    # tests make between browser steps are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / "var" / "test-output" / "screenshots"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- celery -----------------------------------------------------------------------------


def database_url_for_subprocess() -> str:
    """The URL of the database this test run uses (the test database), for child processes."""
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        name = settings_dict["NAME"]
        if str(name).startswith("file:") or name == ":memory:":
            raise RuntimeError("worker tests need a file-backed SQLite test database")
        return f"sqlite:///{name}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{settings_dict.get('HOST') or '127.0.0.1'}:{settings_dict.get('PORT') or 5432}/{settings_dict['NAME']}"


@dataclasses.dataclass
class WorkerProcess:
    proc: Any
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as an OOM killer or a lost machine would."""
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()


def purge_broker() -> None:
    from portal.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def start_worker(log_path: Path, extra_env: dict[str, str] | None = None) -> WorkerProcess:
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings_test",
            "DATABASE_URL": database_url_for_subprocess(),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    log_file = open(log_path, "w")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            "celery",
        ],
        cwd=root,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = WorkerProcess(proc, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Celery worker exited early:\n{worker.log()}")
        if " ready." in worker.log():
            return worker
        time.sleep(0.2)
    worker.stop()
    raise RuntimeError(f"the Celery worker did not become ready in 60 s:\n{worker.log()}")


@pytest.fixture
def celery_worker(transactional_db: None, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A real `celery worker` process (solo pool) on the test database and the configured
    broker (the filesystem transport by default, Redis when CELERY_BROKER_URL says so).
    Needs committed data, hence transactional_db. The broker queue is purged first."""
    purge_broker()
    worker = start_worker(tmp_path / "worker.log")
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def celery_eager() -> Iterator[None]:
    """Run tasks in the calling process (for service tests that do not need a worker)."""
    from portal.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = previous


@pytest.fixture
def customer_tenants(db: None) -> list[Any]:
    """Two tenants on one connection whose provider is never called (pages read the portal's rows)."""
    from tests.factories import ProviderConnectionFactory, TenantFactory

    connection = ProviderConnectionFactory(name="Offline Voximplant")
    return [
        TenantFactory(company_name=name, connection=connection, balance="100.0000")
        for name in ["Acme Telecom", "Globex Calls"]
    ]
