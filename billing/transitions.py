"""Every state change of a transfer, and the ledger moves that go with them.

``TRANSITIONS`` is the transfer state diagram (docs/money.md, "The transfer state diagram";
tests/billing/test_transition_table.py keeps the two equal). ``transition`` is the one way a
transfer's row changes after it was created: one short transaction with a conditional UPDATE
on (state, attempt), then the ledger move and the audit event of the change, and a task
published once the transaction has committed. The attempt number is the fence that keeps a
stale worker from overwriting a newer attempt. A move that is not in the table raises
IllegalTransition before anything is written.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from billing import conf, ledger
from billing.budget import budget_add
from billing.models import JournalEntry, StaffDailyUsage, Transfer
from portal.audit import audit_log
from portal.errors import NotAllowed
from portal.events import publish_on_commit
from portal.roles import Actor, has_perm
from providers.errors import ProviderError

logger = logging.getLogger("billing.transfers")

State = Transfer.State
Direction = Transfer.Direction
Acct = ledger.Account
T = TypeVar("T")


#: The state every transfer is created in.
INITIAL = State.PENDING

#: The allowed moves: state → the states it may move to. A state with no way out is final.
TRANSITIONS: dict[str, frozenset[str]] = {
    State.PENDING: frozenset({State.PENDING, State.SENDING, State.FAILED, State.NEEDS_REVIEW}),
    State.SENDING: frozenset(
        {State.SUCCEEDED, State.FAILED, State.PENDING, State.RESEND, State.UNKNOWN, State.NEEDS_REVIEW}
    ),
    State.RESEND: frozenset({State.SENDING, State.NEEDS_REVIEW}),
    State.UNKNOWN: frozenset({State.UNKNOWN, State.SUCCEEDED, State.FAILED, State.RESEND, State.NEEDS_REVIEW}),
    State.NEEDS_REVIEW: frozenset({State.UNKNOWN, State.SUCCEEDED, State.FAILED}),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A state change that the transfer state diagram does not allow."""


def check_move(source: str, target: str) -> None:
    if target not in TRANSITIONS.get(source, frozenset()):
        raise IllegalTransition(f"a transfer may not move from {source} to {target}")


@dataclass(frozen=True)
class Audit:
    """The audit event a transition writes in its transaction (tenant: the transfer's)."""

    action: str
    data: dict[str, Any] = field(default_factory=dict)
    actor: Actor = None
    request: HttpRequest | None = None


def transition(
    transfer: Transfer,
    *,
    to: str,
    from_states: Iterable[str],
    attempt: int | None,
    now: datetime,
    fields: dict[str, Any] | None = None,
    where: Q | None = None,
    audit: Audit | None = None,
    then: Callable[[], None] | None = None,
    publish: Callable[[], None] | None = None,
    apply: bool = False,
) -> bool:
    """Move ``transfer`` to ``to`` if its row is still in one of ``from_states`` at ``attempt``
    (None: any attempt) and matches ``where``; set ``fields`` too. In the same transaction,
    when the row was won: ``then()`` (the ledger move), then the audit event; ``publish()``
    runs after the commit and its failure is logged, never raised. Returns whether the row
    was won; False means another worker or person moved it first and nothing was written.

    ``apply``: once the row was won and committed, ``transfer`` (the caller's instance) is
    brought up to date in memory, so the caller need not read the row back; a field set by
    an SQL expression is left to load from the database when it is next read."""
    sources = tuple(from_states)
    if not sources:
        raise IllegalTransition("a transition needs at least one state to move from")
    for source in sources:
        check_move(source, to)
    with transaction.atomic():
        rows = Transfer.objects.filter(pk=transfer.pk, state__in=sources)
        if attempt is not None:
            rows = rows.filter(attempt=attempt)
        if where is not None:
            rows = rows.filter(where)
        if not rows.update(state=to, updated_at=now, **(fields or {})):
            logger.info(
                "%s: %s → %s not applied (attempt %s): the row moved on",
                transfer.payment_reference,
                "/".join(sources),
                to,
                attempt,
            )
            return False
        if then is not None:
            then()
        if audit is not None:
            audit_log(
                actor=audit.actor,
                action=audit.action,
                tenant_id=transfer.tenant_id,
                request=audit.request,
                data=audit.data,
            )
        if publish is not None:
            publish_on_commit(publish, what=f"{audit.action if audit else to} {transfer.payment_reference}")
    if apply:
        _apply(transfer, {"state": to, "updated_at": now, **(fields or {})})
    return True


