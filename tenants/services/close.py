"""The staged close: freeze, pull the balance back, wait for it, delete (or leave disabled),
finish. Each stage commits before the next, so a crash resumes where it stopped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from portal.audit import audit_log
from portal.errors import PortalError
from portal.jobs import job_advance
from providers.capabilities import Capability, CapabilityMatrix
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFound,
    NotSent,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from tenants.connections import capability_matrix, client_for
from tenants.models import Tenant, TenantOperation
from tenants.services.balance import balance_return, transfer_state
from tenants.services.operations import _fenced, _lease, _not_answered, _settle, _Stale

Op = TenantOperation

logger = logging.getLogger("tenants")


def _advance(op: Op, *, to: str, note: str, transfer_ref: str | None = None) -> None:
    """Commit a finished close stage (a recovery point) and renew the lease."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "stage": to,
        "notes": [*op.notes, note],
        "lease_until": now + _lease(),
        "failures": 0,
        "updated_at": now,
    }
    if transfer_ref is not None:
        fields["transfer_ref"] = transfer_ref
    with transaction.atomic():
        if not _fenced(op).update(**fields):
            raise _Stale
        audit_log(
            actor=None,
            action="tenants.tenant.close_stage",
            tenant_id=op.tenant_id,
            data={
                "operation": str(op.uuid),
                "stage": op.stage,
                "next": to,
                "note": note,
                **({"transfer": transfer_ref} if transfer_ref else {}),
            },
        )
        if op.job_id:
            job_advance(job_id=op.job_id, message=note)
    op.stage, op.notes, op.failures = to, [*op.notes, note], 0
    if transfer_ref is not None:
        op.transfer_ref = transfer_ref


# Each stage does its work, commits its outcome and says whether the close goes on now (True)
# or stops until the next attempt (False).
Stage = Callable[[Op, Tenant, CapabilityMatrix], bool]


def _stage_freeze(op: Op, tenant: Tenant, matrix: CapabilityMatrix) -> bool:
    account = tenant.provider_account
    if account is None:
        _advance(op, to=Op.Stage.PULL_BALANCE, note="No provider account to freeze.")
    elif not matrix.supports(Capability.FREEZE):
        _advance(op, to=Op.Stage.PULL_BALANCE, note=f"Freeze unavailable: {matrix.reason(Capability.FREEZE)}")
    else:
        with client_for(tenant.connection) as client:
            client.freeze_account(account)
        Tenant.objects.filter(pk=tenant.pk).update(provider_active=False)
        _advance(op, to=Op.Stage.PULL_BALANCE, note="Frozen at the provider.")
    return True


def _stage_pull_balance(op: Op, tenant: Tenant, matrix: CapabilityMatrix) -> bool:
    if tenant.provider_account is None or not matrix.supports(Capability.TRANSFER_MONEY):
        reason = matrix.reason(Capability.TRANSFER_MONEY) or "no provider account"
        _advance(op, to=Op.Stage.DELETE, note=f"No balance to pull back: {reason}")
        return True
    money = balance_return()
    if money is None:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            message="Pulling the balance back needs billing, which is not running here. Retry once it is.",
        )
        return False
    # Billing reads the live balance at the provider, so this runs outside any transaction. A
    # crash between its commit and ours would leave its transfer unrecorded here: look for it
    # before asking for another one.
    ref = money.pull_back_started(tenant=tenant, since=op.created_at) or ""
    if not ref:
        try:
            ref = money.pull_back(actor=op.created_by, tenant=tenant, reason=f"Closing the tenant: {op.reason}") or ""
        except PortalError as exc:
            _not_answered(op, NotSent(exc.message), lookup_possible=True, what="Closing (pulling the balance back)")
            return False
    if ref:
        _advance(
            op,
            to=Op.Stage.WAIT_BALANCE,
            transfer_ref=ref,
            note=f"Pulling the remaining balance back to the parent (transfer {ref}).",
        )
    else:
        _advance(op, to=Op.Stage.DELETE, note="No balance left to pull back.")
    return True


