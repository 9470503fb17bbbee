"""The transfer state machine (RELIABILITY.md §3).

    pending ──claim──▶ sending ──ok──────────────────────────────▶ succeeded
       ▲                  ├──definite refusal──────────────────────▶ failed (reservation released)
       └──not sent────────┤ (next_attempt_at, bounded attempts)
                          └──ambiguous (timeout, 5xx, HTML, crash)──▶ unknown
    unknown ──lookup finds one, same amount──────────────────────────▶ succeeded
    unknown ──two empty lookups ≥ settle apart, lease expired──▶ resend ──claim──▶ sending
    unknown ──several found, amount differs, too old, too many attempts──▶ needs_review

Every step is its own short transaction and a conditional UPDATE on (state, attempt): the
attempt number is the fence that keeps a stale worker from overwriting a newer attempt.
The intent and payment_reference are committed before the provider is called and no
transaction is open during the call. Nothing becomes ``failed`` unless the provider
answered with a refusal (or a lookup proved the money did not move).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid as uuid_mod
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, TypeVar

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing import conf, ledger
from billing import provider as prov
from billing.models import JournalEntry, ResellerBudget, StaffDailyUsage, Transfer
from billing.money import check_amount, clean_text
from portal.audit import audit_log
from portal.errors import Conflict, NotAllowed, PortalError
from portal.roles import has_perm
from providers.capabilities import Capability
from providers.errors import NotSent, ProviderError, RateLimited

logger = logging.getLogger("billing.transfers")

State = Transfer.State
Direction = Transfer.Direction
Acct = ledger.Account
T = TypeVar("T")

DUP_WINDOW_PADDING = timedelta(hours=48)
OPEN_TENANT_STATES = {"active", "frozen"}


# -- helpers -------------------------------------------------------------------------------


def _now() -> datetime:
    return timezone.now()


def _actor_label(actor: Any) -> str:
    return actor.get_username() if getattr(actor, "is_authenticated", False) else "system"


def _require_move_money(actor: Any) -> None:
    if not has_perm(actor, "billing.move_money"):
        raise NotAllowed("You may not move money.", code="forbidden")


def _dispatch_execute(transfer_id: int, countdown: float | None = None) -> None:
    from billing.tasks import transfer_execute_task

    if countdown:
        transfer_execute_task.apply_async((transfer_id,), countdown=countdown)
    else:
        transfer_execute_task.delay(transfer_id)


def _dispatch_reconcile(transfer_id: int, countdown: float | None = None) -> None:
    from billing.tasks import transfer_reconcile_task

    if countdown:
        transfer_reconcile_task.apply_async((transfer_id,), countdown=countdown)
    else:
        transfer_reconcile_task.delay(transfer_id)


def _on_commit(func: Callable[[], None]) -> None:
    # The broker may be unreachable; the row is committed and the sweeper will find it, so
    # a failed publish must never turn a committed transfer into an error for the caller.
    def safe() -> None:
        try:
            func()
        except Exception:  # noqa: BLE001
            logger.warning("could not publish a billing task; the sweeper will pick the row up", exc_info=True)

    transaction.on_commit(safe)


def _with_db_retry(func: Callable[[], T], *, what: str, tries: int = 6) -> T:
    """Run a short DB step, retrying when the database is briefly away (F9).

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


def _assert_no_transaction() -> None:
    if connection.in_atomic_block:
        raise RuntimeError("a provider call must not run inside a database transaction")


def request_fingerprint(*, tenant: Any, amount: Decimal, direction: str, reason: str) -> str:
    canonical = f"{tenant.uuid}|{direction}|{amount}|{reason}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stored_key(actor: Any, key: str) -> str:
    # Keys are scoped to whoever sent them, so two staff members (or API clients) can never
    # collide on, or replay, each other's keys.
    owner = f"u{actor.pk}" if getattr(actor, "is_authenticated", False) else "system"
    return f"{owner}:{key}"


def tenant_currency(tenant: Any) -> str:
    return (tenant.currency or tenant.connection.currency or "USD").upper()


# -- the reseller's budget -------------------------------------------------------------------


def _in_flight_out(connection_id: int, currency: str, *, since: datetime | None = None) -> Decimal:
    """Money reserved for top-ups the provider may not have applied yet (and, with ``since``,
    top-ups recorded as applied after that moment, which a balance read earlier may predate)."""
    q = Q(state__in=Transfer.OPEN)
    if since is not None:
        q |= Q(state=State.SUCCEEDED, completed_at__gte=since)
    return ledger.exact_sum(
        Transfer.objects.filter(q, connection_id=connection_id, currency=currency, direction=Direction.TO_TENANT),
        "amount",
        places=2,
    )


