"""The account's provider plans and its document verification.

Plans: ``plans_refresh`` reads GetAccountPlans into ``Tenant.account_plans``; a reseller
admin upgrades a plan with ``tenant_change_plan``, a tracked CHANGE_PLAN operation of the
engine in ``operations``. Changing a plan is not idempotent (every accepted call reserves
another month's fee at the provider), so an attempt whose answer was lost is never sent
blindly again: the next attempt reads the plans back first and, when the account is already
on the new plan, records the success without a second call.

Verification: ``verification_scan`` (the nightly task) reads GetAccountDocuments for open
tenants in keyset batches and stores the status and the hold date; when documents are
required and the hold date is near, the reseller admins and the tenant's owners are emailed
once per hold date (``verification_warned_for``).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from portal.audit import audit_log
from portal.errors import Conflict, NotAllowed, PortalError
from portal.mail import site_link, staff_addresses, staff_message, templated_email
from portal.roles import Actor, Role, check_permission, role_of
from providers.capabilities import Capability
from providers.errors import NotSent, OutcomeUnknown, ProviderError, RateLimited
from providers.plans import PLAN_TYPES, AccountPlan, AvailablePlan, PlanChangeForbidden
from tenants.connections import client_for, unavailable
from tenants.mail import owner_messages
from tenants.models import Tenant, TenantOperation
from tenants.services.edit import RUNNERS
from tenants.services.operations import _describe, _not_answered, _settle, _start_operation

Op = TenantOperation

logger = logging.getLogger("tenants")

FEE_RESERVED_NOTICE = (
    "Changing the plan reserves next month's subscription fee plus taxes at the provider now: "
    "the account's available balance drops by that amount at once."
)


# --- who may, and what is possible --------------------------------------------------------


def _account_read_refusal(tenant: Tenant, capability: Capability) -> str | None:
    # The probed state: a provider that no longer answers GetAccountPlans, GetAvailablePlans,
    # ChangeAccountPlan or GetAccountDocuments shows the reason, with when it was checked.
    if (refusal := unavailable(tenant.connection, capability, probed=True)) is not None:
        return refusal
    if tenant.provider_account is None:
        return "This tenant has no provider account yet."
    return None


def plans_refusal(tenant: Tenant) -> str | None:
    """Why this tenant has no plans to show (the provider, or no account yet), or None."""
    return _account_read_refusal(tenant, Capability.ACCOUNT_PLANS)


def verification_refusal(tenant: Tenant) -> str | None:
    return _account_read_refusal(tenant, Capability.ACCOUNT_VERIFICATION)


def may_change_plan(actor: Actor) -> bool:
    """Only reseller admins change plans (the fee is reserved from the account at once)."""
    return role_of(actor) == Role.RESELLER_ADMIN


def change_plan_refusal(actor: Actor, tenant: Tenant) -> str | None:
    if not may_change_plan(actor):
        return "Only reseller admins change plans."
    refusal = plans_refusal(tenant)
    if refusal:
        return refusal
    if not tenant.is_open:
        return f"A {tenant.get_status_display().lower()} tenant's plan cannot be changed."
    return None


# --- reading ----------------------------------------------------------------------------------


def _plan_json(plan: AccountPlan) -> dict[str, Any]:
    return {
        "plan_type": plan.plan_type,
        "plan_id": plan.plan_id,
        "name": plan.name,
        "price": str(plan.price) if plan.price is not None else None,
        "currency": plan.currency,
        "next_charge": plan.next_charge.isoformat() if plan.next_charge else None,
        "packages": [
            {
                "name": p.name,
                "price": str(p.price) if p.price is not None else None,
                "amount": p.amount,
                "remaining_amount": p.remaining_amount,
                "unit": p.unit,
            }
            for p in plan.packages
        ],
    }


def _read_plans(tenant: Tenant) -> list[dict[str, Any]]:
    with client_for(tenant.connection) as client:
        return [_plan_json(p) for p in client.get_account_plans(tenant.provider_account)]


def plans_refresh(*, actor: Actor, tenant: Tenant, request: HttpRequest | None = None) -> list[dict[str, Any]]:
    """Read the account's plans now ("Read now") and keep them on the tenant."""
    check_permission(actor, "console.view", doing="read plans")
    refusal = plans_refusal(tenant)
    if refusal:
        raise Conflict(refusal, code="unsupported")
    try:
        plans = _read_plans(tenant)
    except ProviderError as exc:
        raise PortalError(f"The provider did not give the plans: {_describe(exc)}", code="provider_error") from exc
    now = timezone.now()
    Tenant.objects.filter(pk=tenant.pk).update(account_plans=plans, account_plans_checked_at=now, updated_at=now)
    tenant.account_plans, tenant.account_plans_checked_at = plans, now
    return plans


