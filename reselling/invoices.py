"""Invoices: the reseller profile printed on them, the monthly invoice run, credit notes and
what an invoice still owes. Rules: docs/reselling.md.

The run issues, for one period, one invoice per tenant with charges not yet invoiced. It walks
the tenants in id order (a keyset over the charges of the period), a batch per transaction:
numbers, invoices and lines are inserted in bulk and the run's position (``last_tenant_id``)
is committed with them, so a run that dies resumes after its last batch and never issues a
tenant twice (Invoice is unique per tenant and period as well). One worker holds a run at a
time (``lease_until``); the sweeper hands an expired lease to a new worker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.http import Http404, HttpRequest
from django.utils import timezone

from portal import inputs
from portal.audit import audit_log
from portal.errors import PortalError
from portal.jobs import job_advance, job_create, job_finish, job_start
from portal.roles import Actor, check_permission
from reselling.charges import month_of
from reselling.models import Charge, Invoice, InvoiceLine, InvoiceRun, Payment, PricePlan, ResellerProfile
from reselling.numbering import invoice_number, take_numbers
from tenants.models import Tenant

logger = logging.getLogger("reselling.invoices")

BATCH_SIZE = 1000
LEASE = timedelta(minutes=5)
DEFAULT_TERMS_DAYS = 14
JOB_KIND = "reselling.invoice_run"


# -- the reseller profile -------------------------------------------------------------------

PROFILE_TEXT_FIELDS = {"company_name": 200, "address": 1000, "tax_id": 100, "email": 254, "bank_details": 1000}


def _clean_profile(values: dict[str, Any]) -> dict[str, Any]:
    """The one rule for the profile, from the setting and from the console form alike."""
    clean: dict[str, Any] = {}
    for name, limit in PROFILE_TEXT_FIELDS.items():
        raw = values.get(name, "")
        label = name.replace("_", " ")
        if name == "email":
            clean[name] = inputs.email(raw, field=name, required=False) if raw else ""
        else:
            clean[name] = inputs.text(
                raw, field=name, label=label, max_length=limit, required=name == "company_name", multiline=True
            )
    rate = values.get("tax_rate_percent", "0")
    rate = inputs.plain_decimal(
        str(rate) if isinstance(rate, int) else rate or "0", field="tax_rate_percent", code="rate_invalid", example="20"
    )
    if not Decimal(0) <= rate < Decimal(100) or rate != rate.quantize(Decimal("0.0001")):
        raise PortalError("The tax rate is a percentage from 0 to 99.9999.", field="tax_rate_percent")
    clean["tax_rate_percent"] = rate
    rounding = values.get("rounding") or {}
    if not isinstance(rounding, dict) or not all(
        isinstance(k, str)
        and len(k) == 3
        and k.isalpha()
        and isinstance(v, int)
        and not isinstance(v, bool)
        and 0 <= v <= 4
        for k, v in rounding.items()
    ):
        raise PortalError(
            'Rounding is a currency code and 0 to 4 decimals each, like {"USD": 2, "KZT": 0}.', field="rounding"
        )
    clean["rounding"] = {k.upper(): v for k, v in rounding.items()}
    return clean


def reseller_profile() -> ResellerProfile:
    """The profile, seeded from settings.RESELLER_COMPANY the first time it is read."""
    profile = ResellerProfile.objects.filter(pk=1).first()
    if profile is not None:
        return profile
    seed = _clean_profile(dict(settings.RESELLER_COMPANY))
    profile, _ = ResellerProfile.objects.get_or_create(pk=1, defaults=seed)
    return profile


def reseller_profile_update(
    *, actor: Actor, values: dict[str, Any], request: HttpRequest | None = None
) -> ResellerProfile:
    check_permission(actor, "tenants.manage", doing="edit the company details on invoices")
    clean = _clean_profile(values)
    with transaction.atomic():
        profile = reseller_profile()
        before = {name: str(getattr(profile, name)) for name in clean}
        for name, value in clean.items():
            setattr(profile, name, value)
        profile.save()
        audit_log(
            actor=actor,
            action="reselling.profile.updated",
            request=request,
            data={"changed": sorted(n for n in clean if before[n] != str(clean[n]))},
        )
    return profile


def places_for(profile: ResellerProfile, currency: str) -> int:
    value = (profile.rounding or {}).get(currency.upper(), 2)
    return value if isinstance(value, int) else 2


def quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def seller_snapshot(profile: ResellerProfile) -> dict[str, str]:
    return {
        "company_name": profile.company_name,
        "address": profile.address,
        "tax_id": profile.tax_id,
        "email": profile.email,
        "bank_details": profile.bank_details,
    }


def buyer_snapshot(tenant: dict[str, Any]) -> dict[str, str]:
    return {
        "company_name": tenant["company_name"],
        "contact_name": tenant["contact_name"],
        "email": tenant["contact_email"] or tenant["account_email"],
        "account": tenant["account_name"],
    }


BUYER_FIELDS = ("id", "company_name", "contact_name", "contact_email", "account_email", "account_name")


# -- the monthly run ------------------------------------------------------------------------


def previous_month(day: date) -> date:
    return month_of(month_of(day) - timedelta(days=1))


def parse_period(value: object) -> date:
    """A past month written YYYY-MM."""
    period = inputs.iso_month(value if isinstance(value, str) else "", field="period")
    if period is None:
        raise PortalError("Choose a month, written YYYY-MM.", field="period", code="period_invalid")
    if period >= month_of(timezone.localdate()):
        raise PortalError("Only a month that has ended can be invoiced.", field="period", code="period_not_ended")
    return period


def invoice_run_start(
    *, actor: Actor, period: date, request: HttpRequest | None = None, enqueue: bool = True
) -> InvoiceRun:
    """Start (or resume) the run of ``period``. The same period twice gives the same run:
    a finished run is returned as it is, a failed one resumes from its position."""
    if actor is not None:
        check_permission(actor, "billing.move_money", doing="run invoicing")
    with transaction.atomic():
        run, created = InvoiceRun.objects.select_for_update().get_or_create(period=period)
        if run.state == InvoiceRun.State.SUCCEEDED:
            return run
        if run.job_id is None:
            job = job_create(kind=JOB_KIND, title=f"Invoices for {period:%B %Y}", created_by=actor)
            run.job = job
        run.state = InvoiceRun.State.RUNNING
        run.last_error = ""
        run.save(update_fields=["job", "state", "last_error"])
        audit_log(
            actor=actor,
            action="reselling.invoice_run.started" if created else "reselling.invoice_run.resumed",
            request=request,
            data={"period": period.isoformat(), "run": run.pk},
        )
        if enqueue:
            from portal.events import publish_on_commit

            publish_on_commit(lambda: _enqueue_run(run.pk), what=f"invoice run {period:%Y-%m}")
    return run


def _enqueue_run(run_id: int) -> None:
    from reselling.tasks import invoice_run_execute

    invoice_run_execute.delay(run_id)


def _claim(run_id: int, now: datetime) -> bool:
    return bool(
        InvoiceRun.objects.filter(pk=run_id, state=InvoiceRun.State.RUNNING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + LEASE)
    )


def _pending_charges(period: date) -> QuerySet[Charge]:
    return Charge.objects.filter(period=period, invoice_line__isnull=True)


def invoice_run_execute(*, run_id: int, batch_size: int = BATCH_SIZE, now: datetime | None = None) -> InvoiceRun:
    """Work the run to its end, a batch per transaction. Safe to call any number of times,
    concurrently: only the holder of the lease works; the others return at once."""
    now = now or timezone.now()
    if not _claim(run_id, now):
        return InvoiceRun.objects.get(pk=run_id)
    run = InvoiceRun.objects.get(pk=run_id)
    try:
        if run.tenants_total is None:
            total = _pending_charges(run.period).filter(tenant_id__gt=run.last_tenant_id).values("tenant_id")
            run.tenants_total = total.distinct().count() + run.tenants_seen
            InvoiceRun.objects.filter(pk=run.pk).update(tenants_total=run.tenants_total)
        if run.job_id:
            job_start(job_id=run.job_id, total=run.tenants_total, message="Issuing invoices")
        profile = reseller_profile()
        plans = {plan.pk: plan for plan in PricePlan.objects.all()}
        while True:
            issued, seen, last = _run_batch(run, profile, plans, batch_size)
            if not seen:
                break
            run.last_tenant_id, run.tenants_seen, run.invoices_issued = (
                last,
                run.tenants_seen + seen,
                run.invoices_issued + issued,
            )
            if run.job_id:
                job_advance(job_id=run.job_id, by=seen, message=f"{run.invoices_issued} invoices issued")
        finished = timezone.now()
        InvoiceRun.objects.filter(pk=run.pk).update(
            state=InvoiceRun.State.SUCCEEDED, finished_at=finished, lease_until=None
        )
        if run.job_id:
            job_finish(job_id=run.job_id, ok=True, message=f"{run.invoices_issued} invoices issued")
        audit_log(
            actor=None,
            action="reselling.invoice_run.finished",
            data={"period": run.period.isoformat(), "run": run.pk, "invoices": run.invoices_issued},
        )
        from reselling.delivery import deliveries_start

        deliveries_start(run_id=run.pk)
    except Exception as exc:
        logger.exception("invoice run %s failed", run_id)
        InvoiceRun.objects.filter(pk=run.pk).update(
            state=InvoiceRun.State.FAILED, last_error=str(exc)[:1000], lease_until=None
        )
        if run.job_id:
            job_finish(job_id=run.job_id, ok=False, message="Stopped by an error; run it again to resume.")
        raise
    run.refresh_from_db()
    return run


@dataclass
class _Draft:
    tenant: dict[str, Any]
    charges: list[dict[str, Any]]


def _run_batch(
    run: InvoiceRun, profile: ResellerProfile, plans: dict[int, PricePlan], batch_size: int
) -> tuple[int, int, int]:
    """One transaction: the next ``batch_size`` tenants after the run's position. Returns
    (invoices issued, tenants seen, the last tenant id)."""
    period = run.period
    tenant_ids = list(
        _pending_charges(period)
        .filter(tenant_id__gt=run.last_tenant_id)
        .order_by("tenant_id")
        .values_list("tenant_id", flat=True)
        .distinct()[:batch_size]
    )
    if not tenant_ids:
        return 0, 0, run.last_tenant_id
    last = tenant_ids[-1]
    with transaction.atomic():
        invoiced = set(
            Invoice.objects.filter(kind=Invoice.Kind.INVOICE, period=period, tenant_id__in=tenant_ids).values_list(
                "tenant_id", flat=True
            )
        )
        tenants = {t["id"]: t for t in Tenant.objects.filter(pk__in=tenant_ids).values(*BUYER_FIELDS)}
        drafts: dict[int, _Draft] = {}
        charges = (
            _pending_charges(period)
            .filter(tenant_id__in=[t for t in tenant_ids if t not in invoiced])
            .order_by("tenant_id", "id")
            .values("id", "tenant_id", "plan_id", "kind", "currency", "revenue", "quantity", "description")
        )
        for charge in charges.iterator(chunk_size=2000):
            draft = drafts.setdefault(charge["tenant_id"], _Draft(tenants[charge["tenant_id"]], []))
            # One currency per invoice: the first charge's. Charges in another currency stay
            # uninvoiced and are listed by the run's error message for staff.
            if draft.charges and charge["currency"] != draft.charges[0]["currency"]:
                continue
            draft.charges.append(dict(charge))
        issued = _issue(run, profile, plans, list(drafts.values()))
        InvoiceRun.objects.filter(pk=run.pk).update(
            last_tenant_id=last,
            tenants_seen=run.tenants_seen + len(tenant_ids),
            invoices_issued=run.invoices_issued + issued,
            lease_until=timezone.now() + LEASE,
        )
    return issued, len(tenant_ids), last


def _issue(run: InvoiceRun, profile: ResellerProfile, plans: dict[int, PricePlan], drafts: list[_Draft]) -> int:
    if not drafts:
        return 0
    issued_at = timezone.now()
    today = timezone.localdate(issued_at)
    seller = seller_snapshot(profile)
    rate = profile.tax_rate_percent
    numbers = iter(take_numbers(today.year, len(drafts)))
    invoices: list[Invoice] = []
    lines: list[list[InvoiceLine]] = []
    for draft in drafts:
        currency = draft.charges[0]["currency"]
        q = quantum(places_for(profile, currency))
        plan_id = next((c["plan_id"] for c in reversed(draft.charges) if c["plan_id"]), None)
        plan = plans.get(plan_id) if plan_id else None
        rows = [
            InvoiceLine(
                charge_id=c["id"],
                kind=c["kind"],
                description=c["description"],
                quantity=c["quantity"],
                amount=Decimal(c["revenue"]).quantize(q, rounding=ROUND_HALF_UP),
            )
            for c in draft.charges
        ]
        subtotal = sum((row.amount for row in rows), Decimal(0))
        tax = (subtotal * rate / 100).quantize(q, rounding=ROUND_HALF_UP)
        sequence = next(numbers)
        invoices.append(
            Invoice(
                kind=Invoice.Kind.INVOICE,
                year=today.year,
                sequence=sequence,
                number=invoice_number(today.year, sequence),
                tenant_id=draft.tenant["id"],
                plan=plan,
                run=run,
                period=run.period,
                currency=currency,
                subtotal=subtotal,
                tax_rate_percent=rate,
                tax=tax,
                total=subtotal + tax,
                seller=seller,
                buyer=buyer_snapshot(draft.tenant),
                issued_at=issued_at,
                due_on=today + timedelta(days=plan.payment_terms_days if plan else DEFAULT_TERMS_DAYS),
            )
        )
        lines.append(rows)
    Invoice.objects.bulk_create(invoices)
    if any(invoice.pk is None for invoice in invoices):  # pragma: no cover - both databases return ids
        raise RuntimeError("the database did not return the invoice ids")
    flat: list[InvoiceLine] = []
    for invoice, rows in zip(invoices, lines, strict=True):
        for row in rows:
            row.invoice_id = invoice.pk
            flat.append(row)
    InvoiceLine.objects.bulk_create(flat, batch_size=2000)
    return len(invoices)


def invoice_runs_sweep(*, now: datetime | None = None) -> list[int]:
    """Runs still running whose lease expired (their worker died): hand them to a new worker."""
    now = now or timezone.now()
    stale = list(
        InvoiceRun.objects.filter(state=InvoiceRun.State.RUNNING)
        .filter(Q(lease_until__isnull=True, started_at__lt=now - LEASE) | Q(lease_until__lt=now))
        .values_list("pk", flat=True)
    )
    for run_id in stale:
        _enqueue_run(run_id)
    return stale


# -- credit notes ---------------------------------------------------------------------------


def credit_note_create(
    *, actor: Actor, invoice: Invoice, amount: object = None, reason: object, request: HttpRequest | None = None
) -> Invoice:
    """A credit note against ``invoice`` for ``amount`` (tax included; empty: all that is not
    yet credited), numbered in the invoices' sequence. The reason stays with staff (audit)."""
    check_permission(actor, "billing.move_money", doing="issue credit notes")
    text = inputs.reason(reason)
    if invoice.kind != Invoice.Kind.INVOICE:
        raise PortalError("A credit note corrects an invoice, not another credit note.", code="not_an_invoice")
    profile = reseller_profile()
    places = places_for(profile, invoice.currency)
    q = quantum(places)
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        open_amount = locked.total - credited(locked)
        if open_amount <= 0:
            raise PortalError("This invoice is fully credited already.", field="amount", code="fully_credited")
        if amount in (None, ""):
            value = open_amount
        else:
            value = inputs.amount(amount, places=places, currency=invoice.currency)
        if value > open_amount:
            raise PortalError(
                f"At most {open_amount.quantize(q)} {invoice.currency} of this invoice can still be credited.",
                field="amount",
                code="over_credit",
            )
        rate = locked.tax_rate_percent
        subtotal = (value * 100 / (100 + rate)).quantize(q, rounding=ROUND_HALF_UP)
        issued_at = timezone.now()
        year = timezone.localdate(issued_at).year
        sequence = take_numbers(year, 1)[0]
        note = Invoice.objects.create(
            kind=Invoice.Kind.CREDIT_NOTE,
            year=year,
            sequence=sequence,
            number=invoice_number(year, sequence),
            tenant_id=locked.tenant_id,
            plan_id=locked.plan_id,
            corrects=locked,
            period=locked.period,
            currency=locked.currency,
            subtotal=subtotal,
            tax_rate_percent=rate,
            tax=value - subtotal,
            total=value,
            seller=seller_snapshot(profile),
            buyer=locked.buyer,
            issued_at=issued_at,
            due_on=timezone.localdate(issued_at),
        )
        InvoiceLine.objects.create(
            invoice=note,
            kind=Charge.Kind.CREDIT,
            description=f"Credit against invoice {locked.number}",
            amount=subtotal,
        )
        audit_log(
            actor=actor,
            action="reselling.credit_note.created",
            tenant_id=locked.tenant_id,
            request=request,
            data={"invoice": locked.number, "credit_note": note.number, "amount": str(value), "reason": text},
        )
        from reselling.delivery import deliveries_start
        from reselling.dunning import settle_if_paid

        settle_if_paid(invoice=locked, actor=actor, request=request)
        transaction.on_commit(lambda: deliveries_start(invoice_id=note.pk))
    return note


