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

import functools
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from billing.models import BalanceSnapshot, DriftItem, LowBalanceAlert, SyncRun
from portal.models import Job
from tenants.models import Tenant, TenantOperation, UnknownProviderAccount

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
    drift: int = 0
    alerts: int = 0
    # False when a shard's progress row was given and the statement could not move it: the
    # shard or the run belongs to another worker now (the caller rolls the chunk back).
    progressed: bool = True


@dataclass(frozen=True)
class ShardProgress:
    """The shard a chunk belongs to: its own progress row (a Job), the owner that must still
    hold it, and the run's executor token that must still be current."""

    job_id: int
    owner: str
    run_id: int
    token: str


# Temporary tables known to exist on a database connection (created in a committed
# transaction), so a chunk needs no statement to set its table up.
_READY: weakref.WeakSet[Any] = weakref.WeakSet()


def _chunk_table(cursor: Any) -> None:
    """The per-connection temporary table, created once per database connection. It is
    empty whenever a chunk starts: rows are deleted at each commit (ON COMMIT DELETE ROWS),
    a rollback takes them away too, and a chunk written inside a longer transaction deletes
    its own rows (``_chunk_sql(empties=True)``). It has no key: the caller hands over each
    account once (billing.sync._apply_chunk_set), and an index here cost every COPY a third
    of its time."""
    raw = connection.connection
    if raw in _READY:
        return
    cursor.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {CHUNK_TABLE} (aid bigint, balance numeric(18, 4), "
        "currency text, active boolean, frozen boolean, credit numeric(18, 4), notify numeric(18, 4)) "
        "ON COMMIT DELETE ROWS"
    )
    transaction.on_commit(lambda: _READY.add(raw))


def _py_bool(column: str) -> str:
    """SQL text of a nullable boolean as Python prints it (True, False, None): drift
    fingerprints are the same whichever database path wrote them (billing.sync._drift_findings)."""
    return f"CASE WHEN {column} THEN 'True' WHEN NOT {column} THEN 'False' ELSE 'None' END"