def budget_refresh(*, connection: Any, currency: str | None = None) -> ResellerBudget:
    """Re-read the parent balance and set ``available`` = balance − money in flight.

    The balance is read before the transaction; transfers recorded while it was on the wire
    are subtracted too, which can only make ``available`` lower (the safe side).
    """
    from billing.models import ParentBalanceSnapshot

    currency = (currency or connection.currency or "USD").upper()
    started = _now()
    balance, provider_currency = prov.parent_balance(connection)
    if provider_currency and provider_currency.upper() != currency:
        raise PortalError(f"The parent account is in {provider_currency}, not {currency}.", code="currency_mismatch")
    with transaction.atomic():
        budget, _ = ResellerBudget.objects.select_for_update().get_or_create(connection=connection, currency=currency)
        target = max(Decimal(0), balance - _in_flight_out(connection.pk, currency, since=started))
        target = target.quantize(Decimal("0.0001"))
        # Measured against the journal, not the row: pulls settled before the budget row
        # existed are in the journal only, and the two must agree afterwards.
        delta = target - ledger.balance(account=Acct.RESELLER, connection_id=connection.pk, currency=currency)
        now = _now()
        if delta:
            ledger.move(
                kind=JournalEntry.Kind.ADJUST,
                connection_id=connection.pk,
                currency=currency,
                amount=delta,
                source=Acct.WORLD,
                target=Acct.RESELLER,
                memo=f"parent balance {balance} read from the provider",
            )
        ResellerBudget.objects.filter(pk=budget.pk).update(available=target, provider_balance=balance, refreshed_at=now)
        last = ParentBalanceSnapshot.objects.filter(connection=connection).order_by("-taken_at", "-id").first()
        if last is None or last.balance != balance:
            ParentBalanceSnapshot.objects.create(
                connection=connection, balance=balance, currency=currency, taken_at=now
            )
        if delta:
            audit_log(
                actor=None,
                action="billing.budget.adjusted",
                data={
                    "connection": connection.pk,
                    "currency": currency,
                    "provider_balance": str(balance),
                    "available": str(target),
                    "delta": str(delta),
                },
            )
    budget.refresh_from_db()
    return budget


def _budget(connection: Any, currency: str) -> ResellerBudget:
    budget = ResellerBudget.objects.filter(connection=connection, currency=currency).first()
    stale = budget is None or budget.refreshed_at is None or _now() - budget.refreshed_at > conf.budget_max_age()
    if stale:
        try:
            return budget_refresh(connection=connection, currency=currency)
        except ProviderError:
            if budget is None:
                raise PortalError(
                    "The provider could not be reached to read the parent balance; try again.",
                    code="provider_unavailable",
                    status=503,
                ) from None
            logger.warning("parent balance refresh failed; using the last known budget", exc_info=True)
    assert budget is not None
    return budget


# -- create ----------------------------------------------------------------------------------


def _validate_tenant(tenant: Any, direction: str) -> None:
    if not prov.supports(tenant.connection, Capability.TRANSFER_MONEY):
        reason = prov.unsupported_reason(tenant.connection, Capability.TRANSFER_MONEY)
        raise PortalError(reason or "This provider cannot move money.", field="tenant", code="unsupported")
    if tenant.provider_account_id is None:
        raise PortalError("This tenant has no provider account yet.", field="tenant", code="no_account")
    allowed = OPEN_TENANT_STATES | ({"closing"} if direction == Direction.TO_PARENT else set())
    if tenant.status not in allowed:
        raise PortalError(
            f"Money cannot be moved for a tenant that is {tenant.get_status_display().lower()}.",
            field="tenant",
            code="tenant_state",
        )


def transfer_create(
    *,
    actor: Any,
    tenant: Any,
    amount: Decimal,
    direction: str,
    reason: str,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    request: Any = None,
    origin: str = Transfer.Origin.STAFF,
    job: Any = None,
    dispatch: bool = True,
) -> Transfer:
    """Record a transfer intent (state pending), reserve the money, audit, commit, dispatch.

    Raises PortalError (with ``field``) on bad input or limits, Conflict when the same
    idempotency key comes with different parameters. A replay returns the stored transfer
    with ``replayed = True``.
    """
    _require_move_money(actor)
    if origin == Transfer.Origin.SYSTEM:
        raise NotAllowed("System transfers go through their own services.")
    return _create(
        actor=actor,
        tenant=tenant,
        amount=amount,
        direction=direction,
        reason=reason,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        request=request,
        origin=origin,
        job=job,
        dispatch=dispatch,
        limits=True,
    )


