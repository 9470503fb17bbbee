"""Bulk transfers: a dry run that checks every row and the totals, then a Job that creates
and sends the transfers one by one, reporting each row live.

Each row's transfer carries the idempotency key ``bulk:<job uuid>:<tenant uuid>``, so a
task that runs twice (or restarts after a crash) never creates a second transfer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import User
from django.utils import timezone

from billing import conf
from billing.models import ResellerBudget, StaffDailyUsage, Transfer
from billing.money import clean_text, parse_amount
from billing.transfers import (
    TENANT_FORM_DIRECTIONS,
    _validate_tenant,
    tenant_currency,
    transfer_create,
    transfer_execute,
)
from billing.transitions import Actor
from portal.errors import NotAllowed, PortalError
from portal.events import publish_on_commit
from portal.jobs import job_advance, job_create, job_finish, job_start
from portal.models import Job
from portal.roles import has_perm
from tenants.models import Tenant

logger = logging.getLogger("billing.bulk")

MAX_ROWS = 1000


@dataclass
class PlanRow:
    tenant: Tenant
    ok: bool
    message: str
    needs_approval: bool = False


@dataclass
class Plan:
    rows: list[PlanRow]
    amount: Decimal | None
    direction: str
    reason: str
    total: Decimal
    ok_count: int
    problems: list[str]
    customer_description: str = ""

    @property
    def runnable(self) -> bool:
        return self.ok_count > 0 and not self.problems


def _tenants(tenant_uuids: list[str]) -> list[Tenant]:
    uuids = list(dict.fromkeys(u for u in tenant_uuids if u))[: MAX_ROWS + 1]
    if len(uuids) > MAX_ROWS:
        raise PortalError(f"Select at most {MAX_ROWS} tenants at a time.", field="tenants")
    found = {str(t.uuid): t for t in Tenant.objects.select_related("connection").filter(uuid__in=uuids)}
    return [found[u] for u in uuids if u in found]


def bulk_transfer_plan(
    *,
    actor: Actor,
    tenant_uuids: list[str],
    amount: object,
    direction: str,
    reason: object,
    customer_description: object = "",
) -> Plan:
    """The dry run: what would happen to each selected tenant, and whether the totals fit
    the parent's budget and the actor's daily limit. Changes nothing."""
    if not has_perm(actor, "billing.move_money"):
        raise NotAllowed("You may not move money.", code="forbidden")
    reason_text = clean_text(reason, field="reason", max_length=500)
    # The customer's words for every transfer of the batch; the reason stays with staff.
    description = clean_text(customer_description, field="customer_description", max_length=200, required=False)
    if direction not in TENANT_FORM_DIRECTIONS:  # money of PBX users moves on the user's page
        raise PortalError("Choose top-up or pull back.", field="direction")
    tenants = _tenants(tenant_uuids)
    if not tenants:
        raise PortalError("Select at least one tenant.", field="tenants")
    rows: list[PlanRow] = []
    total = Decimal(0)
    # A bad amount is bad for every row: say so once, on the field.
    parsed = parse_amount(amount, currency=tenant_currency(tenants[0]))
    for tenant in tenants:
        try:
            currency = tenant_currency(tenant)
            value = parse_amount(amount, currency=currency)
            _validate_tenant(tenant, direction)
            if currency != (tenant.connection.currency or "USD").upper():
                raise PortalError(f"{currency} differs from the parent's {tenant.connection.currency}.")
            if value > conf.transfer_limit():
                raise PortalError(f"Above the per-transfer limit of {conf.transfer_limit()}.")
            approval = value > conf.approval_threshold()
            rows.append(PlanRow(tenant, True, "Needs a second approver" if approval else "Ready", approval))
            total += value
        except PortalError as exc:
            rows.append(PlanRow(tenant, False, exc.message))
    ok_count = sum(1 for r in rows if r.ok)
    problems = []
    currencies = {tenant_currency(r.tenant) for r in rows if r.ok}
    day = timezone.now().date()
    staff = actor if isinstance(actor, User) else None
    for currency in currencies:
        used = StaffDailyUsage.objects.filter(user=staff, day=day, currency=currency).values_list(
            "amount", flat=True
        ).first() or Decimal(0)
        if used + total > conf.daily_limit_per_staff():
            problems.append(
                f"The total ({total} {currency}) would take you over your daily limit "
                f"({conf.daily_limit_per_staff()}, {used} used today)."
            )
        if direction == Transfer.Direction.TO_TENANT:
            connections = {r.tenant.connection_id for r in rows if r.ok}
            for conn_id in connections:
                budget = ResellerBudget.objects.filter(connection_id=conn_id, currency=currency).first()
                if budget is not None and budget.available < total:
                    problems.append(
                        f"The parent account has {budget.available} {currency} available, "
                        f"less than the total of {total} {currency}."
                    )
    return Plan(
        rows=rows,
        amount=parsed,
        direction=direction,
        reason=reason_text,
        customer_description=description,
        total=total,
        ok_count=ok_count,
        problems=problems,
    )


def bulk_transfer_start(
    *,
    actor: Actor,
    tenant_uuids: list[str],
    amount: object,
    direction: str,
    reason: object,
    customer_description: object = "",
) -> Job:
    """Check again (the dry run may be stale), then queue the Job that does the work."""
    plan = bulk_transfer_plan(
        actor=actor,
        tenant_uuids=tenant_uuids,
        amount=amount,
        direction=direction,
        reason=reason,
        customer_description=customer_description,
    )
    if not plan.runnable:
        raise PortalError(" ".join(plan.problems) or "No selected tenant can receive this transfer.", field="tenants")
    ready = [str(r.tenant.uuid) for r in plan.rows if r.ok]
    verb = "Top up" if direction == Transfer.Direction.TO_TENANT else "Pull back"
    job = job_create(
        kind="billing.bulk_transfer",
        title=f"{verb} {len(ready)} tenants by {plan.amount}",
        total=len(ready),
        created_by=actor,
        params={
            "tenants": ready,
            "amount": str(plan.amount),
            "direction": direction,
            "reason": plan.reason,
            "customer_description": plan.customer_description,
        },
    )

    def dispatch() -> None:
        from billing.tasks import bulk_transfer_task

        bulk_transfer_task.delay(job.pk)

    publish_on_commit(dispatch, what=f"billing.bulk_transfer job {job.pk}")
    return job


def bulk_transfer_run(*, job_id: int) -> None:
    """The Job: one row at a time, create (idempotently) and send, report the outcome."""
    job = Job.objects.select_related("created_by").get(pk=job_id)
    if job.is_finished:
        return
    actor = job.created_by
    params = job.params
    job_start(job_id=job.pk, total=len(params["tenants"]), message="Moving money…")
    done_keys = {r.get("key") for r in job.results}
    failures = 0
    tenants = {str(t.uuid): t for t in Tenant.objects.select_related("connection").filter(uuid__in=params["tenants"])}
    for tenant_uuid in params["tenants"]:
        if tenant_uuid in done_keys:
            continue
        tenant = tenants.get(tenant_uuid)
        label = tenant.company_name if tenant else tenant_uuid
        if tenant is None:
            job_advance(
                job_id=job.pk, result={"key": tenant_uuid, "label": label, "ok": False, "message": "Tenant not found"}
            )
            failures += 1
            continue
        try:
            transfer = transfer_create(
                actor=actor,
                tenant=tenant,
                amount=Decimal(params["amount"]),
                direction=params["direction"],
                reason=params["reason"],
                customer_description=params.get("customer_description", ""),
                idempotency_key=f"bulk:{job.uuid}:{tenant_uuid}",
                origin=Transfer.Origin.BULK,
                job=job,
                dispatch=False,
            )
            if not transfer.awaiting_approval:
                transfer = transfer_execute(transfer_id=transfer.pk)
            ok = transfer.state != Transfer.State.FAILED
            outcomes: dict[str, str] = {
                Transfer.State.SUCCEEDED: "Done",
                Transfer.State.FAILED: f"Refused: {transfer.last_error}",
                Transfer.State.PENDING: "Awaiting approval" if transfer.awaiting_approval else "Queued",
            }
            message = outcomes.get(transfer.state, f"{transfer.get_state_display()}: being resolved")
            failures += 0 if ok else 1
            job_advance(
                job_id=job.pk,
                result={
                    "key": tenant_uuid,
                    "label": label,
                    "ok": ok,
                    "message": message,
                    "transfer": str(transfer.uuid),
                },
            )
        except PortalError as exc:
            failures += 1
            job_advance(job_id=job.pk, result={"key": tenant_uuid, "label": label, "ok": False, "message": exc.message})
    total = len(params["tenants"])
    job_finish(
        job_id=job.pk,
        ok=failures == 0,
        message=f"{total - failures} of {total} transfers done or in progress"
        + (f"; {failures} refused" if failures else ""),
    )