def available_plans(*, actor: Actor, tenant: Tenant) -> list[AvailablePlan]:
    """The plans the account may move to, read live for the change form."""
    if not may_change_plan(actor):
        raise NotAllowed("Only reseller admins change plans.", code="forbidden")
    refusal = plans_refusal(tenant)
    if refusal:
        raise Conflict(refusal, code="unsupported")
    try:
        with client_for(tenant.connection) as client:
            return list(client.get_available_plans(tenant.provider_account))
    except ProviderError as exc:
        raise PortalError(f"The provider did not list the plans: {_describe(exc)}", code="provider_error") from exc


# --- changing -------------------------------------------------------------------------------


def tenant_change_plan(
    *, actor: Actor, tenant: Tenant, plan_type: Any, plan_id: Any, request: HttpRequest | None = None
) -> Op:
    """A tracked CHANGE_PLAN operation: ChangeAccountPlan to a dearer plan (the provider refuses
    a downgrade; its support makes those). The provider reserves next month's fee at once."""
    if not may_change_plan(actor):
        raise NotAllowed("Only reseller admins change plans.", code="forbidden")
    if plan_type not in PLAN_TYPES:
        raise PortalError(f"Choose a plan type: {', '.join(PLAN_TYPES)}.", field="plan_type")
    text = str(plan_id if plan_id is not None else "").strip()
    if not text.isascii() or not text.isdigit() or int(text) <= 0:
        raise PortalError("Choose the new plan.", field="plan_id")
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().select_related("connection").get(pk=tenant.pk)
        refusal = change_plan_refusal(actor, locked)
        if refusal:
            raise Conflict(refusal, code="not_allowed_now")
        current = next((p for p in locked.account_plans if p.get("plan_type") == plan_type), None)
        op = _start_operation(
            tenant=locked, kind=Op.Kind.CHANGE_PLAN, actor=actor, params={"plan_type": plan_type, "plan_id": int(text)}
        )
        audit_log(
            actor=actor,
            action="tenants.plan.change_requested",
            tenant_id=locked.pk,
            request=request,
            data={
                "operation": str(op.uuid),
                "plan_type": plan_type,
                "plan_id": int(text),
                "previous_plan_id": current.get("plan_id") if current else None,
            },
        )
    return op


def _on_plan(plans: list[dict[str, Any]], plan_type: str, plan_id: int) -> bool:
    return any(p["plan_type"] == plan_type and p["plan_id"] == plan_id for p in plans)


def _run_change_plan(op: Op) -> None:
    tenant = op.tenant
    plan_type, plan_id = op.params["plan_type"], int(op.params["plan_id"])
    what = "Changing the plan"
    try:
        with client_for(tenant.connection) as client:
            if op.attempt > 1:
                # An earlier attempt may have been applied: look before sending again.
                before = [_plan_json(p) for p in client.get_account_plans(tenant.provider_account)]
                if _on_plan(before, plan_type, plan_id):
                    _plan_changed(op, before, confirmed_by_read=True)
                    return
            client.change_account_plan(tenant.provider_account, plan_type=plan_type, plan_id=plan_id)
            after = [_plan_json(p) for p in client.get_account_plans(tenant.provider_account)]
    except (OutcomeUnknown, NotSent, RateLimited) as exc:
        _not_answered(op, exc, lookup_possible=True, what=what)
        return
    except PlanChangeForbidden as exc:
        _settle(
            op,
            state=Op.State.FAILED,
            message=f"The provider refused: only its support can move an account to a cheaper plan ({exc.message}).",
            audit=("tenants.plan.change_failed", {"error": exc.message, "code": exc.code}),
        )
        return
    except ProviderError as exc:
        message = f"{what} failed: {_describe(exc)}"
        _settle(op, state=Op.State.FAILED, message=message, audit=("tenants.plan.change_failed", {"error": message}))
        return
    _plan_changed(op, after, confirmed_by_read=False)


def _plan_changed(op: Op, plans: list[dict[str, Any]], *, confirmed_by_read: bool) -> None:
    now = timezone.now()
    _settle(
        op,
        state=Op.State.SUCCEEDED,
        message="The provider changed the plan; next month's fee is reserved on the account.",
        tenant_updates={"account_plans": plans, "account_plans_checked_at": now},
        audit=(
            "tenants.plan.changed",
            {"plan_type": op.params["plan_type"], "plan_id": op.params["plan_id"], "found_by_read": confirmed_by_read},
        ),
    )


