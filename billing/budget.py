"""The reseller's budget: what the portal may still move out of one parent account.

``ResellerBudget.available`` is an authorization counter: a top-up reserves its amount from
it with a conditional update when it is created, and a CHECK constraint keeps it at or
above zero, so two top-ups can never together spend money the parent does not have. Every
change to the counter is mirrored by a journal entry on the ``reseller`` account, so the
two always agree (see docs/money.md, "The budget").
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing import conf, ledger
from billing import provider as prov
from billing.models import JournalEntry, ParentBalanceSnapshot, ResellerBudget, Transfer
from portal.audit import audit_log
from portal.errors import PortalError
from providers.errors import ProviderError
from tenants.models import ProviderConnection

logger = logging.getLogger("billing.budget")

Acct = ledger.Account


class BudgetShort(Exception):
    """The budget does not hold the amount a top-up wants to reserve."""


def in_flight_out(connection_id: int, currency: str, *, since: datetime | None = None) -> Decimal:
    """Money reserved for top-ups the provider may not have applied yet (and, with ``since``,
    top-ups recorded as applied after that moment, which a balance read earlier may predate)."""
    q = Q(state__in=Transfer.OPEN)
    if since is not None:
        q |= Q(state=Transfer.State.SUCCEEDED, completed_at__gte=since)
    return ledger.exact_sum(
        Transfer.objects.filter(
            q, connection_id=connection_id, currency=currency, direction=Transfer.Direction.TO_TENANT
        ),
        "amount",
        places=2,
    )


def budget_refresh(*, connection: ProviderConnection, currency: str | None = None) -> ResellerBudget:
    """Re-read the parent balance and set ``available`` = balance − money in flight.

    The balance is read before the transaction; transfers recorded while it was on the wire
    are subtracted too, which can only make ``available`` lower (the safe side).
    """
    currency = (currency or connection.currency or "USD").upper()
    started = timezone.now()
    balance, provider_currency = prov.parent_balance(connection)
    if provider_currency and provider_currency.upper() != currency:
        raise PortalError(f"The parent account is in {provider_currency}, not {currency}.", code="currency_mismatch")
    with transaction.atomic():
        budget, _ = ResellerBudget.objects.select_for_update().get_or_create(connection=connection, currency=currency)
        target = max(Decimal(0), balance - in_flight_out(connection.pk, currency, since=started))
        target = target.quantize(Decimal("0.0001"))
        # Measured against the journal, not the row: pulls settled before the budget row
        # existed are in the journal only, and the two must agree afterwards.
        delta = target - ledger.balance(account=Acct.RESELLER, connection_id=connection.pk, currency=currency)
        now = timezone.now()
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


def current_budget(connection: ProviderConnection, currency: str) -> ResellerBudget:
    """The budget row, refreshed from the provider first when it is missing or older than
    ``BILLING_BUDGET_MAX_AGE_SECONDS``. When the provider cannot be reached, the last known
    row is used; with no row at all the caller gets a 503."""
    budget = ResellerBudget.objects.filter(connection=connection, currency=currency).first()
    stale = (
        budget is None or budget.refreshed_at is None or timezone.now() - budget.refreshed_at > conf.budget_max_age()
    )
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


def budget_reserve(budget: ResellerBudget, amount: Decimal) -> None:
    """Take ``amount`` from ``available``; raises BudgetShort when it would go below zero.
    Call inside the transaction that records the transfer."""
    if not ledger.counter_add(ResellerBudget, budget.pk, "available", -amount, minimum=Decimal(0)):
        raise BudgetShort


def budget_add(transfer: Transfer, amount: Decimal) -> None:
    """Money back in the reseller's budget (a release, or a pull that arrived). A missing
    row is fine: the journal has it and the next budget_refresh sets the row from both."""
    budget = (
        ResellerBudget.objects.filter(connection_id=transfer.connection_id, currency=transfer.currency)
        .values_list("pk", flat=True)
        .first()
    )
    if budget is not None:
        ledger.counter_add(ResellerBudget, budget, "available", amount)
