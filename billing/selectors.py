"""Every read a billing page, the console or the API needs. Tenant-scoped reads return 404
for "missing" and "someone else's" alike."""

from __future__ import annotations

import logging
import uuid as uuid_mod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from billing import conf, ledger, runway
from billing import provider as prov
from billing.models import (
    BalanceSnapshot,
    DriftItem,
    ResellerBudget,
    SyncRun,
    Transfer,
)
from providers.capabilities import Capability
from providers.errors import ProviderError
from tenants.models import ProviderConnection, Tenant

logger = logging.getLogger("billing.selectors")

MAX_LIMIT = 200


@dataclass(frozen=True)
class TransferPage:
    items: list[Transfer]
    next_cursor: str | None


def _state_filter(state: str | list[str] | None) -> Q:
    if not state:
        return Q()
    if state == "unresolved":
        return Q(state__in=Transfer.UNRESOLVED) | Q(state=Transfer.State.SENDING, lease_until__lt=timezone.now())
    if state == "awaiting_approval":
        return Q(state=Transfer.State.PENDING, requires_approval=True, approved_at__isnull=True)
    states = [state] if isinstance(state, str) else list(state)
    bad = [s for s in states if s not in Transfer.State.values]
    if bad:
        raise ValueError(f"unknown transfer state {bad[0]!r}")
    return Q(state__in=states)


def transfer_list(
    *,
    tenant: Tenant | None = None,
    state: str | list[str] | None = None,
    cursor: str | int | None = None,
    limit: int = 50,
) -> TransferPage:
    """Newest first, keyset-paginated on id (``cursor`` is the ``next_cursor`` of the previous
    page). ``state`` is a state, a list of states, "unresolved" or "awaiting_approval"."""
    try:
        limit = max(1, min(int(limit), MAX_LIMIT))
    except (TypeError, ValueError):
        limit = 50
    rows = Transfer.objects.select_related("tenant", "created_by", "approved_by").filter(_state_filter(state))
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    if cursor not in (None, ""):
        try:
            before = int(str(cursor))
        except ValueError:
            before = 0
        if before <= 0:
            return TransferPage([], None)
        rows = rows.filter(pk__lt=before)
    items = list(rows.order_by("-pk")[: limit + 1])
    next_cursor = str(items[limit - 1].pk) if len(items) > limit else None
    return TransferPage(items[:limit], next_cursor)


def transfer_get(*, uuid: uuid_mod.UUID | str, tenant: Tenant | None = None) -> Transfer:
    """One transfer by uuid; with ``tenant``, only that tenant's (404 otherwise)."""
    try:
        ident = uuid if isinstance(uuid, uuid_mod.UUID) else uuid_mod.UUID(str(uuid))
    except ValueError:
        raise Http404("No such transfer") from None
    rows = Transfer.objects.select_related("tenant", "connection", "created_by", "approved_by")
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    try:
        return rows.get(uuid=ident)
    except Transfer.DoesNotExist:
        raise Http404("No such transfer") from None


def unresolved_transfers(*, limit: int = 200) -> list[Transfer]:
    """What staff must look at: unknown, resend, needs_review, and sending past the lease."""
    return transfer_list(state="unresolved", limit=limit).items


def balance_history(
    *, tenant: Tenant, since: datetime | None = None, limit: int = 2000
) -> list[tuple[datetime, Decimal]]:
    rows = BalanceSnapshot.objects.filter(tenant=tenant)
    if since is not None:
        rows = rows.filter(taken_at__gte=since)
    points = list(rows.order_by("-taken_at", "-id").values_list("taken_at", "balance")[:limit])
    points.reverse()
    return points


@dataclass
class StatementRow:
    at: datetime
    kind: str
    description: str
    amount: Decimal
    balance: Decimal | None
    currency: str
    reference: str = ""
    transfer_uuid: str | None = None
    source: str = "provider"
    # Staff's reason for a portal transfer: for staff pages only, never a customer surface.
    staff_reason: str = ""
    direction_label: str = ""

    @property
    def for_staff(self) -> str:
        """The description staff read: the direction and staff's reason for a portal transfer."""
        return f"{self.direction_label}: {self.staff_reason}" if self.staff_reason else self.description


NEUTRAL_LABELS: dict[str, str] = {Transfer.Direction.TO_TENANT: "Top-up", Transfer.Direction.TO_PARENT: "Adjustment"}


def customer_words(transfer: Transfer) -> str:
    """What a customer reads for a portal transfer: the words staff wrote for the customer,
    or a neutral label. Never ``reason``, which is internal to staff."""
    return transfer.customer_description or NEUTRAL_LABELS.get(transfer.direction, "Adjustment")


