"""Every read a billing page, the console or the API needs. Tenant-scoped reads return 404
for "missing" and "someone else's" alike."""

from __future__ import annotations

import logging
import uuid as uuid_mod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from billing import conf, ledger, runway, transaction_words
from billing import provider as prov
from billing.models import (
    BalanceSnapshot,
    DriftItem,
    ResellerBudget,
    SyncRun,
    Transfer,
)
from portal.errors import PortalError
from portal.listing import Total, keyset_walk, list_total
from providers.capabilities import Capability
from providers.errors import ProviderError
from tenants.models import ProviderConnection, Tenant

logger = logging.getLogger("billing.selectors")

MAX_LIMIT = 200
M = TypeVar("M", bound=Model)


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


# Sorts each list offers: only orders an index answers (the primary key here; Transfer has no
# index on created_at or amount alone, so those columns are not sortable). docs/lists.md.
ID_SORTS = {"-id": "Newest first", "id": "Oldest first"}


def parse_id_sort(sort: str | None) -> str:
    """``id`` or ``-id`` (the default); anything else is refused on the sort field."""
    value = sort or "-id"
    if value not in ID_SORTS:
        raise PortalError("Choose a sort order from the list.", field="sort")
    return value


def transfer_queryset(*, tenant: Tenant | None = None, state: str | list[str] | None = None) -> QuerySet[Transfer]:
    """The transfers a list (or its export) shows; ValueError for an unknown state."""
    rows = Transfer.objects.filter(_state_filter(state))
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    return rows


def transfer_total(*, tenant: Tenant | None = None, state: str | list[str] | None = None) -> Total:
    return list_total(transfer_queryset(tenant=tenant, state=state), filtered=bool(tenant or state))


def transfer_list(
    *,
    tenant: Tenant | None = None,
    state: str | list[str] | None = None,
    cursor: str | int | None = None,
    limit: int = 50,
    sort: str = "-id",
) -> TransferPage:
    """Newest first (``sort="id"``: oldest first), keyset-paginated on id (``cursor`` is the
    ``next_cursor`` of the previous page). ``state`` is a state, a list of states,
    "unresolved" or "awaiting_approval"."""
    try:
        limit = max(1, min(int(limit), MAX_LIMIT))
    except (TypeError, ValueError):
        limit = 50
    ascending = parse_id_sort(sort) == "id"
    rows = transfer_queryset(tenant=tenant, state=state).select_related("tenant", "created_by", "approved_by")
    if cursor not in (None, ""):
        try:
            after = int(str(cursor))
        except ValueError:
            after = 0
        if after <= 0:
            return TransferPage([], None)
        rows = rows.filter(pk__gt=after) if ascending else rows.filter(pk__lt=after)
    items = list(rows.order_by("pk" if ascending else "-pk")[: limit + 1])
    next_cursor = str(items[limit - 1].pk) if len(items) > limit else None
    return TransferPage(items[:limit], next_cursor)


def transfer_export(
    *, tenant: Tenant | None = None, state: str | list[str] | None = None, sort: str = "-id"
) -> Iterator[Transfer]:
    """Every transfer of the filtered list, in the list's order, walked by keyset."""
    rows = transfer_queryset(tenant=tenant, state=state).select_related("tenant")
    return keyset_walk(rows, descending=parse_id_sort(sort) == "-id")


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
    def kind_for_staff(self) -> str:
        """What kind of movement this is, in staff's words (billing/transaction_words.py)."""
        return transaction_words.kind_for_staff(self.kind)

    @property
    def kind_for_customer(self) -> str:
        """What kind of movement this is, in the customer's words: no staff-only word."""
        return transaction_words.kind_for_customer(self.kind)

    @property
    def for_staff(self) -> str:
        """The description staff read: the direction and staff's reason for a portal transfer."""
        return f"{self.direction_label}: {self.staff_reason}" if self.staff_reason else self.description


NEUTRAL_LABELS: dict[str, str] = {Transfer.Direction.TO_TENANT: "Top-up", Transfer.Direction.TO_PARENT: "Adjustment"}


def customer_words(transfer: Transfer) -> str:
    """What a customer reads for a portal transfer: the words staff wrote for the customer,
    or a neutral label. Never ``reason``, which is internal to staff."""
    if transfer.customer_description:
        return transfer.customer_description
    if transfer.direction in Transfer.USER_DIRECTIONS:
        return user_transfer_sentence(transfer)
    return NEUTRAL_LABELS.get(transfer.direction, "Adjustment")