_TRANSFER_STOPS = {
    "failed": "Pulling the balance back failed (see the transfer). Retry to try again.",
    "needs_review": "The balance transfer needs review in billing; retry the close once it is settled.",
}


def _stage_wait_balance(op: Op, tenant: Tenant, matrix: CapabilityMatrix) -> bool:
    state = transfer_state(op.transfer_ref)
    if state == "succeeded":
        _advance(op, to=Op.Stage.DELETE, note="The balance is back on the parent account.")
        return True
    if state in _TRANSFER_STOPS:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            message=_TRANSFER_STOPS[state],
            audit=("tenants.operation.needs_attention", {"transfer": op.transfer_ref}),
        )
    elif op.failures >= 120:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            message=(
                f"The balance transfer has not settled after {op.failures} checks (now {state}); look at it "
                "in billing, then retry the close."
            ),
        )
    else:
        delay = min(5 * (op.failures + 1), 60)
        _settle(
            op,
            state=Op.State.WAITING,
            retry_in=delay,
            failures=op.failures + 1,
            message=(
                f"Waiting for the balance transfer to settle (now {state or 'not found'}); checking again in {delay} s."
            ),
        )
    return False


def _stage_delete(op: Op, tenant: Tenant, matrix: CapabilityMatrix) -> bool:
    account = tenant.provider_account
    if account is None:
        note = "No provider account to delete."
    elif matrix.supports(Capability.CLOSE_DELETE):
        with client_for(tenant.connection) as client:
            try:
                client.close_account(account)
                note = "Deleted at the provider."
            except NotFound:
                note = "Already gone at the provider."
    else:
        note = f"Left disabled at the provider: {matrix.reason(Capability.CLOSE_DELETE)}"
    _advance(op, to=Op.Stage.FINISH, note=note)
    return True


def _stage_finish(op: Op, tenant: Tenant, matrix: CapabilityMatrix) -> bool:
    now = timezone.now()
    _settle(
        op,
        state=Op.State.SUCCEEDED,
        message="Closed. " + " ".join(op.notes[-2:]),
        tenant_updates={"status": Tenant.Status.CLOSED, "closed_at": now, "provider_active": False},
        audit=("tenants.tenant.closed", {"reason": op.reason, "notes": op.notes}),
    )
    return False


STAGES: dict[str, Stage] = {
    Op.Stage.FREEZE: _stage_freeze,
    Op.Stage.PULL_BALANCE: _stage_pull_balance,
    Op.Stage.WAIT_BALANCE: _stage_wait_balance,
    Op.Stage.DELETE: _stage_delete,
    Op.Stage.FINISH: _stage_finish,
}


def _run_close(op: Op) -> None:
    """Run the close's stages in order from where the last attempt stopped."""
    tenant = op.tenant
    matrix = capability_matrix(tenant.connection)
    while True:
        stage = op.stage
        if stage not in STAGES:
            raise RuntimeError(f"unknown close stage {stage!r}")
        try:
            if not STAGES[stage](op, tenant, matrix):
                return
        except (OutcomeUnknown, NotSent, RateLimited) as exc:
            # Freeze and delete are safe to send again (a second delete finds nothing).
            _not_answered(op, exc, lookup_possible=True, what=f"Closing ({op.get_stage_display().lower()})")
            return
        except (AuthenticationError, ConfigurationError, ProviderError) as exc:
            _settle(
                op,
                state=Op.State.NEEDS_ATTENTION,
                failures=op.failures + 1,
                message=(f"Closing ({op.get_stage_display().lower()}): {exc}. Fix the cause, then retry."),
                audit=("tenants.operation.needs_attention", {"error": str(exc), "stage": stage}),
            )
            return


# --- sweeper ---------------------------------------------------------------------------------