@functools.cache
def _chunk_sql(*, empties: bool) -> str:
    """The chunk statement; ``empties`` deletes the chunk table's rows at its end, for a chunk
    that does not commit on its own (ON COMMIT DELETE ROWS does it for one that does, at no
    cost to the statement)."""
    tenant, snap, drift = Tenant._meta.db_table, BalanceSnapshot._meta.db_table, DriftItem._meta.db_table
    alert, job, run = LowBalanceAlert._meta.db_table, Job._meta.db_table, SyncRun._meta.db_table
    op = TenantOperation._meta.db_table
    return f"""
WITH v AS (
    SELECT t.id AS tenant_id, c.aid, c.balance, c.currency, c.active, c.frozen, c.credit, c.notify,
           (t.low_balance_threshold IS NOT NULL AND c.balance IS NOT NULL
            AND c.balance < t.low_balance_threshold) AS low,
           t.balance AS old_balance, COALESCE(t.is_low_balance, false) AS was_low,
           t.low_balance_threshold AS threshold, t.status,
           (c.balance IS DISTINCT FROM t.balance OR c.currency IS DISTINCT FROM t.currency
            OR c.active IS DISTINCT FROM t.provider_active OR c.frozen IS DISTINCT FROM t.provider_frozen
            OR c.credit IS DISTINCT FROM t.credit_limit OR c.notify IS DISTINCT FROM t.provider_threshold
            OR (t.low_balance_threshold IS NOT NULL AND c.balance IS NOT NULL
                AND c.balance < t.low_balance_threshold) <> COALESCE(t.is_low_balance, false)
            OR COALESCE(t.missing_at_provider, false)) AS differs
    FROM {CHUNK_TABLE} c JOIN {tenant} t ON t.connection_id = %(conn)s AND t.provider_account_id = c.aid
    WHERE t.provider_account_id BETWEEN %(first)s::bigint AND %(last)s::bigint
),
found AS (
    SELECT tenant_id, %(threshold_kind)s::text AS kind,
           'threshold:' || tenant_id || ':' || threshold::text || ':' || notify::text AS fp,
           threshold AS portal_amount, notify AS provider_amount, left(currency, 3) AS cur,
           jsonb_build_object('portal_threshold', threshold::text, 'provider_threshold', notify::text) AS evidence,
           %(threshold_ops)s::text[] AS ops
    FROM v WHERE threshold IS NOT NULL AND notify IS NOT NULL AND notify <> threshold
    UNION ALL
    SELECT tenant_id, %(status_kind)s::text,
           'status:' || tenant_id || ':' || status || ':' || {_py_bool("active")} || ':' || {_py_bool("frozen")},
           NULL, NULL, '',
           jsonb_build_object('portal_status', status, 'provider_active', active, 'provider_frozen', frozen),
           %(status_ops)s::text[]
    FROM v WHERE (status = %(active)s AND (frozen IS TRUE OR active IS FALSE))
              OR (status = %(frozen)s AND active IS TRUE AND frozen IS NOT TRUE)
),
fresh AS (
    SELECT f.* FROM found f
    WHERE NOT EXISTS (SELECT 1 FROM {drift} d WHERE d.fingerprint = f.fp LIMIT 1)
      AND NOT EXISTS (SELECT 1 FROM {op} o WHERE o.tenant_id = f.tenant_id
                      AND o.state = ANY(%(open_states)s::text[]) AND o.kind = ANY(f.ops) LIMIT 1)
),
drifts AS (
    INSERT INTO {drift} (uuid, connection_id, tenant_id, kind, fingerprint, payment_reference, provider_txn_id,
                         portal_amount, provider_amount, currency, evidence, detected_at, sync_run_id,
                         resolution, resolution_note)
    SELECT gen_random_uuid(), %(conn)s, tenant_id, kind, fp, '', '', portal_amount, provider_amount, cur, evidence,
           %(now)s, %(run)s::bigint, '', ''
    FROM fresh
    ON CONFLICT DO NOTHING
    RETURNING 1
),
changed AS (
    UPDATE {tenant} t SET balance = v.balance, currency = v.currency, provider_active = v.active,
           provider_frozen = v.frozen, credit_limit = v.credit, is_low_balance = v.low,
           missing_at_provider = false, provider_threshold = v.notify,
           has_drift = t.has_drift OR EXISTS (SELECT 1 FROM fresh f WHERE f.tenant_id = t.id),
           balance_synced_at = %(now)s, updated_at = %(now)s
    FROM v
    WHERE t.id = v.tenant_id AND v.differs AND EXISTS (SELECT 1 FROM v WHERE v.differs)
    RETURNING t.id
),
drifted AS (
    UPDATE {tenant} t SET has_drift = true, updated_at = %(now)s
    FROM v WHERE t.id = v.tenant_id AND NOT v.differs AND EXISTS (SELECT 1 FROM fresh f WHERE f.tenant_id = t.id)
      AND EXISTS (SELECT 1 FROM fresh)
    RETURNING 1
),
snaps AS (
    INSERT INTO {snap} (tenant_id, balance, currency, taken_at)
    SELECT v.tenant_id, v.balance, v.currency, %(now)s FROM v
    WHERE v.balance IS NOT NULL AND v.balance IS DISTINCT FROM v.old_balance
    RETURNING 1
),
alerts AS (
    INSERT INTO {alert} (tenant_id, balance, threshold, currency, created_at)
    SELECT v.tenant_id, v.balance, v.threshold, v.currency, %(now)s FROM v WHERE v.low AND NOT v.was_low
    RETURNING 1
),
gone AS (
    SELECT t.id, COALESCE(t.missing_at_provider, false) AS was_missing
    FROM {tenant} t
    WHERE t.connection_id = %(conn)s AND t.provider_account_id = ANY(%(unanswered)s::bigint[])
),
flagged AS (
    UPDATE {tenant} t SET missing_at_provider = true, updated_at = %(now)s
    FROM gone WHERE t.id = gone.id AND NOT gone.was_missing
    RETURNING t.id
),
total AS (SELECT sum(balance) AS amount FROM v WHERE currency = %(total_currency)s),
progress AS (
    UPDATE {job} j SET done = j.done + %(asked_count)s, updated_at = %(now)s,
           params = j.params || jsonb_build_object(
               'last', %(last)s::bigint,
               'pages', COALESCE((j.params->>'pages')::bigint, 0) + %(pages)s,
               'seen', COALESCE((j.params->>'seen')::bigint, 0) + (SELECT count(*) FROM v),
               'changed', COALESCE((j.params->>'changed')::bigint, 0) + (SELECT count(*) FROM changed),
               'missing', COALESCE((j.params->>'missing')::bigint, 0) + (SELECT count(*) FROM gone),
               'drift', COALESCE((j.params->>'drift')::bigint, 0) + (SELECT count(*) FROM drifts),
               'balance', (COALESCE((j.params->>'balance')::numeric, 0)
                           + COALESCE((SELECT amount FROM total), 0))::text)
    WHERE j.id = %(shard_job)s::bigint AND j.params->>'owner' = %(owner)s
      AND EXISTS (SELECT 1 FROM {run} r WHERE r.id = %(run)s::bigint AND r.executor = %(token)s
                  AND r.state = %(running)s)
    RETURNING 1
){f", emptied AS (DELETE FROM {CHUNK_TABLE} RETURNING 1)" if empties else ""}
SELECT (SELECT count(*) FROM v), (SELECT count(*) FROM changed), (SELECT count(*) FROM gone),
       (SELECT count(*) FROM flagged), (SELECT count(*) FROM snaps), (SELECT amount FROM total),
       (SELECT count(*) FROM drifts), (SELECT count(*) FROM alerts), (SELECT count(*) FROM progress),
       set_config('synchronous_commit', 'off', true)
"""  # noqa: S608 - table names from models, values bound


