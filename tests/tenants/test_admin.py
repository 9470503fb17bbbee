"""The Django admin runs the same services: no second code path."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tenants.models import Tenant, TenantOperation
from tests.factories import ProviderConnectionFactory, TenantFactory, UserFactory
from tests.tenants.conftest import STRONG, actions

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(db):
    return UserFactory(username="root1", is_staff=True, is_superuser=True)


def _add(client, connection, **extra):
    data = {
        "connection": connection.pk,
        "voiceit_type": "",
        "company_name": "Admin Co",
        "contact_name": "",
        "contact_email": "",
        "account_name": "admin-co",
        "account_email": "admin-co@example.com",
        "plan": "",
        "notes": "",
        "low_balance_threshold": "",
        "password": STRONG,
        "invite_owner_email": "",
        **extra,
    }
    return client.post(reverse("admin:tenants_tenant_add"), data)


def test_the_admin_add_form_runs_the_create_service(client, superuser):
    connection = ProviderConnectionFactory()
    client.force_login(superuser)
    response = _add(client, connection)
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get()
    assert tenant.status == Tenant.Status.PROVISIONING
    assert TenantOperation.objects.get(tenant=tenant).kind == "create"
    assert actions(tenant) == ["tenants.tenant.created"]


def test_the_admin_add_form_shows_the_services_field_errors(client, superuser):
    connection = ProviderConnectionFactory()
    client.force_login(superuser)
    response = _add(client, connection, account_name="9lives")
    assert response.status_code == 200
    assert "must start with a lowercase latin letter" in response.content.decode()
    assert not Tenant.objects.exists()


def test_admin_actions_freeze_and_close_through_the_services(client, superuser):
    connection = ProviderConnectionFactory()
    a, b = TenantFactory(connection=connection), TenantFactory(connection=connection)
    client.force_login(superuser)
    url = reverse("admin:tenants_tenant_changelist")
    confirm = client.post(url, {"action": "freeze_selected", "_selected_action": [a.pk]})
    assert confirm.status_code == 200 and b"Reason" in confirm.content
    client.post(url, {"action": "freeze_selected", "_selected_action": [a.pk], "apply": "1", "reason": "audit"})
    assert TenantOperation.objects.get(tenant=a).kind == "freeze"
    client.post(url, {"action": "close_selected", "_selected_action": [b.pk], "apply": "1", "reason": "gone"})
    b.refresh_from_db()
    assert b.status == Tenant.Status.CLOSING and "tenants.tenant.close_requested" in actions(b)


def test_admin_clone_action_asks_for_the_new_account(client, superuser):
    connection = ProviderConnectionFactory()
    source = TenantFactory(connection=connection)
    client.force_login(superuser)
    url = reverse("admin:tenants_tenant_changelist")
    client.post(
        url,
        {
            "action": "clone_selected",
            "_selected_action": [source.pk],
            "apply": "1",
            "company_name": "Copy Co",
            "account_name": "copy-co",
            "account_email": "copy@example.com",
            "password": "",
            "operation_key": "admin-clone-0001",
        },
    )
    clone = Tenant.objects.get(account_name="copy-co")
    assert TenantOperation.objects.get(tenant=clone).kind == "clone"


def test_staff_who_are_not_superusers_cannot_use_the_tenants_admin(client):
    staff = UserFactory(username="staffer", role="reseller_admin", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:tenants_tenant_changelist")).status_code == 403


def test_the_admin_never_offers_delete_or_shows_secrets(client, superuser):
    from portal.crypto import encrypt_json

    tenant = TenantFactory(secrets_encrypted=encrypt_json({"api_key": "SECRET-KEY-123"}))
    client.force_login(superuser)
    html = client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).content.decode()
    assert "SECRET-KEY-123" not in html and tenant.secrets_encrypted not in html
    assert client.get(reverse("admin:tenants_tenant_delete", args=[tenant.pk])).status_code == 403
