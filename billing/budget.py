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
from django.db.models import Max, Q
from django.utils import timezone

from billing import conf, ledger
from billing import provider as prov
from billing.models import JournalEntry, JournalLine, ParentBalanceSnapshot, ResellerBudget, Transfer
from portal.audit import audit_log
from portal.errors import PortalError
from providers.errors import ProviderError
from tenants.models import ProviderConnection

logger = logging.getLogger("billing.budget")

Acct = ledger.Account


class BudgetShort(Exception):
    """The budget does not hold the amount a top-up wants to reserve."""


def held_back(connection_id: int, currency: str, *, line_mark: int, since: datetime) -> Decimal:
    """What a parent balance read just now must not count as money the portal may move.

    - Every open top-up: the provider may have applied it (then the balance already lacks
      it) or not (then it will); either way it is reserved and must not be promised twice.
    - Every top-up that settled while the balance was on the wire (a settle journal line
      after ``line_mark``, or completed since ``since``): the read may predate it.
    - Every open pull back, whatever its outcome: its money may already be in the balance
      read, and when it settles ``budget_add`` adds it once more. Counting it as not yet
      arrived here makes that later add the one and only time it is counted (a pull that
      fails adds nothing; the next refresh gives back what was held for it).

    Pulls that settled while the balance was on the wire need nothing: their add happened
    before the refresh's transaction and is overwritten by it, and the balance read either
    holds their money or (read before it arrived) is lower, the safe side."""
    on_wire = JournalLine.objects.filter(
        id__gt=line_mark, connection_id=connection_id, currency=currency, entry__kind=JournalEntry.Kind.SETTLE
    ).values("entry__transfer_id")
    mine = Transfer.objects.filter(connection_id=connection_id, currency=currency)
    top_ups = mine.filter(
        Q(state__in=Transfer.OPEN)
        | Q(state=Transfer.State.SUCCEEDED, pk__in=on_wire)
        | Q(state=Transfer.State.SUCCEEDED, completed_at__gte=since),
        direction=Transfer.Direction.TO_TENANT,
    )
    pulls = mine.filter(state__in=Transfer.OPEN, direction=Transfer.Direction.TO_PARENT)
    return ledger.exact_sum(top_ups, "amount", places=2) + ledger.exact_sum(pulls, "amount", places=2)


def _line_mark(connection_id: int) -> int:
    """The newest journal line of the connection: what the ledger held before a read."""
    return JournalLine.objects.filter(connection_id=connection_id).aggregate(m=Max("id"))["m"] or 0


def budget_refresh(*, connection: ProviderConnection, currency: str | None = None) -> ResellerBudget:
    """Re-read the parent balance and set ``available`` = balance − what is held back
    (``held_back``: open transfers in both directions and top-ups that settled while the
    balance was on the wire).

    The balance is read before the transaction. Whatever happens meanwhile, ``available``
    never exceeds what the parent holds minus the top-ups it has still to pay: an open pull
    is counted only when it settles, never also in the balance read.
    """
    currency = (currency or connection.currency or "USD").upper()
    started = timezone.now()
    line_mark = _line_mark(connection.pk)
    balance, provider_currency = prov.parent_balance(connection)
    if provider_currency and provider_currency.upper() != currency:
        raise PortalError(f"The parent account is in {provider_currency}, not {currency}.", code="currency_mismatch")
    with transaction.atomic():
        budget, _ = ResellerBudget.objects.select_for_update().get_or_create(connection=connection, currency=currency)
        target = max(Decimal(0), balance - held_back(connection.pk, currency, line_mark=line_mark, since=started))
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
        from billing.runway import publish_runway_check  # the runway reads this module's rows

        # The runway depends on the balance just read: its alert is re-checked after commit.
        publish_runway_check(connection.pk, currency)
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


def budget_reserve_fresh(connection_id: int, currency: str, amount: Decimal) -> bool:
    """The common case of a top-up in one statement: take ``amount`` from the budget row of
    this connection and currency when that row is fresh (read from the provider within
    ``BILLING_BUDGET_MAX_AGE_SECONDS``) and holds it. False otherwise (missing, stale or
    short), and nothing is written: the caller takes the slow path (current_budget, and
    budget_reserve, with the refreshes it needs). Call inside the transaction that records
    the transfer."""
    return ledger.counter_add_where(
        ResellerBudget,
        {"connection_id": connection_id, "currency": currency},
        "available",
        -amount,
        minimum=Decimal(0),
        condition=Q(refreshed_at__gte=timezone.now() - conf.budget_max_age()),
    )


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