def claim_for_send(transfer_id: int, *, now: datetime) -> Transfer | None:
    """The worker's claim in one statement (PostgreSQL): a due ``pending`` or ``resend`` row,
    not awaiting approval and below the attempt cap, moves to ``sending`` with the next
    attempt and a lease, and comes back with its connection, with the claim's audit event in
    the same transaction. None: nothing was claimed (another worker won, the row is not due
    or not claimable, or the database is not PostgreSQL); the caller reads the row and
    decides. The same fence as ``transition``: the row changes only from a claimable state,
    and the attempt it returns fences the outcome."""
    if connection.vendor != "postgresql":
        return None
    for source in (State.PENDING, State.RESEND):
        check_move(source, State.SENDING)
    from tenants.models import ProviderConnection

    t_fields = Transfer._meta.concrete_fields
    c_fields = ProviderConnection._meta.concrete_fields
    t_cols = ", ".join(f't."{f.column}"' for f in t_fields)
    c_cols = ", ".join(f'c."{f.column}"' for f in c_fields)
    table, conn_table = Transfer._meta.db_table, ProviderConnection._meta.db_table
    # The CTE locks the row as it is now and keeps its state (RETURNING only sees the new one).
    # Table and column names come from the models' metadata; every value is a parameter.
    sql = (
        f'WITH prior AS (SELECT "id", "state" FROM "{table}" WHERE "id" = %s AND "state" IN (%s, %s) '  # noqa: S608
        'AND "next_attempt_at" <= %s AND (NOT "requires_approval" OR "approved_at" IS NOT NULL) '
        'AND "attempt" < %s FOR UPDATE) '
        f'UPDATE "{table}" t SET "state" = %s, "attempt" = t."attempt" + 1, "lease_until" = %s, '
        f'"last_sent_at" = %s, "updated_at" = %s FROM prior, "{conn_table}" c '
        f'WHERE t."id" = prior."id" AND c."id" = t."connection_id" RETURNING prior."state", {t_cols}, {c_cols}'
    )
    params: list[Any] = [transfer_id, State.PENDING, State.RESEND, now, conf.max_attempts()]
    params += [State.SENDING, now + conf.lease(), now, now]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        prior = row[0]
        transfer = _loaded(Transfer, t_fields, row[1 : 1 + len(t_fields)])
        transfer.connection = _loaded(ProviderConnection, c_fields, row[1 + len(t_fields) :])
        audit_log(
            actor=None,
            action="billing.transfer.sending",
            tenant_id=transfer.tenant_id,
            data={"transfer": str(transfer.uuid), "attempt": transfer.attempt, "resend": prior == State.RESEND},
        )
    return transfer


