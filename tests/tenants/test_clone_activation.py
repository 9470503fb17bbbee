"""A clone is active only once the provider says so: CloneAccount gives a disabled child, the
clone's follow-up enables it (SetChildAccountInfo active=true) and reads it back; when that
fails the tenant page says "Disabled at the provider" and offers to enable it."""

from __future__ import annotations

import pytest

from portal.errors import Conflict
from tenants.connections import client_for
from tenants.models import Tenant, TenantOperation
from tenants.services import tenant_activate, tenant_clone
from tests.tenants.conftest import actions, create_vox, drain, run_once

pytestmark = pytest.mark.django_db

Op = TenantOperation


def active_at_provider(connection, account_id) -> bool | None:
    """The child's ``active`` flag as the sandbox reports it (GetChildrenAccounts over HTTP)."""
    with client_for(connection) as client:
        snapshot = client.get_account(int(account_id))
    assert snapshot is not None
    return snapshot.active


@pytest.fixture
def source(vox_connection, reseller_admin, sandbox):
    tenant = create_vox(vox_connection, reseller_admin, name="source-one")
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    return tenant


def _clone(source, actor):
    return tenant_clone(
        actor=actor, source=source, company_name="Copy Co", account_name="copy-one", account_email="copy@example.com"
    )


def test_a_clone_is_active_only_after_the_provider_enabled_it(source, reseller_admin, vox_connection):
    clone = _clone(source, reseller_admin)
    run_once(clone.operations.get(kind=Op.Kind.CLONE))
    clone.refresh_from_db()
    # CloneAccount made the child, disabled: the portal does not call it active yet.
    assert clone.provider_account_id is not None
    assert active_at_provider(vox_connection, clone.provider_account_id) is False
    assert clone.status == Tenant.Status.PROVISIONING and clone.provider_active is False
    activation = clone.operations.get(kind=Op.Kind.ACTIVATE)
    assert activation.state == Op.State.PENDING
    drain()
    clone.refresh_from_db()
    assert active_at_provider(vox_connection, clone.provider_account_id) is True
    assert clone.status == Tenant.Status.ACTIVE and clone.provider_active is True
    assert "tenants.tenant.activated" in actions(clone)


def test_a_failed_activation_shows_disabled_and_enable_fixes_it(
    source, reseller_admin, vox_connection, sandbox, client
):
    clone = _clone(source, reseller_admin)
    run_once(clone.operations.get(kind=Op.Kind.CLONE))
    sandbox.set_faults([{"method": "SetChildAccountInfo", "kind": "error_code", "code": 101, "count": 1}])
    drain()
    clone.refresh_from_db()
    assert clone.operations.get(kind=Op.Kind.ACTIVATE).state == Op.State.FAILED
    assert active_at_provider(vox_connection, clone.provider_account_id) is False
    assert clone.status == Tenant.Status.FROZEN and clone.status_reason.startswith("Disabled at the provider")
    assert "tenants.tenant.activation_failed" in actions(clone)

    client.force_login(reseller_admin)
    page = client.get(f"/console/tenants/{clone.uuid}/").content.decode()
    assert 'data-testid="disabled-at-provider"' in page and 'data-testid="enable-at-provider"' in page
    assert 'At the provider</dt><dd data-testid="provider-truth">disabled' in page

    response = client.post(f"/console/tenants/{clone.uuid}/activate/")
    assert response.status_code == 302
    drain()
    clone.refresh_from_db()
    assert active_at_provider(vox_connection, clone.provider_account_id) is True
    assert clone.status == Tenant.Status.ACTIVE and clone.status_reason == ""
    page = client.get(f"/console/tenants/{clone.uuid}/").content.decode()
    assert 'data-testid="enable-at-provider"' not in page and 'data-testid="disabled-at-provider"' not in page


def test_an_unanswered_activation_is_sent_again(source, reseller_admin, vox_connection, sandbox):
    clone = _clone(source, reseller_admin)
    run_once(clone.operations.get(kind=Op.Kind.CLONE))
    sandbox.set_faults([{"method": "SetChildAccountInfo", "kind": "apply_then_drop", "count": 1}])
    drain()
    clone.refresh_from_db()
    activation = clone.operations.get(kind=Op.Kind.ACTIVATE)
    assert activation.state == Op.State.SUCCEEDED and activation.attempt == 2
    assert clone.status == Tenant.Status.ACTIVE
    assert active_at_provider(vox_connection, clone.provider_account_id) is True


def test_an_enabled_account_or_a_frozen_one_is_not_activated(source, reseller_admin):
    with pytest.raises(Conflict) as caught:
        tenant_activate(actor=reseller_admin, tenant=source)
    assert "already" in caught.value.message
    Tenant.objects.filter(pk=source.pk).update(
        status=Tenant.Status.FROZEN, provider_active=False, status_reason="unpaid"
    )
    source.refresh_from_db()
    with pytest.raises(Conflict) as caught:
        tenant_activate(actor=reseller_admin, tenant=source)
    assert "unfreeze" in caught.value.message


def test_only_managers_enable_and_customers_get_404(source, reseller_support, other_customer, customer_owner, client):
    Tenant.objects.filter(pk=source.pk).update(
        status=Tenant.Status.FROZEN, provider_active=False, status_reason="Disabled at the provider: test"
    )
    url = f"/console/tenants/{source.uuid}/activate/"
    client.force_login(reseller_support)
    assert client.post(url).status_code == 403
    for customer in (other_customer, customer_owner):
        client.force_login(customer)
        assert client.post(url).status_code == 404
        assert client.post("/console/tenants/00000000-0000-4000-8000-000000000000/activate/").status_code == 404
    assert not source.operations.filter(kind=Op.Kind.ACTIVATE).exists()