Q4 = Decimal("0.0001")  # provider amounts are kept to four places (numeric(18, 4))
_NULL = "\\N"
_COPY_BOOL = {True: "t", False: "f", None: _NULL}


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_line(
    account_id: int,
    balance: Decimal | None,
    currency: str | None,
    active: bool | None,
    frozen: bool | None,
    credit: Decimal | None,
    notify: Decimal | None,
) -> str:
    """One provider account as a line of COPY's text format for the chunk table (amounts
    quantized to four places; a Decimal's text is exact): built in one f-string rather than
    value by value through COPY's row writer, which cost the writer thread twice as much.
    A currency code of letters and digits, as every provider sends, needs no escaping."""
    code = (currency or "").upper()
    if not code.isalnum():
        code = _copy_text(code)
    return (
        f"{account_id}\t{_NULL if balance is None else str(balance.quantize(Q4))}\t{code}\t"
        f"{_COPY_BOOL[active]}\t{_COPY_BOOL[frozen]}\t{_NULL if credit is None else str(credit.quantize(Q4))}\t"
        f"{_NULL if notify is None else str(notify.quantize(Q4))}\n"
    )


def write_chunk_set(
    connection_id: int,
    asked: Sequence[int],
    lines: Sequence[str],
    answered: Collection[int],
    now: datetime,
    currency_total: str,
    *,
    run_id: int | None,
    shard: ShardProgress | None = None,
    pages: int = 1,
) -> SetChunk:
    """The whole chunk on PostgreSQL, inside the caller's transaction, in one COPY and one
    statement: the tenants, snapshots, missing flags, low-balance alerts, new drift (and
    ``has_drift``) and, for a shard, the shard's own progress row. ``lines`` are the
    provider's accounts for the asked ids, one per id, as ``copy_line`` writes them, and
    ``answered`` their ids.
    The commit does not wait for the WAL flush (``synchronous_commit`` off for this
    transaction only): a crash may lose the last chunks committed, never part of one, and
    the shard's progress is in the same transaction, so a resumed run reads them again."""
    from billing.sync import STATUS_OPS, THRESHOLD_OPS  # the drift rules live in billing.sync

    # Outside a transaction the COPY would commit, and ON COMMIT DELETE ROWS empty the table.
    assert connection.in_atomic_block, "write_chunk_set runs inside the caller's transaction"
    # Only the caller's block is open: the transaction ends with this chunk, and its commit
    # (or rollback) empties the chunk table; inside a longer one the statement empties it.
    own_transaction = len(connection.atomic_blocks) == 1
    with connection.cursor() as cursor:
        _chunk_table(cursor)
        if lines:
            columns = "aid, balance, currency, active, frozen, credit, notify"
            with cursor.cursor.copy(f"COPY {CHUNK_TABLE} ({columns}) FROM STDIN") as copy:
                copy.write("".join(lines))
        params = {
            "conn": connection_id,
            "now": now,
            "unanswered": sorted(set(asked).difference(answered)),
            "asked_count": len(asked),
            "first": min(asked),
            "last": max(asked),
            "pages": pages,
            "total_currency": currency_total,
            "active": Tenant.Status.ACTIVE,
            "frozen": Tenant.Status.FROZEN,
            "threshold_kind": DriftItem.Kind.THRESHOLD_MISMATCH,
            "status_kind": DriftItem.Kind.STATUS_MISMATCH,
            "threshold_ops": [str(k) for k in THRESHOLD_OPS],
            "status_ops": [str(k) for k in STATUS_OPS],
            "open_states": list(TenantOperation.OPEN_STATES),
            "run": run_id,
            "shard_job": shard.job_id if shard else None,
            "owner": shard.owner if shard else "",
            "token": shard.token if shard else "",
            "running": SyncRun.State.RUNNING,
        }
        # Bound on the server and prepared once per database connection, so the planner runs
        # once rather than for every chunk (a few ms a chunk), and the values are not spliced
        # into the statement's text in Python. Same connection, same transaction.
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as prepared:
            prepared.execute(_chunk_sql(empties=not own_transaction), params, prepare=True)
            counters = prepared.fetchone()
        assert counters is not None  # the statement's last SELECT returns one row
        seen, changed, missing, flagged, snapshots, total, drift, alerts, progressed, _ = counters
    return SetChunk(
        seen=seen,
        changed=changed,
        missing=missing,
        flagged=flagged,
        snapshots=snapshots,
        balance_total=Decimal(total) if total is not None else Decimal(0),
        drift=drift,
        alerts=alerts,
        progressed=shard is None or bool(progressed),
    )


