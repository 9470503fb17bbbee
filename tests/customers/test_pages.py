"""The customer portal as its owner, its viewer and another company's owner see it."""

import csv
import io
from decimal import Decimal

import pytest

from portal.models import AuditEvent
from tests.factories import PASSWORD, TransferFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_the_owner_sees_balance_sync_time_chart_and_alert_form(client, customer_owner) -> None:
    client.force_login(customer_owner)
    page = client.get("/me/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "42.50 USD" in text and "Last synced" in text
    assert "<svg" in text and "balance-chart" in text
    assert 'data-testid="alert-form"' in text and 'value="10.00"' in text
    assert "no-cache" in page["Cache-Control"] or "no-store" in page["Cache-Control"]


def test_the_viewer_sees_the_balance_but_cannot_change_alerts(client, customer_viewer, customer_tenant) -> None:
    client.force_login(customer_viewer)
    text = client.get("/me/").content.decode()
    assert "42.50 USD" in text and 'data-testid="alert-readonly"' in text and "alert-form" not in text
    assert client.post("/me/alerts/", {"threshold": "1"}).status_code == 403
    customer_tenant.refresh_from_db()
    assert customer_tenant.low_balance_threshold == Decimal("10")
    for url in ("/me/team/", "/me/api-tokens/"):
        assert client.get(url).status_code == 403


def test_the_owner_sets_and_clears_the_alert(client, customer_owner, customer_tenant) -> None:
    client.force_login(customer_owner)
    assert client.post("/me/alerts/", {"threshold": "25.5"}).status_code == 302
    customer_tenant.refresh_from_db()
    assert customer_tenant.low_balance_threshold == Decimal("25.5")
    for bad in ("-1", "abc", "1e3", "١٠", "10.123"):
        client.post("/me/alerts/", {"threshold": bad})
        customer_tenant.refresh_from_db()
        assert customer_tenant.low_balance_threshold == Decimal("25.5"), bad
    client.post("/me/alerts/", {"threshold": ""})
    customer_tenant.refresh_from_db()
    assert customer_tenant.low_balance_threshold is None


def test_staff_and_strangers_get_no_customer_pages(client, reseller_admin) -> None:
    assert client.get("/me/").status_code == 302
    client.force_login(reseller_admin)
    assert client.get("/me/").status_code == 403
    client.force_login(UserFactory(username="orphan", role="customer_owner"))  # a customer role without a company
    assert client.get("/me/").status_code == 404


def test_the_home_page_redirects_customers_to_their_company(client, customer_owner) -> None:
    client.force_login(customer_owner)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/me/"


def test_a_frozen_tenant_shows_whom_to_contact_but_not_staffs_reason(client, customer_owner, customer_tenant) -> None:
    type(customer_tenant).objects.filter(pk=customer_tenant.pk).update(
        status="frozen", status_reason="Invoice 42 is overdue"
    )
    client.force_login(customer_owner)
    for url in ("/me/", "/me/statement/", "/me/profile/"):
        text = client.get(url).content.decode()
        assert "Your account is frozen" in text and "support" in text, url
        assert "Invoice 42 is overdue" not in text, url  # staff's words stay in the console


def test_a_closed_tenants_users_cannot_log_in_and_their_sessions_end(client, customer_owner, customer_tenant) -> None:
    assert client.post("/accounts/login/", {"username": "acme-owner", "password": PASSWORD}).status_code == 302
    assert client.get("/me/").status_code == 200
    type(customer_tenant).objects.filter(pk=customer_tenant.pk).update(status="closed")
    response = client.get("/me/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/me/").status_code == 302  # the session is gone, not just this request
    again = client.post("/accounts/login/", {"username": "acme-owner", "password": PASSWORD})
    assert again.status_code == 200 and b"Log in" in again.content
    assert client.get("/me/").status_code == 302


def test_the_statement_has_a_running_balance_a_date_filter_and_a_safe_csv(
    client, customer_owner, customer_tenant
) -> None:
    # The tenant's connection points nowhere: the statement falls back to the portal's own
    # transfers and says so.
    from datetime import UTC, datetime, timedelta

    def transfer(amount, direction, day, words):
        TransferFactory(
            tenant=customer_tenant,
            amount=amount,
            direction=direction,
            reason="staff only",
            customer_description=words,
            completed_at=day,
        )

    now = datetime.now(UTC).replace(microsecond=0)
    transfer("50.00", "to_tenant", now - timedelta(days=10), '=HYPERLINK("http://evil")')
    transfer("20.00", "to_parent", now - timedelta(days=5), "pull back")
    transfer("5.00", "to_tenant", now - timedelta(days=1), "small")
    client.force_login(customer_owner)
    page = client.get("/me/statement/").content.decode()
    assert "statement-note" in page
    assert page.index("small") < page.index("pull back")  # newest first
    assert "35.00" in page and "30.00" in page and "50.00" in page  # running balances 50, 30, 35
    start = (now - timedelta(days=6)).date().isoformat()
    filtered = client.get(f"/me/statement/?from={start}").content.decode()
    assert "pull back" in filtered and "HYPERLINK" not in filtered
    csv_response = client.get("/me/statement/?format=csv")
    assert csv_response["Content-Type"].startswith("text/csv")
    assert "attachment" in csv_response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(csv_response.content.decode())))
    assert rows[0] == ["date", "type", "description", "reference", "amount", "currency", "balance"]
    assert [(r[4], r[6]) for r in rows[1:]] == [("50.00", "50.00"), ("-20.00", "30.00"), ("5.00", "35.00")]
    assert [r[2] for r in rows[1:] if "HYPERLINK" in r[2]] == ['\'=HYPERLINK("http://evil")']
    assert "staff only" not in csv_response.content.decode() and "staff only" not in page
    assert not [cell for r in rows for cell in r if cell[:1] in ("=", "+", "@")]
    bad = client.get("/me/statement/?from=yesterday")
    assert bad.status_code == 400 and "Enter the From date as YYYY-MM-DD." in bad.content.decode()


