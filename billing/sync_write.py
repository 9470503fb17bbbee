"""The balance sync's writes, per database (docs/sync.md, "Writing a chunk").

PostgreSQL: the chunk's provider rows go into a temporary table with COPY, then one
statement (data-modifying CTEs) updates only the tenants whose provider data changed
(``IS DISTINCT FROM`` on every column), inserts a balance snapshot for each changed
balance, flags the asked tenants the provider did not return, and hands back the counters
and the few rows that need Python (a low-balance crossing or a threshold or status
disagreement). COPY's text format carries a Decimal exactly.

SQLite (and ``BILLING_SYNC_WRITE = "portable"`` anywhere): billing.sync compares the chunk
in Python and writes the changed rows with the ``executemany`` statements below.

The SQL is built from model table names and fixed column lists only; every value is a
bound parameter or goes through COPY.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection

from billing.models import BalanceSnapshot
from tenants.models import Tenant, UnknownProviderAccount

CHUNK_TABLE = "billing_sync_chunk"
UNKNOWN_TABLE = "billing_sync_unknown"


def set_based() -> bool:
    """Does this database take the COPY + one-statement path?"""
    return connection.vendor == "postgresql" and getattr(settings, "BILLING_SYNC_WRITE", "auto") != "portable"


# -- PostgreSQL: COPY into a temporary table, then one set statement ---------------------------


@dataclass
class SetChunk:
    """What the chunk statement wrote and found."""

    seen: int = 0
    changed: int = 0
    missing: int = 0
    flagged: int = 0
    snapshots: int = 0
    balance_total: Decimal = Decimal(0)
    # (tenant_id, account_id, balance, threshold, currency, status, crossed_low, notify):
    # only the rows with a low-balance crossing or a threshold or status disagreement.
    attention: list[tuple[Any, ...]] = field(default_factory=list)


def _chunk_table(cursor: Any) -> None:
    """The per-connection temporary table, emptied at each commit (and here, for a chunk
    written inside an outer transaction)."""
    cursor.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {CHUNK_TABLE} (aid bigint PRIMARY KEY, balance numeric(18, 4), "
        "currency text, active boolean, frozen boolean, credit numeric(18, 4), notify numeric(18, 4)) "
        "ON COMMIT DELETE ROWS"
    )
    cursor.execute(f"DELETE FROM {CHUNK_TABLE}")  # noqa: S608 - fixed table name


def _chunk_sql() -> str:
    tenant, snap = Tenant._meta.db_table, BalanceSnapshot._meta.db_table
    return f"""