@dataclass
class Statement:
    rows: list[StatementRow]
    source: str
    note: str = ""
    opening: Decimal | None = None
    closing: Decimal | None = None
    currency: str = ""
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def statement_rows(
    *, tenant: Tenant, date_from: datetime | None = None, date_to: datetime | None = None, limit: int = 5000
) -> Statement:
    """The tenant's money movements in [date_from, date_to] with a running balance.

    From the provider's history of the child (calls, charges and transfers; transfers the
    portal made are annotated with their portal record), the running balance counted back
    from the live balance. Without a provider history (unsupported, unreachable), the
    portal's own transfers with the net the portal moved."""
    now = timezone.now()
    date_to = min(date_to or now, now)
    # A "to" in the first days of year 1 has no 30 days before it: start at the calendar's start.
    date_from = date_from or (date_to - min(timedelta(days=30), date_to - datetime.min.replace(tzinfo=date_to.tzinfo)))
    currency = (tenant.currency or tenant.connection.currency or "").upper()
    if tenant.provider_account_id is not None and prov.supports(tenant.connection, Capability.TRANSACTION_HISTORY):
        try:
            return _provider_statement(tenant, date_from, date_to, now, currency, limit)
        except ProviderError as exc:
            logger.warning("statement for tenant %s: provider history unavailable: %s", tenant.pk, exc)
            note = "The provider's history could not be read; showing the portal's own transfers only."
        else:  # pragma: no cover
            note = ""
    else:
        note = "This provider has no transaction history; showing the portal's own transfers only."
    return _portal_statement(tenant, date_from, date_to, currency, limit, note)


def _provider_statement(
    tenant: Tenant, date_from: datetime, date_to: datetime, now: datetime, currency: str, limit: int
) -> Statement:
    assert tenant.provider_account_id is not None  # statement_rows checked it
    account_id = int(tenant.provider_account_id)
    account = prov.child_account(tenant.connection, account_id)
    current = Decimal(account.balance) if account is not None and account.balance is not None else None
    shown: list[tuple[Any, Decimal]] = []
    running = Decimal(0)
    truncated = False
    for row in prov.iter_account_transactions(
        tenant.connection,
        account_id=account_id,
        from_date=date_from,
        to_date=now + timedelta(seconds=1),
    ):
        amount = Decimal(row.amount)
        running += amount
        if row.performed_at <= date_to:
            if len(shown) < limit:
                shown.append((row, running))
            else:
                truncated = True
    total_since_from = running
    refs = {r.payment_reference for r, _ in shown if r.payment_reference}
    transfers = {t.payment_reference: t for t in Transfer.objects.filter(tenant=tenant, payment_reference__in=refs)}
    rows = []
    for row, prefix in shown:
        balance = current - (total_since_from - prefix) if current is not None else None
        transfer = transfers.get(row.payment_reference or "")
        description = row.transaction_description or row.transaction_type.replace("_", " ")
        if transfer is not None:
            description = customer_words(transfer)
        rows.append(
            StatementRow(
                at=row.performed_at,
                kind=row.transaction_type,
                description=description,
                amount=Decimal(row.amount),
                balance=balance,
                currency=row.currency or currency,
                reference=row.payment_reference or "",
                transfer_uuid=str(transfer.uuid) if transfer else None,
                source="portal" if transfer else "provider",
                staff_reason=transfer.reason if transfer else "",
                direction_label=transfer.get_direction_display() if transfer else "",
            )
        )
    opening = None
    if current is not None:
        opening = current - total_since_from
    closing = rows[-1].balance if rows else opening
    return Statement(
        rows=rows, source="provider", opening=opening, closing=closing, currency=currency, truncated=truncated
    )


def _portal_statement(
    tenant: Tenant, date_from: datetime, date_to: datetime, currency: str, limit: int, note: str
) -> Statement:
    before = Transfer.objects.filter(tenant=tenant, state=Transfer.State.SUCCEEDED, completed_at__lt=date_from)
    opening = ledger.exact_sum(before.filter(direction=Transfer.Direction.TO_TENANT), "amount", 2) - ledger.exact_sum(
        before.filter(direction=Transfer.Direction.TO_PARENT), "amount", 2
    )
    running = opening
    rows: list[StatementRow] = []
    transfers = Transfer.objects.filter(
        tenant=tenant, state=Transfer.State.SUCCEEDED, completed_at__gte=date_from, completed_at__lte=date_to
    ).order_by("completed_at", "pk")
    truncated = False
    for t in transfers.iterator(chunk_size=1000):
        if len(rows) >= limit:
            truncated = True
            break
        running += t.signed_amount
        assert t.completed_at is not None  # the filter above excludes rows without one
        rows.append(
            StatementRow(
                at=t.completed_at,
                kind=t.direction,
                description=customer_words(t),
                amount=t.signed_amount,
                balance=running,
                currency=t.currency,
                reference=t.payment_reference,
                transfer_uuid=str(t.uuid),
                source="portal",
                staff_reason=t.reason,
                direction_label=t.get_direction_display(),
            )
        )
    return Statement(
        rows=rows, source="portal", note=note, opening=opening, closing=running, currency=currency, truncated=truncated
    )


