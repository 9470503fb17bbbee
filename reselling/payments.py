"""Payments received against an invoice (bank, cash, card outside the portal, other).

Append-only; partial payments add up and over-payment is refused. A payment that settles the
invoice of a plan with ``topup_on_payment`` tops the tenant up by the invoice's top-up lines
through billing's exactly-once transfers: the transfer intent is recorded first, in the same
transaction, so the payment row (which can never be updated) is inserted with its link.
"""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import QuerySet, Sum
from django.http import HttpRequest
from django.utils import timezone

from billing.models import Transfer
from billing.money import quantize
from portal import inputs
from portal.audit import audit_log
from portal.errors import Conflict, PortalError
from portal.roles import Actor, check_permission
from reselling.charges import topup_for_payment
from reselling.invoices import credited, places_for, quantum, reseller_profile
from reselling.models import Charge, Invoice, Payment

TOPUP_KEY = "invoice-topup:{uuid}"


def _stored_key(actor: Actor, key: object) -> str | None:
    if key in (None, ""):
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not key.isprintable():
        raise PortalError("The form key is 1 to 200 printable characters.", field="client_key")
    owner = getattr(actor, "pk", None)
    return "pay:" + hashlib.sha256(f"{owner}:{key}".encode()).hexdigest()


def _replay(existing: Payment, *, invoice: Invoice, amount: Decimal) -> Payment:
    if existing.invoice_id != invoice.pk or existing.amount != amount:
        raise Conflict("This form was already sent with other values.", field="client_key", code="client_key_reused")
    existing.replayed = True  # type: ignore[attr-defined]
    return existing


def payment_record(
    *,
    actor: Actor,
    invoice: Invoice,
    amount: object,
    method: object,
    received_on: object,
    reference: object = "",
    client_key: object = None,
    request: HttpRequest | None = None,
) -> Payment:
    """Record money received. The same ``client_key`` twice records one payment."""
    check_permission(actor, "billing.move_money", doing="record payments")
    if invoice.kind != Invoice.Kind.INVOICE:
        raise PortalError("Payments are recorded against invoices, not credit notes.", code="not_an_invoice")
    places = places_for(reseller_profile(), invoice.currency)
    value = inputs.amount(amount, places=places, currency=invoice.currency)
    if method not in Payment.Method.values:
        raise PortalError("Choose how the money was paid.", field="method", code="method_invalid")
    day = (
        received_on
        if isinstance(received_on, date)
        else inputs.iso_date(received_on, field="received_on", label="date received")
    )
    if day is None:
        raise PortalError("Enter the date the money was received.", field="received_on", code="required")
    if day > timezone.localdate():
        raise PortalError("The date received cannot be in the future.", field="received_on", code="date_future")
    text = inputs.text(reference, field="reference", label="reference", max_length=200)
    key = _stored_key(actor, client_key)
    if key is not None and (existing := Payment.objects.filter(client_key=key).first()) is not None:
        return _replay(existing, invoice=invoice, amount=value)
    try:
        with transaction.atomic():
            locked = Invoice.objects.select_for_update(of=("self",)).select_related("plan", "tenant").get(pk=invoice.pk)
            got = Payment.objects.filter(invoice=locked).aggregate(s=Sum("amount"))["s"] or Decimal(0)
            due = locked.total - credited(locked) - got
            if due <= 0:
                raise PortalError("This invoice is paid in full already.", field="amount", code="already_paid")
            if value > due:
                raise PortalError(
                    f"That is more than the {due.quantize(quantum(places)):f} {locked.currency} still due on invoice {locked.number}; "
                    "record at most that amount.",
                    field="amount",
                    code="over_payment",
                )
            settles = value == due
            topup = _topup(actor=actor, invoice=locked, request=request) if settles else None
            payment = Payment.objects.create(
                invoice=locked,
                amount=value,
                method=method,
                received_on=day,
                reference=text,
                client_key=key,
                recorded_by=actor if isinstance(actor, User) else None,
                topup=topup,
            )
            audit_log(
                actor=actor,
                action="reselling.payment.recorded",
                tenant_id=locked.tenant_id,
                request=request,
                data={
                    "invoice": locked.number,
                    "payment": str(payment.uuid),
                    "amount": str(value),
                    "method": method,
                    "reference": text,
                    "settles": settles,
                    "topup": str(topup.uuid) if topup else None,
                },
            )
            if settles:
                from reselling.dunning import settle_if_paid

                settle_if_paid(invoice=locked, actor=actor, request=request)
    except IntegrityError:
        existing = Payment.objects.filter(client_key=key).first() if key else None
        if existing is None:
            raise
        return _replay(existing, invoice=invoice, amount=value)
    return payment


def _topup(*, actor: Actor, invoice: Invoice, request: HttpRequest | None) -> Transfer | None:
    """The top-up a settling payment triggers, or None: the invoice's top-up lines are what the
    customer paid, the plan's rule says what the account is credited (reselling.charges).
    Its idempotency key is the invoice's, so an invoice tops the tenant up at most once."""
    plan = invoice.plan
    if plan is None or not plan.topup_on_payment:
        return None
    amount = invoice.lines.filter(kind=Charge.Kind.TOPUP).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    if amount <= 0:
        return None
    transfer, _ = topup_for_payment(
        actor=actor,
        tenant=invoice.tenant,
        paid=quantize(amount, invoice.currency),
        reason=f"Invoice {invoice.number} paid",
        idempotency_key=TOPUP_KEY.format(uuid=invoice.uuid),
        request=request,
    )
    return transfer


def payments_of(invoice: Invoice) -> QuerySet[Payment]:
    return Payment.objects.filter(invoice=invoice).select_related("recorded_by", "topup").order_by("id")
