"""The low-balance threshold reaches the provider: after create, clone, import and every
change, the sandbox's child holds the portal's value as min_balance_to_notify (read back over
HTTP), through a tracked operation; where the provider has no threshold the portal keeps it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.alerts import tenant_set_low_balance_threshold
from portal.errors import NotAllowed
from tenants.connections import client_for
from tenants.models import Tenant, TenantOperation
from tenants.services import tenant_clone, tenant_freeze, tenant_import, tenant_push_threshold
from tests.factories import CustomerFactory
from tests.tenants.conftest import STRONG, actions, create_vox, drain

pytestmark = pytest.mark.django_db

Op = TenantOperation


def provider_threshold(connection, account_id) -> Decimal | None:
    """min_balance_to_notify as the sandbox reports it (GetChildrenAccounts over HTTP)."""
    with client_for(connection) as client:
        page = client.get_children_accounts(child_account_id=[int(account_id)])
    assert len(page.accounts) == 1
    return page.accounts[0].min_balance_to_notify


def _active(connection, actor, name="acme-one", **extra) -> Tenant:
    tenant = create_vox(connection, actor, name=name, **extra)
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    return tenant


def test_create_pushes_the_threshold_to_the_provider(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin, low_balance_threshold="12.50")
    assert provider_threshold(vox_connection, tenant.provider_account_id) == Decimal("12.50")
    assert tenant.provider_threshold == Decimal("12.50")
    op = tenant.operations.get(kind=Op.Kind.SET_THRESHOLD)
    assert op.state == Op.State.SUCCEEDED and op.job.state == "succeeded"
    assert "tenants.threshold.pushed" in actions(tenant)


def test_a_create_without_threshold_leaves_the_provider_default(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    default = provider_threshold(vox_connection, tenant.provider_account_id)
    assert not tenant.operations.filter(kind=Op.Kind.SET_THRESHOLD).exists()
    assert tenant.provider_threshold is None and default is not None


def test_clone_pushes_the_copied_threshold(vox_connection, reseller_admin, sandbox):
    source = _active(vox_connection, reseller_admin, name="source-one", low_balance_threshold="7.25")
    clone = tenant_clone(
        actor=reseller_admin, source=source, company_name="Copy", account_name="copy-one", account_email="c@example.com"
    )
    drain()
    clone.refresh_from_db()
    assert clone.status == Tenant.Status.ACTIVE
    assert provider_threshold(vox_connection, clone.provider_account_id) == Decimal("7.25")
    assert clone.provider_threshold == Decimal("7.25")


def test_import_pushes_the_threshold_given(vox_connection, reseller_admin, sandbox):
    with client_for(vox_connection) as client:
        made = client.create_account(name="direct-one", email="direct@example.com", password=STRONG)
    tenant = tenant_import(
        actor=reseller_admin,
        connection=vox_connection,
        provider_account_id=made.account_id,
        low_balance_threshold="9.75",
    )
    assert provider_threshold(vox_connection, made.account_id) != Decimal("9.75")  # nothing sent yet
    drain()
    tenant.refresh_from_db()
    assert provider_threshold(vox_connection, made.account_id) == Decimal("9.75")
    assert tenant.provider_threshold == Decimal("9.75") and tenant.low_balance_threshold == Decimal("9.75")


def test_the_owner_changes_the_threshold_and_the_provider_follows(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin, low_balance_threshold="12.50")
    owner = CustomerFactory(username="vox-owner", tenant=tenant)
    tenant_set_low_balance_threshold(actor=owner, tenant=tenant, threshold="30")
    drain()
    tenant.refresh_from_db()
    assert tenant.low_balance_threshold == Decimal("30")
    assert provider_threshold(vox_connection, tenant.provider_account_id) == Decimal("30")
    # Clearing it turns the provider's warning off too.
    tenant_set_low_balance_threshold(actor=owner, tenant=tenant, threshold="")
    drain()
    tenant.refresh_from_db()
    assert tenant.low_balance_threshold is None
    assert provider_threshold(vox_connection, tenant.provider_account_id) == Decimal("0")


def test_a_change_during_another_operation_is_pushed_when_it_ends(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin, low_balance_threshold="12.50")
    tenant_freeze(actor=reseller_admin, tenant=tenant, reason="unpaid invoice")
    tenant_set_low_balance_threshold(actor=reseller_admin, tenant=tenant, threshold="44")
    assert tenant.operations.filter(kind=Op.Kind.SET_THRESHOLD).count() == 1  # only the create's
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.FROZEN
    assert provider_threshold(vox_connection, tenant.provider_account_id) == Decimal("44")
    assert tenant.provider_threshold == Decimal("44")


def test_a_refused_push_keeps_the_portal_value_and_says_so(vox_connection, reseller_admin, sandbox, client):
    tenant = _active(vox_connection, reseller_admin, low_balance_threshold="12.50")
    sandbox.set_faults([{"method": "SetChildAccountInfo", "kind": "error_code", "code": 101, "count": 1}])
    tenant_set_low_balance_threshold(actor=reseller_admin, tenant=tenant, threshold="20")
    drain()
    op = tenant.operations.filter(kind=Op.Kind.SET_THRESHOLD).order_by("-id").first()
    tenant.refresh_from_db()
    assert op.state == Op.State.FAILED and "refused" in op.last_error
    assert (tenant.low_balance_threshold, tenant.provider_threshold) == (Decimal("20"), Decimal("12.50"))
    assert provider_threshold(vox_connection, tenant.provider_account_id) == Decimal("12.50")
    client.force_login(reseller_admin)
    page = client.get(f"/console/tenants/{tenant.uuid}/").content.decode()
    assert "threshold 12.50 USD (portal wants 20.00 USD)" in page
    # Pushing again once the provider accepts it settles the difference.
    tenant_push_threshold(actor=reseller_admin, tenant=tenant, threshold=tenant.low_balance_threshold)
    drain()
    assert provider_threshold(vox_connection, tenant.provider_account_id) == Decimal("20")


def test_an_unanswered_push_is_sent_again(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    sandbox.set_faults([{"method": "SetChildAccountInfo", "kind": "apply_then_drop", "count": 1}])
    tenant_set_low_balance_threshold(actor=reseller_admin, tenant=tenant, threshold="3.30")
    drain()
    op = tenant.operations.get(kind=Op.Kind.SET_THRESHOLD)
    assert op.state == Op.State.SUCCEEDED and op.attempt == 2
    assert provider_threshold(vox_connection, tenant.provider_account_id) == Decimal("3.30")


def test_voiceit_keeps_the_threshold_in_the_portal(voiceit_connection, reseller_admin, sandbox, client):
    from tenants.services import tenant_create

    tenant = tenant_create(
        actor=reseller_admin,
        connection=voiceit_connection,
        company_name="Voice Co",
        account_name="voice-co",
        account_email="voice@example.com",
        password=STRONG,
        voiceit_type="unmanaged",
    )
    drain()
    tenant.refresh_from_db()
    op = tenant_push_threshold(actor=reseller_admin, tenant=tenant, threshold=Decimal("5"))
    assert op.state == Op.State.SUCCEEDED and op.params["local_only"] is True
    assert "Kept in the portal only" in op.job.message
    client.force_login(reseller_admin)
    page = client.get(f"/console/tenants/{tenant.uuid}/").content.decode()
    assert "threshold kept in the portal only" in page


def test_strangers_may_not_push_a_threshold(vox_connection, reseller_admin, other_customer, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    with pytest.raises(NotAllowed):
        tenant_push_threshold(actor=other_customer, tenant=tenant, threshold=Decimal("1"))
    assert not tenant.operations.filter(kind=Op.Kind.SET_THRESHOLD).exists()