def _loaded(model: Any, fields: Any, values: Any) -> Any:
    """A model instance from raw column values, through each field's database converters."""
    converted = []
    for field_obj, value in zip(fields, values, strict=True):
        col = field_obj.get_col(model._meta.db_table)
        for converter in connection.ops.get_db_converters(col) + col.get_db_converters(connection):
            value = converter(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def _apply(transfer: Transfer, values: dict[str, Any]) -> None:
    """What the won UPDATE wrote, on the instance: plain values are set, expressions
    (F(), Coalesce) are dropped so that Django loads them from the row when next read."""
    for name, value in values.items():
        if hasattr(value, "resolve_expression"):
            field_obj = Transfer._meta.get_field(name)
            transfer.__dict__.pop(getattr(field_obj, "attname", name), None)
        else:
            setattr(transfer, name, value)


# -- tasks published after a change -------------------------------------------------------------


def dispatch_execute(transfer_id: int, countdown: float | None = None) -> None:
    from billing.tasks import transfer_execute_task

    if countdown:
        transfer_execute_task.apply_async((transfer_id,), countdown=countdown)
    else:
        transfer_execute_task.delay(transfer_id)


def dispatch_reconcile(transfer_id: int, countdown: float | None = None) -> None:
    from billing.tasks import transfer_reconcile_task

    if countdown:
        transfer_reconcile_task.apply_async((transfer_id,), countdown=countdown)
    else:
        transfer_reconcile_task.delay(transfer_id)


def dispatch_tenant_refresh(tenant_id: int) -> None:
    """Re-read the tenant from the provider a little later (``refresh_after_transfer_delay``),
    once for every transfer of that tenant settled meanwhile: the first one claims the window
    in the cache, the rest find it claimed. The re-read starts when the window ends, after
    each of those settled, so it sees them all; a lost claim or task costs only freshness
    (the nightly sync re-reads every tenant)."""
    from django.core.cache import cache

    from billing.tasks import tenant_refresh_task

    delay = conf.refresh_after_transfer_delay()
    if delay and not cache.add(f"billing:tenant-refresh:{tenant_id}", 1, timeout=delay):
        return
    tenant_refresh_task.apply_async((tenant_id,), countdown=delay or None)


# -- the ledger moves of a transfer -----------------------------------------------------------


def _tenant_leg(transfer: Transfer) -> ledger.Leg:
    return ledger.Leg(Acct.TENANT, Decimal(0), transfer.tenant_id)


def ledger_reserve(transfer: Transfer) -> None:
    """At creation: the amount leaves where it comes from (the reseller for a top-up, the
    tenant for a pull or a transfer inside the tenant's account) for ``in_flight``."""
    ledger.move(
        kind=JournalEntry.Kind.RESERVE,
        connection_id=transfer.connection_id,
        currency=transfer.currency,
        amount=transfer.amount,
        source=Acct.RESELLER if transfer.direction == Direction.TO_TENANT else _tenant_leg(transfer),
        target=Acct.IN_FLIGHT,
        transfer_id=transfer.pk,
        memo=transfer.payment_reference,
    )


def ledger_close(transfer: Transfer, kind: str) -> None:
    """End a reservation. ``settle`` (the provider moved the money): ``in_flight`` → where
    the money was sent. ``release`` (it did not): ``in_flight`` → where it came from, and the
    staff member's daily-limit room comes back. Money that lands on the reseller's side is
    added back to the budget counter too."""
    # Money inside one tenant's account (to or from a PBX user) never reaches the reseller's
    # side: it returns to the tenant's line either way, so that line nets to zero.
    user_transfer = transfer.direction in Transfer.USER_DIRECTIONS
    to_tenant = user_transfer or (kind == JournalEntry.Kind.SETTLE) == (transfer.direction == Direction.TO_TENANT)
    ledger.move(
        kind=kind,
        connection_id=transfer.connection_id,
        currency=transfer.currency,
        amount=transfer.amount,
        source=Acct.IN_FLIGHT,
        target=_tenant_leg(transfer) if to_tenant else Acct.RESELLER,
        transfer_id=transfer.pk,
        memo=transfer.payment_reference,
    )
    if not to_tenant:
        budget_add(transfer, transfer.amount)
    if kind == JournalEntry.Kind.RELEASE:
        _release_daily_usage(transfer)


def _release_daily_usage(transfer: Transfer) -> None:
    # System transfers and user transfers never took any of a staff member's daily room.
    if (
        transfer.created_by_id is None
        or transfer.origin == Transfer.Origin.SYSTEM
        or transfer.direction in Transfer.USER_DIRECTIONS
    ):
        return
    # No row (nothing taken that day) or already at zero: nothing to give back.
    ledger.counter_add_where(
        StaffDailyUsage,
        {"user_id": transfer.created_by_id, "day": transfer.created_at.date(), "currency": transfer.currency},
        "amount",
        -transfer.amount,
        minimum=Decimal(0),
    )


# -- small helpers of the steps ----------------------------------------------------------------


def require_move_money(actor: Actor) -> None:
    if not has_perm(actor, "billing.move_money"):
        raise NotAllowed("You may not move money.", code="forbidden")


def error_text(error: object) -> str:
    if error is None:
        return ""
    text = str(error) if isinstance(error, ProviderError) else f"{type(error).__name__}: {error}"
    return text[:1000]


def backoff(attempt: int) -> float:
    ceiling = min(60.0, 2.0 * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


def with_db_retry(func: Callable[[], T], *, what: str, tries: int = 6) -> T:
    """Run a short DB step, retrying when the database is briefly away (a restart or a
    failover while the outcome of a provider call is being recorded).

    Only for steps after a provider call: the call is never repeated, only the record of it.
    """
    for attempt in range(1, tries + 1):
        try:
            return func()
        except (OperationalError, InterfaceError):
            if attempt == tries or connection.in_atomic_block:
                raise
            logger.warning("%s: database unavailable (attempt %d of %d), retrying", what, attempt, tries, exc_info=True)
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - the connection may already be gone
                logger.debug("closing the broken database connection failed", exc_info=True)
            time.sleep(min(5.0, 0.2 * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # pragma: no cover


def assert_no_transaction() -> None:
    if connection.in_atomic_block:
        raise RuntimeError("a provider call must not run inside a database transaction")


# -- the outcomes -------------------------------------------------------------------------------


def finish_success(
    transfer: Transfer,
    attempt: int,
    *,
    from_states: list[str],
    now: datetime,
    balance_after: Decimal | None,
    provider_txn_id: str,
    actor: Actor = None,
    action: str = "billing.transfer.succeeded",
    note: str = "",
    request: HttpRequest | None = None,
    evidence: dict[str, Any] | None = None,
    apply: bool = False,
) -> bool:
    fields: dict[str, Any] = {
        "completed_at": now,
        "lease_until": None,
        "provider_txn_id": provider_txn_id[:64],
        "last_error": "" if action.endswith("succeeded") else note[:1000],
    }
    if balance_after is not None:
        fields["balance_after"] = balance_after
    if evidence is not None:
        fields["evidence"] = evidence
    publish: Callable[[], None] | None = None
    if conf.refresh_after_transfer():
        tenant_id = transfer.tenant_id

        def publish() -> None:
            dispatch_tenant_refresh(tenant_id)

    return transition(
        transfer,
        to=State.SUCCEEDED,
        from_states=from_states,
        attempt=attempt,
        now=now,
        fields=fields,
        then=lambda: ledger_close(transfer, JournalEntry.Kind.SETTLE),
        audit=Audit(
            action=action,
            actor=actor,
            request=request,
            data={
                "transfer": str(transfer.uuid),
                "attempt": attempt,
                "amount": str(transfer.amount),
                "direction": transfer.direction,
                "provider_txn_id": provider_txn_id,
                "balance_after": str(balance_after) if balance_after is not None else None,
                "note": note,
            },
        ),
        publish=publish,
        apply=apply,
    )


def finish_failure(
    transfer: Transfer,
    attempt: int,
    *,
    from_states: list[str],
    error: object,
    actor: Actor,
    action: str,
    now: datetime,
    request: HttpRequest | None = None,
    where: Q | None = None,
    apply: bool = False,
) -> bool:
    return transition(
        transfer,
        to=State.FAILED,
        from_states=from_states,
        attempt=attempt,
        now=now,
        where=where,
        fields={"completed_at": now, "lease_until": None, "last_error": error_text(error)},
        then=lambda: ledger_close(transfer, JournalEntry.Kind.RELEASE),
        audit=Audit(
            action=action,
            actor=actor,
            request=request,
            data={
                "transfer": str(transfer.uuid),
                "attempt": attempt,
                "amount": str(transfer.amount),
                "error": error_text(error),
            },
        ),
        apply=apply,
    )


def to_unknown(
    transfer: Transfer, attempt: int, *, error: object, now: datetime, refused: bool = False, apply: bool = False
) -> bool:
    """The call may or may not have moved the money: a lookup decides, after the settle window."""
    settle = conf.settle()
    return transition(
        transfer,
        to=State.UNKNOWN,
        from_states=[State.SENDING],
        attempt=attempt,
        now=now,
        fields={
            "lease_until": None,
            "empty_lookups": 0,
            "refused_after_unknown": refused,
            "ambiguous_attempts": F("ambiguous_attempts") + (0 if refused else 1),
            "first_unknown_at": Coalesce(F("first_unknown_at"), now),
            "next_attempt_at": now + settle,
            "last_error": ("refused after an unanswered attempt: " if refused else "") + error_text(error),
        },
        audit=Audit(
            action="billing.transfer.unknown",
            data={"transfer": str(transfer.uuid), "attempt": attempt, "error": error_text(error), "refused": refused},
        ),
        publish=lambda: dispatch_reconcile(transfer.pk, countdown=settle.total_seconds() or None),
        apply=apply,
    )


def to_retry(transfer: Transfer, attempt: int, *, error: Exception, now: datetime, apply: bool = False) -> bool:
    """The provider said the call was not carried out: try again later, up to the cap."""
    if attempt >= conf.max_attempts():
        return to_review(
            transfer,
            from_states=[State.SENDING],
            attempt=attempt,
            now=now,
            reason=f"not sent after {attempt} attempts: {error_text(error)}",
            apply=apply,
        )
    delay = backoff(attempt)
    retry_after = getattr(error, "retry_after", None)
    if retry_after:
        delay = max(delay, min(float(retry_after), 300.0))
    return transition(
        transfer,
        to=State.RESEND if transfer.ambiguous_attempts else State.PENDING,
        from_states=[State.SENDING],
        attempt=attempt,
        now=now,
        fields={
            "lease_until": None,
            "next_attempt_at": now + timedelta(seconds=delay),
            "last_error": error_text(error),
        },
        audit=Audit(
            action="billing.transfer.retry_scheduled",
            data={
                "transfer": str(transfer.uuid),
                "attempt": attempt,
                "error": error_text(error),
                "delay_seconds": round(delay, 3),
            },
        ),
        publish=lambda: dispatch_execute(transfer.pk, countdown=delay),
        apply=apply,
    )


def to_review(
    transfer: Transfer,
    *,
    from_states: list[str],
    attempt: int,
    reason: str,
    now: datetime,
    evidence: dict[str, Any] | None = None,
    apply: bool = False,
) -> bool:
    """Hand the transfer to a person: the portal cannot decide what happened on its own."""
    fields: dict[str, Any] = {"lease_until": None, "review_reason": reason[:1000]}
    if evidence is not None:
        fields["evidence"] = evidence
    return transition(
        transfer,
        to=State.NEEDS_REVIEW,
        from_states=from_states,
        attempt=attempt,
        now=now,
        fields=fields,
        audit=Audit(
            action="billing.transfer.needs_review",
            data={"transfer": str(transfer.uuid), "attempt": attempt, "reason": reason, "evidence": evidence or {}},
        ),
        apply=apply,
    )


def expire_lease(transfer: Transfer, now: datetime) -> bool:
    """A sending row whose lease ran out: its worker died or stalled, before or after the
    provider heard of the call, so the outcome is unknown."""
    return to_unknown(
        transfer, transfer.attempt, error=RuntimeError("lease expired: the worker stopped answering"), now=now
    )
