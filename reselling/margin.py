"""The margin report: revenue, cost and margin per tenant and month, summed in SQL from the
charges ledger, per currency (never mixed).

- Rows: ``GROUP BY tenant, currency`` of one month's charges, which the (period, tenant)
  index serves in order, paged by keyset on the tenant id; a page reads its own tenants only.
- Totals per month and currency: the ledger is append-only, so a sum computed up to charge id
  N stays true forever; the cache keeps it with N, and each read adds only the charges
  written since. A beat (``totals_refresh``, every minute) folds them in, so a page sums at
  most the last minutes by primary key; only a lost cache costs one pass over the ledger,
  taken by the beat or by the first read, whichever comes first.

Sums are exact: on SQLite (decimals stored as REAL) they are taken in integer 1/10000 units,
as billing.ledger.exact_sum does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import connection as db
from django.db.models import Count, F, FloatField, QuerySet, Sum
from django.db.models.functions import Round
from django.utils import timezone

from reselling.models import Charge
from tenants.models import Tenant

SCALE = 10_000  # Charge amounts have 4 decimal places
PAGE = 50
CACHE_SECONDS = 24 * 3600
# Charges older than this are taken as committed in id order (their transactions are short).
SETTLED = timedelta(minutes=2)


def _sum(field: str) -> Any:
    if db.vendor == "sqlite":
        return Sum(Round(F(field) * SCALE), output_field=FloatField())
    return Sum(field)


def _exact(value: Any) -> Decimal:
    if value is None:
        return Decimal(0)
    if db.vendor == "sqlite":
        return Decimal(int(value)) / SCALE
    return Decimal(value).quantize(Decimal("0.0001"))


@dataclass(frozen=True)
class _Sums:
    """The sums of a set of charges in one currency."""

    currency: str
    revenue: Decimal
    cost: Decimal
    charges: int

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.cost


@dataclass(frozen=True)
class MarginRow(_Sums):
    """One tenant's sums."""

    tenant_id: int
    tenant: Tenant | None


@dataclass(frozen=True)
class Total(_Sums):
    """A month's sums over every tenant."""

    period: date


def _charges(*, period: date | None, connection_id: int | None, currency: str | None) -> QuerySet[Charge]:
    rows = Charge.objects.all()
    if period is not None:
        rows = rows.filter(period=period)
    if connection_id is not None:
        rows = rows.filter(tenant__connection_id=connection_id)
    if currency:
        rows = rows.filter(currency=currency)
    return rows


def margin_rows(
    *,
    period: date,
    connection_id: int | None = None,
    currency: str | None = None,
    after_tenant: int = 0,
    limit: int = PAGE,
    with_tenants: bool = True,
) -> tuple[list[MarginRow], int | None]:
    """One page of per-tenant sums for ``period``: ``limit`` tenants by id, and the cursor of
    the next page (the last tenant id), or None. A tenant with charges in two currencies has
    two rows."""
    scope = _charges(period=period, connection_id=connection_id, currency=currency)
    # First the page's tenants, in index order (the (period, tenant) index alone, no sort of
    # the month), then the sums of those tenants only.
    ids = list(
        scope.filter(tenant_id__gt=after_tenant)
        .order_by("tenant_id")
        .values_list("tenant_id", flat=True)
        .distinct()[: limit + 1]
    )
    more = len(ids) > limit
    ids = ids[:limit]
    raw = (
        list(
            scope.filter(tenant_id__gte=ids[0], tenant_id__lte=ids[-1])
            .values("tenant_id", "currency")
            .annotate(revenue=_sum("revenue"), cost=_sum("cost"), charges=Count("id"))
            .order_by("tenant_id", "currency")
        )
        if ids
        else []
    )
    wanted = {r["tenant_id"] for r in raw}
    tenants = Tenant.objects.only("id", "uuid", "company_name").in_bulk(wanted) if with_tenants else {}
    rows = [
        MarginRow(
            tenant_id=r["tenant_id"],
            tenant=tenants.get(r["tenant_id"]),
            currency=r["currency"],
            revenue=_exact(r["revenue"]),
            cost=_exact(r["cost"]),
            charges=r["charges"],
        )
        for r in raw
    ]
    return rows, (rows[-1].tenant_id if more and rows else None)


def iter_margin_rows(
    *, period: date, connection_id: int | None = None, currency: str | None = None, batch: int = 1000
) -> Iterator[MarginRow]:
    """Every row of the month, page after page (the CSV): memory stays one page."""
    after = 0
    while True:
        rows, cursor = margin_rows(
            period=period, connection_id=connection_id, currency=currency, after_tenant=after, limit=batch
        )
        yield from rows
        if cursor is None:
            return
        after = cursor