WITH v AS (
    SELECT t.id AS tenant_id, c.aid, c.balance, c.currency, c.active, c.frozen, c.credit, c.notify,
           (t.low_balance_threshold IS NOT NULL AND c.balance IS NOT NULL
            AND c.balance < t.low_balance_threshold) AS low,
           t.balance AS old_balance, t.currency AS old_currency, t.provider_active AS old_active,
           t.provider_frozen AS old_frozen, t.credit_limit AS old_credit, t.provider_threshold AS old_notify,
           COALESCE(t.is_low_balance, false) AS was_low, COALESCE(t.missing_at_provider, false) AS was_missing,
           t.low_balance_threshold AS threshold, t.status
    FROM {CHUNK_TABLE} c JOIN {tenant} t ON t.connection_id = %(conn)s AND t.provider_account_id = c.aid
),
changed AS (
    UPDATE {tenant} t SET balance = v.balance, currency = v.currency, provider_active = v.active,
           provider_frozen = v.frozen, credit_limit = v.credit, is_low_balance = v.low,
           missing_at_provider = false, provider_threshold = v.notify,
           balance_synced_at = %(now)s, updated_at = %(now)s
    FROM v
    WHERE t.id = v.tenant_id AND (
        v.balance IS DISTINCT FROM v.old_balance OR v.currency IS DISTINCT FROM v.old_currency
        OR v.active IS DISTINCT FROM v.old_active OR v.frozen IS DISTINCT FROM v.old_frozen
        OR v.credit IS DISTINCT FROM v.old_credit OR v.notify IS DISTINCT FROM v.old_notify
        OR v.low <> v.was_low OR v.was_missing)
    RETURNING t.id
),
snaps AS (
    INSERT INTO {snap} (tenant_id, balance, currency, taken_at)
    SELECT v.tenant_id, v.balance, v.currency, %(now)s FROM v
    WHERE v.balance IS NOT NULL AND v.balance IS DISTINCT FROM v.old_balance
    RETURNING 1
),
gone AS (
    SELECT t.id, COALESCE(t.missing_at_provider, false) AS was_missing FROM {tenant} t
    WHERE t.connection_id = %(conn)s AND t.provider_account_id = ANY(%(asked)s::bigint[])
      AND NOT EXISTS (SELECT 1 FROM {CHUNK_TABLE} c WHERE c.aid = t.provider_account_id)
),
flagged AS (
    UPDATE {tenant} t SET missing_at_provider = true, updated_at = %(now)s
    FROM gone WHERE t.id = gone.id AND NOT gone.was_missing
    RETURNING t.id
)
SELECT (SELECT count(*) FROM v), (SELECT count(*) FROM changed), (SELECT count(*) FROM gone),
       (SELECT count(*) FROM flagged), (SELECT count(*) FROM snaps),
       (SELECT sum(balance) FROM v WHERE currency = %(total_currency)s),
       (SELECT json_agg(json_build_array(tenant_id, aid, balance::text, threshold::text, currency, status,
                                         low AND NOT was_low, notify::text))
        FROM v
        WHERE (low AND NOT was_low)
           OR (threshold IS NOT NULL AND notify IS NOT NULL AND notify <> threshold)
           OR (status = %(active)s AND (frozen IS TRUE OR active IS FALSE))
           OR (status = %(frozen)s AND active IS TRUE AND frozen IS NOT TRUE))
