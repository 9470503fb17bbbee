"""Forms that forgive: every error at once on its field, what was typed kept, amounts typed
with a comma or thousands separators read, the ambiguous ones explained."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from billing.models import Transfer
from portal import inputs
from portal.errors import PortalError
from tenants.models import Tenant
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def _errors_by_field(html: str) -> dict[str, str]:
    found = {}
    for name, block in re.findall(r'data-field="([a-z_]+)"(.*?)</div>', html, re.S):
        errors = re.findall(r"<li>(.*?)</li>", block)
        if errors:
            found[name] = " ".join(errors)
    return found


def _post_create_form(client, actor, connection, **fields):
    client.force_login(actor)
    return client.post("/console/tenants/new/", {"connection": connection.uuid, **fields})


def test_the_create_form_shows_every_wrong_field_at_once_and_keeps_the_rest(client, reseller_admin, vox_connection):
    response = _post_create_form(
        client,
        reseller_admin,
        vox_connection,
        company_name="",
        account_name="Bad_Name",
        account_email="not-an-email",
        contact_name="Anna Smith",
        password="short",
        low_balance_threshold="1,000",
        notes="Call before noon",
    )
    html = response.content.decode()
    errors = _errors_by_field(html)
    assert set(errors) >= {"company_name", "account_name", "account_email", "password", "low_balance_threshold"}
    assert "lowercase latin letter" in errors["account_name"]
    assert "type 1000 for 1000" in errors["low_balance_threshold"]
    # What was typed stays; the password alone is asked for again, with a note saying so.
    assert 'value="Bad_Name"' in html and 'value="Anna Smith"' in html and "Call before noon" in html
    assert 'value="short"' not in html
    assert not Tenant.objects.exists()


def test_a_typed_password_is_asked_for_again_with_a_note(client, reseller_admin, vox_connection):
    html = _post_create_form(
        client,
        reseller_admin,
        vox_connection,
        company_name="Acme",
        account_name="acme-one",
        account_email="bad",
        password="Str0ng!Passw0rd#2026",
    ).content.decode()
    assert 'data-testid="password-retype"' in html and "Str0ng!Passw0rd#2026" not in html


def test_a_comma_threshold_is_read_on_the_create_form(client, reseller_admin, vox_connection):
    response = _post_create_form(
        client,
        reseller_admin,
        vox_connection,
        company_name="Comma Co",
        account_name="comma-co",
        account_email="comma@example.com",
        low_balance_threshold="12,50",
    )
    assert response.status_code == 302
    assert Tenant.objects.get(account_name="comma-co").low_balance_threshold == Decimal("12.50")


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("10", Decimal("10")),
        ("10.00", Decimal("10.00")),
        ("10,00", Decimal("10.00")),
        ("10,5", Decimal("10.50")),
        ("1,000.50", Decimal("1000.50")),
        ("1.000,50", Decimal("1000.50")),
        ("1 000,50", Decimal("1000.50")),
        ("1\u00a0000,50", Decimal("1000.50")),
        ("1,000,000", Decimal("1000000")),
        (" 7.25 ", Decimal("7.25")),
        ("0,12", Decimal("0.12")),
    ],
)
def test_typed_amounts_read_the_persons_decimal_separator(typed, value):
    assert inputs.typed_amount(typed, places=2, currency="USD") == value


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1,000", '"1,000" could mean 1000 or 1.000: type 1000 for 1000, or 1.00'),
        ("1.000", '"1.000" could mean 1000 or 1.000'),
        ("10,000,5", "Enter the amount like"),
        ("1,000,00", "Enter the amount like"),
        ("10,", "Enter the digits after the separator"),
        ("ten", "one decimal separator, like 10, 10.50 or 10,50"),
        ("10,505", "could mean 10505"),
        ("0,005", "at most 2 decimal places"),
        ("-5", "one decimal separator"),
    ],
)
def test_unreadable_or_ambiguous_amounts_say_what_to_type(typed, message):
    with pytest.raises(PortalError) as caught:
        inputs.typed_amount(typed, places=2, currency="USD")
    assert message in caught.value.message and caught.value.field == "amount"


def test_the_api_rule_stays_strict():
    with pytest.raises(PortalError):
        inputs.amount("10,00", places=2, currency="USD")
    with pytest.raises(PortalError):
        inputs.threshold("12,50")


def test_a_refused_amount_returns_to_the_tenant_page_with_the_error_on_the_field(
    client, reseller_billing, vox_connection
):
    tenant = TenantFactory(connection=vox_connection, status=Tenant.Status.ACTIVE)
    client.force_login(reseller_billing)
    page = f"/console/tenants/{tenant.uuid}/"
    response = client.post(
        f"/console/billing/tenants/{tenant.uuid}/transfer/",
        {"amount": "1,000", "direction": "to_tenant", "reason": "Monthly top-up", "key": "k" * 32, "next": page},
    )
    assert response.status_code == 302 and response["Location"] == page
    html = client.get(page).content.decode()
    assert 'data-testid="panel-amount-error"' in html and "could mean 1000" in html
    assert 'value="1,000"' in html and 'value="Monthly top-up"' in html
    assert 'pattern="' not in html and 'inputmode="decimal"' in html
    assert not Transfer.objects.exists()
    # Shown once: a reload is a fresh form.
    assert 'data-testid="panel-amount-error"' not in client.get(page).content.decode()