def _cache_key(connection_id: int | None) -> str:
    return f"reselling:margin-totals:{connection_id or 'all'}:v1"


def _mark(charge_id: int) -> list[Any] | None:
    row = Charge.objects.filter(pk=charge_id).values_list("pk", "source_key", "created_at").first()
    return [row[0], row[1], row[2].isoformat()] if row else None


def _still_there(mark: list[Any] | None) -> bool:
    return mark is None or _mark(int(mark[0])) == mark


def _grouped(rows: QuerySet[Charge]) -> Iterator[tuple[str, list[int]]]:
    grouped = (
        rows.values("period", "currency")
        .annotate(revenue=_sum("revenue"), cost=_sum("cost"), charges=Count("id"))
        .order_by()
    )
    for row in grouped:
        yield (
            f"{row['period'].isoformat()}|{row['currency']}",
            [int(_exact(row["revenue"]) * SCALE), int(_exact(row["cost"]) * SCALE), row["charges"]],
        )


def _add(sums: dict[str, list[int]], more: Iterator[tuple[str, list[int]]]) -> dict[str, list[int]]:
    out = {name: list(values) for name, values in sums.items()}
    for name, values in more:
        old = out.get(name, [0, 0, 0])
        out[name] = [a + b for a, b in zip(old, values, strict=True)]
    return out


def _folded(connection_id: int | None) -> tuple[dict[str, list[int]], int]:
    """The cached sums per "period|currency" and the charge id they reach, first folding in
    the charges settled since (older than SETTLED): what every read starts from."""
    key = _cache_key(connection_id)
    cached = cache.get(key)
    if not cached or not _still_there(cached.get("mark")):
        # A cold cache, or one written against another database (a restore, a test run).
        cached = {"upto": 0, "mark": None, "sums": {}}
    sums: dict[str, list[int]] = cached["sums"]
    upto = int(cached["upto"])
    newer = _charges(period=None, connection_id=connection_id, currency=None).filter(id__gt=upto)
    # The newest settled charge, walking the primary key down from the top: only the charges
    # of the last SETTLED are read before it is found.
    settled = newer.filter(created_at__lt=timezone.now() - SETTLED).order_by("-id").values_list("id", flat=True).first()
    if settled is not None:
        sums = _add(sums, _grouped(newer.filter(id__lte=settled)))
        upto = settled
        cache.set(key, {"upto": upto, "mark": _mark(upto), "sums": sums}, CACHE_SECONDS)
    return sums, upto


def totals_refresh() -> int:
    """Fold the settled charges into the cached totals, for all connections and each one (the
    beat, every minute), so a page never sums more than the last minutes of the ledger, and a
    lost cache is rebuilt here rather than by the next visitor. Returns the caches refreshed."""
    from tenants.models import ProviderConnection

    wanted: list[int | None] = [None, *ProviderConnection.objects.order_by("pk").values_list("pk", flat=True)]
    for connection_id in wanted:
        _folded(connection_id)
    return len(wanted)


def monthly_totals(*, connection_id: int | None = None) -> list[Total]:
    """Revenue, cost and count per (month, currency), oldest first, for every month with
    charges. Exact, and up to date with the ledger at the moment of the call.

    Only charges older than SETTLED are folded into the cache: a charge whose transaction
    committed after a newer id was read is still summed, from the live tail."""
    sums, upto = _folded(connection_id)
    tail = _charges(period=None, connection_id=connection_id, currency=None).filter(id__gt=upto)
    # Checked first by primary key: the grouped query alone may be planned over the month's
    # index instead of the (usually empty) id range.
    live = _add(sums, _grouped(tail)) if tail.exists() else sums
    totals = []
    for name, (rev, cost, count) in live.items():
        period, currency = name.split("|")
        totals.append(
            Total(
                period=date.fromisoformat(period),
                currency=currency,
                revenue=Decimal(rev) / SCALE,
                cost=Decimal(cost) / SCALE,
                charges=count,
            )
        )
    return sorted(totals, key=lambda t: (t.period, t.currency))


def month_totals(*, period: date, connection_id: int | None = None, currency: str | None = None) -> list[Total]:
    return [
        t
        for t in monthly_totals(connection_id=connection_id)
        if t.period == period and (not currency or t.currency == currency)
    ]


def exact_totals(*, period: date, connection_id: int | None = None) -> dict[str, tuple[Decimal, Decimal]]:
    """The month's totals straight from the ledger, without the cache (checks and the API)."""
    grouped = (
        _charges(period=period, connection_id=connection_id, currency=None)
        .values("currency")
        .annotate(revenue=_sum("revenue"), cost=_sum("cost"))
        .order_by()
    )
    return {r["currency"]: (_exact(r["revenue"]), _exact(r["cost"])) for r in grouped}