def _create(
    *,
    actor: Any,
    tenant: Any,
    amount: Any,
    direction: str,
    reason: Any,
    idempotency_key: str | None,
    request_hash: str | None,
    request: Any,
    origin: str,
    job: Any,
    dispatch: bool,
    limits: bool,
) -> Transfer:
    if direction not in Direction.values:
        raise PortalError("Choose top-up or pull back.", field="direction", code="invalid")
    reason = clean_text(reason, field="reason", max_length=500)
    currency = tenant_currency(tenant)
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise PortalError("Enter a valid amount.", field="amount", code="amount_invalid")
    amount = check_amount(Decimal(amount), currency=currency)
    fingerprint = request_hash or request_fingerprint(tenant=tenant, amount=amount, direction=direction, reason=reason)
    stored_key = None
    if idempotency_key is not None:
        if (
            not isinstance(idempotency_key, str)
            or not 1 <= len(idempotency_key) <= 200
            or not idempotency_key.isprintable()
        ):
            raise PortalError("Idempotency keys are 1 to 200 printable characters.", field="idempotency_key")
        stored_key = _stored_key(actor, idempotency_key)
        existing = Transfer.objects.filter(client_key=stored_key).first()
        if existing is not None:
            return _replay(existing, fingerprint)
    # After the replay check: a replay returns what was recorded even if the tenant changed since.
    _validate_tenant(tenant, direction)
    connection_obj = tenant.connection
    if currency != (connection_obj.currency or "USD").upper():
        raise PortalError(
            f"This tenant's currency ({currency}) differs from the parent account's "
            f"({connection_obj.currency}); cross-currency transfers are not supported.",
            field="amount",
            code="currency_mismatch",
        )
    requires_approval = False
    if limits:
        if amount > conf.transfer_limit():
            raise PortalError(
                f"The most one transfer may move is {conf.transfer_limit()} {currency}.",
                field="amount",
                code="over_transfer_limit",
            )
        requires_approval = amount > conf.approval_threshold()
    budget = _budget(connection_obj, currency) if direction == Direction.TO_TENANT else None
    short = PortalError(
        "The parent account does not have enough money for this transfer (counting transfers still in flight).",
        field="amount",
        code="insufficient_funds",
    )
    for round_ in (1, 2):
        try:
            return _insert(
                actor=actor,
                tenant=tenant,
                amount=amount,
                direction=direction,
                reason=reason,
                currency=currency,
                stored_key=stored_key,
                fingerprint=fingerprint,
                request=request,
                origin=origin,
                job=job,
                dispatch=dispatch,
                limits=limits,
                requires_approval=requires_approval,
                budget=budget,
            )
        except _BudgetShort:
            assert budget is not None
            # The budget may be behind the provider (the parent was topped up): read it once more.
            fresh = budget.refreshed_at is not None and _now() - budget.refreshed_at <= timedelta(seconds=5)
            if round_ == 2 or fresh:
                raise short from None
            try:
                budget = budget_refresh(connection=connection_obj, currency=currency)
            except ProviderError:
                raise short from None
        except IntegrityError:
            # The same key committed by a concurrent request: hand back what it recorded.
            existing = Transfer.objects.filter(client_key=stored_key).first() if stored_key else None
            if existing is None:
                raise
            return _replay(existing, fingerprint)
    raise AssertionError("unreachable")  # pragma: no cover


class _BudgetShort(Exception):
    pass


def _replay(existing: Transfer, fingerprint: str) -> Transfer:
    if existing.request_hash != fingerprint:
        raise Conflict(
            "This idempotency key was already used with different parameters.",
            field="idempotency_key",
            code="idempotency_key_reused",
        )
    existing.replayed = True  # type: ignore[attr-defined]
    return existing


def _insert(
    *,
    actor: Any,
    tenant: Any,
    amount: Decimal,
    direction: str,
    reason: str,
    currency: str,
    stored_key: str | None,
    fingerprint: str,
    request: Any,
    origin: str,
    job: Any,
    dispatch: bool,
    limits: bool,
    requires_approval: bool,
    budget: ResellerBudget | None,
) -> Transfer:
    now = _now()
    staff = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        if budget is not None:
            if not ledger.counter_add(ResellerBudget, budget.pk, "available", -amount, minimum=Decimal(0)):
                raise _BudgetShort
        if limits and staff is not None:
            usage, _ = StaffDailyUsage.objects.get_or_create(user=staff, day=now.date(), currency=currency)
            if not ledger.counter_add(
                StaffDailyUsage, usage.pk, "amount", amount, maximum=conf.daily_limit_per_staff()
            ):
                raise PortalError(
                    f"This would take you over your daily limit of {conf.daily_limit_per_staff()} {currency}.",
                    field="amount",
                    code="over_daily_limit",
                )
        ident = uuid_mod.uuid4()
        transfer = Transfer.objects.create(
            uuid=ident,
            tenant=tenant,
            connection=tenant.connection,
            child_account_id=int(tenant.provider_account_id),
            direction=direction,
            amount=amount,
            currency=currency,
            reason=reason,
            origin=origin,
            payment_reference=f"rp-{ident}",
            dup_check_from=(now - DUP_WINDOW_PADDING).replace(microsecond=0),
            client_key=stored_key,
            request_hash=fingerprint,
            requires_approval=requires_approval,
            created_by=staff,
            job=job,
            created_at=now,
            next_attempt_at=now,
        )
        source = Acct.RESELLER if direction == Direction.TO_TENANT else ledger.Leg(Acct.TENANT, Decimal(0), tenant.pk)
        ledger.move(
            kind=JournalEntry.Kind.RESERVE,
            connection_id=tenant.connection_id,
            currency=currency,
            amount=amount,
            source=source,
            target=Acct.IN_FLIGHT,
            transfer_id=transfer.pk,
            memo=transfer.payment_reference,
        )
        audit_log(
            actor=actor,
            action="billing.transfer.created",
            tenant_id=tenant.pk,
            request=request,
            data={
                "transfer": str(transfer.uuid),
                "direction": direction,
                "amount": str(amount),
                "currency": currency,
                "reason": reason,
                "origin": origin,
                "payment_reference": transfer.payment_reference,
                "requires_approval": requires_approval,
            },
        )
        if dispatch and not requires_approval:
            _on_commit(lambda: _dispatch_execute(transfer.pk))
    return transfer


