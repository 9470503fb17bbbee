"""The operation engine: every provider-touching change is a TenantOperation, committed with
its Job and audit row before any provider call, claimed by a worker with a compare-and-swap
(state + attempt are the fence), and settled only by the worker that still owns the claim.
An outcome the provider did not report is resolved by looking the account up before any new
attempt: a dropped reply, a retried task or a killed worker never creates a second account."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.http import HttpRequest
from django.utils import timezone

from portal.audit import audit_log
from portal.crypto import encrypt_json
from portal.errors import Conflict, PortalError
from portal.events import publish_on_commit
from portal.jobs import job_create, job_finish, job_set_state, job_start
from portal.models import Job
from portal.roles import Actor, check_permission
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    Duplicate,
    InvalidArgument,
    NotFound,
    NotSent,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from tenants import tasks
from tenants.connections import client_for
from tenants.models import Tenant, TenantOperation
from tenants.services.balance import transfer_state

Op = TenantOperation

logger = logging.getLogger("tenants")

# Consecutive unanswered attempts before a human is asked to look.
MAX_FAILURES = 6
BULK_LIMIT = 1000
TERMINAL = (Op.State.SUCCEEDED, Op.State.FAILED)


def _lease() -> timedelta:
    # Longer than one provider call with its own retries (timeouts 5 s + 30 s, 4 attempts).
    return timedelta(seconds=int(getattr(settings, "TENANT_OPERATION_LEASE_SECONDS", 300)))


def _backoff(failures: int) -> int:
    return min(2 ** max(failures, 1), 60)


_TITLES: dict[str, str] = {
    Op.Kind.CREATE: "Create {name} at the provider",
    Op.Kind.CLONE: "Clone into {name}",
    Op.Kind.FREEZE: "Freeze {name}",
    Op.Kind.UNFREEZE: "Unfreeze {name}",
    Op.Kind.CLOSE: "Close {name}",
    Op.Kind.EDIT: "Edit {name} at the provider",
    Op.Kind.ACTIVATE: "Enable {name} at the provider",
    Op.Kind.SET_THRESHOLD: "Set the low-balance threshold of {name}",
    Op.Kind.ROTATE: "Rotate the credentials of {name}",
    Op.Kind.CHANGE_PLAN: "Change the plan of {name}",
}

# Called inside the transaction that records an operation's success (tenants.services.edit
# registers the follow-ups: enabling a new account, pushing the threshold).
AFTER_SUCCESS: list[Any] = []


def _enqueue_operation(op_id: int, countdown: int | None = None) -> None:
    # A broker hiccup must not undo committed work: the sweeper re-sends what was not queued.
    publish_on_commit(
        lambda: tasks.run_operation.apply_async((op_id,), countdown=countdown),
        what=f"tenants.run_operation {op_id}",
    )


def _start_operation(
    *,
    tenant: Tenant,
    kind: str,
    actor: Actor,
    reason: str = "",
    key: str | None = None,
    params: dict[str, Any] | None = None,
    secret_inputs: dict[str, Any] | None = None,
    stage: str = Op.Stage.PROVIDER,
    total: int = 1,
    enqueue: bool = True,
) -> Op:
    """Job + operation rows, inside the caller's transaction; the task is sent after commit."""
    if Op.objects.filter(tenant=tenant, state__in=Op.OPEN_STATES).exists():
        raise Conflict(
            "Another operation is still running on this tenant; wait for it to finish or resolve it.",
            code="operation_in_progress",
        )
    job = job_create(
        kind=f"tenants.{kind}",
        title=_TITLES[kind].format(name=tenant.company_name),
        total=total,
        created_by=actor,
        tenant_id=tenant.pk,
    )
    try:
        with transaction.atomic():
            op = Op.objects.create(
                tenant=tenant,
                kind=kind,
                key=key,
                reason=reason,
                params=params or {},
                stage=stage,
                secrets_encrypted=encrypt_json(secret_inputs or {}),
                job=job,
                next_attempt_at=timezone.now(),
                created_by=actor if isinstance(actor, User) else None,
            )
    except IntegrityError:
        if key and Op.objects.filter(key=key).exists():
            raise  # the same request twice: the caller replays the first one's result
        # The partial unique index lost a race with a concurrent click.
        raise Conflict(
            "Another operation is still running on this tenant; wait for it to finish.", code="operation_in_progress"
        ) from None
    if enqueue:
        _enqueue_operation(op.pk)
    return op


