"""One table of hostile inputs, run through every entry point that takes them: the service, the
REST API and the HTML form. The rules live once, in portal/inputs.py; each entry point must
refuse the same values on the same field and accept the same good ones."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from billing.alerts import tenant_set_low_balance_threshold
from portal.errors import PortalError
from tenants.models import Tenant
from tenants.services import tenant_create
from tests.factories import CustomerFactory, TenantFactory, api_token, bearer

pytestmark = pytest.mark.django_db

VALID = {
    "company_name": "Rules Ltd",
    "account_name": "rules-co",
    "account_email": "rules@example.com",
    "notes": "",
    "low_balance_threshold": "",
}

# (field, value): every one must be refused, on that field, by every entry point.
HOSTILE = [
    ("company_name", "Evil\u202eCorp"),  # right-to-left override
    ("company_name", "Left\u200eMark"),  # left-to-right mark
    ("company_name", "Iso\u2067late"),  # right-to-left isolate
    ("company_name", "Nul\x00Byte"),
    ("company_name", "Bell\x07"),
    ("company_name", "x" * 201),
    ("account_name", "abcde\n"),
    ("account_name", "Abcdef"),
    ("account_name", "ab"),
    ("account_name", "1abcde"),
    ("account_name", "abc\u0435de"),  # a Cyrillic letter that looks latin
    ("account_email", "not-an-email"),
    ("account_email", "a@example.com\r\nBcc: x@example.com"),
    ("account_email", "a\u202e@example.com"),
    ("notes", "line\u202eone"),
    ("low_balance_threshold", "-1"),
    ("low_balance_threshold", "1e3"),
    ("low_balance_threshold", "NaN"),
    ("low_balance_threshold", "١٠"),  # Arabic-Indic digits
    ("low_balance_threshold", "1,000"),  # forms read "10,00" as ten; "1,000" is ambiguous, and the API takes dots only
    ("low_balance_threshold", "10.123"),
    ("low_balance_threshold", "500000000.00"),
    ("low_balance_threshold", "Infinity"),
]

# Refused by the threshold rule wherever a threshold is set.
BAD_THRESHOLDS = [value for field, value in HOSTILE if field == "low_balance_threshold"]
GOOD_THRESHOLDS = [("5", Decimal("5")), ("12.50", Decimal("12.50")), ("0", Decimal("0")), ("99999999.99", None)]


def _values(field: str, value: str) -> dict[str, str]:
    return {**VALID, field: value}


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_the_service_refuses_it_on_its_field(vox_connection, reseller_admin, field, value) -> None:
    values = _values(field, value)
    with pytest.raises(PortalError) as caught:
        tenant_create(
            actor=reseller_admin,
            connection=vox_connection,
            company_name=values["company_name"],
            account_name=values["account_name"],
            account_email=values["account_email"],
            notes=values["notes"],
            low_balance_threshold=values["low_balance_threshold"] or None,
        )
    assert caught.value.field == field
    assert not Tenant.objects.exists()


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_the_api_refuses_it_on_its_field(client, vox_connection, reseller_admin, field, value) -> None:
    body: dict[str, object] = {"connection": str(vox_connection.uuid), **_values(field, value)}
    if not body["low_balance_threshold"]:
        body.pop("low_balance_threshold")
    response = client.post(
        "/api/v1/tenants",
        data=json.dumps(body),
        content_type="application/json",
        headers=bearer(api_token(reseller_admin)),
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error.get("fields", {}) or error.get("field") == field, error
    assert not Tenant.objects.exists()


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_the_form_refuses_it_on_its_field(client, vox_connection, reseller_admin, field, value) -> None:
    client.force_login(reseller_admin)
    response = client.post("/console/tenants/new/", {"connection": str(vox_connection.uuid), **_values(field, value)})
    page = response.content.decode()
    assert response.status_code in (200, 400)
    assert f'has-error" data-field="{field}"' in page, field
    assert not Tenant.objects.exists()


def test_the_good_values_pass_every_entry_point(client, vox_connection, reseller_admin) -> None:
    """The control for the three tables above: the same base values are accepted."""
    good = {**VALID, "notes": "two\nlines\tand a tab", "low_balance_threshold": "12.50"}
    created = tenant_create(
        actor=reseller_admin,
        connection=vox_connection,
        company_name=good["company_name"],
        account_name=good["account_name"],
        account_email=good["account_email"],
        notes=good["notes"],
        low_balance_threshold=good["low_balance_threshold"],
    )
    assert created.low_balance_threshold == Decimal("12.50") and created.notes == good["notes"]
    api = client.post(
        "/api/v1/tenants",
        data=json.dumps(
            {
                **good,
                "connection": str(vox_connection.uuid),
                "account_name": "rules-api",
                "account_email": "a@example.com",
            }
        ),
        content_type="application/json",
        headers={**bearer(api_token(reseller_admin)), "Idempotency-Key": "rules-api-1"},
    )
    assert api.status_code in (201, 202), api.content
    client.force_login(reseller_admin)
    form = client.post(
        "/console/tenants/new/",
        {
            **good,
            "connection": str(vox_connection.uuid),
            "account_name": "rules-form",
            "account_email": "f@example.com",
        },
    )
    assert form.status_code == 302, form.content.decode()[:2000]
    made = Tenant.objects.filter(account_name__in=["rules-co", "rules-api", "rules-form"])
    assert sorted(t.account_name for t in made) == ["rules-api", "rules-co", "rules-form"]
    assert {(t.low_balance_threshold, t.notes) for t in made} == {(Decimal("12.50"), good["notes"])}


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
def test_every_threshold_entry_point_refuses_the_same_values(client, vox_connection, reseller_admin, value) -> None:
    tenant = TenantFactory(connection=vox_connection, low_balance_threshold=Decimal("7"))
    owner = CustomerFactory(tenant=tenant, role="customer_owner")
    with pytest.raises(PortalError):
        tenant_set_low_balance_threshold(actor=reseller_admin, tenant=tenant, threshold=value)
    client.force_login(reseller_admin)
    client.post(f"/console/billing/tenants/{tenant.uuid}/threshold/", {"threshold": value})
    client.force_login(owner)
    client.post("/me/alerts/", {"threshold": value})
    tenant.refresh_from_db()
    assert tenant.low_balance_threshold == Decimal("7")


@pytest.mark.parametrize(("value", "expected"), GOOD_THRESHOLDS)
def test_every_threshold_entry_point_accepts_the_same_values(client, vox_connection, reseller_admin, value, expected):
    expected = expected if expected is not None else Decimal(value)
    tenant = TenantFactory(connection=vox_connection, low_balance_threshold=Decimal("7"))
    owner = CustomerFactory(tenant=tenant, role="customer_owner")
    for set_it in (
        lambda: tenant_set_low_balance_threshold(actor=reseller_admin, tenant=tenant, threshold=value),
        lambda: (
            client.force_login(reseller_admin),
            client.post(f"/console/billing/tenants/{tenant.uuid}/threshold/", {"threshold": value}),
        ),
        lambda: (client.force_login(owner), client.post("/me/alerts/", {"threshold": value})),
    ):
        Tenant.objects.filter(pk=tenant.pk).update(low_balance_threshold=Decimal("7"))
        set_it()
        tenant.refresh_from_db()
        assert tenant.low_balance_threshold == expected
