"""Provider plans and document verification of a tenant, against the sandbox over HTTP: the
CHANGE_PLAN operation (success, a refused downgrade, a lost reply resolved by reading the
plans back), the nightly verification read and its one warning per hold date, and the pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse

from portal.errors import NotAllowed
from providers.errors import ProviderError
from tenants.connections import client_for
from tenants.models import Tenant, TenantOperation
from tenants.services import plans_refresh, tenant_change_plan, verification_scan
from tests.factories import CustomerFactory, TenantFactory
from tests.tenants.conftest import actions, create_vox, drain, run_once

pytestmark = pytest.mark.django_db

Op = TenantOperation


def _active(connection, actor, name="plans-one") -> Tenant:
    tenant = create_vox(connection, actor, name=name)
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    return tenant


def _fund(connection, tenant, amount="100") -> None:
    with client_for(connection) as client:
        client.transfer_money(
            account_id=tenant.provider_account,
            amount=Decimal(amount),
            payment_reference=f"fund-{tenant.pk}",
            check_duplicate_reference_from=datetime(2020, 1, 1, tzinfo=UTC),
        )


def _hold(connection, tenant) -> Decimal:
    with client_for(connection) as client:
        return client.get_children_accounts(child_account_id=[int(tenant.provider_account)]).accounts[0].money_on_hold


def test_a_reseller_admin_upgrades_the_plan_and_the_fee_is_reserved(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    _fund(vox_connection, tenant)
    plans_refresh(actor=reseller_admin, tenant=tenant)
    assert [p["plan_id"] for p in tenant.account_plans] == [101, 201]
    op = tenant_change_plan(actor=reseller_admin, tenant=tenant, plan_type="IM", plan_id="102")
    drain()
    op.refresh_from_db()
    tenant.refresh_from_db()
    assert op.state == Op.State.SUCCEEDED
    assert tenant.account_plans[0]["plan_id"] == 102 and tenant.account_plans_checked_at is not None
    assert _hold(vox_connection, tenant) == Decimal("30")
    assert "tenants.plan.changed" in actions(tenant)


def test_a_downgrade_is_refused_by_the_provider(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    _fund(vox_connection, tenant, "500")
    tenant_change_plan(actor=reseller_admin, tenant=tenant, plan_type="MAU", plan_id=203)
    drain()
    op = tenant_change_plan(actor=reseller_admin, tenant=Tenant.objects.get(pk=tenant.pk), plan_type="MAU", plan_id=202)
    drain()
    op.refresh_from_db()
    assert op.state == Op.State.FAILED and "support" in op.last_error
    assert "tenants.plan.change_failed" in actions(tenant)


def test_a_lost_reply_is_resolved_by_reading_back_and_not_applied_twice(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    _fund(vox_connection, tenant)
    sandbox.set_faults([{"method": "ChangeAccountPlan", "kind": "apply_then_drop", "count": 1}])
    op = tenant_change_plan(actor=reseller_admin, tenant=tenant, plan_type="IM", plan_id=103)
    run_once(op)
    op.refresh_from_db()
    assert op.state == Op.State.UNKNOWN
    run_once(op)
    op.refresh_from_db()
    assert op.state == Op.State.SUCCEEDED
    # One reservation (60 + 20 %), not two.
    assert _hold(vox_connection, tenant) == Decimal("72")
    assert Tenant.objects.get(pk=tenant.pk).account_plans[0]["plan_id"] == 103


def test_only_reseller_admins_change_plans(vox_connection, reseller_admin, reseller_support, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    with pytest.raises(NotAllowed):
        tenant_change_plan(actor=reseller_support, tenant=tenant, plan_type="IM", plan_id=102)


def _set_documents(sandbox, tenant, status, hold):
    response = sandbox.admin(
        "POST",
        "documents",
        {"account_id": int(tenant.provider_account), "verification_status": status, "unverified_hold_until": hold},
    )
    assert response.status_code == 200, response.text


def test_the_nightly_read_warns_staff_and_owners_once_per_hold_date(
    vox_connection, reseller_admin, reseller_support, sandbox
):
    tenant = _active(vox_connection, reseller_admin)
    owner = CustomerFactory(tenant=tenant, email="owner@customer.example")
    CustomerFactory(tenant=tenant, role="customer_viewer", email="viewer@customer.example")
    soon = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    _set_documents(sandbox, tenant, "REQUIRED", soon)
    mail.outbox.clear()
    verification_scan(fresh_for=timedelta(0))
    tenant.refresh_from_db()
    assert tenant.verification_status == "REQUIRED" and f"{tenant.unverified_hold_until:%Y-%m-%d}" == soon
    recipients = sorted(address for message in mail.outbox for address in message.to)
    assert recipients == sorted([reseller_admin.email, owner.email])
    assert reseller_support.email not in recipients
    verification_scan(fresh_for=timedelta(0))
    assert len(mail.outbox) == 2  # the same hold date: no second warning
    later = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()
    _set_documents(sandbox, tenant, "REQUIRED", later)
    verification_scan(fresh_for=timedelta(0))
    assert len(mail.outbox) == 4  # a new hold date warns again


def test_no_warning_when_verified_or_far_off(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    CustomerFactory(tenant=tenant, email="owner2@customer.example")
    _set_documents(sandbox, tenant, "VERIFIED", None)
    mail.outbox.clear()
    result = verification_scan(fresh_for=timedelta(0))
    assert result["read"] == 1 and mail.outbox == []
    assert Tenant.objects.get(pk=tenant.pk).verification_status == "VERIFIED"
    far = (datetime.now(UTC) + timedelta(days=40)).date().isoformat()
    _set_documents(sandbox, tenant, "REQUIRED", far)
    verification_scan(fresh_for=timedelta(0))
    assert mail.outbox == []


def test_the_tenant_page_shows_plans_and_the_form_only_to_admins(
    client, vox_connection, reseller_admin, reseller_support, sandbox
):
    tenant = _active(vox_connection, reseller_admin)
    _fund(vox_connection, tenant)
    client.force_login(reseller_support)
    response = client.post(reverse("tenants:plans_refresh", args=[tenant.uuid]))
    assert response.status_code == 302
    page = client.get(reverse("tenants:detail", args=[tenant.uuid])).content.decode()
    assert "IM Start" in page and "Change plan</a>" not in page
    assert client.get(reverse("tenants:change_plan", args=[tenant.uuid])).status_code == 403
    client.force_login(reseller_admin)
    page = client.get(reverse("tenants:detail", args=[tenant.uuid])).content.decode()
    assert "Change plan</a>" in page
    form = client.get(reverse("tenants:change_plan", args=[tenant.uuid])).content.decode()
    assert "IM Business" in form and "reserves next month" in form
    unconfirmed = client.post(reverse("tenants:change_plan", args=[tenant.uuid]), {"plan": "IM:102"})
    assert unconfirmed.status_code == 400
    done = client.post(reverse("tenants:change_plan", args=[tenant.uuid]), {"plan": "IM:102", "confirm": "yes"})
    assert done.status_code == 302
    assert tenant.operations.filter(kind=Op.Kind.CHANGE_PLAN).exists()


def test_voiceit_says_plans_are_unsupported(client, voiceit_connection, reseller_admin):
    tenant = TenantFactory(connection=voiceit_connection, status=Tenant.Status.ACTIVE, provider_account_ref="key_x")
    client.force_login(reseller_admin)
    page = client.get(reverse("tenants:detail", args=[tenant.uuid])).content.decode()
    assert "no subscription plans" in page and "no document verification" in page
    response = client.get(reverse("tenants:change_plan", args=[tenant.uuid]))
    assert response.status_code == 409


def test_customers_get_404_and_the_owner_sees_the_documents_notice(client, vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    hold = datetime.now(UTC) + timedelta(days=3)
    Tenant.objects.filter(pk=tenant.pk).update(verification_status="REQUIRED", unverified_hold_until=hold)
    owner = CustomerFactory(tenant=tenant)
    client.force_login(owner)
    for name in ("tenants:change_plan", "tenants:plans_refresh"):
        assert client.post(reverse(name, args=[tenant.uuid])).status_code == 404
    home = client.get(reverse("customer:home")).content.decode()
    assert "needs identity documents" in home and "change plan" not in home.lower()


def test_provider_errors_on_read_are_a_message(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin)
    sandbox.set_faults([{"method": "GetAccountPlans", "kind": "error_code", "code": 100, "count": 10}])
    with pytest.raises(Exception) as caught:
        plans_refresh(actor=reseller_admin, tenant=tenant)
    assert not isinstance(caught.value, ProviderError)