"""  # noqa: S608 - table names from models, values bound


def write_chunk_set(
    connection_id: int,
    asked: Sequence[int],
    rows: Sequence[tuple[Any, ...]],
    now: datetime,
    currency_total: str,
) -> SetChunk:
    """The whole chunk on PostgreSQL, inside the caller's transaction. ``rows`` are the
    provider's accounts for the asked ids, one per id, normalised:
    (account_id, balance, currency, active, frozen, credit, notify) with 4-place Decimals."""
    with connection.cursor() as cursor:
        _chunk_table(cursor)
        if rows:
            columns = "aid, balance, currency, active, frozen, credit, notify"
            with cursor.cursor.copy(f"COPY {CHUNK_TABLE} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        cursor.execute(
            _chunk_sql(),
            {
                "conn": connection_id,
                "now": now,
                "asked": list(asked),
                "total_currency": currency_total,
                "active": Tenant.Status.ACTIVE,
                "frozen": Tenant.Status.FROZEN,
            },
        )
        seen, changed, missing, flagged, snapshots, total, attention = cursor.fetchone()
    return SetChunk(
        seen=seen,
        changed=changed,
        missing=missing,
        flagged=flagged,
        snapshots=snapshots,
        balance_total=Decimal(total) if total is not None else Decimal(0),
        attention=[
            (tid, aid, _money(bal), _money(thr), cur, status, bool(crossed), _money(notify))
            for tid, aid, bal, thr, cur, status, crossed, notify in attention or ()
        ],
    )


def _money(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


# -- the portable statements (SQLite; PostgreSQL with BILLING_SYNC_WRITE = "portable") --------


def bulk_update_tenants(rows: list[tuple[Any, ...]], now: datetime) -> None:
    """(tenant_id, balance, currency, active, frozen, credit, low, missing, notify) per row."""
    table = Tenant._meta.db_table
    ops = connection.ops
    stamp = ops.adapt_datetimefield_value(now) if connection.vendor != "postgresql" else now
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET balance = %s, currency = %s, provider_active = %s, provider_frozen = %s, "  # noqa: S608 - table names from models, values bound
            "credit_limit = %s, is_low_balance = %s, missing_at_provider = %s, provider_threshold = %s, "
            "balance_synced_at = %s, updated_at = %s WHERE id = %s",
            [
                (
                    _adapt(b),
                    cur,
                    act,
                    frz,
                    _adapt(cr),
                    low,
                    miss,
                    _adapt(notify),
                    stamp,
                    stamp,
                    tid,
                )
                for tid, b, cur, act, frz, cr, low, miss, notify in rows
            ],
        )


def insert_snapshots(rows: list[tuple[Any, ...]], now: datetime) -> None:
    """(tenant_id, balance, currency) per row."""
    table = BalanceSnapshot._meta.db_table
    stamp = connection.ops.adapt_datetimefield_value(now) if connection.vendor != "postgresql" else now
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (tenant_id, balance, currency, taken_at) VALUES (%s, %s, %s, %s)",  # noqa: S608 - table names from models, values bound
            [(tid, _adapt(b), cur, stamp) for tid, b, cur in rows],
        )


def _adapt(value: Decimal | None) -> Any:
    if connection.vendor == "postgresql":
        return value
    return connection.ops.adapt_decimalfield_value(value, 18, 4)


_UNKNOWN_COLUMNS = "connection_id, provider_account_id, account_name, account_email, balance, currency, active, frozen"
_UNKNOWN_CONFLICT = """ON CONFLICT (connection_id, provider_account_id) DO UPDATE SET
    account_name = excluded.account_name, account_email = excluded.account_email, balance = excluded.balance,
    currency = excluded.currency, active = excluded.active, frozen = excluded.frozen,
    last_seen_at = excluded.last_seen_at"""


def upsert_unknown(rows: list[tuple[Any, ...]], now: datetime) -> None:
    """Import candidates: (connection_id, account_id, name, email, balance, currency,
    active, frozen) per row, inserted or updated in place."""
    table = UnknownProviderAccount._meta.db_table
    last: dict[tuple[int, int], tuple[Any, ...]] = {}
    for c, aid, name, email, bal, cur, act, frz in rows:  # one row per account: the last wins
        last[(c, aid)] = (c, aid, (name or "")[:100], (email or "")[:254], bal, cur[:3], act, frz)
    with connection.cursor() as cursor:
        if set_based():
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {UNKNOWN_TABLE} (connection_id bigint, "
                "provider_account_id bigint, account_name text, account_email text, balance numeric(18, 4), "
                "currency text, active boolean, frozen boolean) ON COMMIT DELETE ROWS"
            )
            cursor.execute(f"DELETE FROM {UNKNOWN_TABLE}")  # noqa: S608 - fixed table name
            with cursor.cursor.copy(f"COPY {UNKNOWN_TABLE} ({_UNKNOWN_COLUMNS}) FROM STDIN") as copy:
                for row in last.values():
                    copy.write_row(row)
            cursor.execute(
                f"INSERT INTO {table} ({_UNKNOWN_COLUMNS}, first_seen_at, last_seen_at) "  # noqa: S608 - table names from models, values bound
                f"SELECT {_UNKNOWN_COLUMNS}, %s, %s FROM {UNKNOWN_TABLE} {_UNKNOWN_CONFLICT}",
                [now, now],
            )
            return
        stamp = connection.ops.adapt_datetimefield_value(now) if connection.vendor != "postgresql" else now
        cursor.executemany(
            f"INSERT INTO {table} ({_UNKNOWN_COLUMNS}, first_seen_at, last_seen_at) "  # noqa: S608 - table names from models, values bound
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) {_UNKNOWN_CONFLICT}",
            [
                (c, aid, name, email, _adapt(bal), cur, act, frz, stamp, stamp)
                for c, aid, name, email, bal, cur, act, frz in last.values()
            ],
        )
