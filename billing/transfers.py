"""Transfers: record an intent, approve or reject it, and send it to the provider.

A transfer moves money between the reseller's parent account and one tenant. Its row, with
the payment_reference the provider will see, is committed before the provider is called,
and no transaction is open during the call. Every later change of its state goes through
billing.transitions.transition (the state diagram and what each state means are in
docs/money.md). Nothing becomes ``failed`` unless the provider answered with a refusal, or
a lookup proved the money did not move. Unknown outcomes are resolved in
billing.resolution.
"""

from __future__ import annotations

import hashlib
import logging
import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from billing import conf, ledger
from billing import provider as prov
from billing.budget import BudgetShort, budget_refresh, budget_reserve, budget_reserve_fresh, current_budget
from billing.models import ResellerBudget, StaffDailyUsage, Transfer
from billing.money import check_amount, clean_text
from billing.resolution import transfer_reconcile, transfer_resolve, transfer_sweep
from billing.transitions import (
    Actor,
    Audit,
    assert_no_transaction,
    claim_for_send,
    dispatch_execute,
    finish_failure,
    finish_success,
    ledger_reserve,
    require_move_money,
    to_retry,
    to_review,
    to_unknown,
    transition,
    with_db_retry,
)
from portal import inputs
from portal.audit import audit_log
from portal.errors import Conflict, NotAllowed, PortalError
from portal.events import publish_on_commit
from portal.models import Job
from portal.roles import has_perm
from providers.capabilities import Capability
from providers.errors import NotSent, ProviderError, RateLimited
from tenants.models import PbxUser, Tenant
from tenants.services.users import may_manage_pbx_users

logger = logging.getLogger("billing.transfers")

State = Transfer.State
Direction = Transfer.Direction

# Re-exported: other modules import these from here.
__all__ = [
    "budget_refresh",
    "request_fingerprint",
    "tenant_currency",
    "transfer_approve",
    "transfer_create",
    "transfer_execute",
    "transfer_reconcile",
    "transfer_reject",
    "transfer_resolve",
    "transfer_sweep",
    "transfer_withdraw_balance",
    "user_transfer_create",
    "user_transfer_refusal",
]

DUP_WINDOW_PADDING = timedelta(hours=48)
OPEN_TENANT_STATES = {"active", "frozen"}


def request_fingerprint(
    *,
    tenant: Tenant,
    amount: Decimal,
    direction: str,
    reason: str,
    customer_description: str = "",
    pbx_user: PbxUser | None = None,
) -> str:
    canonical = f"{tenant.uuid}|{direction}|{amount}|{reason}"
    if customer_description:  # only when given, so the fingerprints of older requests stay the same
        canonical += f"|{customer_description}"
    if pbx_user is not None:
        canonical += f"|user:{pbx_user.pk}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stored_key(actor: Actor, key: str) -> str:
    # Keys are scoped to whoever sent them, so two staff members (or API clients) can never
    # collide on, or replay, each other's keys.
    owner = f"u{actor.pk}" if actor is not None and actor.is_authenticated else "system"
    return f"{owner}:{key}"


