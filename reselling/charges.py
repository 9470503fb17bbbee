"""The charges ledger: top-up conversions and monthly fees, derived idempotently.

Every charge is one append-only ``Charge`` row whose ``source_key`` names what it was derived
from, so a derivation that runs twice, or dies halfway and runs again, writes each charge
once (the unique key drops the second insert). Usage charges are in reselling/usage.py.

Top-ups (docs/reselling.md, "Charges"): a top-up transfer carries the amount the child
account was credited. What the customer paid is derived from it by the tenant's plan on the
day the transfer was recorded: ``credited / (1 − margin %)`` rounded half up to the currency's
minor unit, ``credited + fee``, or ``credited``. Revenue is the payment, cost the credited amount.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest
from django.utils import timezone

from billing.models import Transfer
from billing.money import parse_amount, quantum
from billing.transfers import tenant_currency
from portal.audit import audit_log
from portal.errors import PortalError
from portal.roles import Actor, check_permission
from reselling.models import Charge, Payment, PricePlan
from reselling.plans import PERMISSION, plan_on, plans_on
from tenants.models import Tenant

logger = logging.getLogger("reselling.charges")

LEDGER_PLACES = Decimal("0.0001")  # Charge amounts are Decimal(18, 4)
BATCH = 500
# Tenants that owe a monthly fee: those open during the month.
FEE_STATES = ("active", "frozen")


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(period: date) -> date:
    return date(period.year + (period.month == 12), period.month % 12 + 1, 1)


def insert_charges(charges: Iterable[Charge]) -> int:
    """Insert what is not there yet; returns how many rows the ledger gained."""
    rows = list(charges)
    if not rows:
        return 0
    keys = [row.source_key for row in rows]
    with transaction.atomic():
        before = Charge.objects.filter(source_key__in=keys).count()
        Charge.objects.bulk_create(rows, ignore_conflicts=True, batch_size=BATCH)
        after = Charge.objects.filter(source_key__in=keys).count()
    return after - before


# -- top-ups ---------------------------------------------------------------------------------


def _terms_apply(plan: PricePlan | None, currency: str) -> bool:
    # A plan in another currency has no fee or margin that means anything for this money.
    return plan is not None and plan.currency == currency


def topup_paid(plan: PricePlan | None, credited: Decimal, currency: str) -> Decimal:
    """What the customer paid for a top-up that credited ``credited``."""
    q = quantum(currency)
    if not _terms_apply(plan, currency):
        return credited.quantize(q)
    assert plan is not None
    if plan.topup_rule == PricePlan.TopupRule.MARGIN:
        keep = 1 - plan.topup_margin_percent / 100
        return (credited / keep).quantize(q, rounding=ROUND_HALF_UP)
    if plan.topup_rule == PricePlan.TopupRule.FEE:
        return (credited + plan.topup_fee).quantize(q)
    return credited.quantize(q)


def topup_credited(plan: PricePlan | None, paid: Decimal, currency: str) -> Decimal:
    """The amount to credit for a payment of ``paid``: the one whose derived payment
    (``topup_paid``) is exactly ``paid``. PortalError when no amount in the currency's minor
    units gives it (a margin can skip some payments) or the payment does not cover the fee."""
    q = quantum(currency)
    if not _terms_apply(plan, currency) or plan is None or plan.topup_rule == PricePlan.TopupRule.NONE:
        return paid
    if plan.topup_rule == PricePlan.TopupRule.FEE:
        credited = paid - plan.topup_fee
        if credited <= 0:
            raise PortalError(
                f"The payment does not cover the plan's fee of {plan.topup_fee} {currency}.",
                field="paid",
                code="payment_below_fee",
            )
        return credited
    keep = 1 - plan.topup_margin_percent / 100
    first = (paid * keep).quantize(q, rounding=ROUND_HALF_UP)
    for credited in (first, first - q, first + q):
        if credited > 0 and topup_paid(plan, credited, currency) == paid:
            return credited
    lower = next((p for c in _steps(first, -q) if (p := topup_paid(plan, c, currency)) < paid), None)
    upper = next(p for c in _steps(first, q) if (p := topup_paid(plan, c, currency)) > paid)
    nearest = " and ".join(f"{p} {currency}" for p in (lower, upper) if p is not None and p > 0)
    raise PortalError(
        f"With a {plan.topup_margin_percent.normalize()} % margin no credit in whole minor units "
        f"comes to exactly {paid} {currency}; the nearest payments that do are {nearest}.",
        field="paid",
        code="payment_not_exact",
    )


def _steps(start: Decimal, step: Decimal) -> Iterable[Decimal]:
    value = start
    for _ in range(1000):
        if value <= 0:
            return
        yield value
        value += step


def _topup_charge(transfer: Transfer, plan: PricePlan | None) -> Charge:
    currency = transfer.currency
    terms = plan if _terms_apply(plan, currency) else None
    paid = topup_paid(terms, transfer.amount, currency)
    at = transfer.created_at
    if terms is not None and terms.topup_rule == PricePlan.TopupRule.MARGIN:
        how = f"{terms.topup_margin_percent.normalize()} % margin"
    elif terms is not None and terms.topup_rule == PricePlan.TopupRule.FEE:
        how = f"fee {terms.topup_fee} {currency}"
    else:
        how = "credited in full"
    return Charge(
        tenant_id=transfer.tenant_id,
        plan=terms,
        kind=Charge.Kind.TOPUP,
        period=month_of(at.astimezone(UTC).date()),
        occurred_at=at,
        currency=currency,
        revenue=paid,
        cost=transfer.amount,
        quantity=Decimal(1),
        description=f"Top-up of {paid} {currency}, {transfer.amount} {currency} credited ({how})",
        source_key=f"topup:{transfer.uuid}",
        transfer=transfer,
    )


def topup_charges_derive(*, after_id: int = 0, batch: int = BATCH, limit: int | None = None) -> int:
    """One top-up charge for every succeeded top-up that has no charge yet (whoever made it:
    a staff page, the API, a bulk job, a payment recorded here). Keyset over transfer ids;
    returns how many charges were written."""
    # A top-up that a settled invoice paid for was charged on that invoice already (its
    # top-up lines): it gets no second charge (reselling.payments).
    from reselling.payments import TOPUP_KEY

    paid_by_invoice = TOPUP_KEY.split("{", 1)[0]
    written = 0
    seen = 0
    uncharged = (
        Transfer.objects.filter(state=Transfer.State.SUCCEEDED, direction=Transfer.Direction.TO_TENANT)
        .filter(~Exists(Charge.objects.filter(transfer_id=OuterRef("pk"))))
        .filter(~Exists(Payment.objects.filter(topup_id=OuterRef("pk"))))
        .exclude(client_key__contains=f":{paid_by_invoice}")
        .select_related("tenant")
        .order_by("id")
    )
    while limit is None or seen < limit:
        rows = list(uncharged.filter(id__gt=after_id)[:batch])
        if not rows:
            break
        plans = _plans_for_transfers(rows)
        written += insert_charges(_topup_charge(t, plans[t.pk]) for t in rows)
        after_id = rows[-1].pk
        seen += len(rows)
    return written


def _plans_for_transfers(rows: list[Transfer]) -> dict[int, PricePlan | None]:
    # One day per tenant in a plans_on call: group the batch by the day each was recorded.
    by_day: dict[date, list[Transfer]] = {}
    for row in rows:
        by_day.setdefault(row.created_at.astimezone(UTC).date(), []).append(row)
    result: dict[int, PricePlan | None] = {}
    for day, transfers in by_day.items():
        tenants = {t.tenant_id: t.tenant for t in transfers}
        plans = plans_on([(tenant, day) for tenant in tenants.values()])
        result.update({t.pk: plans[t.tenant_id] for t in transfers})
    return result


def topup_for_payment(
    *,
    actor: Actor,
    tenant: Tenant,
    paid: object,
    reason: object,
    idempotency_key: str | None = None,
    request: HttpRequest | None = None,
) -> tuple[Transfer, Decimal]:
    """A customer paid ``paid``: top the tenant up by what its plan credits for it, through
    billing's transfer service. The charge is written once the transfer has succeeded
    (``topup_charges_derive``), from the transfer, with the same rule."""
    check_permission(actor, PERMISSION, doing="top up for a payment")
    from billing.services import transfer_create

    currency = tenant_currency(tenant)
    amount = parse_amount(paid, currency=currency, field="paid")
    plan = plan_on(tenant, timezone.now().date())
    credited = topup_credited(plan, amount, currency)
    if not isinstance(reason, str) or not reason.strip():
        raise PortalError("Say why the money moves (a payment reference, an invoice).", field="reason")
    transfer = transfer_create(
        actor=actor,
        tenant=tenant,
        amount=credited,
        direction=Transfer.Direction.TO_TENANT,
        reason=f"{reason.strip()[:400]} (customer paid {amount} {currency})",
        customer_description="Top-up",
        idempotency_key=idempotency_key,
        request=request,
    )
    if not getattr(transfer, "replayed", False):
        audit_log(
            actor=actor,
            action="reselling.topup.for_payment",
            tenant_id=tenant.pk,
            data={
                "transfer": str(transfer.uuid),
                "paid": str(amount),
                "credited": str(credited),
                "plan": plan.pk if plan else None,
            },
            request=request,
        )
    return transfer, credited


# -- monthly fees ----------------------------------------------------------------------------


def _fee_charge(tenant: Tenant, plan: PricePlan | None, period: date, day: date) -> Charge | None:
    currency = tenant_currency(tenant)
    if plan is None or plan.monthly_fee <= 0 or not _terms_apply(plan, currency):
        return None
    month = period.strftime("%Y-%m")
    return Charge(
        tenant_id=tenant.pk,
        plan=plan,
        kind=Charge.Kind.MONTHLY_FEE,
        period=period,
        occurred_at=datetime.combine(day, time.min, tzinfo=UTC),
        currency=currency,
        revenue=plan.monthly_fee,
        cost=Decimal(0),
        quantity=Decimal(1),
        description=f"Monthly fee {month}, {plan.name}"[:300],
        source_key=f"fee:{tenant.pk}:{month}",
    )


def fee_day(tenant: Tenant, period: date) -> date:
    """The day whose plan charges the month's fee: the month's first day, or the day the
    tenant was created if later (a plan that starts mid-month charges from next month)."""
    created = tenant.created_at.astimezone(UTC).date()
    return max(period, created)


def monthly_fees_for(tenants: list[Tenant], period: date) -> list[Charge]:
    """The month's fee charges for a batch of tenants (not written)."""
    due = [t for t in tenants if t.status in FEE_STATES and fee_day(t, period) < next_month(period)]
    days = {t.pk: fee_day(t, period) for t in due}
    # plans_on takes one day per tenant: the days differ only for tenants created this month.
    plans = plans_on([(t, days[t.pk]) for t in due])
    return [c for t in due if (c := _fee_charge(t, plans[t.pk], period, days[t.pk])) is not None]


def monthly_fees_derive(*, period: date, after_id: int = 0, batch: int = BATCH, limit: int | None = None) -> int:
    """The month's fee for every open tenant whose plan has one; keyset over tenants."""
    period = month_of(period)
    written = 0
    seen = 0
    while limit is None or seen < limit:
        tenants = list(Tenant.objects.filter(pk__gt=after_id).order_by("pk")[:batch])
        if not tenants:
            break
        written += insert_charges(monthly_fees_for(tenants, period))
        after_id = tenants[-1].pk
        seen += len(tenants)
    return written