def transfer_withdraw_balance(*, actor: Any, tenant: Any, reason: str) -> Transfer | None:
    """Pull the tenant's whole remaining balance (read live from the provider) back to the
    parent. The tenants close flow's system path: no limits or approval, but audited.
    Returns None when there is nothing to pull. Call it outside a database transaction."""
    if tenant.provider_account_id is None or not prov.supports(tenant.connection, Capability.TRANSFER_MONEY):
        return None
    try:
        account = prov.child_account(tenant.connection, int(tenant.provider_account_id))
    except ProviderError as exc:
        raise PortalError(
            "The tenant's balance could not be read from the provider; try again.",
            code="provider_unavailable",
            status=503,
        ) from exc
    if account is None or account.balance is None:
        return None
    amount = Decimal(account.balance).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    if amount < Decimal("0.01"):
        audit_log(
            actor=actor,
            action="billing.transfer.withdraw_skipped",
            tenant_id=tenant.pk,
            data={"balance": str(account.balance), "reason": str(reason)[:500]},
        )
        return None
    return _create(
        actor=actor,
        tenant=tenant,
        amount=amount,
        direction=Direction.TO_PARENT,
        reason=reason or "Tenant closed: remaining balance returned",
        idempotency_key=None,
        request_hash=None,
        request=None,
        origin=Transfer.Origin.SYSTEM,
        job=None,
        dispatch=True,
        limits=False,
    )


# -- approval --------------------------------------------------------------------------------


def transfer_approve(*, actor: Any, transfer: Transfer, request: Any = None) -> Transfer:
    """Maker-checker: a second staff member who may move money releases the transfer."""
    _require_move_money(actor)
    transfer.refresh_from_db()
    if not transfer.requires_approval:
        raise PortalError("This transfer does not need approval.", code="no_approval_needed")
    if transfer.approved_at is not None:
        return transfer
    if transfer.created_by_id == actor.pk:
        raise NotAllowed("A second staff member must approve a transfer you created.", code="same_approver")
    if transfer.state != State.PENDING:
        raise PortalError("Only a pending transfer can be approved.", code="transfer_state")
    now = _now()
    with transaction.atomic():
        done = Transfer.objects.filter(pk=transfer.pk, state=State.PENDING, approved_at__isnull=True).update(
            approved_by=actor, approved_at=now, next_attempt_at=now, updated_at=now
        )
        if not done:
            raise Conflict("The transfer changed meanwhile; reload the page.", code="transfer_changed")
        audit_log(
            actor=actor,
            action="billing.transfer.approved",
            tenant_id=transfer.tenant_id,
            request=request,
            data={"transfer": str(transfer.uuid), "amount": str(transfer.amount), "maker": transfer.created_by_id},
        )
        _on_commit(lambda: _dispatch_execute(transfer.pk))
    transfer.refresh_from_db()
    return transfer


def transfer_reject(*, actor: Any, transfer: Transfer, reason: str, request: Any = None) -> Transfer:
    """Refuse a transfer awaiting approval. It was never sent, so it can safely fail."""
    _require_move_money(actor)
    reason = clean_text(reason, field="reason", max_length=500)
    transfer.refresh_from_db()
    if not transfer.awaiting_approval:
        raise PortalError("Only a transfer awaiting approval can be rejected.", code="transfer_state")
    ok = _finish_failure(
        transfer,
        transfer.attempt,
        from_states=[State.PENDING],
        error=f"rejected: {reason}",
        actor=actor,
        action="billing.transfer.rejected",
        request=request,
        extra=Q(approved_at__isnull=True),
    )
    if not ok:
        raise Conflict("The transfer changed meanwhile; reload the page.", code="transfer_changed")
    transfer.refresh_from_db()
    return transfer


# -- execute -------------------------------------------------------------------------------


