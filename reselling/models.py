"""Reselling data: what a customer is charged (price plans, assigned from a date), the charges
ledger (append-only: revenue and cost per charge, so margin = revenue − cost), invoices with
gap-free numbers per year (immutable once issued; corrections are credit notes), payments and
the dunning state of overdue invoices. Rules: docs/reselling.md.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class PricePlan(models.Model):
    """How a customer is charged. Percentages are Decimal percent (12.5 = 12.5 %)."""

    class TopupRule(models.TextChoices):
        # The customer pays X; the child account is credited X × (1 − margin %).
        MARGIN = "margin", "Keep a margin of each top-up"
        # The customer pays X; the child account is credited X − fee.
        FEE = "fee", "Keep a fixed fee of each top-up"
        NONE = "none", "Credit the full top-up"

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=100, unique=True)
    currency = models.CharField(max_length=3)
    topup_rule = models.CharField(max_length=10, choices=TopupRule.choices, default=TopupRule.NONE)
    topup_margin_percent = models.DecimalField(max_digits=7, decimal_places=4, default=0)
    topup_fee = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    monthly_fee = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    usage_markup_percent = models.DecimalField(max_digits=7, decimal_places=4, default=0)
    # Invoices on this plan are due this many days after issue.
    payment_terms_days = models.PositiveSmallIntegerField(default=14)
    # Dunning: reminder emails this many days past due (e.g. [3, 10]), then, if set, an
    # automatic freeze this many days past due.
    reminder_days = models.JSONField(default=list, blank=True)
    freeze_after_days = models.PositiveSmallIntegerField(null=True, blank=True)
    # Optionally, a recorded payment that settles an invoice tops the tenant up by the
    # invoice's top-up lines, through billing's exactly-once transfers.
    topup_on_payment = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(topup_margin_percent__gte=0) & Q(topup_margin_percent__lt=100), name="plan_margin_range"
            ),
            models.CheckConstraint(condition=Q(topup_fee__gte=0), name="plan_fee_non_negative"),
            models.CheckConstraint(condition=Q(monthly_fee__gte=0), name="plan_monthly_non_negative"),
            models.CheckConstraint(condition=Q(usage_markup_percent__gte=0), name="plan_markup_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"


class ConnectionDefaultPlan(models.Model):
    """The plan a tenant of this connection is on when it has no assignment of its own."""

    connection = models.OneToOneField(
        "tenants.ProviderConnection", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    plan = models.ForeignKey(PricePlan, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"default {self.connection_id}: {self.plan_id}"


class PlanAssignment(models.Model):
    """A tenant is on ``plan`` from ``effective_from`` (inclusive) until its next assignment.

    Rows are only added (a change is a new row from a date), so the terms of any past day can
    be read back and old invoices keep their old terms.
    """

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="plan_assignments")
    plan = models.ForeignKey(PricePlan, on_delete=models.PROTECT, related_name="assignments")
    effective_from = models.DateField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tenant_id", "-effective_from", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "effective_from"], name="plan_assignment_one_per_day"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} on {self.plan_id} from {self.effective_from}"


class Charge(models.Model):
    """One row of the charges ledger, append-only (database triggers). Revenue is what the
    customer owes, cost what the reseller pays the provider; the margin is their difference.
    ``source_key`` makes every derivation idempotent: the same source never charges twice.
    """

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        MONTHLY_FEE = "monthly_fee", "Monthly fee"
        USAGE = "usage", "Usage"
        CREDIT = "credit", "Credit"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="charges")
    plan = models.ForeignKey(PricePlan, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The month the charge belongs to (its first day), and when it happened.
    period = models.DateField()
    occurred_at = models.DateTimeField()
    currency = models.CharField(max_length=3)
    revenue = models.DecimalField(max_digits=18, decimal_places=4)
    cost = models.DecimalField(max_digits=18, decimal_places=4)
    quantity = models.DecimalField(max_digits=18, decimal_places=4, default=1)
    description = models.CharField(max_length=300)
    source_key = models.CharField(max_length=200, unique=True)
    transfer = models.ForeignKey("billing.Transfer", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["tenant", "period"], name="charge_tenant_period_idx"),
            models.Index(fields=["period", "tenant"], name="charge_period_tenant_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.tenant_id} {self.revenue} {self.currency}"

    @property
    def margin(self):  # type: ignore[no-untyped-def]
        return self.revenue - self.cost


class ResellerProfile(models.Model):
    """The reseller's company details printed on every invoice (one row, id 1); settings give
    the first values (RESELLER_COMPANY), the console edits them."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    company_name = models.CharField(max_length=200)
    address = models.TextField(blank=True)
    tax_id = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    bank_details = models.TextField(blank=True)
    tax_rate_percent = models.DecimalField(max_digits=7, decimal_places=4, default=0)
    # Decimals per currency on invoices, e.g. {"USD": 2, "KZT": 0}; a currency not listed uses 2.
    rounding = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.company_name