def publish_run(run_id: int, token: str, run_job_id: int, shard_jobs: Sequence[int], now: datetime) -> bool:
    """Copy the run's counters and progress bar from its shards' progress rows to the
    SyncRun and the run's Job, and move the run's heartbeat: a short statement of its own
    after a chunk's commit, so no chunk transaction holds the rows every shard shares.
    Idempotent (sums of the shards' rows; counters only grow, so a late publisher never
    moves them back). False if this worker no longer owns the run."""
    job, run = Job._meta.db_table, SyncRun._meta.db_table
    if set_based():
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
WITH s AS (
    SELECT COALESCE(sum((params->>'pages')::bigint), 0) AS pages, COALESCE(sum((params->>'seen')::bigint), 0) AS seen,
           COALESCE(sum((params->>'changed')::bigint), 0) AS changed,
           COALESCE(sum((params->>'missing')::bigint), 0) AS missing,
           max((params->>'last')::bigint) AS last, COALESCE(sum(done), 0) AS done
    FROM {job} WHERE id = ANY(%(shards)s::bigint[])
),
r AS (
    UPDATE {run} x SET pages = GREATEST(x.pages, s.pages), seen = GREATEST(x.seen, s.seen),
           changed = GREATEST(x.changed, s.changed), missing = GREATEST(x.missing, s.missing),
           last_account_id = COALESCE(s.last, x.last_account_id), heartbeat_at = %(now)s
    FROM s WHERE x.id = %(run)s AND x.executor = %(token)s AND x.state = %(running)s
    RETURNING 1
),
j AS (
    UPDATE {job} x SET done = GREATEST(x.done, s.done), updated_at = %(now)s FROM s
    WHERE x.id = %(job)s AND EXISTS (SELECT 1 FROM r)
    RETURNING 1
)
SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM j), set_config('synchronous_commit', 'off', true)
""",  # noqa: S608 - table names from models, values bound
                {
                    "shards": list(shard_jobs),
                    "run": run_id,
                    "token": token,
                    "job": run_job_id,
                    "now": now,
                    "running": SyncRun.State.RUNNING,
                },
            )
            return bool(cursor.fetchone()[0])
    sums = {"pages": 0, "seen": 0, "changed": 0, "missing": 0}
    last: int | None = None
    done = 0
    for params, shard_done in Job.objects.filter(pk__in=list(shard_jobs)).values_list("params", "done"):
        for key in sums:
            sums[key] += int((params or {}).get(key) or 0)
        if (params or {}).get("last") is not None:
            last = max(last or 0, int(params["last"]))
        done += shard_done
    with transaction.atomic():
        moved = SyncRun.objects.filter(pk=run_id, executor=token, state=SyncRun.State.RUNNING).update(
            **{key: Greatest(F(key), Value(value)) for key, value in sums.items()},
            last_account_id=last if last is not None else F("last_account_id"),
            heartbeat_at=now,
        )
        if moved:
            Job.objects.filter(pk=run_job_id).update(done=Greatest(F("done"), Value(done)), updated_at=now)
    return bool(moved)


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
