"""Editing a tenant after creation (page, service and PATCH API) and rotating a VoiceIt
token: portal fields at once with a before/after audit, the account email and password
through a tracked operation the sandbox applies, the same rules as at creation, 404 for
customers; a rotated token is shown once and the old one stops working at the sandbox."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail

from portal.crypto import decrypt_json
from portal.errors import PortalError
from portal.models import AuditEvent
from tenants.connections import client_for
from tenants.models import Tenant, TenantOperation
from tenants.services import tenant_create, tenant_edit
from tests.factories import CustomerFactory, api_token, bearer
from tests.tenants.conftest import STRONG, actions, create_vox, drain, provisioned_vox

pytestmark = pytest.mark.django_db

Op = TenantOperation
MISSING = "00000000-0000-4000-8000-000000000000"


def at_provider(connection, account_id):
    """The child as the sandbox reports it over HTTP (GetChildrenAccounts)."""
    with client_for(connection) as client:
        return client.get_children_accounts(child_account_id=[int(account_id)]).accounts[0]


@pytest.fixture
def tenant(vox_connection, reseller_admin, sandbox):
    return provisioned_vox(vox_connection, reseller_admin, name="acme-one", low_balance_threshold="12.50")


@pytest.fixture
def other(vox_connection, reseller_admin, sandbox):
    made = create_vox(vox_connection, reseller_admin, name="beta-two")
    drain()
    return made


def test_portal_fields_change_at_once_with_a_before_after_audit(tenant, reseller_admin):
    op = tenant_edit(
        actor=reseller_admin,
        tenant=tenant,
        company_name="Acme Renamed",
        contact_name="Jo",
        contact_email="jo@acme.example",
        notes="Moved to the new office",
    )
    assert op is None  # nothing for the provider
    tenant.refresh_from_db()
    assert (tenant.company_name, tenant.contact_email) == ("Acme Renamed", "jo@acme.example")
    event = AuditEvent.objects.filter(tenant_id=tenant.pk, action="tenants.tenant.edited").get()
    assert event.data["before"]["company_name"] == "Acme One"
    assert event.data["after"]["company_name"] == "Acme Renamed"
    assert not tenant.operations.filter(kind=Op.Kind.EDIT).exists()


def test_the_account_email_and_password_change_at_the_provider(tenant, reseller_admin, vox_connection):
    op = tenant_edit(actor=reseller_admin, tenant=tenant, account_email="new@acme.example", password="New-Secret-77-x")
    assert op is not None and op.kind == Op.Kind.EDIT
    assert "New-Secret-77-x" not in op.secrets_encrypted
    tenant.refresh_from_db()
    assert tenant.account_email == "acme-one@example.com"  # until the provider accepted it
    drain()
    op.refresh_from_db()
    tenant.refresh_from_db()
    assert op.state == Op.State.SUCCEEDED and op.secrets_encrypted == ""
    assert tenant.account_email == "new@acme.example"
    assert at_provider(vox_connection, tenant.provider_account_id).account_email == "new@acme.example"
    assert {"tenants.tenant.edit_requested", "tenants.tenant.edited_at_provider"} <= set(actions(tenant))
    requested = AuditEvent.objects.get(tenant_id=tenant.pk, action="tenants.tenant.edit_requested")
    assert requested.data["password_changed"] is True and "New-Secret" not in str(requested.data)


def test_a_threshold_edit_reaches_the_provider(tenant, reseller_admin, vox_connection):
    tenant_edit(actor=reseller_admin, tenant=tenant, low_balance_threshold="25.50")
    drain()
    tenant.refresh_from_db()
    assert tenant.low_balance_threshold == Decimal("25.50") == tenant.provider_threshold
    assert at_provider(vox_connection, tenant.provider_account_id).min_balance_to_notify == Decimal("25.50")
    assert "billing.threshold.set" in actions(tenant)


@pytest.mark.parametrize(
    "changes,field,words",
    [
        ({"account_email": "not-an-email"}, "account_email", "valid account email"),
        ({"account_email": "beta-two@example.com"}, "account_email", "already uses this email"),
        ({"account_email": "BETA-TWO@example.com"}, "account_email", "already uses this email"),
        ({"account_name": "beta-two"}, "account_name", "rename"),
        ({"password": "short"}, "password", "12 characters"),
        ({"company_name": ""}, "company_name", "Enter the company name"),
        ({"low_balance_threshold": "-3"}, "low_balance_threshold", "zero or more"),
        ({"contact_email": "x@"}, "contact_email", "valid"),
    ],
)
def test_edits_are_validated_like_create(tenant, other, reseller_admin, changes, field, words):
    with pytest.raises(PortalError) as caught:
        tenant_edit(actor=reseller_admin, tenant=tenant, **changes)
    assert caught.value.field == field and words in caught.value.message
    assert not tenant.operations.filter(kind=Op.Kind.EDIT).exists()


def test_the_edit_page_shows_errors_on_the_form(tenant, other, reseller_admin, client):
    client.force_login(reseller_admin)
    url = f"/console/tenants/{tenant.uuid}/edit/"
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="account_name"' in html and "disabled" in html and "Cannot be changed here" in html
    response = client.post(
        url, {"company_name": "Acme One", "account_email": "beta-two@example.com", "low_balance_threshold": "12.50"}
    )
    assert response.status_code == 200
    assert "already uses this email" in response.content.decode()
    response = client.post(url, {"company_name": "Acme One", "account_email": "nope", "low_balance_threshold": ""})
    assert response.status_code == 200 and "valid account email" in response.content.decode()
    response = client.post(
        url, {"company_name": "Acme Two", "account_email": tenant.account_email, "low_balance_threshold": "12.50"}
    )
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.company_name == "Acme Two"


def test_the_api_patch_edits_and_answers_400_on_bad_input(tenant, other, reseller_admin, client, vox_connection):
    headers = bearer(api_token(reseller_admin))
    url = f"/api/v1/tenants/{tenant.uuid}"
    # Well-formed but refused by the current state: an email taken, a name the provider cannot change (409).
    bad = client.patch(url, {"account_email": "beta-two@example.com"}, content_type="application/json", headers=headers)
    assert bad.status_code == 409 and "account_email" in str(bad.json())
    bad = client.patch(url, {"account_name": "renamed-one"}, content_type="application/json", headers=headers)
    assert bad.status_code == 409 and "account_name" in str(bad.json())
    bad = client.patch(url, {"tenant": "x"}, content_type="application/json", headers=headers)
    assert bad.status_code == 400
    ok = client.patch(
        url,
        {"notes": "via API", "account_email": "api@acme.example", "low_balance_threshold": "8"},
        content_type="application/json",
        headers=headers,
    )
    assert ok.status_code == 200, ok.content
    body = ok.json()
    assert body["notes"] == "via API" and body["job"]["kind"] == "tenants.edit"
    drain()
    tenant.refresh_from_db()
    child = at_provider(vox_connection, tenant.provider_account_id)
    assert child.account_email == "api@acme.example" and child.min_balance_to_notify == Decimal("8")


def test_customers_get_404_and_support_staff_403(tenant, other_customer, reseller_support, client):
    owner = CustomerFactory(username="acme-owner-2", tenant=tenant)
    for user in (other_customer, owner):
        client.force_login(user)
        for url in (f"/console/tenants/{tenant.uuid}/edit/", f"/console/tenants/{MISSING}/edit/"):
            assert client.get(url).status_code == 404
            assert client.post(url, {"company_name": "Hacked"}).status_code == 404
        headers = bearer(api_token(user, tenant=tenant if user is owner else user.membership.tenant))
        for uuid in (tenant.uuid, MISSING):
            response = client.patch(
                f"/api/v1/tenants/{uuid}", {"company_name": "Hacked"}, content_type="application/json", headers=headers
            )
            assert response.status_code == 404
    client.force_login(reseller_support)
    assert client.get(f"/console/tenants/{tenant.uuid}/edit/").status_code == 403
    tenant.refresh_from_db()
    assert tenant.company_name == "Acme One"


def test_a_provider_refusal_of_the_new_email_fails_the_edit(tenant, reseller_admin, vox_connection, client):
    with client_for(vox_connection) as provider:
        provider.create_account(name="outside-one", email="taken@outside.example", password=STRONG)
    op = tenant_edit(actor=reseller_admin, tenant=tenant, account_email="taken@outside.example")
    drain()
    op.refresh_from_db()
    tenant.refresh_from_db()
    assert op.state == Op.State.FAILED and "email" in op.last_error
    assert tenant.account_email == "acme-one@example.com"
    client.force_login(reseller_admin)
    assert "already has an account with this email" in client.get(f"/console/tenants/{tenant.uuid}/").content.decode()


# --- rotation -------------------------------------------------------------------------------


@pytest.fixture
def voice_tenant(voiceit_connection, reseller_admin, sandbox):
    made = tenant_create(
        actor=reseller_admin,
        connection=voiceit_connection,
        company_name="Voice Co",
        account_name="voice-co",
        account_email="voice@example.com",
        password=STRONG,
        voiceit_type="unmanaged",
    )
    drain()
    made.refresh_from_db()
    assert made.status == Tenant.Status.ACTIVE
    return made


def _works(connection, key, token) -> bool:
    with client_for(connection) as client:
        return client.check_credentials(api_key=key, api_token=token)


def test_rotation_shows_the_new_token_once_and_the_old_one_stops(voice_tenant, reseller_admin, client, caplog):
    connection = voice_tenant.connection
    old = decrypt_json(voice_tenant.secrets_encrypted)
    assert _works(connection, old["api_key"], old["api_token"])
    client.force_login(reseller_admin)
    detail = client.get(f"/console/tenants/{voice_tenant.uuid}/").content.decode()
    assert 'data-testid="rotate-credentials"' in detail
    response = client.post(f"/console/tenants/{voice_tenant.uuid}/rotate/", {"delivery": "show"})
    assert response.status_code == 302
    result_url = response["Location"]
    drain()
    first = client.get(result_url)
    assert first["Cache-Control"] == "no-store"
    new = decrypt_json(Tenant.objects.get(pk=voice_tenant.pk).secrets_encrypted)
    assert new["api_token"] != old["api_token"]
    assert new["api_token"] in first.content.decode()
    second = client.get(result_url).content.decode()
    assert new["api_token"] not in second and "already shown once" in second
    assert not _works(connection, old["api_key"], old["api_token"])
    assert _works(connection, new["api_key"], new["api_token"])
    assert new["api_token"] not in caplog.text and old["api_token"] not in caplog.text
    assert {"tenants.credentials.rotated", "tenants.credentials.shown"} <= set(actions(voice_tenant))
    events = AuditEvent.objects.filter(tenant_id=voice_tenant.pk)
    assert all(new["api_token"] not in str(e.data) for e in events)


def test_rotation_can_email_the_owners_instead(
    voice_tenant, reseller_admin, client, django_capture_on_commit_callbacks
):
    owner = CustomerFactory(username="voice-owner", email="owner@voice.example", tenant=voice_tenant)
    client.force_login(reseller_admin)
    response = client.post(f"/console/tenants/{voice_tenant.uuid}/rotate/", {"delivery": "email"})
    with django_capture_on_commit_callbacks(execute=True):
        drain()
    new = decrypt_json(Tenant.objects.get(pk=voice_tenant.pk).secrets_encrypted)
    assert [m.to for m in mail.outbox] == [[owner.email]]
    assert new["api_token"] in mail.outbox[0].body
    page = client.get(response["Location"]).content.decode()
    assert new["api_token"] not in page and "emailed to the tenant's owners" in page


def test_voximplant_has_no_rotation_button(tenant, reseller_admin, client):
    client.force_login(reseller_admin)
    page = client.get(f"/console/tenants/{tenant.uuid}/").content.decode()
    assert 'data-testid="rotate-credentials"' not in page
    response = client.post(f"/console/tenants/{tenant.uuid}/rotate/", {"delivery": "show"})
    assert response.status_code == 200 and "no call to regenerate" in response.content.decode()
    assert not tenant.operations.filter(kind=Op.Kind.ROTATE).exists()


# --- what the provider says, in the list ------------------------------------------------------


def test_the_list_marks_rows_the_provider_disagrees_with_without_a_query_per_row(reseller_admin, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import TenantFactory

    agreeing = TenantFactory(
        company_name="Agrees Ltd",
        status="active",
        provider_active=True,
        provider_frozen=False,
        low_balance_threshold=Decimal("5"),
        provider_threshold=Decimal("5"),
    )
    TenantFactory(
        company_name="Threshold Differs",
        status="active",
        provider_active=True,
        low_balance_threshold=Decimal("12.50"),
        provider_threshold=Decimal("5"),
    )
    TenantFactory(company_name="Disabled There", status="active", provider_active=False)
    client.force_login(reseller_admin)
    client.get("/console/tenants/")  # warm the session and the per-process caches
    with CaptureQueriesContext(connection) as few:
        page = client.get("/console/tenants/").content.decode()
    rows = {line.split("</a>")[0].rsplit(">", 1)[-1]: line for line in page.splitlines() if "<tr><td" in line}
    assert 'data-testid="provider-disagrees"' in rows["Threshold Differs"]
    assert 'data-testid="provider-disagrees"' in rows["Disabled There"]
    assert 'data-testid="provider-disagrees"' not in rows[agreeing.company_name]
    for i in range(10):
        TenantFactory(company_name=f"More {i}", provider_active=False, provider_threshold=Decimal(i))
    with CaptureQueriesContext(connection) as many:
        client.get("/console/tenants/")
    assert len(many.captured_queries) == len(few.captured_queries)
    detail = client.get(f"/console/tenants/{agreeing.uuid}/").content.decode()
    assert "active, not frozen, threshold 5" in detail
