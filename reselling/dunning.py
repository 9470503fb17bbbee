"""Dunning: what happens to an invoice left unpaid past its due date.

A daily task walks the open invoices past due. Per the plan's ``reminder_days`` (days past
due), the tenant's owners get one reminder per step (``Dunning.reminders_sent`` is claimed
with a conditional UPDATE before the email goes, so a duplicated task cannot send twice);
after ``freeze_after_days`` the tenant is frozen through the tenants' freeze service with the
reason "Invoice N overdue since D". The payment that settles the invoice unfreezes the tenant,
only when dunning froze it. Both are audited. An unfreeze that could not start (another
operation of the tenant was open) is tried again by the next daily run.
"""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal
from functools import partial

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext

from portal.audit import audit_log
from portal.errors import Conflict
from portal.mail import site_link, templated_email
from portal.roles import Actor
from reselling.invoices import invoice_balance, places_for, reseller_profile
from reselling.models import Dunning, Invoice
from reselling.pdf import money
from tenants.mail import owner_messages
from tenants.models import Tenant
from tenants.selectors import owner_emails
from tenants.services import tenant_freeze_by_rule

logger = logging.getLogger("reselling.dunning")

BATCH = 500


def freeze_reason(invoice: Invoice) -> str:
    return f"Invoice {invoice.number} overdue since {invoice.due_on.isoformat()}"


def _steps(invoice: Invoice) -> list[int]:
    raw = invoice.plan.reminder_days if invoice.plan is not None else []
    return sorted({int(d) for d in raw or [] if isinstance(d, int) and not isinstance(d, bool) and d >= 0})


def dunning_run(*, today: date | None = None) -> dict[str, int]:
    """One pass over every open invoice past due (keyset by id). Safe to run twice a day."""
    today = today or timezone.localdate()
    counts = {"seen": 0, "reminders": 0, "frozen": 0, "settled": 0, "unfrozen": 0}
    after = 0
    while True:
        batch = list(
            Invoice.objects.filter(kind=Invoice.Kind.INVOICE, due_on__lt=today, pk__gt=after)
            .exclude(dunning__settled_at__isnull=False)
            .select_related("plan", "tenant")
            .order_by("pk")[:BATCH]
        )
        if not batch:
            break
        after = batch[-1].pk
        for invoice in batch:
            counts["seen"] += 1
            outcome = dunning_step(invoice=invoice, today=today)
            for key in ("reminders", "frozen", "settled"):
                counts[key] += int(outcome == key)
    counts["unfrozen"] = unfreeze_retry()
    return counts


def unfreeze_retry() -> int:
    """Settled invoices whose tenant dunning froze and did not unfreeze yet (the unfreeze was
    refused: another operation of the tenant was open), while the tenant is still frozen:
    the unfreeze again. Returns how many started."""
    started = 0
    after = 0
    while True:
        batch = list(
            Dunning.objects.filter(
                froze_tenant_at__isnull=False,
                settled_at__isnull=False,
                unfrozen_at__isnull=True,
                invoice__tenant__status=Tenant.Status.FROZEN,
                pk__gt=after,
            )
            .select_related("invoice")
            .order_by("pk")[:BATCH]
        )
        if not batch:
            return started
        after = batch[-1].pk
        for dunning in batch:
            with transaction.atomic():
                settle_if_paid(invoice=dunning.invoice, actor=None)
            started += Dunning.objects.filter(pk=dunning.pk, unfrozen_at__isnull=False).exists()


def dunning_step(*, invoice: Invoice, today: date) -> str:
    """What today asks of one overdue invoice: "settled", "frozen", "reminders" or ""."""
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    balance = invoice_balance(invoice, today=today)
    if balance.due <= 0:
        settle_if_paid(invoice=invoice, actor=None)
        return "settled"
    days = (today - invoice.due_on).days
    plan = invoice.plan
    if plan is not None and plan.freeze_after_days is not None and days >= plan.freeze_after_days:
        if dunning.froze_tenant_at is None and _freeze(invoice, dunning):
            return "frozen"
    target = sum(1 for step in _steps(invoice) if step <= days)
    if target > dunning.reminders_sent and _remind(invoice, dunning, target, balance.due):
        return "reminders"
    return ""


