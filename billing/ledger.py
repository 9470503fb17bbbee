"""The double-entry journal: post balanced entries, read account balances.

Entries are never edited; a correction is a new entry. The database refuses unbalanced
entries and any UPDATE/DELETE (migration 0002), so these helpers are a convenience, not the
guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import F, FloatField, Model, Q, QuerySet, Sum
from django.db.models.functions import Round

from billing.models import JournalEntry, JournalLine

Account = JournalLine.Account


@dataclass(frozen=True)
class Leg:
    account: str
    amount: Decimal
    tenant_id: int | None = None


def post(
    *, kind: str, connection_id: int, currency: str, legs: list[Leg], transfer_id: int | None = None, memo: str = ""
) -> JournalEntry:
    """Write one balanced entry. Call inside the transaction of the change it records."""
    if len(legs) < 2:
        raise ValueError("a journal entry needs at least two legs")
    if sum((leg.amount for leg in legs), Decimal(0)) != 0:
        raise ValueError("journal legs must sum to zero")
    entry = JournalEntry(
        kind=kind,
        transfer_id=transfer_id,
        currency=currency,
        memo=memo[:300],
        line_count=sum(1 for leg in legs if leg.amount != 0),
    )
    # Lines first, entry last (the entry's insert is what the SQLite trigger checks), in one
    # transaction: the lines' foreign key to the entry is checked at commit. Inside the
    # caller's transaction no savepoint is taken (two round trips saved): a failure here
    # rolls the whole change back, which is what the caller wants anyway.
    with transaction.atomic(savepoint=False):
        JournalLine.objects.bulk_create(
            [
                JournalLine(
                    entry_id=entry.id,
                    account=leg.account,
                    connection_id=connection_id,
                    tenant_id=leg.tenant_id,
                    currency=currency,
                    amount=leg.amount,
                )
                for leg in legs
                if leg.amount != 0
            ]
        )
        entry.save(force_insert=True)
    return entry


def move(
    *,
    kind: str,
    connection_id: int,
    currency: str,
    amount: Decimal,
    source: Leg | str,
    target: Leg | str,
    transfer_id: int | None = None,
    memo: str = "",
) -> JournalEntry:
    """``amount`` leaves ``source`` and arrives at ``target`` (accounts given as names or Legs for tenant ids)."""
    src = source if isinstance(source, Leg) else Leg(source, Decimal(0))
    dst = target if isinstance(target, Leg) else Leg(target, Decimal(0))
    return post(
        kind=kind,
        connection_id=connection_id,
        currency=currency,
        transfer_id=transfer_id,
        memo=memo,
        legs=[Leg(src.account, -amount, src.tenant_id), Leg(dst.account, amount, dst.tenant_id)],
    )


def exact_sum(rows: QuerySet[Any], field: str, places: int = 4) -> Decimal:
    """SUM of a decimal column, exactly. SQLite keeps decimals as REAL, so its SUM drifts
    (0.1 + 0.2 - 0.3 != 0); summing them as integer minor units does not."""
    if connection.vendor == "sqlite":
        scale = 10**places
        total = rows.aggregate(s=Sum(Round(F(field) * scale), output_field=FloatField()))["s"]
        return Decimal(int(total or 0)) / scale
    return rows.aggregate(s=Sum(field))["s"] or Decimal(0)


def counter_add(
    model: type[Model],
    pk: int,
    field: str,
    delta: Decimal,
    *,
    minimum: Decimal | None = None,
    maximum: Decimal | None = None,
) -> bool:
    """Add ``delta`` to a decimal counter column, only if the result stays within
    [``minimum``, ``maximum``].

    PostgreSQL: one conditional UPDATE (numeric arithmetic is exact; the row lock orders
    concurrent writers). SQLite: read, then write the exact result, inside the caller's
    transaction, which holds the database's write lock from BEGIN IMMEDIATE, so nothing
    can interleave; SQL arithmetic there would be REAL and drift.
    """
    return counter_add_where(model, {"pk": pk}, field, delta, minimum=minimum, maximum=maximum)


def counter_add_where(
    model: type[Model],
    where: dict[str, Any],
    field: str,
    delta: Decimal,
    *,
    minimum: Decimal | None = None,
    maximum: Decimal | None = None,
    condition: Q | None = None,
) -> bool:
    """``counter_add`` on the one row that ``where`` names (a unique lookup), without
    reading its primary key first; ``condition`` must hold too (e.g. the row is fresh).

    False when no such row exists, ``condition`` fails, or the bound would be crossed: the
    caller then takes its slow path, which tells these apart. PostgreSQL: one conditional
    UPDATE. SQLite: one read and one write inside the caller's write-locked transaction."""
    rows = model._default_manager.filter(**where)
    if condition is not None:
        rows = rows.filter(condition)
    if connection.vendor != "sqlite":
        if minimum is not None:
            rows = rows.filter(**{f"{field}__gte": minimum - delta})
        if maximum is not None:
            rows = rows.filter(**{f"{field}__lte": maximum - delta})
        return rows.update(**{field: F(field) + delta}) == 1
    if not connection.in_atomic_block:
        raise RuntimeError("counter_add needs a transaction on SQLite")
    found = rows.values_list("pk", field).first()
    if found is None:
        return False
    pk, current = found
    new = current + delta
    if (minimum is not None and new < minimum) or (maximum is not None and new > maximum):
        return False
    model._default_manager.filter(pk=pk).update(**{field: new})
    return True


def balance(
    *, account: str, connection_id: int | None = None, currency: str | None = None, tenant_id: int | None = None
) -> Decimal:
    lines = JournalLine.objects.filter(account=account)
    if connection_id is not None:
        lines = lines.filter(connection_id=connection_id)
    if currency is not None:
        lines = lines.filter(currency=currency)
    if tenant_id is not None:
        lines = lines.filter(tenant_id=tenant_id)
    return exact_sum(lines, "amount")


def total(*, currency: str | None = None) -> Decimal:
    """The sum of every line (0 while the journal is sound)."""
    lines = JournalLine.objects.all()
    if currency is not None:
        lines = lines.filter(currency=currency)
    return exact_sum(lines, "amount")