class InvoiceCounter(models.Model):
    """The last invoice number given in one year. Taken with a row lock (SELECT … FOR UPDATE
    on PostgreSQL, the write lock on SQLite) in the transaction that issues the invoice, so
    numbers have no gap and no duplicate."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last_number}"


class InvoiceRun(models.Model):
    """The monthly invoice run for one period: resumable (``last_tenant_id`` is the keyset
    position committed with each batch) and idempotent (one invoice per tenant and period)."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    period = models.DateField(unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    last_tenant_id = models.BigIntegerField(default=0)
    tenants_seen = models.PositiveIntegerField(default=0)
    invoices_issued = models.PositiveIntegerField(default=0)
    tenants_total = models.PositiveIntegerField(null=True, blank=True)
    job = models.ForeignKey("portal.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"invoice run {self.period} ({self.state})"


class Invoice(models.Model):
    """An issued invoice or credit note. Immutable once inserted (database triggers); what it
    owes is fixed, what was paid is the sum of its payments."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note"

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVOICE)
    year = models.PositiveSmallIntegerField()
    sequence = models.PositiveIntegerField()
    number = models.CharField(max_length=30, unique=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="invoices")
    plan = models.ForeignKey(PricePlan, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The invoice a credit note corrects.
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_notes")
    run = models.ForeignKey(InvoiceRun, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices")
    period = models.DateField()
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(max_digits=18, decimal_places=4)
    tax_rate_percent = models.DecimalField(max_digits=7, decimal_places=4)
    tax = models.DecimalField(max_digits=18, decimal_places=4)
    total = models.DecimalField(max_digits=18, decimal_places=4)
    # Snapshots: the reseller's details and the customer's, as printed.
    seller = models.JSONField(default=dict)
    buyer = models.JSONField(default=dict)
    issued_at = models.DateTimeField(default=timezone.now)
    due_on = models.DateField()

    class Meta:
        ordering = ["-year", "-sequence"]
        constraints = [
            models.UniqueConstraint(fields=["year", "sequence"], name="invoice_number_unique"),
            # One invoice per tenant and period from the monthly run; credit notes are apart.
            models.UniqueConstraint(
                fields=["tenant", "period"], name="invoice_one_per_period", condition=Q(kind="invoice")
            ),
        ]
        indexes = [models.Index(fields=["tenant", "-issued_at"], name="invoice_tenant_idx")]

    def __str__(self) -> str:
        return self.number


class InvoiceLine(models.Model):
    """One line of an invoice (immutable with it). A charge is invoiced at most once."""

    id = models.BigAutoField(primary_key=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    charge = models.OneToOneField(Charge, null=True, blank=True, on_delete=models.PROTECT, related_name="invoice_line")
    kind = models.CharField(max_length=20, choices=Charge.Kind.choices)
    description = models.CharField(max_length=300)
    quantity = models.DecimalField(max_digits=18, decimal_places=4, default=1)
    amount = models.DecimalField(max_digits=18, decimal_places=4)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.invoice_id}: {self.description} {self.amount}"


class Payment(models.Model):
    """Money received against an invoice outside the portal. Append-only; partial payments add up."""

    class Method(models.TextChoices):
        BANK = "bank", "Bank transfer"
        CASH = "cash", "Cash"
        CARD = "card", "Card (outside the portal)"
        OTHER = "other", "Other"

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(max_digits=18, decimal_places=4)
    method = models.CharField(max_length=10, choices=Method.choices)
    received_on = models.DateField()
    reference = models.CharField(max_length=200, blank=True)
    client_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The top-up this payment triggered (PricePlan.topup_on_payment), if any.
    topup = models.ForeignKey("billing.Transfer", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive")]

    def __str__(self) -> str:
        return f"payment {self.amount} on {self.invoice_id}"


class Dunning(models.Model):
    """Where an overdue invoice stands in its plan's reminder rule (mutable, unlike the invoice)."""

    invoice = models.OneToOneField(Invoice, on_delete=models.CASCADE, primary_key=True, related_name="dunning")
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    last_reminder_at = models.DateTimeField(null=True, blank=True)
    froze_tenant_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    unfrozen_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"dunning {self.invoice_id}: {self.reminders_sent} reminders"
