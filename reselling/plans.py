"""Price plans: create, edit, archive, the connection's default plan, and assigning a plan to a
tenant from a date. ``plan_on(tenant, day)`` is the one rule for which plan applies on a day.

A plan's terms are editable only while no charge references it. Once a charge does, its
terms are what old charges (and the invoices copied from them) were computed with, so a new
price is a new plan, assigned from a date (docs/reselling.md, "Price plans").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from billing.transfers import tenant_currency
from portal import inputs
from portal.audit import audit_log
from portal.errors import PortalError
from portal.roles import Actor, check_permission
from reselling.models import Charge, ConnectionDefaultPlan, PlanAssignment, PricePlan
from tenants.models import ProviderConnection, Tenant

# Plans, charges and margins: reseller admins and billing staff (portal/roles.py).
PERMISSION = "billing.move_money"

# The fields that decide what a customer is charged; frozen once a charge uses the plan.
TERM_FIELDS = (
    "currency",
    "topup_rule",
    "topup_margin_percent",
    "topup_fee",
    "monthly_fee",
    "usage_markup_percent",
)
# Dunning and invoicing settings: they never change an amount already charged.
SETTING_FIELDS = ("payment_terms_days", "reminder_days", "freeze_after_days", "topup_on_payment")
FIELDS = ("name", *TERM_FIELDS, *SETTING_FIELDS)

MAX_PERCENT_PLACES = 4
MAX_MARKUP = Decimal("1000")
MAX_DAYS = 365
_CURRENCY_RE = re.compile(r"[A-Z]{3}", re.ASCII)


# -- the one rule ----------------------------------------------------------------------------


def plan_on(tenant: Tenant, day: date) -> PricePlan | None:
    """The plan that applies to ``tenant`` on ``day``: its latest assignment that starts on or
    before the day, else its connection's default plan, else none."""
    return plans_on([(tenant, day)])[tenant.pk]


def plans_on(wanted: Sequence[tuple[Tenant, date]]) -> dict[int, PricePlan | None]:
    """``plan_on`` for many (tenant, day) pairs in two queries (the derivations' batches).
    One day per tenant."""
    if not wanted:
        return {}
    days = {tenant.pk: day for tenant, day in wanted}
    latest: dict[int, PlanAssignment] = {}
    rows = (
        PlanAssignment.objects.filter(tenant_id__in=list(days), effective_from__lte=max(days.values()))
        .select_related("plan")
        .order_by("tenant_id", "effective_from", "id")
    )
    for row in rows:
        if row.effective_from <= days[row.tenant_id]:
            latest[row.tenant_id] = row  # ordered oldest first: the last one wins
    connections = {tenant.connection_id for tenant, _ in wanted if tenant.pk not in latest}
    defaults = {
        row.connection_id: row.plan
        for row in ConnectionDefaultPlan.objects.filter(connection_id__in=connections).select_related("plan")
    }
    return {
        tenant.pk: latest[tenant.pk].plan if tenant.pk in latest else defaults.get(tenant.connection_id)
        for tenant, _ in wanted
    }


def plan_in_use(plan: PricePlan) -> bool:
    return Charge.objects.filter(plan_id=plan.pk).exists()


def assignments_of(tenant: Tenant) -> list[PlanAssignment]:
    """The tenant's assignments, newest first (the history the tenant page shows)."""
    return list(
        PlanAssignment.objects.filter(tenant_id=tenant.pk)
        .select_related("plan", "created_by")
        .order_by("-effective_from", "-id")
    )


def default_plan(connection: ProviderConnection) -> PricePlan | None:
    row = ConnectionDefaultPlan.objects.filter(connection_id=connection.pk).select_related("plan").first()
    return row.plan if row is not None else None


# -- input -----------------------------------------------------------------------------------


def _percent(value: object, *, field: str, below: Decimal | None = None, most: Decimal | None = None) -> Decimal:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return Decimal(0)
    result = inputs.plain_decimal(
        value.strip() if isinstance(value, str) else value, field=field, code="percent_invalid", example="12.5"
    )
    if result < 0:
        raise PortalError("Enter zero or more.", field=field, code="percent_invalid")
    if result != result.quantize(Decimal(1).scaleb(-MAX_PERCENT_PLACES)):
        raise PortalError(
            f"Percentages have at most {MAX_PERCENT_PLACES} decimal places.", field=field, code="percent_invalid"
        )
    if below is not None and result >= below:
        raise PortalError(f"Enter less than {below} %.", field=field, code="percent_invalid")
    if most is not None and result > most:
        raise PortalError(f"Enter at most {most} %.", field=field, code="percent_invalid")
    return result


def _money(value: object, *, field: str, currency: str) -> Decimal:
    """Zero or a positive amount with at most the currency's places (billing's amount rule)."""
    from billing.money import check_amount

    if value is None or (isinstance(value, str) and value.strip() == ""):
        return Decimal(0)
    result = inputs.plain_decimal(
        value.strip() if isinstance(value, str) else value, field=field, code="amount_invalid", example="10 or 10.50"
    )
    if result == 0:
        return Decimal(0)
    return check_amount(result, currency=currency, field=field)