def user_transfer_sentence(transfer: Transfer) -> str:
    """A movement between the company balance and one PBX user, as a sentence."""
    user = transfer.pbx_user
    name = user.display_name or user.user_name if user is not None else f"user {transfer.provider_user_id}"
    if user is not None and user.display_name and user.display_name != user.user_name:
        name = f"{user.display_name} ({user.user_name})"
    if transfer.direction == Transfer.Direction.TO_USER:
        return f"Moved from the company balance to {name}"
    return f"Returned from {name} to the company balance"


def balance_checked_at(*, tenant: Tenant) -> datetime | None:
    """When the portal last read this tenant's balance from the provider.

    ``balance_synced_at`` moves only when a sync finds the balance (or another provider field)
    changed, and on a refresh or a callback; a sync that reads an unchanged balance leaves it
    as it was. So the answer is the later of that and the end of the connection's last
    successful balance sync, which read every account the provider listed (a tenant it did not
    find is flagged missing and gets no such time)."""
    checked = tenant.balance_synced_at
    if tenant.provider_account_id is None or tenant.missing_at_provider:
        return checked
    run_end = (
        SyncRun.objects.filter(
            connection_id=tenant.connection_id,
            kind=SyncRun.Kind.BALANCES,
            state=SyncRun.State.SUCCEEDED,
            finished_at__isnull=False,
            started_at__gte=tenant.created_at,
        )
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    if run_end is not None and (checked is None or run_end > checked):
        return run_end
    return checked


def balance_chart_data(
    *, tenant: Tenant, since: datetime, limit: int = 2000, for_customer: bool = False
) -> tuple[list[tuple[datetime, Decimal]], list[tuple[datetime, str]]]:
    """The points and transfer markers of a tenant's balance chart (billing/charts.py): every
    recorded balance since ``since``, then the current balance as of its last reading (so a
    balance with no change recorded yet still shows as a point), and the succeeded transfers
    between the tenant and the parent. Customers read customer_words, never staff's reason."""
    points = list(balance_history(tenant=tenant, since=since, limit=limit))
    if tenant.balance is not None:
        at = balance_checked_at(tenant=tenant) or timezone.now()
        if not points or at > points[-1][0]:
            points.append((at, Decimal(tenant.balance)))
    transfers = Transfer.objects.filter(
        tenant=tenant,
        state=Transfer.State.SUCCEEDED,
        completed_at__gte=since,
        direction__in=(Transfer.Direction.TO_TENANT, Transfer.Direction.TO_PARENT),
    ).order_by("-completed_at")[:200]
    markers = []
    for t in reversed(list(transfers)):
        assert t.completed_at is not None  # filtered above
        words = customer_words(t) if for_customer else (t.reason or t.get_direction_display())
        markers.append((t.completed_at, f"{words}: {t.signed_amount:+} {t.currency}"))
    return points, markers


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
    # The history lists both sides of money moved to or from a PBX user (the account's and
    # the user's); only the account's side changes the company balance.
    user_transfers = {
        t.payment_reference: t
        for t in Transfer.objects.filter(
            tenant=tenant,
            direction__in=Transfer.USER_DIRECTIONS,
            created_at__gte=date_from
            - min(timedelta(days=2), date_from - datetime.min.replace(tzinfo=date_from.tzinfo)),
        ).only("payment_reference", "direction", "amount")
    }
    for row in prov.iter_account_transactions(
        tenant.connection,
        account_id=account_id,
        from_date=date_from,
        to_date=now + timedelta(seconds=1),
    ):
        amount = Decimal(row.amount)
        own = user_transfers.get(_row_reference(row))
        if own is not None and (amount > 0) != (own.signed_amount > 0):
            continue  # the user's side
        running += amount
        if row.performed_at <= date_to:
            if len(shown) < limit:
                shown.append((row, running))
            else:
                truncated = True
    total_since_from = running
    refs = {_row_reference(r) for r, _ in shown} - {""}
    transfers = {
        t.payment_reference: t
        for t in Transfer.objects.filter(tenant=tenant, payment_reference__in=refs).select_related("pbx_user")
    }
    rows = []
    for row, prefix in shown:
        balance = current - (total_since_from - prefix) if current is not None else None
        transfer = transfers.get(_row_reference(row))
        description = row.transaction_description or transaction_words.kind_for_customer(row.transaction_type)
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
                reference=row.payment_reference or (transfer.payment_reference if transfer else ""),
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


def _row_reference(row: Any) -> str:
    """The portal reference of a history row: its payment reference, or for money moved to or
    from a PBX user (which carries none) the reference the portal wrote as its description."""
    if row.payment_reference:
        return str(row.payment_reference)
    text = (row.transaction_description or "").strip()
    return text if text.startswith("rp-") and len(text) <= 126 else ""


def _portal_statement(
    tenant: Tenant, date_from: datetime, date_to: datetime, currency: str, limit: int, note: str
) -> Statement:
    before = Transfer.objects.filter(tenant=tenant, state=Transfer.State.SUCCEEDED, completed_at__lt=date_from)
    incoming = (Transfer.Direction.TO_TENANT, Transfer.Direction.FROM_USER)
    outgoing = (Transfer.Direction.TO_PARENT, Transfer.Direction.TO_USER)
    opening = ledger.exact_sum(before.filter(direction__in=incoming), "amount", 2) - ledger.exact_sum(
        before.filter(direction__in=outgoing), "amount", 2
    )
    running = opening
    rows: list[StatementRow] = []
    transfers = (
        Transfer.objects.filter(
            tenant=tenant, state=Transfer.State.SUCCEEDED, completed_at__gte=date_from, completed_at__lte=date_to
        )
        .select_related("pbx_user")
        .order_by("completed_at", "pk")
    )
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


def _id_page(rows: QuerySet[M], *, sort: str, cursor: int | None, limit: int) -> list[M]:
    """One page of ``rows`` by id: newest first (``sort="id"``: oldest first), behind the id
    ``cursor`` (the previous page's last row)."""
    ascending = parse_id_sort(sort) == "id"
    if cursor:
        rows = rows.filter(pk__gt=cursor) if ascending else rows.filter(pk__lt=cursor)
    return list(rows.order_by("pk" if ascending else "-pk")[:limit])


def sync_run_queryset(*, connection: ProviderConnection | None = None, kind: str | None = None) -> QuerySet[SyncRun]:
    rows = SyncRun.objects.all()
    if connection is not None:
        rows = rows.filter(connection=connection)
    if kind:
        rows = rows.filter(kind=kind)
    return rows


def sync_run_list(
    *,
    connection: ProviderConnection | None = None,
    kind: str | None = None,
    limit: int = 50,
    sort: str = "-id",
    cursor: int | None = None,
) -> list[SyncRun]:
    """Newest first (``sort="id"``: oldest first); ``cursor`` is the id of the previous page's
    last run."""
    rows = sync_run_queryset(connection=connection, kind=kind).select_related("connection", "job", "started_by")
    return _id_page(rows, sort=sort, cursor=cursor, limit=max(1, min(limit, MAX_LIMIT)))


def sync_run_get(*, uuid: uuid_mod.UUID | str) -> SyncRun:
    try:
        return SyncRun.objects.select_related("connection", "job").get(uuid=uuid_mod.UUID(str(uuid)))
    except (ValueError, SyncRun.DoesNotExist):
        raise Http404("No such run") from None


def drift_queryset(*, tenant: Tenant | None = None, open_only: bool = True) -> QuerySet[DriftItem]:
    rows = DriftItem.objects.all()
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    if open_only:
        rows = rows.filter(resolved_at__isnull=True)
    return rows


def drift_list(
    *,
    tenant: Tenant | None = None,
    open_only: bool = True,
    limit: int = 200,
    sort: str = "-id",
    cursor: int | None = None,
) -> list[DriftItem]:
    """Newest first (``sort="id"``: oldest first); ``cursor`` is the id of the previous page's
    last item."""
    rows = drift_queryset(tenant=tenant, open_only=open_only).select_related("tenant", "transfer", "resolved_by")
    return _id_page(rows, sort=sort, cursor=cursor, limit=max(1, min(limit, 1000)))


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
    points, markers = balance_chart_data(tenant=tenant, since=timezone.now() - timedelta(days=180))
    recent = transfer_list(tenant=tenant, limit=10).items
    can_transfer = tenant.provider_account_id is not None and prov.supports(
        tenant.connection, Capability.TRANSFER_MONEY
    )
    return {
        "tenant": tenant,
        "currency": currency,
        "chart": balance_chart_svg(points, width=640, height=200, currency=currency, markers=markers),
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