def sync_run_list(
    *, connection: ProviderConnection | None = None, kind: str | None = None, limit: int = 50
) -> list[SyncRun]:
    rows = SyncRun.objects.select_related("connection", "job", "started_by")
    if connection is not None:
        rows = rows.filter(connection=connection)
    if kind:
        rows = rows.filter(kind=kind)
    return list(rows.order_by("-pk")[: max(1, min(limit, MAX_LIMIT))])


def sync_run_get(*, uuid: uuid_mod.UUID | str) -> SyncRun:
    try:
        return SyncRun.objects.select_related("connection", "job").get(uuid=uuid_mod.UUID(str(uuid)))
    except (ValueError, SyncRun.DoesNotExist):
        raise Http404("No such run") from None


def drift_list(*, tenant: Tenant | None = None, open_only: bool = True, limit: int = 200) -> list[DriftItem]:
    rows = DriftItem.objects.select_related("tenant", "transfer", "resolved_by")
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    if open_only:
        rows = rows.filter(resolved_at__isnull=True)
    return list(rows.order_by("-pk")[: max(1, min(limit, 1000))])


def drift_get(*, uuid: uuid_mod.UUID | str) -> DriftItem:
    try:
        return DriftItem.objects.select_related("tenant", "transfer", "connection").get(uuid=uuid_mod.UUID(str(uuid)))
    except (ValueError, DriftItem.DoesNotExist):
        raise Http404("No such drift item") from None


def billing_connections() -> QuerySet[ProviderConnection]:
    return ProviderConnection.objects.filter(is_active=True).order_by("name")


def parent_summary() -> list[dict[str, Any]]:
    """Per connection that holds balances: the parent balance, what the portal may still
    move, and the runway (billing.runway): the portal's own tenants' spending per day over at
    least a day of balance syncs, and how many days the parent balance covers it."""
    out = []
    for conn_obj in billing_connections():
        if not prov.supports(conn_obj, Capability.LIST_BALANCES):
            continue
        currency = (conn_obj.currency or "USD").upper()
        budget = ResellerBudget.objects.filter(connection=conn_obj, currency=currency).first()
        r = runway.runway(connection=conn_obj, currency=currency)
        out.append(
            {
                "connection": conn_obj,
                "currency": currency,
                "balance": r.balance,
                "balance_at": r.balance_at,
                "available": budget.available if budget else None,
                "in_flight": ledger.balance(
                    account=ledger.Account.IN_FLIGHT, connection_id=conn_obj.pk, currency=currency
                ),
                "runway": r,
                "runway_state": r.state,
                "runway_ready_at": r.ready_at,
                "runway_window": runway.window_text(r.window_from, r.window_to),
                "spend_per_day": r.spend_per_day if r.state in (runway.OK, runway.NO_BALANCE) else None,
                "days_of_cover": r.days_of_cover,
                "alert_days": r.alert_days,
                "alert": r.alert,
            }
        )
    return out


def tenant_panel(*, tenant: Tenant) -> dict[str, Any]:
    """What the tenant page's billing panel shows."""
    from billing.charts import balance_chart_svg

    currency = (tenant.currency or tenant.connection.currency or "").upper()
    points = balance_history(tenant=tenant, since=timezone.now() - timedelta(days=180))
    recent = transfer_list(tenant=tenant, limit=10).items
    can_transfer = tenant.provider_account_id is not None and prov.supports(
        tenant.connection, Capability.TRANSFER_MONEY
    )
    return {
        "tenant": tenant,
        "currency": currency,
        "chart": balance_chart_svg(points, width=640, height=200, currency=currency),
        "points": len(points),
        "recent_transfers": recent,
        "can_transfer": can_transfer,
        "transfer_unsupported": None
        if can_transfer
        else prov.unsupported_reason(tenant.connection, Capability.TRANSFER_MONEY),
        "open_drift": DriftItem.objects.filter(tenant=tenant, resolved_at__isnull=True).count(),
        "limits": {
            "transfer": conf.transfer_limit(),
            "approval": conf.approval_threshold(),
            "daily": conf.daily_limit_per_staff(),
        },
    }
