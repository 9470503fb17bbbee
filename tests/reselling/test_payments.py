"""Payments against invoices: partial payments add up, over-payment is refused, the form is
idempotent, the status is derived, and a settling payment can top the tenant up."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from portal.errors import Conflict, PortalError
from portal.models import AuditEvent
from reselling.invoices import invoice_balance
from reselling.models import Payment
from reselling.payments import payment_record
from tests.factories import TenantFactory
from tests.reselling.invoicing import charge, invoice_of, plan, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice():
    tenant = TenantFactory()
    charge(tenant, "100", plan=plan())
    run()
    return invoice_of(tenant)


def pay(actor, invoice, amount, **extra):
    values = {"method": "bank", "received_on": timezone.localdate().isoformat(), "reference": "WIRE-1"} | extra
    return payment_record(actor=actor, invoice=invoice, amount=amount, **values)


def test_partial_payments_add_up_to_paid(invoice, reseller_billing):
    assert invoice_balance(invoice).status == "unpaid"
    pay(reseller_billing, invoice, "40")
    balance = invoice_balance(invoice)
    assert balance.status == "partly_paid" and balance.paid == Decimal("40") and balance.due == Decimal("60")
    pay(reseller_billing, invoice, "60.00", method="cash")
    assert invoice_balance(invoice).status == "paid" and invoice_balance(invoice).due == 0
    assert AuditEvent.objects.filter(action="reselling.payment.recorded").count() == 2
    assert invoice.dunning.settled_at is not None


def test_over_payment_is_refused_with_what_is_still_due(invoice, reseller_billing):
    pay(reseller_billing, invoice, "90")
    with pytest.raises(PortalError) as refused:
        pay(reseller_billing, invoice, "10.01")
    assert refused.value.field == "amount" and "10.00 USD still due" in refused.value.message
    pay(reseller_billing, invoice, "10")
    with pytest.raises(PortalError, match="paid in full"):
        pay(reseller_billing, invoice, "1")
    assert Payment.objects.count() == 2


def test_an_unpaid_invoice_past_due_is_overdue(invoice, reseller_billing):
    later = invoice.due_on + timedelta(days=1)
    assert invoice_balance(invoice, today=later).status == "overdue"
    pay(reseller_billing, invoice, "100")
    assert invoice_balance(invoice, today=later).status == "paid"


def test_the_same_form_sent_twice_records_one_payment(invoice, reseller_billing):
    first = pay(reseller_billing, invoice, "25", client_key="form-1")
    again = pay(reseller_billing, invoice, "25", client_key="form-1")
    assert again.pk == first.pk and getattr(again, "replayed", False)
    with pytest.raises(Conflict):
        pay(reseller_billing, invoice, "26", client_key="form-1")
    assert Payment.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("amount", {"amount": "0"}),
        ("amount", {"amount": "1.001"}),
        ("amount", {"amount": "lots"}),
        ("method", {"method": "bitcoin"}),
        ("received_on", {"received_on": "yesterday"}),
        ("received_on", {"received_on": (timezone.localdate() + timedelta(days=2)).isoformat()}),
        ("reference", {"reference": "x" * 201}),
    ],
)
def test_bad_input_is_refused_on_its_field(invoice, reseller_billing, field, values):
    amount = values.pop("amount", "5")
    with pytest.raises(PortalError) as refused:
        pay(reseller_billing, invoice, amount, **values)
    assert refused.value.field == field
    assert not Payment.objects.exists()


def test_support_cannot_record_payments(invoice, reseller_support):
    with pytest.raises(PortalError, match="may not"):
        pay(reseller_support, invoice, "5")
