"""Invitations through a real SMTP server on loopback: the team invite and the owner's
invitation arrive as text and HTML with a working link, and a mail server that is down never
fails the page: the invite is kept, shown as not delivered, and goes out on a resend or on the
background retry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import purge_broker
from tests.portal.test_email_smtp import SmtpServer, parts, running_smtp_server

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "a-very-long-password-42"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


def queued(task_name: str) -> list[tuple[list[Any], datetime | None]]:
    """Takes every message off the broker queue; returns the args and ETA of ``task_name``'s."""
    from portal.celery import app

    found: list[tuple[list[Any], datetime | None]] = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("celery")
        try:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                message.ack()
                if message.headers.get("task") == task_name:
                    eta = message.headers.get("eta")
                    found.append((message.payload[0], datetime.fromisoformat(eta) if eta else None))
        finally:
            queue.close()
    return found


def link_in(text: str) -> str:
    return re.search(r"https?://\S+/accounts/reset/\S+/", text).group(0)


def choose_password_through(client: Any, link: str) -> None:
    client.logout()
    form = client.get("/" + link.split("/", 3)[3], follow=True)
    assert form.status_code == 200
    done = client.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302


def logs_in(client: Any, username: str) -> bool:
    login = client.post("/accounts/login/", {"username": username, "password": NEW_PASSWORD})
    return login.status_code == 302 and client.get("/me/").status_code == 200


def team_status(client: Any) -> str:
    html = client.get(reverse("customer:team")).content.decode()
    return " ".join(re.findall(r'data-testid="member-status">(.*?)</td>', html, re.S))


def test_an_invite_arrives_as_text_and_html_with_a_link_that_lets_the_viewer_in(
    client, customer_owner, smtp_server
) -> None:
    client.force_login(customer_owner)
    response = client.post(reverse("customer:team_invite"), {"email": "new.viewer@acme.example"}, follow=True)
    assert response.status_code == 200
    assert "Invitation sent to new.viewer@acme.example." in response.content.decode()

    [message] = smtp_server.wait_for(1)
    assert message["To"] == "new.viewer@acme.example"
    assert message["Subject"] == "You are invited to Acme Telecom's account"
    bodies = parts(message)
    assert set(bodies) == {"text/plain", "text/html"}
    link = link_in(bodies["text/plain"])
    assert f'href="{link}"' in bodies["text/html"] and "acme-owner" in bodies["text/html"]
    assert "sent" in team_status(client)

    choose_password_through(client, link)
    assert logs_in(client, "new.viewer@acme.example")


def _invite_while_the_server_is_down(client: Any, owner: Any, smtp_server: Any) -> Any:
    from tenants.models import Membership

    purge_broker()
    smtp_server.stop()
    client.force_login(owner)
    response = client.post(reverse("customer:team_invite"), {"email": "late.viewer@acme.example"})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "The invitation to late.viewer@acme.example was not delivered" in page
    membership = Membership.objects.get(user__email="late.viewer@acme.example")
    assert membership.tenant_id == owner.membership.tenant_id
    status = team_status(client)
    assert "not delivered" in status and "last attempt" in status
    assert membership.invite_attempted_at.strftime("%Y-%m-%d %H:%M") in status
    # A second invite to the same address points at the resend instead of making a second user.
    again = client.post(reverse("customer:team_invite"), {"email": "late.viewer@acme.example"})
    assert again.status_code == 400 and "use Resend" in again.content.decode()
    return membership