def _days(value: object, *, field: str, required: bool, least: int = 0) -> int | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise PortalError("Enter a number of days.", field=field, code="days_invalid")
        return None
    if isinstance(value, str) and inputs.is_ascii_digits(value.strip(), max_length=3):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_DAYS:
        raise PortalError(f"Enter a whole number of days from {least} to {MAX_DAYS}.", field=field, code="days_invalid")
    return value


def _reminder_days(value: object, *, field: str = "reminder_days") -> list[int]:
    """A list of days past due, e.g. [3, 10]; a form sends "3, 10"."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, list):
        parts = value
    else:
        raise PortalError("Enter days past due separated by commas, like 3, 10.", field=field, code="days_invalid")
    if len(parts) > 10:
        raise PortalError("At most 10 reminders.", field=field, code="days_invalid")
    days = [_days(p, field=field, required=True, least=1) for p in parts]
    result = [d for d in days if d is not None]
    if result != sorted(set(result)):
        raise PortalError("List each day once, in increasing order.", field=field, code="days_invalid")
    return result


def _bool(value: object, *, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (None, "", "0", "false", "off"):
        return False
    if value in ("1", "true", "on"):
        return True
    raise PortalError("Choose yes or no.", field=field, code="invalid")


def clean_plan(data: dict[str, Any], *, partial_of: PricePlan | None = None) -> dict[str, Any]:
    """Every field of a plan by its rule; ``partial_of`` fills what ``data`` leaves out."""
    current: dict[str, Any] = {}
    if partial_of is not None:
        current = {name: getattr(partial_of, name) for name in FIELDS}
    merged = {**current, **{k: v for k, v in data.items() if k in FIELDS}}
    name = inputs.text(merged.get("name"), field="name", label="name", max_length=100, required=True)
    currency = merged.get("currency")
    currency = currency.strip().upper() if isinstance(currency, str) else currency
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise PortalError("Enter a three-letter currency code, like USD.", field="currency", code="currency_invalid")
    rule = merged.get("topup_rule") or PricePlan.TopupRule.NONE
    if rule not in PricePlan.TopupRule.values:
        raise PortalError("Choose margin, fee or none.", field="topup_rule", code="invalid")
    cleaned = {
        "name": name,
        "currency": currency,
        "topup_rule": rule,
        "topup_margin_percent": _percent(
            merged.get("topup_margin_percent"), field="topup_margin_percent", below=Decimal(100)
        ),
        "topup_fee": _money(merged.get("topup_fee"), field="topup_fee", currency=currency),
        "monthly_fee": _money(merged.get("monthly_fee"), field="monthly_fee", currency=currency),
        "usage_markup_percent": _percent(
            merged.get("usage_markup_percent"), field="usage_markup_percent", most=MAX_MARKUP
        ),
        "payment_terms_days": _days(merged.get("payment_terms_days", 14), field="payment_terms_days", required=True),
        "reminder_days": _reminder_days(merged.get("reminder_days")),
        "freeze_after_days": _days(merged.get("freeze_after_days"), field="freeze_after_days", required=False, least=1),
        "topup_on_payment": _bool(merged.get("topup_on_payment", False), field="topup_on_payment"),
    }
    if rule == PricePlan.TopupRule.MARGIN and cleaned["topup_margin_percent"] == 0:
        raise PortalError(
            "A margin plan needs a margin above zero.", field="topup_margin_percent", code="percent_invalid"
        )
    if rule == PricePlan.TopupRule.FEE and cleaned["topup_fee"] == 0:
        raise PortalError("A fee plan needs a fee above zero.", field="topup_fee", code="amount_invalid")
    return cleaned


# -- writes ----------------------------------------------------------------------------------


def _snapshot(plan: PricePlan) -> dict[str, Any]:
    return {
        name: str(getattr(plan, name)) if isinstance(getattr(plan, name), Decimal) else getattr(plan, name)
        for name in FIELDS
    }


def _name_taken() -> PortalError:
    return PortalError("A plan with this name exists already.", field="name", code="name_taken", status=409)


def plan_create(*, actor: Actor, data: dict[str, Any], request: HttpRequest | None = None) -> PricePlan:
    check_permission(actor, PERMISSION, doing="manage price plans")
    cleaned = clean_plan(data)
    try:
        with transaction.atomic():
            plan = PricePlan.objects.create(**cleaned)
            audit_log(
                actor=actor, action="reselling.plan.created", data={"plan": plan.pk, **_snapshot(plan)}, request=request
            )
    except IntegrityError:
        raise _name_taken() from None
    return plan


def plan_update(
    *, actor: Actor, plan: PricePlan, data: dict[str, Any], request: HttpRequest | None = None
) -> PricePlan:
    """Change a plan. Its terms (TERM_FIELDS) only while no charge uses it; its name and its
    invoicing settings at any time (they change no amount already charged)."""
    check_permission(actor, PERMISSION, doing="manage price plans")
    cleaned = clean_plan(data, partial_of=plan)
    changed = {name: value for name, value in cleaned.items() if getattr(plan, name) != value}
    if not changed:
        return plan
    terms = sorted(set(changed) & set(TERM_FIELDS))
    before = _snapshot(plan)
    try:
        with transaction.atomic():
            locked = PricePlan.objects.select_for_update().get(pk=plan.pk)
            if terms and plan_in_use(locked):
                raise PortalError(
                    "This plan has charges already, so its terms are fixed: create a new plan and assign it "
                    "from a date.",
                    field=terms[0],
                    code="plan_in_use",
                    status=409,
                )
            for name, value in changed.items():
                setattr(locked, name, value)
            locked.save()
            audit_log(
                actor=actor,
                action="reselling.plan.changed",
                data={"plan": plan.pk, "before": {k: before[k] for k in changed}, "after": _snapshot(locked)},
                request=request,
            )
    except IntegrityError:
        raise _name_taken() from None
    return locked


def plan_archive(*, actor: Actor, plan: PricePlan, request: HttpRequest | None = None) -> PricePlan:
    """An archived plan can no longer be assigned or made a default; tenants on it stay on it
    until they are assigned another."""
    check_permission(actor, PERMISSION, doing="manage price plans")
    if plan.archived_at is not None:
        return plan
    with transaction.atomic():
        updated = PricePlan.objects.filter(pk=plan.pk, archived_at__isnull=True).update(archived_at=timezone.now())
        if updated:
            audit_log(actor=actor, action="reselling.plan.archived", data={"plan": plan.pk}, request=request)
    plan.refresh_from_db()
    return plan


def _assignable(plan: PricePlan, currency: str, field: str) -> None:
    if plan.archived_at is not None:
        raise PortalError("This plan is archived.", field=field, code="plan_archived")
    if plan.currency != currency:
        raise PortalError(
            f"This plan charges in {plan.currency}; the account is in {currency}.",
            field=field,
            code="currency_mismatch",
        )


def connection_default_set(
    *, actor: Actor, connection: ProviderConnection, plan: PricePlan | None, request: HttpRequest | None = None
) -> None:
    """The plan of every tenant of ``connection`` that has no assignment (None: no default)."""
    check_permission(actor, PERMISSION, doing="manage price plans")
    if plan is not None:
        _assignable(plan, (connection.currency or "USD").upper(), "plan")
    with transaction.atomic():
        before = ConnectionDefaultPlan.objects.filter(connection_id=connection.pk).values_list("plan_id", flat=True)
        previous = next(iter(before), None)
        if plan is None:
            ConnectionDefaultPlan.objects.filter(connection_id=connection.pk).delete()
        else:
            ConnectionDefaultPlan.objects.update_or_create(connection_id=connection.pk, defaults={"plan": plan})
        audit_log(
            actor=actor,
            action="reselling.default_plan.set",
            data={"connection": connection.pk, "before": previous, "after": plan.pk if plan else None},
            request=request,
        )


def _person(actor: Actor) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


@dataclass(frozen=True)
class Assigned:
    assignment: PlanAssignment
    replayed: bool


def _day_taken(day: date) -> PortalError:
    return PortalError(
        f"Another plan starts on {day.isoformat()} already; choose another day.",
        field="effective_from",
        code="assignment_exists",
        status=409,
    )


def plan_assign(
    *,
    actor: Actor,
    tenant: Tenant,
    plan: PricePlan,
    effective_from: date | None,
    request: HttpRequest | None = None,
) -> Assigned:
    """Put ``tenant`` on ``plan`` from ``effective_from`` (inclusive; today when None).

    Never in the past: a past day may have been charged already, and charges keep the terms
    they were made with. The same plan from the same day again is a replay, not an error."""
    check_permission(actor, PERMISSION, doing="assign price plans")
    today = timezone.now().date()
    day = effective_from or today
    if day < today:
        raise PortalError(
            "A plan starts today or later: past days keep the terms they were charged with.",
            field="effective_from",
            code="date_in_past",
        )
    _assignable(plan, tenant_currency(tenant), "plan")
    existing = PlanAssignment.objects.filter(tenant_id=tenant.pk, effective_from=day).first()
    if existing is not None:
        if existing.plan_id == plan.pk:
            return Assigned(existing, True)
        raise _day_taken(day)
    before = plan_on(tenant, day)
    try:
        with transaction.atomic():
            assignment = PlanAssignment.objects.create(
                tenant=tenant,
                plan=plan,
                effective_from=day,
                created_by=_person(actor),
            )
            audit_log(
                actor=actor,
                action="reselling.plan.assigned",
                tenant_id=tenant.pk,
                data={
                    "plan": plan.pk,
                    "plan_name": plan.name,
                    "effective_from": day.isoformat(),
                    "before": before.pk if before else None,
                },
                request=request,
            )
    except IntegrityError:
        raced = PlanAssignment.objects.filter(tenant_id=tenant.pk, effective_from=day).first()
        if raced is not None and raced.plan_id == plan.pk:
            return Assigned(raced, True)
        raise _day_taken(day) from None
    return Assigned(assignment, False)