def _checked_key(actor: Actor, key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not key.isprintable():
        raise PortalError("Idempotency keys are 1 to 200 printable characters.", field="idempotency_key")
    return _stored_key(actor, key)


def tenant_currency(tenant: Tenant) -> str:
    return (tenant.currency or tenant.connection.currency or "USD").upper()


# -- create ----------------------------------------------------------------------------------


def _tenant_refusal(tenant: Tenant, direction: str) -> PortalError | None:
    # The one gate every create path runs (single, bulk, API) before anything is recorded.
    # prov.supports reads the probed methods too: a provider that no longer answers
    # TransferMoneyToChildAccount refuses here, with when it was checked.
    capability = Capability.PBX_USER_TRANSFERS if direction in Transfer.USER_DIRECTIONS else Capability.TRANSFER_MONEY
    if not prov.supports(tenant.connection, capability):
        reason = prov.unsupported_reason(tenant.connection, capability)
        return PortalError(reason or "This provider cannot move money.", field="tenant", code="unsupported")
    if tenant.provider_account_id is None:
        return PortalError("This tenant has no provider account yet.", field="tenant", code="no_account")
    allowed = OPEN_TENANT_STATES | ({"closing"} if direction == Direction.TO_PARENT else set())
    if tenant.status not in allowed:
        if direction in Transfer.USER_DIRECTIONS:
            message = f"Money cannot be moved inside a company that is {tenant.get_status_display().lower()}."
        elif tenant.status == Tenant.Status.CLOSED:
            message = "Closed tenants cannot receive money."
        elif tenant.status == Tenant.Status.CLOSING:
            message = "A closing tenant cannot receive money; its balance can only be pulled back."
        else:
            message = f"Money cannot be moved for a tenant that is {tenant.get_status_display().lower()}."
        return PortalError(message, field="tenant", code="tenant_state")
    return None


def _validate_tenant(tenant: Tenant, direction: str, pbx_user: PbxUser | None = None) -> None:
    refusal = _tenant_refusal(tenant, direction)
    if refusal is None and pbx_user is not None:
        refusal = _user_refusal(tenant, pbx_user, direction)
    if refusal is not None:
        raise refusal


def may_move_money(actor: Actor, tenant: Tenant, direction: str) -> tuple[bool, str | None]:
    """Would :func:`transfer_create` accept ``direction`` for this actor and tenant (amount and
    limits aside)? The same checks, asked before a page offers the form: (True, None) or
    (False, the reason a person reads)."""
    if not has_perm(actor, "billing.move_money"):
        return False, "You may not move money."
    refusal = _tenant_refusal(tenant, direction)
    return (False, refusal.message) if refusal is not None else (True, None)


#: The directions a tenant-level form offers (the PBX-user ones live on the user's page).
TENANT_FORM_DIRECTIONS = (Direction.TO_TENANT, Direction.TO_PARENT)


def offered_directions(actor: Actor, tenant: Tenant) -> list[tuple[str, str, bool, str | None]]:
    """(value, label, allowed, reason) for each direction a tenant's move-money form may show,
    from :func:`may_move_money`: what the form's POST would accept."""
    return [(d.value, d.label, *may_move_money(actor, tenant, d.value)) for d in TENANT_FORM_DIRECTIONS]


def transfer_create(
    *,
    actor: Actor,
    tenant: Tenant,
    amount: Decimal,
    direction: str,
    reason: str,
    customer_description: object = "",
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    request: HttpRequest | None = None,
    origin: str = Transfer.Origin.STAFF,
    job: Job | None = None,
    dispatch: bool = True,
    key_is_new: bool = False,
    in_transaction: Callable[[Transfer], object] | None = None,
) -> Transfer:
    """Record a transfer intent (state pending), reserve the money, audit, commit, dispatch.

    Raises PortalError (with ``field``) on bad input or limits, Conflict when the same
    idempotency key comes with different parameters. A replay returns the stored transfer
    with ``replayed = True``.

    ``key_is_new``: the caller has just claimed ``idempotency_key`` for the first time (the
    REST API's own key record), so the replay check is not read first; a transfer that holds
    the key all the same (its API record was reaped) is found by the unique constraint on
    the key, which rolls the new one back whole and replays it.

    ``in_transaction(transfer)`` runs last in the transaction that writes the new transfer
    (never for a replay): the REST API stores its idempotency key and response there. What
    it raises rolls the whole transfer back and leaves ``transfer_create``.
    """
    require_move_money(actor)
    if origin == Transfer.Origin.SYSTEM:
        raise NotAllowed("System transfers go through their own services.")
    return _create(
        actor=actor,
        tenant=tenant,
        amount=amount,
        direction=direction,
        reason=reason,
        customer_description=customer_description,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        request=request,
        origin=origin,
        job=job,
        dispatch=dispatch,
        limits=True,
        key_is_new=key_is_new,
        in_transaction=in_transaction,
    )


def _create(
    *,
    actor: Actor,
    tenant: Tenant,
    amount: object,
    direction: str,
    reason: object,
    idempotency_key: str | None,
    customer_description: object = "",
    request_hash: str | None,
    request: HttpRequest | None,
    origin: str,
    job: Job | None,
    dispatch: bool,
    limits: bool,
    key_is_new: bool = False,
    pbx_user: PbxUser | None = None,
    in_transaction: Callable[[Transfer], object] | None = None,
) -> Transfer:
    if direction not in Direction.values or (direction in Transfer.USER_DIRECTIONS) != (pbx_user is not None):
        raise PortalError("Choose top-up or pull back.", field="direction", code="invalid")
    reason = clean_text(reason, field="reason", max_length=500)
    # The words the customer sees on the statement; the reason stays with staff.
    customer_description = inputs.text(
        customer_description, field="customer_description", label="description for the customer", max_length=200
    )
    currency = tenant_currency(tenant)
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise PortalError("Enter a valid amount.", field="amount", code="amount_invalid")
    amount = check_amount(Decimal(amount), currency=currency)
    fingerprint = request_hash or request_fingerprint(
        tenant=tenant,
        amount=amount,
        direction=direction,
        reason=reason,
        customer_description=customer_description,
        pbx_user=pbx_user,
    )
    stored_key = None
    if idempotency_key is not None:
        stored_key = _checked_key(actor, idempotency_key)
        existing = None if key_is_new else Transfer.objects.filter(client_key=stored_key).first()
        if existing is not None:
            return _replay(existing, fingerprint)
    # After the replay check: a replay returns what was recorded even if the tenant changed since.
    _validate_tenant(tenant, direction, pbx_user)
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
    # A top-up first tries the one-statement reservation on a fresh budget row (round 0);
    # when the row is missing, stale or short, the budget is read (and refreshed when
    # stale) and reserved by its row (round 1), and refreshed once more if short (round 2).
    budget: ResellerBudget | None = None
    short = PortalError(
        "The parent account does not have enough money for this transfer (counting transfers still in flight).",
        field="amount",
        code="insufficient_funds",
    )
    intent = _Intent(
        tenant=tenant,
        amount=amount,
        direction=direction,
        reason=reason,
        customer_description=customer_description,
        currency=currency,
        stored_key=stored_key,
        fingerprint=fingerprint,
        origin=origin,
        job=job,
        limits=limits,
        requires_approval=requires_approval,
        pbx_user=pbx_user,
    )
    for round_ in (0, 1, 2) if intent.top_up else (1,):
        try:
            return _insert(
                intent, actor=actor, request=request, dispatch=dispatch, budget=budget, in_transaction=in_transaction
            )
        except BudgetShort:
            if budget is None:
                budget = current_budget(connection_obj, currency)
                continue
            # The budget may be behind the provider (the parent was topped up): read it once more.
            fresh = budget.refreshed_at is not None and timezone.now() - budget.refreshed_at <= timedelta(seconds=5)
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


def _replay(existing: Transfer, fingerprint: str) -> Transfer:
    if existing.request_hash != fingerprint:
        raise Conflict(
            "This idempotency key was already used with different parameters.",
            field="idempotency_key",
            code="idempotency_key_reused",
        )
    existing.replayed = True  # type: ignore[attr-defined]
    return existing


@dataclass(frozen=True)
class _Intent:
    """A transfer checked and ready to record: what :func:`_insert` writes."""

    tenant: Tenant
    amount: Decimal
    direction: str
    reason: str
    customer_description: str
    currency: str
    stored_key: str | None
    fingerprint: str
    origin: str
    job: Job | None
    limits: bool  # the transfer limit and the staff daily limit apply
    requires_approval: bool
    pbx_user: PbxUser | None

    @property
    def top_up(self) -> bool:
        """Money to the tenant: the reseller's budget is reserved for it."""
        return self.direction == Direction.TO_TENANT


def _insert(
    intent: _Intent,
    *,
    actor: Actor,
    request: HttpRequest | None,
    dispatch: bool,
    budget: ResellerBudget | None,
    in_transaction: Callable[[Transfer], object] | None,
) -> Transfer:
    """One transaction: the budget reservation (top-ups), the staff member's daily usage,
    the row, the journal's reserve entry, the audit event, the caller's ``in_transaction``;
    the task after the commit. ``budget``: the budget row to reserve on; without it a top-up
    tries the one-statement reservation and raises BudgetShort when that does not hold."""
    tenant, amount, currency, pbx_user = intent.tenant, intent.amount, intent.currency, intent.pbx_user
    now = timezone.now()
    staff = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        if budget is not None:
            budget_reserve(budget, amount)
        elif intent.top_up and not budget_reserve_fresh(tenant.connection_id, currency, amount):
            raise BudgetShort  # nothing written yet: the caller reads the budget and tries again
        if intent.limits and staff is not None:
            _take_daily_usage(staff, now.date(), currency, amount)
        assert tenant.provider_account_id is not None  # _validate_tenant checked it
        ident = uuid_mod.uuid4()
        transfer = Transfer.objects.create(
            uuid=ident,
            tenant=tenant,
            connection=tenant.connection,
            child_account_id=int(tenant.provider_account_id),
            pbx_user=pbx_user,
            provider_user_id=pbx_user.provider_user_id if pbx_user is not None else None,
            direction=intent.direction,
            amount=amount,
            currency=currency,
            reason=intent.reason,
            customer_description=intent.customer_description,
            origin=intent.origin,
            payment_reference=f"rp-{ident}",
            dup_check_from=(now - DUP_WINDOW_PADDING).replace(microsecond=0),
            client_key=intent.stored_key,
            request_hash=intent.fingerprint,
            requires_approval=intent.requires_approval,
            created_by=staff,
            job=intent.job,
            created_at=now,
            next_attempt_at=now,
        )
        ledger_reserve(transfer)
        audit_log(
            actor=actor,
            action="billing.transfer.created",
            tenant_id=tenant.pk,
            request=request,
            data={
                "transfer": str(transfer.uuid),
                "direction": intent.direction,
                "amount": str(amount),
                "currency": currency,
                "reason": intent.reason,
                "customer_description": intent.customer_description,
                "origin": intent.origin,
                "payment_reference": transfer.payment_reference,
                "requires_approval": intent.requires_approval,
                **({"pbx_user": pbx_user.provider_user_id} if pbx_user is not None else {}),
            },
        )
        if in_transaction is not None:
            in_transaction(transfer)
        if dispatch and not intent.requires_approval:
            publish_on_commit(lambda: dispatch_execute(transfer.pk), what=f"sending {transfer.payment_reference}")
    return transfer


def _take_daily_usage(staff: Any, day: date, currency: str, amount: Decimal) -> None:
    """Count ``amount`` against the staff member's daily limit: one statement when today's
    row exists; the row is created on the first transfer of the day."""
    maximum = conf.daily_limit_per_staff()
    where = {"user": staff, "day": day, "currency": currency}
    if ledger.counter_add_where(StaffDailyUsage, where, "amount", amount, maximum=maximum):
        return
    usage, _ = StaffDailyUsage.objects.get_or_create(**where)
    if not ledger.counter_add(StaffDailyUsage, usage.pk, "amount", amount, maximum=maximum):
        raise PortalError(
            f"This would take you over your daily limit of {maximum} {currency}.",
            field="amount",
            code="over_daily_limit",
        )


def transfer_withdraw_balance(*, actor: Actor, tenant: Tenant, reason: str) -> Transfer | None:
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


# -- money inside one account: the company balance and one PBX user ------------------------


def _user_refusal(tenant: Tenant, pbx_user: PbxUser, direction: str) -> PortalError | None:
    if pbx_user.tenant_id != tenant.pk:
        return PortalError("No such user.", field="user", code="not_found", status=404)
    if pbx_user.deleted_at is not None:
        return PortalError("This user was deleted.", field="user", code="user_gone")
    if not pbx_user.has_own_balance:
        return PortalError(
            "This user spends the company's balance and has no balance of its own to move money to or from.",
            field="user",
            code="no_own_balance",
        )
    return None


def user_transfer_refusal(actor: Actor, tenant: Tenant, pbx_user: PbxUser, direction: str) -> str | None:
    """Why :func:`user_transfer_create` would refuse this actor, tenant, user and direction
    (amount aside), asked first by the pages that offer the form; None when it would not."""
    if not may_manage_pbx_users(actor, tenant):
        return "You may not move money for this company's users."
    refusal = _tenant_refusal(tenant, direction) or _user_refusal(tenant, pbx_user, direction)
    return refusal.message if refusal is not None else None


def user_transfer_create(
    *,
    actor: Actor,
    tenant: Tenant,
    pbx_user: PbxUser,
    amount: Decimal,
    direction: str,
    customer_description: object = "",
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    request: HttpRequest | None = None,
    origin: str = Transfer.Origin.STAFF,
    dispatch: bool = True,
    key_is_new: bool = False,
) -> Transfer:
    """Move money between the tenant's account and one of its PBX users' own balance
    (``to_user`` / ``from_user``), through the same state machine as every transfer.

    Staff who may move money and the tenant's own owner may. The reseller's budget and the
    staff daily limits do not apply: the money stays inside the tenant's account (its journal
    line nets to zero once the transfer ends). The most one transfer may move still does."""
    if not may_manage_pbx_users(actor, tenant):
        raise NotAllowed("You may not move money for this company's users.", code="forbidden")
    if direction not in Transfer.USER_DIRECTIONS:
        raise PortalError("Choose to the user or from the user.", field="direction", code="invalid")
    if isinstance(amount, Decimal) and amount.is_finite() and amount > conf.transfer_limit():
        raise PortalError(
            f"The most one transfer may move is {conf.transfer_limit()} {tenant_currency(tenant)}.",
            field="amount",
            code="over_transfer_limit",
        )
    words = "to user" if direction == Direction.TO_USER else "from user"
    return _create(
        actor=actor,
        tenant=tenant,
        amount=amount,
        direction=direction,
        reason=f"Money moved {words} {pbx_user.user_name}",
        customer_description=customer_description,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        request=request,
        origin=origin,
        job=None,
        dispatch=dispatch,
        limits=False,
        key_is_new=key_is_new,
        pbx_user=pbx_user,
    )


# -- approval --------------------------------------------------------------------------------


def transfer_approve(*, actor: Actor, transfer: Transfer, request: HttpRequest | None = None) -> Transfer:
    """Maker-checker: a second staff member who may move money releases the transfer."""
    require_move_money(actor)
    transfer.refresh_from_db()
    if not transfer.requires_approval:
        raise PortalError("This transfer does not need approval.", code="no_approval_needed")
    if transfer.approved_at is not None:
        return transfer
    if actor is None or transfer.created_by_id == actor.pk:
        raise NotAllowed("A second staff member must approve a transfer you created.", code="same_approver")
    if transfer.state != State.PENDING:
        raise PortalError("Only a pending transfer can be approved.", code="transfer_state")
    now = timezone.now()
    approved = transition(
        transfer,
        to=State.PENDING,
        from_states=[State.PENDING],
        attempt=None,
        now=now,
        where=Q(approved_at__isnull=True),
        fields={"approved_by": actor, "approved_at": now, "next_attempt_at": now},
        audit=Audit(
            action="billing.transfer.approved",
            actor=actor,
            request=request,
            data={"transfer": str(transfer.uuid), "amount": str(transfer.amount), "maker": transfer.created_by_id},
        ),
        publish=lambda: dispatch_execute(transfer.pk),
    )
    if not approved:
        raise Conflict("The transfer changed meanwhile; reload the page.", code="transfer_changed")
    transfer.refresh_from_db()
    return transfer


def transfer_reject(*, actor: Actor, transfer: Transfer, reason: str, request: HttpRequest | None = None) -> Transfer:
    """Refuse a transfer awaiting approval. It was never sent, so it can safely fail."""
    require_move_money(actor)
    reason = clean_text(reason, field="reason", max_length=500)
    transfer.refresh_from_db()
    if not transfer.awaiting_approval:
        raise PortalError("Only a transfer awaiting approval can be rejected.", code="transfer_state")
    ok = finish_failure(
        transfer,
        transfer.attempt,
        from_states=[State.PENDING],
        error=f"rejected: {reason}",
        actor=actor,
        action="billing.transfer.rejected",
        request=request,
        where=Q(approved_at__isnull=True),
        now=timezone.now(),
    )
    if not ok:
        raise Conflict("The transfer changed meanwhile; reload the page.", code="transfer_changed")
    transfer.refresh_from_db()
    return transfer


# -- execute -------------------------------------------------------------------------------


def transfer_execute(*, transfer_id: int, now: datetime | None = None) -> Transfer:
    """Claim a pending/resend transfer, call the provider once, record what happened.

    Safe to run any number of times, concurrently: only the claim's winner calls. On
    PostgreSQL the claim is one UPDATE that returns the row with its connection
    (``claim_for_send``); when it claims nothing, and on SQLite, the row is read and the
    claim is the conditional UPDATE of ``transition``. The claim and the outcome each are
    one transaction, and the winner's instance is kept up to date in memory (``apply``), so
    it is not read back."""
    now = now or timezone.now()
    claimed_row = claim_for_send(transfer_id, now=now)
    if claimed_row is not None:
        return _send_claimed(claimed_row)
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
        to_review(
            transfer,
            from_states=[transfer.state],
            attempt=transfer.attempt,
            reason=f"gave up after {transfer.attempt} attempts",
            now=now,
        )
        return Transfer.objects.get(pk=transfer_id)
    attempt = transfer.attempt + 1
    claimed = transition(
        transfer,
        to=State.SENDING,
        from_states=[State.PENDING, State.RESEND],
        attempt=transfer.attempt,
        now=now,
        where=Q(next_attempt_at__lte=now) & (Q(requires_approval=False) | Q(approved_at__isnull=False)),
        fields={"attempt": attempt, "lease_until": now + conf.lease(), "last_sent_at": now},
        audit=Audit(
            action="billing.transfer.sending",
            data={"transfer": str(transfer.uuid), "attempt": attempt, "resend": transfer.state == State.RESEND},
        ),
        apply=True,
    )
    if not claimed:
        return Transfer.objects.get(pk=transfer_id)  # another worker owns it
    return _send_claimed(transfer)


def _send_claimed(transfer: Transfer) -> Transfer:
    """The claimed attempt (``transfer.attempt``, committed): call the provider once with no
    transaction open, then record the outcome fenced on that attempt."""
    transfer_id, attempt = transfer.pk, transfer.attempt
    # The claim is committed: from here on the provider may act on it.
    assert_no_transaction()
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
            user_id=int(transfer.provider_user_id) if transfer.provider_user_id is not None else None,
        )
    except Exception as exc:  # noqa: BLE001 - every failure is classified below, never dropped
        error = exc
    done = timezone.now()
    what = f"recording {transfer.payment_reference}"
    recorded: bool
    if sent is not None:
        balance = sent.balance
        recorded = with_db_retry(
            lambda: finish_success(
                transfer,
                attempt,
                from_states=[State.SENDING],
                now=done,
                balance_after=balance,
                provider_txn_id="",
                apply=True,
            ),
            what=what,
        )
    elif isinstance(error, NotSent | RateLimited):
        not_sent = error
        recorded = with_db_retry(lambda: to_retry(transfer, attempt, error=not_sent, now=done, apply=True), what=what)
    elif isinstance(error, ProviderError) and prov.is_definite_refusal(error):
        refusal = error
        if transfer.ambiguous_attempts:
            # An earlier attempt went unanswered; this refusal says nothing about it. Let the
            # lookup decide (found: succeeded; absent: failed).
            recorded = with_db_retry(
                lambda: to_unknown(transfer, attempt, error=refusal, now=done, refused=True, apply=True), what=what
            )
        else:
            recorded = with_db_retry(
                lambda: finish_failure(
                    transfer,
                    attempt,
                    from_states=[State.SENDING],
                    error=refusal,
                    actor=None,
                    action="billing.transfer.failed",
                    now=timezone.now(),
                    apply=True,
                ),
                what=what,
            )
    else:
        recorded = with_db_retry(lambda: to_unknown(transfer, attempt, error=error, now=done, apply=True), what=what)
    # The fence lost (the lease expired and the row moved on): what the row holds now.
    return transfer if recorded else Transfer.objects.get(pk=transfer_id)