def test_with_the_mail_server_down_the_invite_is_kept_and_a_resend_delivers_it(
    client, customer_owner, smtp_server
) -> None:
    from portal.models import AuditEvent

    membership = _invite_while_the_server_is_down(client, customer_owner, smtp_server)
    assert smtp_server.messages == []

    smtp_server.start()
    response = client.post(reverse("customer:team_resend", args=[membership.pk]), follow=True)
    assert response.status_code == 200
    assert "Invitation sent to late.viewer@acme.example." in response.content.decode()
    [message] = smtp_server.wait_for(1)
    assert set(parts(message)) == {"text/plain", "text/html"}
    status = team_status(client)
    assert "sent" in status and "not delivered" not in status
    event = AuditEvent.objects.get(action="customers.member.invite_resent")
    assert event.tenant_id == customer_owner.membership.tenant_id
    assert event.data["email"] == "late.viewer@acme.example" and event.data["previous_delivery"] == "failed"

    choose_password_through(client, link_in(parts(message)["text/plain"]))
    assert logs_in(client, "late.viewer@acme.example")


def test_with_the_mail_server_down_the_background_retry_delivers_the_invite_later(
    client, customer_owner, smtp_server
) -> None:
    from tenants.models import Membership

    membership = _invite_while_the_server_is_down(client, customer_owner, smtp_server)
    from customers.services import INVITE_RETRIES
    from customers.tasks import invite_deliver

    [(args, eta)] = queued("customers.invite_deliver")
    assert args == [membership.pk, 1]
    assert eta is not None and eta - timezone.now() > timedelta(seconds=30)

    # Still down at the first retry: the next one is queued, later.
    invite_deliver(*args)
    [(args, later)] = queued("customers.invite_deliver")
    assert args == [membership.pk, 2] and later is not None and later - timezone.now() > eta - timezone.now()
    # The last retry gives up quietly; the invite waits for a resend.
    invite_deliver(membership.pk, INVITE_RETRIES)
    assert queued("customers.invite_deliver") == []
    assert Membership.objects.get(pk=membership.pk).invite_attempts == 3

    smtp_server.start()
    invite_deliver(*args)
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "late.viewer@acme.example" and set(parts(message)) == {"text/plain", "text/html"}
    assert Membership.objects.get(pk=membership.pk).invite_delivery == "sent"
    assert "sent" in team_status(client) and "not delivered" not in team_status(client)
    # A retry that arrives after the delivery sends nothing more.
    invite_deliver(membership.pk, 2)
    assert len(smtp_server.messages) == 1
    choose_password_through(client, link_in(parts(message)["text/plain"]))
    assert logs_in(client, "late.viewer@acme.example")


def test_the_owner_invitation_on_tenant_create_survives_a_mail_server_that_is_down(
    client, reseller_admin, vox_connection, smtp_server
) -> None:
    from tenants.models import Membership, Tenant

    purge_broker()
    smtp_server.stop()
    client.force_login(reseller_admin)
    response = client.post(
        reverse("tenants:create"),
        {
            "connection": vox_connection.uuid,
            "company_name": "Initech",
            "account_name": "initech-one",
            "account_email": "billing@initech.example",
            "password": "Correct-Horse-42-battery",
            "invite_owner_email": "boss@initech.example",
            "operation_key": "initech-create-0001",
        },
    )
    tenant = Tenant.objects.get(account_name="initech-one")
    assert response.status_code == 302 and response["Location"] == reverse("tenants:detail", args=[tenant.uuid])
    membership = Membership.objects.get(user__email="boss@initech.example")
    assert membership.tenant_id == tenant.pk and membership.invite_delivery == "failed"
    [(args, eta)] = queued("tenants.owner_invite_deliver")
    assert args == [membership.pk, 1] and eta is not None and eta > timezone.now()

    from tenants.tasks import owner_invite_deliver

    smtp_server.start()
    owner_invite_deliver(*args)
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "boss@initech.example"
    assert message["Subject"] == "You are invited to manage Initech"
    bodies = parts(message)
    assert set(bodies) == {"text/plain", "text/html"}
    link = link_in(bodies["text/plain"])
    assert f'href="{link}"' in bodies["text/html"]
    assert Membership.objects.get(pk=membership.pk).invite_delivery == "sent"
    choose_password_through(client, link)
    assert logs_in(client, "boss@initech.example")
