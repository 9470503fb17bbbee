import hashlib

import pytest
from django.utils import timezone

from api.tokens import api_token_create, api_token_revoke
from portal.models import ApiToken, AuditEvent
from tests.factories import CustomerFactory, TenantFactory, UserFactory, api_token, bearer

pytestmark = pytest.mark.django_db


def test_a_token_is_stored_only_as_a_sha256_and_shown_once(reseller_admin) -> None:
    token, raw = api_token_create(actor=reseller_admin, name="ci", role="reseller_billing")
    _, prefix, secret = raw.split("_", 2)
    assert token.prefix == prefix
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = " ".join(str(v) for v in ApiToken.objects.filter(pk=token.pk).values().first().values())
    assert secret not in stored
    event = AuditEvent.objects.get(action="portal.api_token.created")
    assert secret not in str(event.data) and event.data["role"] == "reseller_billing"


def test_the_token_authenticates_with_its_role_not_its_owners(client, reseller_admin) -> None:
    raw = api_token(reseller_admin, role="reseller_support")
    me = client.get("/api/v1/me", headers=bearer(raw))
    assert me.status_code == 200 and me.json()["role"] == "reseller_support"
    # Support may read tenants but not see the audit log (admins may).
    assert client.get("/api/v1/tenants", headers=bearer(raw)).status_code == 200
    denied = client.get("/api/v1/audit-events", headers=bearer(raw))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"


def test_staff_cannot_mint_a_role_above_their_own(reseller_billing) -> None:
    from portal.errors import PortalError

    with pytest.raises(PortalError):
        api_token_create(actor=reseller_billing, name="x", role="reseller_admin")
    token, _ = api_token_create(actor=reseller_billing, name="x", role="reseller_billing")
    assert token.role == "reseller_billing"


@pytest.mark.parametrize("raw", ["", "rp_", "rp_abc", "rp_nope_nope", "Token abc", "rp_" + "a" * 300])
def test_bad_tokens_get_401_in_the_error_shape(client, raw) -> None:
    response = client.get("/api/v1/me", headers=bearer(raw) if raw else {})
    assert response.status_code == 401
    assert set(response.json()) == {"error"} and response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_expired_or_demoted_token_stops_working(client, reseller_admin) -> None:
    token, raw = api_token_create(actor=reseller_admin, name="a", role="reseller_admin")
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 200
    api_token_revoke(actor=reseller_admin, token=token)
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 401

    token2, raw2 = api_token_create(actor=reseller_admin, name="b", role="reseller_admin", expires_in_days=1)
    ApiToken.objects.filter(pk=token2.pk).update(expires_at=timezone.now())
    assert client.get("/api/v1/me", headers=bearer(raw2)).status_code == 401

    user = UserFactory(username="soon-support", role="reseller_admin")
    _, raw3 = api_token_create(actor=user, name="c", role="reseller_admin")
    from portal.roles import assign_role

    assign_role(user, "reseller_support")
    assert client.get("/api/v1/me", headers=bearer(raw3)).status_code == 401


def test_a_customer_token_is_read_only_and_dies_with_the_membership(client) -> None:
    tenant = TenantFactory()
    owner = CustomerFactory(username="owner-a", tenant=tenant)
    raw = api_token(owner, tenant=tenant)
    assert ApiToken.objects.get().role == "customer_viewer"
    response = client.get("/api/v1/customer/balance", headers=bearer(raw))
    assert response.status_code == 200 and response.json()["balance"] == "100.0000"
    assert client.get("/api/v1/tenants", headers=bearer(raw)).status_code == 403
    owner.membership.delete()
    assert client.get("/api/v1/customer/balance", headers=bearer(raw)).status_code == 401


def test_a_customer_cannot_mint_a_token_for_another_tenant() -> None:
    from portal.errors import PortalError

    mine, other = TenantFactory(), TenantFactory()
    owner = CustomerFactory(username="owner-b", tenant=mine)
    with pytest.raises(PortalError):
        api_token_create(actor=owner, name="x", role="customer_viewer", tenant=other)
    viewer = CustomerFactory(username="viewer-b", tenant=mine, role="customer_viewer")
    with pytest.raises(PortalError):
        api_token_create(actor=viewer, name="x", role="customer_viewer", tenant=mine)


def test_staff_manage_tokens_in_the_console_and_see_the_secret_once(client, reseller_admin, reseller_billing) -> None:
    client.force_login(reseller_billing)
    page = client.post("/console/api-tokens/", {"name": "billing robot", "role": "reseller_billing"})
    assert page.status_code == 200
    token = ApiToken.objects.get(name="billing robot")
    assert f"rp_{token.prefix}_".encode() in page.content
    assert "no-cache" in page["Cache-Control"] or "no-store" in page["Cache-Control"]
    again = client.get("/console/api-tokens/")
    assert f"rp_{token.prefix}_".encode() in again.content  # the prefix, ...
    assert page.content.split(f"rp_{token.prefix}_".encode())[1][:20] not in again.content  # ... never the secret
    # Billing cannot mint admin tokens, even by posting the value.
    client.post("/console/api-tokens/", {"name": "escalate", "role": "reseller_admin"})
    assert not ApiToken.objects.filter(name="escalate").exists()
    # Billing does not see (so cannot revoke) the admin's token: 404.
    admin_token, _ = api_token_create(actor=reseller_admin, name="admin's", role="reseller_admin")
    assert client.post(f"/console/api-tokens/{admin_token.uuid}/revoke/").status_code == 404
    assert client.post(f"/console/api-tokens/{token.uuid}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    client.force_login(reseller_admin)
    assert b"billing robot" in client.get("/console/api-tokens/").content


def test_customers_cannot_open_the_staff_token_pages(client) -> None:
    owner = CustomerFactory(username="owner-c", tenant=TenantFactory())
    client.force_login(owner)
    assert client.get("/console/api-tokens/").status_code == 403


@pytest.mark.parametrize("name", ["a\x00b", "tab\tname", "\u202eevil", "", "   ", "x" * 101])
def test_a_token_name_follows_the_text_rule(reseller_admin, name) -> None:
    """A NUL is refused before the database sees it (PostgreSQL cannot store one in text)."""
    from portal.errors import PortalError

    with pytest.raises(PortalError) as caught:
        api_token_create(actor=reseller_admin, name=name, role="reseller_billing")
    assert caught.value.field == "name"
    assert not ApiToken.objects.exists()