RUNNERS[Op.Kind.CHANGE_PLAN] = _run_change_plan


# --- verification -----------------------------------------------------------------------------


def _hold_datetime(value: date | None) -> datetime | None:
    return datetime(value.year, value.month, value.day, tzinfo=UTC) if value else None


def verification_refresh(*, tenant: Tenant) -> Tenant:
    """Read one tenant's verification and store it (the nightly scan and the API's read)."""
    with client_for(tenant.connection) as client:
        found = client.get_account_documents(tenant.provider_account)
    status = found.status if found.status in Tenant.Verification.values else ""
    hold = _hold_datetime(found.hold_until)
    now = timezone.now()
    Tenant.objects.filter(pk=tenant.pk).update(
        verification_status=status, unverified_hold_until=hold, verification_checked_at=now
    )
    tenant.verification_status, tenant.unverified_hold_until, tenant.verification_checked_at = status, hold, now
    return tenant


def _warn_days() -> int:
    return int(getattr(settings, "VERIFICATION_WARN_DAYS", 7))


def _staff_emails() -> list[str]:
    return staff_addresses(Role.RESELLER_ADMIN)


def _needs_warning(tenant: Tenant, now: datetime) -> bool:
    hold = tenant.unverified_hold_until
    return (
        tenant.verification_status == Tenant.Verification.REQUIRED
        and hold is not None
        and hold <= now + timedelta(days=_warn_days())
        and tenant.verification_warned_for != hold
    )


def _verification_email(tenant: Tenant, *, to_staff: bool, recipients: list[str]) -> EmailMultiAlternatives:
    hold = tenant.unverified_hold_until
    context = {
        "company": tenant.company_name,
        "hold_until": f"{hold:%Y-%m-%d}" if hold else "",
        "link": site_link(reverse("tenants:detail", args=[tenant.uuid]) if to_staff else reverse("customer:home")),
    }
    return templated_email(
        "emails/verification_staff" if to_staff else "emails/verification_owner",
        context,
        subject=gettext("Documents required: %(company)s by %(hold_until)s")
        % {"company": tenant.company_name, "hold_until": context["hold_until"]},
        to=recipients,
    )


def _warn(tenant: Tenant) -> bool:
    """Claim the warning for this hold date (a conditional update), then email; True if sent."""
    hold = tenant.unverified_hold_until
    claimed = (
        Tenant.objects.filter(pk=tenant.pk, unverified_hold_until=hold)
        .exclude(verification_warned_for=hold)
        .update(verification_warned_for=hold)
    )
    if not claimed:
        return False
    sent = False
    staff = _staff_emails()
    if staff:
        staff_message(lambda to: _verification_email(tenant, to_staff=True, recipients=to), staff).send()
        sent = True
    for message in owner_messages(tenant.pk, lambda to: _verification_email(tenant, to_staff=False, recipients=to)):
        message.send()
        sent = True
    with transaction.atomic():
        audit_log(
            actor=None,
            action="tenants.verification.warned",
            tenant_id=tenant.pk,
            data={"hold_until": f"{hold:%Y-%m-%d}" if hold else None, "emailed": sent},
        )
    return sent


def verification_scan(
    *, after_id: int = 0, limit: int = 500, fresh_for: timedelta = timedelta(hours=12)
) -> dict[str, int]:
    """Read the verification of up to ``limit`` open tenants with id > ``after_id`` whose
    provider has verification; warn where due. A tenant read within ``fresh_for`` is skipped,
    so a walk started again after a crash does not read everyone twice. Returns ``last_id``
    (0 when the walk is done), ``read``, ``warned`` and ``failed``; resume from ``last_id``."""
    now = timezone.now()
    tenants = list(
        Tenant.objects.select_related("connection")
        .filter(pk__gt=after_id, status__in=[Tenant.Status.ACTIVE, Tenant.Status.FROZEN])
        .exclude(provider_account_ref="")
        .order_by("pk")[:limit]
    )
    read = warned = failed = 0
    for tenant in tenants:
        checked = tenant.verification_checked_at
        if verification_refusal(tenant) or (fresh_for and checked is not None and checked > now - fresh_for):
            continue
        try:
            verification_refresh(tenant=tenant)
        except ProviderError:
            failed += 1
            logger.warning("verification of tenant %s could not be read", tenant.pk, exc_info=True)
            continue
        read += 1
        if _needs_warning(tenant, now) and _warn(tenant):
            warned += 1
    last_id = tenants[-1].pk if len(tenants) == limit else 0
    return {"last_id": last_id, "read": read, "warned": warned, "failed": failed}
