"""Email through a real SMTP server on loopback (aiosmtpd), with Django's SMTP backend: the
timeout that bounds a hanging mail server, and the low-balance emails to owners and staff."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Collect:
    messages: list[EmailMessage]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    """An SMTP server on a loopback port of its own that can be stopped and started again."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    _controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_Collect(self.messages), hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, *, timeout: float = 10) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} emails arrived"
        return self.messages


@contextmanager
def running_smtp_server() -> Iterator[SmtpServer]:
    """A running SMTP server, with Django's SMTP backend pointed at it."""
    server = SmtpServer(port=free_port())
    server.start()
    try:
        with override_settings(EMAIL_BACKEND=SMTP_BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port):
            yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


def parts(message: EmailMessage) -> dict[str, str]:
    """The text and HTML bodies of a multipart/alternative email, by content type."""
    found: dict[str, str] = {}
    for part in message.walk():
        if part.get_content_type() in ("text/plain", "text/html") and not part.is_multipart():
            found[part.get_content_type()] = part.get_content()
    return found


# --- the timeout ----------------------------------------------------------------------------


def test_the_smtp_backend_gets_a_ten_second_timeout_by_default() -> None:
    from django.core.mail import get_connection

    assert get_connection(SMTP_BACKEND).timeout == 10


def test_email_timeout_from_the_environment_bounds_a_mail_server_that_never_answers(tmp_path) -> None:
    """A server that takes the connection but never greets: the send gives up after
    EMAIL_TIMEOUT seconds instead of holding the page or the task."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever speaks
        script = (
            "import time, django\n"
            "django.setup()\n"
            "from django.core.mail import get_connection, send_mail\n"
            "print('timeout', get_connection().timeout)\n"
            "started = time.monotonic()\n"
            "try:\n"
            "    send_mail('s', 'b', None, ['someone@example.com'])\n"
            "except OSError as exc:\n"
            "    print('failed', exc)\n"
            "print('seconds', round(time.monotonic() - started, 1))\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "portal.settings_test",
                "PORTAL_VAR_DIR": str(tmp_path),
                "EMAIL_BACKEND": SMTP_BACKEND,
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": str(silent.getsockname()[1]),
                "EMAIL_TIMEOUT": "1",
            }
        )
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["timeout"] == "1"
    assert "timed out" in lines["failed"]  # smtplib may wrap it as "Connection unexpectedly closed: timed out"
    assert 1 <= float(lines["seconds"]) < 5


# --- low-balance emails ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_low_balance_emails_to_owners_and_staff_arrive_in_text_and_html(smtp_server, settings) -> None:
    from django.urls import reverse

    from billing.alerts import low_balance_alerts_send
    from billing.models import LowBalanceAlert
    from tests.factories import CustomerFactory, TenantFactory

    settings.STAFF_ALERT_EMAILS = ["staff-alerts@reseller.example"]
    tenant = TenantFactory(company_name="Acme Telecom", balance="7.25", low_balance_threshold="10")
    CustomerFactory(username="acme-owner", email="owner@acme.example", tenant=tenant)
    LowBalanceAlert.objects.create(tenant=tenant, balance=Decimal("7.25"), threshold=Decimal("10"), currency="USD")

    assert low_balance_alerts_send() == 2
    messages = {m["To"]: m for m in smtp_server.wait_for(2)}
    assert set(messages) == {"owner@acme.example", "staff-alerts@reseller.example"}
    site = str(settings.SITE_URL).rstrip("/")

    owner = messages["owner@acme.example"]
    assert owner["Subject"] == "Low balance: Acme Telecom has 7.25 USD"
    owner_parts = parts(owner)
    assert set(owner_parts) == {"text/plain", "text/html"}
    assert (
        "The balance of Acme Telecom is 7.25 USD, below the alert threshold of 10.00 USD." in owner_parts["text/plain"]
    )
    assert f"{site}{reverse('customer:home')}" in owner_parts["text/plain"]
    assert f'href="{site}{reverse("customer:home")}"' in owner_parts["text/html"]
    assert "See your balance" in owner_parts["text/html"]

    staff = messages["staff-alerts@reseller.example"]
    staff_parts = parts(staff)
    assert set(staff_parts) == {"text/plain", "text/html"}
    console_link = f"{site}{reverse('tenants:detail', args=[tenant.uuid])}"
    assert "Tenant: Acme Telecom" in staff_parts["text/plain"] and console_link in staff_parts["text/plain"]
    assert f'href="{console_link}"' in staff_parts["text/html"] and "Open the tenant" in staff_parts["text/html"]
    alert = LowBalanceAlert.objects.get()
    assert alert.owners_sent_at is not None and alert.staff_sent_at is not None


@pytest.mark.django_db
def test_a_low_balance_email_the_server_refused_goes_out_on_the_next_run(smtp_server, settings) -> None:
    from billing.alerts import low_balance_alerts_send
    from billing.models import LowBalanceAlert
    from tests.factories import TenantFactory

    settings.STAFF_ALERT_EMAILS = ["staff-alerts@reseller.example"]
    tenant = TenantFactory(company_name="Globex Calls", balance="1", low_balance_threshold="5")
    LowBalanceAlert.objects.create(tenant=tenant, balance=Decimal("1"), threshold=Decimal("5"), currency="USD")
    smtp_server.stop()
    assert low_balance_alerts_send() == 0
    assert LowBalanceAlert.objects.get().staff_sent_at is None
    smtp_server.start()
    assert low_balance_alerts_send() == 1
    [message] = smtp_server.wait_for(1)
    assert "Balance: 1.00 USD" in parts(message)["text/plain"]
