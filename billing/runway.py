"""The runway: how many days the parent balance covers the portal's own tenants' spending.

Spending is measured from the portal's tenants only (``SyncRun.tenants_balance``, written
when a balance sync finishes), never from every child account at the provider, and over a
window of at least ``conf.runway_min_window()`` between two successful balance syncs, so two
syncs minutes apart cannot extrapolate a day from noise (docs/money.md, "Runway").

Staff get one email per crossing below ``conf.parent_alert_days()``: the email is claimed
with a conditional update of ``ResellerBudget.runway_alerted_at`` (two workers never both
send), and the mark is cleared when the runway recovers, so the next crossing emails again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from billing import conf, ledger, tasks
from billing.models import ParentBalanceSnapshot, ResellerBudget, SyncRun, Transfer
from portal import money_format
from portal.audit import audit_log
from portal.events import publish_on_commit
from portal.mail import site_link, staff_addresses, staff_message, templated_email
from portal.roles import Role
from tenants.models import ProviderConnection, Tenant

logger = logging.getLogger("billing.runway")

# Tenants whose balance is still the portal's business (closed and failed ones are not).
OPEN_TENANT_STATES = (Tenant.Status.ACTIVE, Tenant.Status.FROZEN, Tenant.Status.CLOSING)

OK = "ok"
NOT_ENOUGH_DATA = "not_enough_data"
NO_SPENDING = "no_spending"
NO_BALANCE = "no_balance"


def tenants_balance(*, connection_id: int, currency: str) -> Decimal:
    """The sum of the balances of the portal's open tenants on this connection in this
    currency (a tenant whose currency was not read yet counts in the connection's)."""
    rows = Tenant.objects.filter(
        connection_id=connection_id, status__in=OPEN_TENANT_STATES, balance__isnull=False
    ).filter(Q(currency__iexact=currency) | Q(currency=""))
    return ledger.exact_sum(rows, "balance", 4)


@dataclass(frozen=True)
class Runway:
    connection: ProviderConnection
    currency: str
    state: str
    balance: Decimal | None = None
    balance_at: datetime | None = None
    spend_per_day: Decimal | None = None
    days_of_cover: Decimal | None = None
    window_from: datetime | None = None
    window_to: datetime | None = None
    ready_at: datetime | None = None
    alert_days: int = 0

    @property
    def alert(self) -> bool:
        return self.days_of_cover is not None and self.days_of_cover < self.alert_days

    @property
    def recovered(self) -> bool:
        """Known to be at or above the threshold (or nothing is being spent)."""
        if self.state == NO_SPENDING:
            return True
        return self.days_of_cover is not None and self.days_of_cover >= self.alert_days


def _parent_balance(connection: ProviderConnection, currency: str) -> tuple[Decimal | None, datetime | None]:
    budget = ResellerBudget.objects.filter(connection=connection, currency=currency).first()
    if budget is not None and budget.provider_balance is not None:
        return Decimal(budget.provider_balance), budget.refreshed_at
    snap = (
        ParentBalanceSnapshot.objects.filter(connection=connection, currency=currency)
        .order_by("-taken_at", "-id")
        .first()
    )
    return (Decimal(snap.balance), snap.taken_at) if snap else (None, None)


def _net_moved_in(connection: ProviderConnection, currency: str, start: datetime, end: datetime) -> Decimal:
    """Succeeded top-ups minus succeeded pulls completed in (start, end]."""
    done = Transfer.objects.filter(
        connection=connection,
        currency=currency,
        state=Transfer.State.SUCCEEDED,
        completed_at__gt=start,
        completed_at__lte=end,
    )
    return ledger.exact_sum(done.filter(direction=Transfer.Direction.TO_TENANT), "amount", 2) - ledger.exact_sum(
        done.filter(direction=Transfer.Direction.TO_PARENT), "amount", 2
    )


def runway(*, connection: ProviderConnection, currency: str | None = None) -> Runway:
    """The runway of one connection and currency (see the module docstring)."""
    currency = (currency or connection.currency or "USD").upper()
    balance, balance_at = _parent_balance(connection, currency)
    base = {"connection": connection, "currency": currency, "balance": balance, "balance_at": balance_at}
    base["alert_days"] = conf.parent_alert_days()
    runs = SyncRun.objects.filter(
        connection=connection,
        kind=SyncRun.Kind.BALANCES,
        state=SyncRun.State.SUCCEEDED,
        tenants_balance__isnull=False,
        finished_at__isnull=False,
    )
    latest = runs.order_by("-finished_at", "-pk").first()
    window = conf.runway_min_window()
    if latest is None or latest.finished_at is None:
        return Runway(state=NOT_ENOUGH_DATA, **base)  # type: ignore[arg-type]
    older = runs.filter(finished_at__lte=latest.finished_at - window).order_by("-finished_at", "-pk").first()
    if older is None or older.finished_at is None:
        first = runs.order_by("finished_at", "pk").first()
        assert first is not None and first.finished_at is not None  # latest exists
        return Runway(state=NOT_ENOUGH_DATA, ready_at=first.finished_at + window, **base)  # type: ignore[arg-type]
    assert older.tenants_balance is not None and latest.tenants_balance is not None  # filtered above
    days = Decimal((latest.finished_at - older.finished_at).total_seconds()) / Decimal(86400)
    moved = _net_moved_in(connection, currency, older.finished_at, latest.finished_at)
    spent = Decimal(older.tenants_balance) - Decimal(latest.tenants_balance) + moved
    per_day = (spent / days).quantize(Decimal("0.01"))
    span = {"window_from": older.finished_at, "window_to": latest.finished_at}
    if per_day <= 0:
        return Runway(state=NO_SPENDING, spend_per_day=per_day, **span, **base)  # type: ignore[arg-type]
    if balance is None:
        return Runway(state=NO_BALANCE, spend_per_day=per_day, **span, **base)  # type: ignore[arg-type]
    cover = (balance / per_day).quantize(Decimal("0.1"))
    return Runway(state=OK, spend_per_day=per_day, days_of_cover=cover, **span, **base)  # type: ignore[arg-type]


def _staff_emails() -> list[str]:
    return staff_addresses(Role.RESELLER_ADMIN, Role.RESELLER_BILLING, alert_list=True)


def _runway_email(r: Runway, recipients: list[str]) -> EmailMultiAlternatives:
    context = {
        "connection": r.connection.name,
        "currency": r.currency,
        "balance": money_format.number(r.balance or Decimal(0), r.currency),
        "spend_per_day": money_format.number(r.spend_per_day, r.currency),
        "days": f"{r.days_of_cover}",
        "alert_days": r.alert_days,
        "link": site_link(reverse("billing:sync_runs")),
    }
    return templated_email(
        "emails/runway_staff",
        context,
        subject=f"Parent balance runway: {r.connection.name} covers about {r.days_of_cover} days",
        to=recipients,
    )


def runway_alert_check(*, connection_id: int, currency: str | None = None) -> bool:
    """Email staff once when the runway is below the alert threshold; re-arm when it is back
    at or above it. Safe to run twice or at once on two workers. True when an email went out."""
    connection = ProviderConnection.objects.get(pk=connection_id)
    r = runway(connection=connection, currency=currency)
    budget = ResellerBudget.objects.filter(connection=connection, currency=r.currency).first()
    if budget is None:
        return False
    if r.recovered:
        ResellerBudget.objects.filter(pk=budget.pk, runway_alerted_at__isnull=False).update(runway_alerted_at=None)
        return False
    if not r.alert:
        return False  # not enough data or no parent balance: keep the state as it is
    now = timezone.now()
    # Claim first: a second worker finds the mark set and sends nothing.
    if not ResellerBudget.objects.filter(pk=budget.pk, runway_alerted_at__isnull=True).update(runway_alerted_at=now):
        return False
    recipients = _staff_emails()
    if not recipients:
        return False
    try:
        staff_message(lambda to: _runway_email(r, to), recipients).send()
    except Exception:  # noqa: BLE001 - un-claim so the next check retries
        logger.warning("runway email for connection %s failed", connection.pk, exc_info=True)
        ResellerBudget.objects.filter(pk=budget.pk, runway_alerted_at=now).update(runway_alerted_at=None)
        return False
    audit_log(
        actor=None,
        action="billing.alert.runway",
        data={
            "connection": connection.pk,
            "currency": r.currency,
            "days_of_cover": str(r.days_of_cover),
            "spend_per_day": str(r.spend_per_day),
            "recipients": len(recipients),
        },
    )
    return True


def publish_runway_check(connection_id: int, currency: str | None = None) -> None:
    """Queue runway_alert_check once the current transaction commits."""
    publish_on_commit(
        lambda: tasks.runway_check_task.delay(connection_id, currency), what=f"billing.runway_check {connection_id}"
    )


def window_text(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    hours = (end - start) / timedelta(hours=1)
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.0f} hours"