def test_the_team_page_invites_a_viewer_with_a_set_password_email(
    client, customer_owner, customer_tenant, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    from django.contrib.auth.models import User

    client.force_login(customer_owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/me/team/invite/", {"email": "  New.Person@Example.COM "})
    assert response.status_code == 302
    user = User.objects.get(email="New.Person@example.com")
    assert not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["customer_viewer"]
    assert user.membership.tenant_id == customer_tenant.pk
    assert len(mailoutbox) == 1 and "/accounts/reset/" in mailoutbox[0].body
    assert AuditEvent.objects.filter(action="customers.member.invited", tenant_id=customer_tenant.pk).exists()
    # Case-only duplicates, CRLF, over-long addresses are refused.
    for bad in ("new.person@example.com", "a@b.c\r\nBcc: x@y.z", "x" * 150 + "@example.com", "not-an-email"):
        assert client.post("/me/team/invite/", {"email": bad}).status_code == 400, bad
    assert User.objects.filter(email__iexact="new.person@example.com").count() == 1
    # The invitee sets a password through the link and logs in as a viewer.
    link = [w for w in mailoutbox[0].body.split() if "/accounts/reset/" in w][0]
    path = link.split("127.0.0.1:8000", 1)[-1] if "127.0.0.1:8000" in link else "/" + link.split("/", 3)[3]
    client.logout()
    form = client.get(path, follow=True)
    assert form.status_code == 200
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-very-long-password-42", "new_password2": "a-very-long-password-42"},
    )
    assert done.status_code == 302
    login = client.post("/accounts/login/", {"username": user.username, "password": "a-very-long-password-42"})
    assert login.status_code == 302 and client.get("/me/").status_code == 200


def test_the_owner_removes_a_viewer_but_not_someone_elses(
    client, customer_owner, customer_viewer, other_customer, customer_tenant
) -> None:
    from django.contrib.auth.models import User

    from tenants.models import Membership

    client.force_login(customer_owner)
    assert client.post(f"/me/team/{other_customer.membership.pk}/remove/").status_code == 404
    assert client.post(f"/me/team/{customer_owner.membership.pk}/remove/").status_code == 302
    assert User.objects.get(pk=customer_owner.pk).is_active
    response = client.post(f"/me/team/{customer_viewer.membership.pk}/remove/")
    assert response.status_code == 302
    removed = User.objects.get(pk=customer_viewer.pk)
    assert not removed.is_active
    assert not Membership.objects.filter(user=removed).exists()
    assert not removed.groups.exists()
    event = AuditEvent.objects.get(action="customers.member.removed")
    assert event.tenant_id == customer_tenant.pk and event.data == {"email": customer_viewer.email}
    client.force_login(other_customer)
    assert client.get("/me/").content.decode().count("Other Corp") >= 1


def test_profile_and_password(client, customer_owner) -> None:
    client.force_login(customer_owner)
    assert client.post("/me/profile/", {"first_name": "Ada", "last_name": "Lovelace"}).status_code == 302
    customer_owner.refresh_from_db()
    assert (customer_owner.first_name, customer_owner.last_name) == ("Ada", "Lovelace")
    client.post("/me/profile/", {"first_name": "\u202eevil", "last_name": ""})
    customer_owner.refresh_from_db()
    assert customer_owner.first_name == "Ada"
    assert b"Change your password" in client.get("/me/profile/").content


def test_the_owner_creates_a_read_only_api_token_for_the_company(client, customer_owner, customer_tenant) -> None:
    from portal.models import ApiToken

    client.force_login(customer_owner)
    page = client.post("/me/api-tokens/", {"name": "accounting", "tenant": 999, "role": "reseller_admin"})
    token = ApiToken.objects.get(name="accounting")
    assert token.tenant_id == customer_tenant.pk and token.role == "customer_viewer"
    raw = page.content.decode().split('data-testid="new-token"')[1].split("<code>")[1].split("</code>")[0]
    api = client.get("/api/v1/customer/balance", headers={"Authorization": f"Bearer {raw}"})
    assert api.json()["balance"] == "42.5000"
    assert client.post(f"/me/api-tokens/{token.uuid}/revoke/").status_code == 302
    assert client.get("/api/v1/customer/balance", headers={"Authorization": f"Bearer {raw}"}).status_code == 401


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1", "'+1"),
        ("@x", "'@x"),
        ("-2+3", "'-2+3"),
        ("ok", "ok"),
        (Decimal("-5.00"), "-5.00"),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_defused(value, cell) -> None:
    from customers.views import _cell

    assert _cell(value) == cell