def _freeze(invoice: Invoice, dunning: Dunning) -> bool:
    if invoice.tenant.status != Tenant.Status.ACTIVE:
        return False
    try:
        with transaction.atomic():
            claimed = Dunning.objects.filter(pk=dunning.pk, froze_tenant_at__isnull=True).update(
                froze_tenant_at=timezone.now()
            )
            if not claimed:
                return False
            job = tenant_freeze_by_rule(tenant=invoice.tenant, reason=freeze_reason(invoice))
            audit_log(
                actor=None,
                action="reselling.dunning.froze",
                tenant_id=invoice.tenant_id,
                data={"invoice": invoice.number, "due_on": invoice.due_on.isoformat(), "job": str(job.uuid)},
            )
    except Conflict as exc:  # another operation runs, or the provider cannot freeze: tomorrow again
        logger.info("dunning could not freeze tenant %s: %s", invoice.tenant_id, exc.message)
        return False
    return True


def _remind(invoice: Invoice, dunning: Dunning, target: int, due: Decimal) -> bool:
    previous = dunning.reminders_sent
    # Claim the step first: a duplicated task finds it taken and sends nothing.
    if not Dunning.objects.filter(pk=dunning.pk, reminders_sent=previous).update(
        reminders_sent=target, last_reminder_at=timezone.now()
    ):
        return False
    recipients = owner_emails(invoice.tenant_id)
    if recipients:
        try:
            for message in owner_messages(invoice.tenant_id, partial(reminder_email, invoice, step=target, due=due)):
                message.send()
        except Exception:  # noqa: BLE001 - give the step back, the next run retries
            logger.warning("dunning reminder of %s failed", invoice.number, exc_info=True)
            Dunning.objects.filter(pk=dunning.pk, reminders_sent=target).update(reminders_sent=previous)
            return False
    audit_log(
        actor=None,
        action="reselling.dunning.reminded",
        tenant_id=invoice.tenant_id,
        data={"invoice": invoice.number, "step": target, "recipients": len(recipients)},
    )
    return True


def reminder_email(invoice: Invoice, recipients: list[str], *, step: int, due: Decimal) -> EmailMultiAlternatives:
    from django.urls import reverse

    places = places_for(reseller_profile(), invoice.currency)
    context = {
        "invoice": invoice,
        "company": invoice.buyer.get("company_name") or invoice.tenant.company_name,
        "seller": invoice.seller.get("company_name", ""),
        "due": money(due, places),
        "step": step,
        "freeze_after_days": invoice.plan.freeze_after_days if invoice.plan else None,
        "link": site_link(reverse("customer:invoice", args=[invoice.uuid])),
    }
    return templated_email(
        "emails/dunning_reminder",
        context,
        subject=gettext("Reminder: invoice %(number)s is overdue") % {"number": invoice.number},
        to=recipients,
    )


def settle_if_paid(*, invoice: Invoice, actor: Actor, request: HttpRequest | None = None) -> bool:
    """Close the dunning of an invoice with nothing left due, and unfreeze the tenant if dunning
    froze it (and it is frozen still). Runs in the caller's transaction."""
    if invoice_balance(invoice).due > 0:
        return False
    dunning, _ = Dunning.objects.get_or_create(invoice=invoice)
    now = timezone.now()
    if dunning.settled_at is None:
        Dunning.objects.filter(pk=dunning.pk, settled_at__isnull=True).update(settled_at=now)
    if dunning.froze_tenant_at is None or dunning.unfrozen_at is not None:
        return True
    tenant = Tenant.objects.get(pk=invoice.tenant_id)
    if tenant.status != Tenant.Status.FROZEN or tenant.status_reason != freeze_reason(invoice):
        # Staff froze it since, or unfroze it already: not dunning's to undo.
        return True
    try:
        with transaction.atomic():  # a savepoint: a refused unfreeze never undoes the payment
            if not Dunning.objects.filter(pk=dunning.pk, unfrozen_at__isnull=True).update(unfrozen_at=now):
                return True
            job = tenant_freeze_by_rule(tenant=tenant, reason=f"Invoice {invoice.number} paid", unfreeze=True)
            audit_log(
                actor=actor,
                action="reselling.dunning.unfrozen",
                tenant_id=invoice.tenant_id,
                request=request,
                data={"invoice": invoice.number, "job": str(job.uuid)},
            )
    except Conflict as exc:
        logger.warning("invoice %s settled but tenant %s not unfrozen: %s", invoice.number, tenant.pk, exc.message)
    return True