# -- what an invoice owes -------------------------------------------------------------------


class Status:
    UNPAID = "unpaid"
    PARTLY_PAID = "partly_paid"
    PAID = "paid"
    OVERDUE = "overdue"
    CREDIT_NOTE = "credit_note"

    LABELS = {
        UNPAID: "Unpaid",
        PARTLY_PAID: "Partly paid",
        PAID: "Paid",
        OVERDUE: "Overdue",
        CREDIT_NOTE: "Credit note",
    }


def credited(invoice: Invoice) -> Decimal:
    total = Invoice.objects.filter(corrects=invoice, kind=Invoice.Kind.CREDIT_NOTE).aggregate(s=Sum("total"))["s"]
    return total or Decimal(0)


def paid(invoice: Invoice) -> Decimal:
    return Payment.objects.filter(invoice=invoice).aggregate(s=Sum("amount"))["s"] or Decimal(0)


@dataclass(frozen=True)
class Balance:
    total: Decimal
    credited: Decimal
    paid: Decimal
    due: Decimal
    status: str

    @property
    def status_label(self) -> str:
        return Status.LABELS[self.status]


def invoice_balance(invoice: Invoice, *, today: date | None = None) -> Balance:
    """Derived, never stored: total − credit notes − payments, and the status it gives."""
    if invoice.kind == Invoice.Kind.CREDIT_NOTE:
        return Balance(invoice.total, Decimal(0), Decimal(0), Decimal(0), Status.CREDIT_NOTE)
    today = today or timezone.localdate()
    got_credit, got_paid = credited(invoice), paid(invoice)
    due = invoice.total - got_credit - got_paid
    if due <= 0:
        status = Status.PAID
    elif invoice.due_on < today:
        status = Status.OVERDUE
    elif got_paid > 0:
        status = Status.PARTLY_PAID
    else:
        status = Status.UNPAID
    return Balance(invoice.total, got_credit, got_paid, max(due, Decimal(0)), status)


# -- reads -----------------------------------------------------------------------------------


def invoices_for(*, tenant: Tenant | None = None) -> QuerySet[Invoice]:
    qs = Invoice.objects.select_related("tenant", "corrects")
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    return qs.order_by("-issued_at", "-id")


def invoice_get(*, invoice_uuid: uuid.UUID | str, tenant: Tenant | None = None) -> Invoice:
    """One invoice by uuid; with ``tenant``, only that tenant's (404 for foreign and missing)."""
    try:
        return invoices_for(tenant=tenant).get(uuid=invoice_uuid)
    except (Invoice.DoesNotExist, ValueError, TypeError):
        raise Http404("No such invoice") from None


def lines_of(invoice: Invoice) -> Iterable[InvoiceLine]:
    return invoice.lines.order_by("id")
