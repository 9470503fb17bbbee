"""The provider callbacks page: a reseller admin sets the callback URL and salt on the
parent account (read back from the sandbox over HTTP); provider refusals are form errors;
other staff may only read; customers never see the page."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.urls import reverse

from billing import callbacks
from portal.crypto import decrypt_json
from portal.models import AuditEvent
from tenants.models import ProviderConnection

pytestmark = pytest.mark.django_db

URL = reverse("console:callbacks")


def parent_info(sandbox: Any) -> dict[str, Any]:
    """GetAccountInfo over HTTP with the parent's own (legacy) key, as any API client reads it."""
    response = httpx.post(
        f"{sandbox.base_url}/platform_api/GetAccountInfo",
        data={"account_id": sandbox.account_id, "api_key": sandbox.parent_api_key_path.read_text().strip()},
        timeout=10,
    )
    body = response.json()
    assert "error" not in body, body
    return body["result"]


def submit(client: Any, connection: Any, url: str, salt: str = "") -> Any:
    return client.post(URL, {"connection": str(connection.uuid), "callback_url": url, "callback_salt": salt})


def test_an_admin_sets_the_url_and_a_typed_salt_on_the_provider(
    client, reseller_admin, vox_connection, sandbox
) -> None:
    client.force_login(reseller_admin)
    page = client.get(URL).content.decode()
    default = callbacks.webhook_url(vox_connection)
    assert default in page and f"/hooks/voximplant/{vox_connection.uuid}/" in default
    response = submit(client, vox_connection, default, "my-own-salt")
    assert response.status_code == 302
    info = parent_info(sandbox)
    assert info["callback_url"] == default
    assert info["callback_salt"] == "my-own-salt"
    vox_connection.refresh_from_db()
    assert vox_connection.callback_url == default and vox_connection.callback_configured_at is not None
    assert decrypt_json(vox_connection.callback_salt_encrypted) == {"salt": "my-own-salt"}
    assert "my-own-salt" not in vox_connection.callback_salt_encrypted
    event = AuditEvent.objects.get(action="billing.callbacks.configure")
    assert "my-own-salt" not in str(event.data)
    assert "my-own-salt" not in client.get(URL).content.decode()


def test_an_empty_salt_is_generated(client, reseller_admin, vox_connection, sandbox) -> None:
    client.force_login(reseller_admin)
    assert submit(client, vox_connection, "https://portal.example/hooks/x/").status_code == 302
    vox_connection.refresh_from_db()
    salt = decrypt_json(vox_connection.callback_salt_encrypted)["salt"]
    assert 16 <= len(salt) < 40
    assert parent_info(sandbox)["callback_salt"] == salt


@pytest.mark.parametrize(
    ("url", "salt", "field"),
    [("ftp://portal.example/hook", "", "callback_url"), ("https://portal.example/hook", "s" * 40, "callback_salt")],
)
def test_a_refusal_by_the_provider_is_a_form_error_and_nothing_is_kept(
    client, reseller_admin, vox_connection, sandbox, url: str, salt: str, field: str
) -> None:
    client.force_login(reseller_admin)
    response = submit(client, vox_connection, url, salt)
    assert response.status_code == 400
    assert f'data-testid="{field}-error"' in response.content.decode()
    vox_connection.refresh_from_db()
    assert vox_connection.callback_configured_at is None and vox_connection.callback_salt_encrypted == ""
    assert "callback_url" not in parent_info(sandbox)


def test_a_blank_url_is_refused_before_the_provider_is_asked(client, reseller_admin, vox_connection, sandbox) -> None:
    client.force_login(reseller_admin)
    response = submit(client, vox_connection, "   ")
    assert response.status_code == 400 and 'data-testid="callback_url-error"' in response.content.decode()
    assert "callback_url" not in parent_info(sandbox)


def test_other_staff_read_the_page_but_cannot_change_it(client, reseller_support, vox_connection, sandbox) -> None:
    client.force_login(reseller_support)
    page = client.get(URL)
    assert page.status_code == 200 and 'data-testid="callback-form"' not in page.content.decode()
    assert submit(client, vox_connection, "https://evil.example/").status_code == 403
    assert ProviderConnection.objects.get(pk=vox_connection.pk).callback_configured_at is None
    assert "callback_url" not in parent_info(sandbox)


def test_a_customer_finds_no_such_page(client, other_customer, vox_connection) -> None:
    client.force_login(other_customer)
    assert client.get(URL).status_code == 404
    assert submit(client, vox_connection, "https://evil.example/").status_code == 404
    assert ProviderConnection.objects.get(pk=vox_connection.pk).callback_configured_at is None


def test_anonymous_visitors_are_sent_to_the_login(client) -> None:
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_console_home_links_to_the_page(client, reseller_admin) -> None:
    client.force_login(reseller_admin)
    assert URL in client.get(reverse("console:home")).content.decode()


def test_voiceit_connections_say_why_not(reseller_admin, voiceit_connection) -> None:
    from portal.errors import PortalError

    with pytest.raises(PortalError) as caught:
        callbacks.callbacks_configure(actor=reseller_admin, connection=voiceit_connection, url="https://x.example/")
    assert "VoiceIt" in caught.value.message
