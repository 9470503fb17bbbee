"""Every read a customer page or the customer API makes. Each takes the tenant, which the
caller got from the logged-in user (customer_tenant) or the token; nothing here takes an id
from a URL without scoping it to that tenant first."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.http import Http404
from django.utils import timezone

from billing.charts import balance_chart_svg
from billing.conf import places
from billing.selectors import StatementRow, balance_chart_data, balance_checked_at, balance_history, statement_rows
from portal.roles import Actor
from tenants.models import Membership, Tenant
from tenants.selectors import tenant_for_user, tenant_members

HISTORY_DAYS = 90
# The chart and the history API are bounded whatever the tenant's age.
HISTORY_MAX_POINTS = 2000


_UNSET = object()


def membership_tenant(*, user: Actor) -> Tenant | None:
    """The customer's tenant through their membership (None for staff), fetched once per
    request: ClosedTenantMiddleware asks first, the page or API view reuses the answer."""
    cached = getattr(user, "_customer_tenant", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[return-value]

    tenant = tenant_for_user(user=user)
    if user is not None:
        user.__dict__["_customer_tenant"] = tenant
    return tenant


def customer_tenant(*, user: Actor) -> Tenant:
    """The user's own tenant, or 404 (a staff user or an orphaned customer has none)."""
    tenant = membership_tenant(user=user)
    if tenant is None:
        raise Http404("No company")
    return tenant


def balance_chart(*, tenant: Tenant, width: int = 720, height: int = 220) -> str:
    """The balance chart of the last HISTORY_DAYS (every recorded balance, the current one and
    the transfers), cached per tenant. The key holds what moves whenever the chart would change
    (the balance, when it was last read, the last transfer, the day, since the window moves), so
    a cached chart is never stale; the TTL only bounds memory."""

    checked = balance_checked_at(tenant=tenant)
    last = tenant.transfers.order_by("-id").values_list("id", "state").first()
    last_transfer = f"{last[0]}-{last[1]}" if last else "none"
    key = (
        f"customers:chart:{tenant.pk}:{tenant.balance}:{checked.timestamp() if checked else 0}:{tenant.currency}:"
        f"{last_transfer}:{timezone.now().date().isoformat()}:{width}x{height}"
    )
    svg = cache.get(key)
    if svg is None:
        since = timezone.now() - timedelta(days=HISTORY_DAYS)
        points, markers = balance_chart_data(tenant=tenant, since=since, limit=HISTORY_MAX_POINTS, for_customer=True)
        svg = str(
            balance_chart_svg(points, width=width, height=height, currency=tenant.currency or "", markers=markers)
        )
        cache.set(key, svg, 600)
    return svg


def last_synced(*, tenant: Tenant) -> datetime | None:
    """What the customer's "Last synced" shows: the last time the portal read the balance."""
    return balance_checked_at(tenant=tenant)


def balance_points(*, tenant: Tenant, since: datetime | None = None) -> list[dict[str, Any]]:
    """[{"at": datetime, "balance": Decimal}] oldest first, from billing's balance history
    (snapshots, written only when the balance changed), bounded in time and count."""

    since = since or timezone.now() - timedelta(days=HISTORY_DAYS)
    rows = balance_history(tenant=tenant, since=since, limit=HISTORY_MAX_POINTS)
    return [{"at": at, "balance": balance} for at, balance in rows if balance is not None]


def statement(*, tenant: Tenant, date_from: date | None = None, date_to: date | None = None) -> Any:
    """billing's Statement (rows oldest first, each with its running balance; .note says when
    the provider's history was not available) for whole UTC days [date_from, date_to]."""

    if date_from and date_to and date_from > date_to:
        date_from, date_to = date_to, date_from
    start = datetime.combine(date_from, time.min, tzinfo=UTC) if date_from else None
    end = datetime.combine(date_to, time.max, tzinfo=UTC) if date_to else None
    return statement_rows(tenant=tenant, date_from=start, date_to=end)


def team_members(*, tenant: Tenant) -> list[Membership]:

    return tenant_members(tenant=tenant)


def member_get(*, tenant: Tenant, member_id: int) -> Membership:
    """A membership of this tenant; 404 for another tenant's or a missing one."""
    membership = Membership.objects.select_related("user").filter(tenant=tenant, pk=member_id).first()
    if membership is None:
        raise Http404("No such member")
    return membership


def money(value: Any, currency: str) -> Decimal | None:
    """The amount in the currency's minor units (two places for USD), for display and CSV."""

    if value is None:
        return None
    return Decimal(value).quantize(Decimal(1).scaleb(-places(currency or "USD")))


def statement_row(row: StatementRow) -> dict[str, Any]:
    """One of billing's statement rows as the fields the pages, the CSV and the API show."""
    return {
        "amount_display": money(row.amount, row.currency),
        "balance_display": money(row.balance, row.currency),
        "at": row.at,
        "kind": row.kind_for_customer,
        "description": row.description,
        "reference": row.reference,
        "amount": row.amount,
        "currency": row.currency,
        "balance": row.balance,
    }
