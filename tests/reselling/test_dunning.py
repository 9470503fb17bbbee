"""Dunning with the clock moved: reminders once per step, a freeze after the plan's days with
the stated reason (through the tenants' freeze service, at the sandbox), and the payment that
settles the invoice unfreezes the tenant."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from portal.models import AuditEvent
from reselling.dunning import dunning_run
from reselling.models import Dunning
from reselling.payments import payment_record
from tenants.models import Tenant
from tests.reselling.invoicing import charge, invoice_of, plan, run
from tests.tenants.conftest import create_vox, drain, provisioned_vox

pytestmark = pytest.mark.django_db


@pytest.fixture
def overdue(vox_connection, reseller_admin, sandbox):
    from tests.factories import CustomerFactory

    tenant = provisioned_vox(vox_connection, reseller_admin)
    CustomerFactory(username="dunned-owner", tenant=tenant, email="owner@dunned.example")
    terms = plan(reminder_days=[3, 1], freeze_after_days=5, payment_terms_days=10)
    charge(tenant, "50", plan=terms)
    run()
    return invoice_of(tenant)


def actions(tenant_id):
    return list(AuditEvent.objects.filter(tenant_id=tenant_id).order_by("id").values_list("action", flat=True))


def test_reminders_once_per_step_then_a_freeze_then_payment_unfreezes(overdue, reseller_billing, sandbox, mailoutbox):
    due = overdue.due_on
    assert dunning_run(today=due)["seen"] == 0  # not past due yet
    assert dunning_run(today=due + timedelta(days=1))["reminders"] == 1
    assert dunning_run(today=due + timedelta(days=1))["reminders"] == 0  # the same step twice: once
    assert dunning_run(today=due + timedelta(days=2))["reminders"] == 0
    assert dunning_run(today=due + timedelta(days=3))["reminders"] == 1
    assert [m.to for m in mailoutbox[-2:]] == [["owner@dunned.example"]] * 2
    reminder = mailoutbox[-1]
    assert overdue.number in reminder.subject and "50.00 USD" in reminder.body
    assert "suspended" in reminder.alternatives[0][0]
    assert Dunning.objects.get(pk=overdue.pk).reminders_sent == 2

    assert dunning_run(today=due + timedelta(days=4))["frozen"] == 0
    assert dunning_run(today=due + timedelta(days=5))["frozen"] == 1
    assert dunning_run(today=due + timedelta(days=6))["frozen"] == 0  # froze once
    drain()
    tenant = Tenant.objects.get(pk=overdue.tenant_id)
    reason = f"Invoice {overdue.number} overdue since {due.isoformat()}"
    assert tenant.status == Tenant.Status.FROZEN and tenant.status_reason == reason
    assert not sandbox.store().account(tenant.provider_account_id)["active"]
    assert "reselling.dunning.froze" in actions(tenant.pk) and "tenants.tenant.frozen" in actions(tenant.pk)

    today = timezone.localdate().isoformat()
    payment_record(actor=reseller_billing, invoice=overdue, amount="20", method="bank", received_on=today)
    drain()
    assert Tenant.objects.get(pk=tenant.pk).status == Tenant.Status.FROZEN  # partly paid: still frozen
    payment_record(actor=reseller_billing, invoice=overdue, amount="30", method="bank", received_on=today)
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert sandbox.store().account(tenant.provider_account_id)["active"]
    state = Dunning.objects.get(pk=overdue.pk)
    assert state.settled_at is not None and state.unfrozen_at is not None
    trail = actions(tenant.pk)
    assert trail.index("reselling.dunning.unfrozen") < trail.index("tenants.tenant.unfrozen")
    assert dunning_run(today=due + timedelta(days=9)) == {
        "seen": 0,
        "reminders": 0,
        "frozen": 0,
        "settled": 0,
        "unfrozen": 0,
    }


def test_a_tenant_staff_froze_is_not_unfrozen_by_a_payment(overdue, reseller_admin, reseller_billing, sandbox):
    from tenants.services import tenant_freeze

    tenant_freeze(actor=reseller_admin, tenant=overdue.tenant, reason="Fraud check")
    drain()
    payment_record(
        actor=reseller_billing, invoice=overdue, amount="50", method="bank", received_on=timezone.localdate()
    )
    drain()
    tenant = Tenant.objects.get(pk=overdue.tenant_id)
    assert tenant.status == Tenant.Status.FROZEN and tenant.status_reason == "Fraud check"
    assert "reselling.dunning.unfrozen" not in actions(tenant.pk)


def test_a_settling_payment_tops_up_through_billing_when_the_plan_says_so(
    vox_connection, reseller_admin, reseller_billing, sandbox
):
    from billing.models import Transfer

    tenant = create_vox(vox_connection, reseller_admin, name="topup-one")
    drain()
    terms = plan(topup_on_payment=True)
    charge(tenant, "25", plan=terms, kind="topup", cost="25", description="Top-up")
    charge(tenant, "5", plan=terms, kind="monthly_fee", description="Monthly fee")
    run()
    invoice = invoice_of(tenant)
    today = timezone.localdate()
    first = payment_record(actor=reseller_billing, invoice=invoice, amount="10", method="bank", received_on=today)
    assert first.topup is None and not Transfer.objects.filter(tenant=tenant).exists()
    last = payment_record(actor=reseller_billing, invoice=invoice, amount="20", method="bank", received_on=today)
    transfer = Transfer.objects.get(tenant=tenant)
    assert last.topup == transfer and transfer.direction == "to_tenant" and transfer.amount == Decimal("25.00")
    assert invoice.number in transfer.customer_description or invoice.number in transfer.reason


def test_an_unfreeze_refused_by_an_open_operation_is_retried_by_the_daily_run(
    overdue, reseller_admin, reseller_billing, sandbox
):
    from tenants.services import tenant_push_threshold

    due = overdue.due_on
    assert dunning_run(today=due + timedelta(days=5))["frozen"] == 1
    drain()
    tenant = Tenant.objects.get(pk=overdue.tenant_id)
    assert tenant.status == Tenant.Status.FROZEN
    # Another operation of the tenant is open when the payment settles the invoice.
    tenant_push_threshold(actor=reseller_admin, tenant=tenant, threshold=Decimal("5"))
    payment_record(
        actor=reseller_billing, invoice=overdue, amount="50", method="bank", received_on=timezone.localdate()
    )
    state = Dunning.objects.get(pk=overdue.pk)
    assert state.settled_at is not None and state.unfrozen_at is None
    assert "reselling.dunning.unfrozen" not in actions(tenant.pk)

    drain()  # the other operation ends; the tenant is still frozen
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.FROZEN
    assert not sandbox.store().account(tenant.provider_account_id)["active"]

    assert dunning_run(today=due + timedelta(days=6))["unfrozen"] == 1
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert sandbox.store().account(tenant.provider_account_id)["active"]
    assert Dunning.objects.get(pk=overdue.pk).unfrozen_at is not None
    assert dunning_run(today=due + timedelta(days=7))["unfrozen"] == 0  # once