def _backoff(attempt: int) -> float:
    ceiling = min(60.0, 2.0 * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


def transfer_execute(*, transfer_id: int, now: datetime | None = None) -> Transfer:
    """Claim a pending/resend transfer, call the provider once, record what happened.

    Safe to run any number of times, concurrently: only the claim's winner calls."""
    now = now or _now()
    transfer = Transfer.objects.select_related("connection").get(pk=transfer_id)
    if transfer.state == State.UNKNOWN or (
        transfer.state == State.SENDING and transfer.lease_until is not None and transfer.lease_until < now
    ):
        return transfer_reconcile(transfer_id=transfer_id, now=now)
    if transfer.state not in (State.PENDING, State.RESEND):
        return transfer
    if transfer.awaiting_approval or transfer.next_attempt_at > now:
        return transfer
    if transfer.attempt >= conf.max_attempts():
        _to_review(
            transfer,
            from_states=[transfer.state],
            attempt=transfer.attempt,
            reason=f"gave up after {transfer.attempt} attempts",
            now=now,
        )
        return Transfer.objects.get(pk=transfer_id)
    attempt = transfer.attempt + 1

    def claim() -> int:
        with transaction.atomic():
            won = (
                Transfer.objects.filter(
                    pk=transfer.pk,
                    state__in=[State.PENDING, State.RESEND],
                    attempt=transfer.attempt,
                    next_attempt_at__lte=now,
                )
                .filter(Q(requires_approval=False) | Q(approved_at__isnull=False))
                .update(
                    state=State.SENDING,
                    attempt=attempt,
                    lease_until=now + conf.lease(),
                    last_sent_at=now,
                    updated_at=now,
                )
            )
            if won:
                audit_log(
                    actor=None,
                    action="billing.transfer.sending",
                    tenant_id=transfer.tenant_id,
                    data={"transfer": str(transfer.uuid), "attempt": attempt, "resend": transfer.state == State.RESEND},
                )
            return won

    if not claim():
        return Transfer.objects.get(pk=transfer_id)  # another worker owns it
    # The claim is committed: from here on the provider may act on it.
    _assert_no_transaction()
    error: Exception | None = None
    sent: prov.Sent | None = None
    try:
        sent = prov.send_transfer(
            transfer.connection,
            direction=transfer.direction,
            child_account_id=int(transfer.child_account_id),
            amount=transfer.amount,
            currency=transfer.currency,
            payment_reference=transfer.payment_reference,
            dup_check_from=transfer.dup_check_from,
        )
    except Exception as exc:  # noqa: BLE001 - every failure is classified below, never dropped
        error = exc
    done = _now()
    if sent is not None:
        _with_db_retry(
            lambda: _finish_success(
                transfer, attempt, from_states=[State.SENDING], now=done, balance_after=sent.balance, provider_txn_id=""
            ),
            what=f"recording {transfer.payment_reference}",
        )
    elif isinstance(error, NotSent | RateLimited):
        _with_db_retry(
            lambda: _to_retry(transfer, attempt, error=error, now=done), what=f"recording {transfer.payment_reference}"
        )
    elif isinstance(error, ProviderError) and prov.is_definite_refusal(error):
        if transfer.ambiguous_attempts:
            # An earlier attempt went unanswered; this refusal says nothing about it. Let the
            # lookup decide (found: succeeded; absent: failed).
            _with_db_retry(
                lambda: _to_unknown(transfer, attempt, error=error, now=done, refused=True),
                what=f"recording {transfer.payment_reference}",
            )
        else:
            _with_db_retry(
                lambda: _finish_failure(
                    transfer,
                    attempt,
                    from_states=[State.SENDING],
                    error=error,
                    actor=None,
                    action="billing.transfer.failed",
                ),
                what=f"recording {transfer.payment_reference}",
            )
    else:
        _with_db_retry(
            lambda: _to_unknown(transfer, attempt, error=error, now=done),
            what=f"recording {transfer.payment_reference}",
        )
    return Transfer.objects.get(pk=transfer_id)


def _error_text(error: Any) -> str:
    if error is None:
        return ""
    text = str(error) if isinstance(error, ProviderError) else f"{type(error).__name__}: {error}"
    return text[:1000]


def _finish_success(
    transfer: Transfer,
    attempt: int,
    *,
    from_states: list[str],
    now: datetime,
    balance_after: Decimal | None,
    provider_txn_id: str,
    actor: Any = None,
    action: str = "billing.transfer.succeeded",
    note: str = "",
    request: Any = None,
    evidence: dict[str, Any] | None = None,
) -> bool:
    with transaction.atomic():
        fields: dict[str, Any] = {
            "state": State.SUCCEEDED,
            "completed_at": now,
            "lease_until": None,
            "updated_at": now,
            "provider_txn_id": provider_txn_id[:64],
            "last_error": "" if action.endswith("succeeded") else note[:1000],
        }
        if balance_after is not None:
            fields["balance_after"] = balance_after
        if evidence is not None:
            fields["evidence"] = evidence
        won = Transfer.objects.filter(pk=transfer.pk, state__in=from_states, attempt=attempt).update(**fields)
        if not won:
            logger.info("%s: stale record of attempt %d ignored (fenced)", transfer.payment_reference, attempt)
            return False
        if transfer.direction == Direction.TO_TENANT:
            ledger.move(
                kind=JournalEntry.Kind.SETTLE,
                connection_id=transfer.connection_id,
                currency=transfer.currency,
                amount=transfer.amount,
                source=Acct.IN_FLIGHT,
                target=ledger.Leg(Acct.TENANT, Decimal(0), transfer.tenant_id),
                transfer_id=transfer.pk,
                memo=transfer.payment_reference,
            )
        else:
            ledger.move(
                kind=JournalEntry.Kind.SETTLE,
                connection_id=transfer.connection_id,
                currency=transfer.currency,
                amount=transfer.amount,
                source=Acct.IN_FLIGHT,
                target=Acct.RESELLER,
                transfer_id=transfer.pk,
                memo=transfer.payment_reference,
            )
            _budget_add(transfer, transfer.amount)
        audit_log(
            actor=actor,
            action=action,
            tenant_id=transfer.tenant_id,
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
        )
        if conf.refresh_after_transfer():
            tenant_id = transfer.tenant_id
            _on_commit(lambda: _dispatch_tenant_refresh(tenant_id))
    return True


def _dispatch_tenant_refresh(tenant_id: int) -> None:
    from billing.tasks import tenant_refresh_task

    tenant_refresh_task.delay(tenant_id)


def _finish_failure(
    transfer: Transfer,
    attempt: int,
    *,
    from_states: list[str],
    error: Any,
    actor: Any,
    action: str,
    request: Any = None,
    extra: Q | None = None,
    now: datetime | None = None,
) -> bool:
    now = now or _now()
    with transaction.atomic():
        rows = Transfer.objects.filter(pk=transfer.pk, state__in=from_states, attempt=attempt)
        if extra is not None:
            rows = rows.filter(extra)
        won = rows.update(
            state=State.FAILED, completed_at=now, lease_until=None, last_error=_error_text(error), updated_at=now
        )
        if not won:
            return False
        _release(transfer)
        audit_log(
            actor=actor,
            action=action,
            tenant_id=transfer.tenant_id,
            request=request,
            data={
                "transfer": str(transfer.uuid),
                "attempt": attempt,
                "amount": str(transfer.amount),
                "error": _error_text(error),
            },
        )
    return True


def _release(transfer: Transfer) -> None:
    """Give a refused transfer's reservation and daily-limit room back."""
    if transfer.direction == Direction.TO_TENANT:
        ledger.move(
            kind=JournalEntry.Kind.RELEASE,
            connection_id=transfer.connection_id,
            currency=transfer.currency,
            amount=transfer.amount,
            source=Acct.IN_FLIGHT,
            target=Acct.RESELLER,
            transfer_id=transfer.pk,
            memo=transfer.payment_reference,
        )
        _budget_add(transfer, transfer.amount)
    else:
        ledger.move(
            kind=JournalEntry.Kind.RELEASE,
            connection_id=transfer.connection_id,
            currency=transfer.currency,
            amount=transfer.amount,
            source=Acct.IN_FLIGHT,
            target=ledger.Leg(Acct.TENANT, Decimal(0), transfer.tenant_id),
            transfer_id=transfer.pk,
            memo=transfer.payment_reference,
        )
    if transfer.created_by_id is not None and transfer.origin != Transfer.Origin.SYSTEM:
        usage = (
            StaffDailyUsage.objects.filter(
                user_id=transfer.created_by_id, day=transfer.created_at.date(), currency=transfer.currency
            )
            .values_list("pk", flat=True)
            .first()
        )
        if usage is not None:
            ledger.counter_add(StaffDailyUsage, usage, "amount", -transfer.amount, minimum=Decimal(0))


def _budget_add(transfer: Transfer, amount: Decimal) -> None:
    """Money back in the reseller's budget (a release, or a pull that arrived). A missing
    row is fine: the journal has it and the next budget_refresh sets the row from both."""
    budget = (
        ResellerBudget.objects.filter(connection_id=transfer.connection_id, currency=transfer.currency)
        .values_list("pk", flat=True)
        .first()
    )
    if budget is not None:
        ledger.counter_add(ResellerBudget, budget, "available", amount)


def _to_unknown(
    transfer: Transfer,
    attempt: int,
    *,
    error: Any,
    now: datetime,
    from_state: str = State.SENDING,
    refused: bool = False,
) -> bool:
    settle = conf.settle()
    with transaction.atomic():
        won = Transfer.objects.filter(pk=transfer.pk, state=from_state, attempt=attempt).update(
            state=State.UNKNOWN,
            lease_until=None,
            empty_lookups=0,
            refused_after_unknown=refused,
            ambiguous_attempts=F("ambiguous_attempts") + (0 if refused else 1),
            first_unknown_at=Coalesce(F("first_unknown_at"), now),
            next_attempt_at=now + settle,
            last_error=("refused after an unanswered attempt: " if refused else "") + _error_text(error),
            updated_at=now,
        )
        if not won:
            return False
        audit_log(
            actor=None,
            action="billing.transfer.unknown",
            tenant_id=transfer.tenant_id,
            data={
                "transfer": str(transfer.uuid),
                "attempt": attempt,
                "error": _error_text(error),
                "refused": refused,
            },
        )
        _on_commit(lambda: _dispatch_reconcile(transfer.pk, countdown=settle.total_seconds() or None))
    return True


def _to_retry(transfer: Transfer, attempt: int, *, error: Any, now: datetime) -> bool:
    if attempt >= conf.max_attempts():
        return _to_review(
            transfer,
            from_states=[State.SENDING],
            attempt=attempt,
            now=now,
            reason=f"not sent after {attempt} attempts: {_error_text(error)}",
        )
    delay = _backoff(attempt)
    retry_after = getattr(error, "retry_after", None)
    if retry_after:
        delay = max(delay, min(float(retry_after), 300.0))
    state = State.RESEND if transfer.ambiguous_attempts else State.PENDING
    with transaction.atomic():
        won = Transfer.objects.filter(pk=transfer.pk, state=State.SENDING, attempt=attempt).update(
            state=state,
            lease_until=None,
            next_attempt_at=now + timedelta(seconds=delay),
            last_error=_error_text(error),
            updated_at=now,
        )
        if not won:
            return False
        audit_log(
            actor=None,
            action="billing.transfer.retry_scheduled",
            tenant_id=transfer.tenant_id,
            data={
                "transfer": str(transfer.uuid),
                "attempt": attempt,
                "error": _error_text(error),
                "delay_seconds": round(delay, 3),
            },
        )
        _on_commit(lambda: _dispatch_execute(transfer.pk, countdown=delay))
    return True


def _to_review(
    transfer: Transfer,
    *,
    from_states: list[str],
    attempt: int,
    reason: str,
    now: datetime,
    evidence: dict[str, Any] | None = None,
) -> bool:
    with transaction.atomic():
        fields: dict[str, Any] = {
            "state": State.NEEDS_REVIEW,
            "lease_until": None,
            "review_reason": reason[:1000],
            "updated_at": now,
        }
        if evidence is not None:
            fields["evidence"] = evidence
        won = Transfer.objects.filter(pk=transfer.pk, state__in=from_states, attempt=attempt).update(**fields)
        if not won:
            return False
        audit_log(
            actor=None,
            action="billing.transfer.needs_review",
            tenant_id=transfer.tenant_id,
            data={
                "transfer": str(transfer.uuid),
                "attempt": attempt,
                "reason": reason,
                "evidence": evidence or {},
            },
        )
    return True


# -- resolve unknown ---------------------------------------------------------------------------


def _expire_lease(transfer: Transfer, now: datetime) -> bool:
    """A sending row whose lease ran out: its worker died or stalled. The call may or may
    not have reached the provider, so it is unknown (F7, F8)."""
    return _to_unknown(
        transfer, transfer.attempt, error=RuntimeError("lease expired: the worker stopped answering"), now=now
    )


def _evidence(found: list[prov.Found]) -> dict[str, Any]:
    return {
        "provider_transactions": [
            {
                "transaction_id": f.transaction_id,
                "amount": str(f.amount),
                "currency": f.currency,
                "performed_at": f.performed_at.isoformat(),
                "type": f.transaction_type,
                "account_id": f.account_id,
            }
            for f in found
        ]
    }


def transfer_reconcile(*, transfer_id: int, now: datetime | None = None) -> Transfer:
    """Resolve an unknown transfer by looking its reference up in the provider's history;
    only two empty lookups (each at least the settle window after the last send) lead to a
    resend with the same reference and duplicate window."""
    now = now or _now()
    transfer = Transfer.objects.select_related("connection").get(pk=transfer_id)
    if transfer.state == State.SENDING and transfer.lease_until is not None and transfer.lease_until < now:
        _with_db_retry(lambda: _expire_lease(transfer, now), what="expiring a lease")
        transfer = Transfer.objects.select_related("connection").get(pk=transfer_id)
    if transfer.state != State.UNKNOWN or transfer.next_attempt_at > now:
        return transfer
    attempt, empties = transfer.attempt, transfer.empty_lookups
    _assert_no_transaction()
    try:
        found = prov.lookup_transfer(
            transfer.connection,
            direction=transfer.direction,
            payment_reference=transfer.payment_reference,
            dup_check_from=transfer.dup_check_from,
            now=now,
        )
    except ProviderError as exc:
        delay = _backoff(empties + 1)
        Transfer.objects.filter(pk=transfer.pk, state=State.UNKNOWN, attempt=attempt).update(
            next_attempt_at=now + timedelta(seconds=delay),
            last_error=f"lookup failed: {_error_text(exc)}"[:1000],
            updated_at=now,
        )
        _dispatch_reconcile(transfer.pk, countdown=delay)
        return Transfer.objects.get(pk=transfer_id)
    if len(found) == 1 and found[0].amount == transfer.amount:
        _with_db_retry(
            lambda: _finish_success(
                transfer,
                attempt,
                from_states=[State.UNKNOWN],
                now=now,
                balance_after=None,
                provider_txn_id=found[0].transaction_id,
                evidence=_evidence(found),
                note="found in the provider's history",
            ),
            what="recording a lookup",
        )
        return Transfer.objects.get(pk=transfer_id)
    if found:
        reason = (
            f"{len(found)} provider transactions carry this reference"
            if len(found) > 1
            else f"the provider moved {found[0].amount}, the portal asked for {transfer.amount}"
        )
        _to_review(
            transfer, from_states=[State.UNKNOWN], attempt=attempt, reason=reason, now=now, evidence=_evidence(found)
        )
        return Transfer.objects.get(pk=transfer_id)
    # Nothing found. Believe it only once the provider has had time to show the transfer.
    settle = conf.settle()
    if transfer.last_sent_at is not None and now - transfer.last_sent_at < settle:
        Transfer.objects.filter(pk=transfer.pk, state=State.UNKNOWN, attempt=attempt).update(
            next_attempt_at=transfer.last_sent_at + settle, updated_at=now
        )
        return Transfer.objects.get(pk=transfer_id)
    refused = transfer.refused_after_unknown
    if transfer.first_unknown_at is not None and now - transfer.first_unknown_at > conf.unknown_review_after():
        _to_review(
            transfer,
            from_states=[State.UNKNOWN],
            attempt=attempt,
            now=now,
            reason="still unresolved after the review deadline; nothing found at the provider",
        )
        return Transfer.objects.get(pk=transfer_id)
    if empties + 1 < 2:
        with transaction.atomic():
            if Transfer.objects.filter(
                pk=transfer.pk, state=State.UNKNOWN, attempt=attempt, empty_lookups=empties
            ).update(empty_lookups=empties + 1, next_attempt_at=now + settle, updated_at=now):
                audit_log(
                    actor=None,
                    action="billing.transfer.lookup_empty",
                    tenant_id=transfer.tenant_id,
                    data={"transfer": str(transfer.uuid), "attempt": attempt, "lookups": empties + 1},
                )
                _on_commit(lambda: _dispatch_reconcile(transfer.pk, countdown=settle.total_seconds() or None))
        return Transfer.objects.get(pk=transfer_id)
    if refused:
        # The last attempt was refused outright and two lookups show nothing: no money moved.
        _finish_failure(
            transfer,
            attempt,
            from_states=[State.UNKNOWN],
            error=transfer.last_error,
            actor=None,
            action="billing.transfer.failed",
            extra=Q(empty_lookups=empties),
            now=now,
        )
        return Transfer.objects.get(pk=transfer_id)
    if attempt >= conf.max_attempts():
        _to_review(
            transfer,
            from_states=[State.UNKNOWN],
            attempt=attempt,
            now=now,
            reason=f"not found at the provider after {attempt} attempts",
        )
        return Transfer.objects.get(pk=transfer_id)
    with transaction.atomic():
        won = Transfer.objects.filter(
            pk=transfer.pk, state=State.UNKNOWN, attempt=attempt, empty_lookups=empties
        ).update(state=State.RESEND, empty_lookups=empties + 1, next_attempt_at=now, updated_at=now)
        if won:
            audit_log(
                actor=None,
                action="billing.transfer.resend",
                tenant_id=transfer.tenant_id,
                data={
                    "transfer": str(transfer.uuid),
                    "attempt": attempt,
                    "reason": "two empty lookups after the settle window",
                },
            )
            _on_commit(lambda: _dispatch_execute(transfer.pk))
    return Transfer.objects.get(pk=transfer_id)


# -- sweeper -----------------------------------------------------------------------------------


def transfer_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Re-dispatch what fell through the cracks: pending rows never picked up (a lost
    publish, F10), due resends and retries, expired leases (a killed worker, F7/F8) and due
    lookups. Dispatching twice is harmless: the claim admits one worker."""
    now = now or _now()
    counts = {"pending": 0, "resend": 0, "expired": 0, "unknown": 0}
    approved = Q(requires_approval=False) | Q(approved_at__isnull=False)
    pending = list(
        Transfer.objects.filter(approved, state=State.PENDING, next_attempt_at__lte=now - conf.pending_grace())
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    # Retries scheduled by backoff are due at next_attempt_at, not grace later.
    pending += list(
        Transfer.objects.filter(approved, state=State.PENDING, attempt__gt=0, next_attempt_at__lte=now)
        .exclude(pk__in=pending)
        .values_list("pk", flat=True)[:limit]
    )
    for pk in pending:
        _dispatch_execute(pk)
    counts["pending"] = len(pending)
    resend = list(
        Transfer.objects.filter(state=State.RESEND, next_attempt_at__lte=now).values_list("pk", flat=True)[:limit]
    )
    for pk in resend:
        _dispatch_execute(pk)
    counts["resend"] = len(resend)
    for transfer in Transfer.objects.filter(state=State.SENDING, lease_until__lt=now)[:limit]:
        if _expire_lease(transfer, now):
            counts["expired"] += 1
    unknown = list(
        Transfer.objects.filter(state=State.UNKNOWN, next_attempt_at__lte=now).values_list("pk", flat=True)[:limit]
    )
    for pk in unknown:
        _dispatch_reconcile(pk)
    counts["unknown"] = len(unknown)
    if any(counts.values()):
        logger.info("transfer sweep: %s", counts)
    return counts


# -- human resolution ---------------------------------------------------------------------------


def transfer_resolve(*, actor: Any, transfer: Transfer, outcome: str, note: str, request: Any = None) -> Transfer:
    """Staff settle a transfer that needs review. ``recheck`` looks it up again;
    ``succeeded`` needs the provider to show the money moved; ``failed`` needs a fresh lookup
    that finds nothing (nothing is ever marked failed that the provider may have applied)."""
    _require_move_money(actor)
    note = clean_text(note, field="note", max_length=1000)
    transfer.refresh_from_db()
    if transfer.state not in (State.NEEDS_REVIEW, State.UNKNOWN):
        raise PortalError("Only an unresolved transfer can be resolved.", code="transfer_state")
    now = _now()
    attempt = transfer.attempt
    if outcome == "recheck":
        with transaction.atomic():
            if not Transfer.objects.filter(pk=transfer.pk, state=transfer.state, attempt=attempt).update(
                state=State.UNKNOWN, empty_lookups=0, next_attempt_at=now, first_unknown_at=now, updated_at=now
            ):
                raise Conflict("The transfer changed meanwhile; reload the page.", code="transfer_changed")
            audit_log(
                actor=actor,
                action="billing.transfer.recheck",
                tenant_id=transfer.tenant_id,
                request=request,
                data={"transfer": str(transfer.uuid), "note": note},
            )
            _on_commit(lambda: _dispatch_reconcile(transfer.pk))
        transfer.refresh_from_db()
        return transfer
    if outcome not in ("succeeded", "failed"):
        raise PortalError("Choose recheck, succeeded or failed.", field="outcome")
    try:
        found = prov.lookup_transfer(
            transfer.connection,
            direction=transfer.direction,
            payment_reference=transfer.payment_reference,
            dup_check_from=transfer.dup_check_from,
            now=now,
        )
    except ProviderError as exc:
        raise PortalError(
            "The provider could not be asked; try again.", code="provider_unavailable", status=503
        ) from exc
    if outcome == "failed":
        if found:
            raise PortalError(
                "The provider shows this transfer; it cannot be marked failed.",
                field="outcome",
                code="provider_applied",
            )
        ok = _finish_failure(
            transfer,
            attempt,
            from_states=[transfer.state],
            error=f"resolved by staff: {note}",
            actor=actor,
            action="billing.transfer.resolved_failed",
            request=request,
            now=now,
        )
    else:
        if not found:
            raise PortalError(
                "The provider does not show this transfer; it cannot be marked succeeded.",
                field="outcome",
                code="provider_absent",
            )
        ok = _finish_success(
            transfer,
            attempt,
            from_states=[transfer.state],
            now=now,
            balance_after=None,
            provider_txn_id=found[0].transaction_id,
            actor=actor,
            action="billing.transfer.resolved_succeeded",
            note=note,
            request=request,
            evidence=_evidence(found),
        )
    if not ok:
        raise Conflict("The transfer changed meanwhile; reload the page.", code="transfer_changed")
    transfer.refresh_from_db()
    return transfer
