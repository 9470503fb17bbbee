"""`make run` on other ports: the portal's own URL follows `PORT`, and staff see at once when a
provider connection's sandbox does not answer."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.urls import reverse

from tests.factories import CustomerFactory, ProviderConnectionFactory, TenantFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]
BANNER = 'data-banner="provider-unreachable"'


def site_url_in_a_fresh_process(tmp_path: Path, **env: str) -> str:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DEBUG", "SITE_URL", "PORT", "SANDBOX_PORT", "PROVIDER_"))
    }
    base.update(env, DJANGO_SETTINGS_MODULE="portal.settings", DEBUG="1", PORTAL_VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.SITE_URL)"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_site_url_follows_port_unless_it_is_set(tmp_path: Path) -> None:
    assert site_url_in_a_fresh_process(tmp_path) == "http://127.0.0.1:8000"
    assert site_url_in_a_fresh_process(tmp_path, PORT="8300", SANDBOX_PORT="8301") == "http://127.0.0.1:8300"
    assert (
        site_url_in_a_fresh_process(tmp_path, PORT="8300", SITE_URL="https://portal.example.com")
        == "https://portal.example.com"
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.django_db
def test_staff_see_a_red_banner_while_the_sandbox_is_stopped_and_customers_never(client, sandbox) -> None:
    from sandbox.server import start_in_thread

    cache.clear()
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    conn = ProviderConnectionFactory(name="Voximplant (sandbox)", base_url=sandbox.base_url)
    staff = UserFactory(username="support-banner", role="reseller_support")
    customer = CustomerFactory(username="owner-banner", tenant=TenantFactory(connection=conn))
    home = reverse("console:home")

    client.force_login(staff)
    assert BANNER not in client.get(home).content.decode()

    sandbox.running.shutdown()  # the sandbox stops; its port is closed now
    cache.clear()  # a minute later: the last check has expired
    page = client.get(home).content.decode()
    assert BANNER in page
    assert 'Provider connection "Voximplant (sandbox)" is unreachable' in page
    assert f"127.0.0.1:{port} does not answer" in page
    assert "since " in page

    client.force_login(customer)
    mine = client.get(reverse("customer:home"))
    assert mine.status_code == 200
    assert BANNER not in mine.content.decode() and "Voximplant (sandbox)" not in mine.content.decode()

    # The sandbox answers again on the same port; the banner goes with the next check.
    sandbox.running = start_in_thread(str(sandbox.db_path), port=port, admin_token=sandbox.admin_token)
    client.force_login(staff)
    assert BANNER in client.get(home).content.decode()  # within the minute: the last known state
    cache.clear()
    assert BANNER not in client.get(home).content.decode()


@pytest.mark.django_db
def test_the_banner_checks_a_connection_once_a_minute_not_once_a_page(client, reseller_admin) -> None:
    cache.clear()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ProviderConnectionFactory(name="Counted", base_url=f"http://127.0.0.1:{listener.getsockname()[1]}")
        ProviderConnectionFactory(name="Nothing there", base_url=f"http://127.0.0.1:{closed_port()}")
        client.force_login(reseller_admin)
        pages = [client.get(reverse(name)).content.decode() for name in ("console:home", "tenants:list", "audit")]
        assert all('Provider connection "Nothing there" is unreachable' in page for page in pages)
        assert all('"Counted"' not in page for page in pages)
        listener.setblocking(False)
        accepted = 0
        while True:
            try:
                listener.accept()[0].close()
            except BlockingIOError:
                break
            accepted += 1
    assert accepted == 1