def _fingerprint(**values: Any) -> str:
    raw = json.dumps({k: str(v) for k, v in sorted(values.items())}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def _replay(key: str | None, fingerprint: str) -> Tenant | None:
    """The tenant a previous request with this operation key made (same inputs), else None."""
    if not key:
        return None
    op = Op.objects.filter(key=key).select_related("tenant").first()
    if op is None:
        return None
    if op.params.get("fingerprint") != fingerprint:
        raise Conflict("This operation id was already used for a different request.", code="key_reused")
    return op.tenant


def _operation_key(value: Any) -> str | None:
    if value in (None, ""):
        return None
    key = str(value).strip()
    if not 8 <= len(key) <= 255 or not re.fullmatch(r"[A-Za-z0-9._:-]+", key):
        raise PortalError(
            "The operation id must be 8-255 letters, digits, dots, colons, dashes or underscores.",
            field="operation_key",
        )
    return key


# --- operations: staff decisions ----------------------------------------------------------


def operation_retry(*, actor: Actor, operation: Op, request: HttpRequest | None = None) -> Op:
    """A human looked at an operation that needs attention and asks for another attempt. A
    create or clone still looks the account up first, so this never duplicates it."""
    check_permission(actor, "tenants.freeze", doing="retry operations")
    with transaction.atomic():
        op = Op.objects.select_for_update().get(pk=operation.pk)
        if op.state != Op.State.NEEDS_ATTENTION:
            raise Conflict("Only an operation that needs attention can be retried.")
        updates: dict[str, Any] = {
            "state": Op.State.PENDING,
            "failures": 0,
            "next_attempt_at": timezone.now(),
            "lease_until": None,
            "updated_at": timezone.now(),
        }
        if op.stage == Op.Stage.WAIT_BALANCE and transfer_state(op.transfer_ref) == "failed":
            updates["stage"] = Op.Stage.PULL_BALANCE
            updates["transfer_ref"] = ""
        Op.objects.filter(pk=op.pk).update(**updates)
        if op.job_id:
            job_set_state(job_id=op.job_id, state=Job.State.QUEUED, message="Retry requested.")
        audit_log(
            actor=actor,
            action="tenants.operation.retried",
            tenant_id=op.tenant_id,
            request=request,
            data={"operation": str(op.uuid), "kind": op.kind, "stage": updates.get("stage", op.stage)},
        )
        _enqueue_operation(op.pk)
    op.refresh_from_db()
    return op


def operation_give_up(*, actor: Actor, operation: Op, request: HttpRequest | None = None) -> Op:
    """Stop an operation that needs attention. For a create or clone the tenant becomes failed
    (staff confirmed no account exists at the provider); a close cannot be abandoned."""
    check_permission(actor, "tenants.freeze", doing="abandon operations")
    with transaction.atomic():
        op = Op.objects.select_for_update().get(pk=operation.pk)
        if op.state != Op.State.NEEDS_ATTENTION:
            raise Conflict("Only an operation that needs attention can be abandoned.")
        if op.kind == Op.Kind.CLOSE:
            raise Conflict("A close cannot be abandoned half-way; fix the cause and retry it.")
        now = timezone.now()
        Op.objects.filter(pk=op.pk).update(
            state=Op.State.FAILED,
            finished_at=now,
            secrets_encrypted="",
            updated_at=now,
            last_error=(op.last_error + " Abandoned by staff.")[:1000],
        )
        if op.kind in (Op.Kind.CREATE, Op.Kind.CLONE):
            Tenant.objects.filter(pk=op.tenant_id, status=Tenant.Status.PROVISIONING).update(
                status=Tenant.Status.FAILED, status_reason="Abandoned by staff: " + op.last_error[:400], updated_at=now
            )
        elif op.kind == Op.Kind.ACTIVATE:
            # The account exists but stays disabled: say so, and let staff enable it later.
            Tenant.objects.filter(pk=op.tenant_id, status=Tenant.Status.PROVISIONING).update(
                status=Tenant.Status.FROZEN,
                status_reason="Disabled at the provider: enabling was abandoned by staff.",
                updated_at=now,
            )
        if op.job_id:
            job_finish(job_id=op.job_id, ok=False, message="Abandoned by staff.")
        audit_log(
            actor=actor,
            action="tenants.operation.abandoned",
            tenant_id=op.tenant_id,
            request=request,
            data={"operation": str(op.uuid), "kind": op.kind, "last_error": op.last_error},
        )
    op.refresh_from_db()
    return op


# --- operations: run (the task) -----------------------------------------------------------


class _Stale(Exception):
    """Another worker took the operation over; this one must not record anything."""


_JOB_STATE: dict[str, str] = {
    Op.State.PENDING: Job.State.QUEUED,
    Op.State.SENDING: Job.State.RUNNING,
    Op.State.UNKNOWN: Job.State.RETRYING,
    Op.State.RETRYING: Job.State.RETRYING,
    Op.State.WAITING: Job.State.RUNNING,
    Op.State.NEEDS_ATTENTION: Job.State.NEEDS_ATTENTION,
    Op.State.SUCCEEDED: Job.State.SUCCEEDED,
    Op.State.FAILED: Job.State.FAILED,
}


def _claim(operation_id: int) -> Op | None:
    """Compare-and-swap: exactly one worker moves a runnable operation to sending."""
    now = timezone.now()
    claimed = (
        Op.objects.filter(pk=operation_id, state__in=Op.RUNNABLE_STATES)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(state=Op.State.SENDING, attempt=F("attempt") + 1, lease_until=now + _lease(), updated_at=now)
    )
    if not claimed:
        return None
    op = Op.objects.select_related("tenant", "tenant__connection", "created_by").get(pk=operation_id)
    if op.job_id:
        job_start(job_id=op.job_id, message=f"Working (attempt {op.attempt}).")
    return op


def _fenced(op: Op) -> Any:
    return Op.objects.filter(pk=op.pk, state=Op.State.SENDING, attempt=op.attempt)


def _settle(
    op: Op,
    *,
    state: str,
    message: str,
    tenant_updates: dict[str, Any] | None = None,
    audit: tuple[str, dict[str, Any]] | None = None,
    error_field: str = "",
    retry_in: int | None = None,
    failures: int | None = None,
    ok: bool | None = None,
) -> None:
    """Record an attempt's outcome if this worker still owns the claim (else raise _Stale)."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "state": state,
        "lease_until": None,
        "updated_at": now,
        "last_error": message[:1000] if state != Op.State.SUCCEEDED else "",
        "error_field": error_field,
    }
    if state in TERMINAL:
        fields["finished_at"] = now
        fields["secrets_encrypted"] = ""  # the password is not needed any more
    if retry_in is not None:
        fields["next_attempt_at"] = now + timedelta(seconds=retry_in)
    if failures is not None:
        fields["failures"] = failures
    with transaction.atomic():
        if not _fenced(op).update(**fields):
            raise _Stale
        if tenant_updates:
            Tenant.objects.filter(pk=op.tenant_id).update(**tenant_updates, updated_at=now)
        if audit:
            audit_log(
                actor=None,
                action=audit[0],
                tenant_id=op.tenant_id,
                data={"operation": str(op.uuid), "attempt": op.attempt, **audit[1]},
            )
        if state == Op.State.SUCCEEDED:
            for hook in AFTER_SUCCESS:
                hook(op)
        if op.job_id:
            if state in TERMINAL:
                if state == Op.State.SUCCEEDED:
                    Job.objects.filter(pk=op.job_id).update(done=F("total"))
                job_finish(
                    job_id=op.job_id, ok=bool(ok if ok is not None else state == Op.State.SUCCEEDED), message=message
                )
            else:
                job_set_state(job_id=op.job_id, state=_JOB_STATE[state], message=message)
        if retry_in is not None:
            _enqueue_operation(op.pk, countdown=retry_in)


def _not_answered(op: Op, exc: Exception, *, lookup_possible: bool, what: str) -> None:
    """No usable answer. Retry later while a later attempt can tell what happened; otherwise,
    or after MAX_FAILURES, ask a human."""

    failures = op.failures + 1
    definite = isinstance(exc, NotSent) or (isinstance(exc, RateLimited) and exc.retry_safe)
    if not definite and not lookup_possible:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            failures=failures,
            message=(
                f"{what}: the provider did not answer ({exc}) and it offers no way to check whether the call took "
                f"effect. Check the provider's dashboard, then retry or abandon."
            ),
            audit=("tenants.operation.needs_attention", {"error": str(exc)}),
        )
        return
    if failures >= MAX_FAILURES:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            failures=failures,
            message=(f"{what}: no answer after {failures} attempts ({exc}). Retry when the provider is reachable."),
            audit=("tenants.operation.needs_attention", {"error": str(exc)}),
        )
        return
    delay = _backoff(failures)
    state = Op.State.RETRYING if definite else Op.State.UNKNOWN
    _settle(
        op,
        state=state,
        failures=failures,
        retry_in=delay,
        message=(
            f"{what}: no answer from the provider ({exc}); retrying in {delay} s"
            + ("" if definite else ", after checking whether the first attempt took effect")
            + "."
        ),
    )


def _form_field(field: str | None) -> str:
    mapping = {
        "account_name": "account_name",
        "new_account_name": "account_name",
        "name": "account_name",
        "account_email": "account_email",
        "new_account_email": "account_email",
        "email": "account_email",
        "account_password": "password",
        "new_account_password": "password",
        "password": "password",
    }
    return mapping.get(field or "", "")


def _describe(exc: Exception) -> str:

    field = _form_field(getattr(exc, "field", None))
    message = getattr(exc, "message", str(exc))
    if isinstance(exc, Duplicate) and field == "account_name":
        return f"The provider already has an account named like this ({message})."
    if isinstance(exc, Duplicate) and field == "account_email":
        return f"The provider already has an account with this email ({message})."
    if isinstance(exc, InvalidArgument) and field:
        return f"The provider refused the {field.replace('_', ' ')}: {message}"
    code = getattr(exc, "code", None)
    return f"The provider refused: {message}" + (f" (code {code})" if code is not None else "")


def operations_sweep(*, now: datetime | None = None) -> int:
    """Re-send what a lost message or a killed worker left behind. A sending operation whose
    lease ran out may have reached the provider: it becomes unknown, so it is looked up first."""
    now = now or timezone.now()
    expired = list(Op.objects.filter(state=Op.State.SENDING, lease_until__lt=now).values_list("pk", flat=True))
    for pk in expired:
        with transaction.atomic():
            if Op.objects.filter(pk=pk, state=Op.State.SENDING, lease_until__lt=now).update(
                state=Op.State.UNKNOWN, lease_until=None, next_attempt_at=now, updated_at=now
            ):
                op = Op.objects.get(pk=pk)
                if op.job_id:
                    job_set_state(
                        job_id=op.job_id,
                        state=Job.State.RETRYING,
                        message="The worker stopped mid-call; checking what happened at the provider.",
                    )
    # Anything runnable whose time has come, a little late (its own countdown did not fire).
    due = Op.objects.filter(state__in=Op.RUNNABLE_STATES, next_attempt_at__lte=now - timedelta(seconds=20))
    ids = list(due.values_list("pk", flat=True)[:500])
    for pk in expired + ids:
        tasks.run_operation.delay(pk)
    # A bulk job whose worker died stops reporting; bulk_run skips the rows it already did.
    stalled = list(
        Job.objects.filter(
            kind__startswith="tenants.bulk_",
            state__in=[Job.State.QUEUED, Job.State.RUNNING],
            updated_at__lt=now - timedelta(minutes=10),
        ).values_list("pk", flat=True)[:50]
    )
    for pk in stalled:
        Job.objects.filter(pk=pk).update(updated_at=now)
        tasks.run_bulk.delay(pk)
    return len(expired) + len(ids) + len(stalled)


# --- bulk ------------------------------------------------------------------------------------


def _call(op: Op, what: str, call: Callable[[Any], None], *, failed_audit: str = "") -> bool:
    """One idempotent provider call for ``op``; True when it succeeded, else the outcome is settled."""
    try:
        with client_for(op.tenant.connection) as client:
            call(client)
    except (OutcomeUnknown, NotSent, RateLimited) as exc:
        _not_answered(op, exc, lookup_possible=True, what=what)
        return False
    except (AuthenticationError, ConfigurationError, NotFound) as exc:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            failures=op.failures + 1,
            message=f"{what}: {exc}. Check the connection and the account, then retry or abandon.",
            audit=("tenants.operation.needs_attention", {"error": str(exc)}),
        )
        return False
    except ProviderError as exc:
        message = f"{what} failed: {_describe(exc)}"
        _settle(
            op,
            state=Op.State.FAILED,
            message=message,
            error_field=_form_field(getattr(exc, "field", None)),
            audit=(failed_audit or f"tenants.operation.{op.kind}_failed", {"error": message}),
        )
        return False
    return True
