"""The nightly balance sync (docs/sync.md).

One run walks every child account of a connection a page (1,000) at a time, in ascending
id order (billing.provider.iter_children_pages), and for each page, in one short
transaction: updates only the tenants whose provider data changed (one bulk statement),
records a balance snapshot only for a changed balance, upserts the accounts no tenant
stands for (UnknownProviderAccount, for import), flags tenants in the page's id range the
provider no longer returns (missing_at_provider), records low-balance crossings, and bumps
the run's counters. Memory holds a page or two whatever the number of children.

A run is a SyncRun row; a partial unique index allows one running run per connection, so
two beats (or a beat and a staff member) cannot walk the same connection at once. A run
killed halfway leaves every finished page committed and consistent; its heartbeat goes
stale, and the next start marks it abandoned and walks again from the beginning.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from billing import conf
from billing import provider as prov
from billing.models import BalanceSnapshot, LowBalanceAlert, SyncRun
from portal.audit import audit_log
from portal.errors import Conflict, NotAllowed, PortalError
from portal.jobs import job_advance, job_create, job_finish, job_start
from portal.roles import Actor, has_perm
from providers.base import AccountSnapshot
from providers.capabilities import Capability
from tenants.models import ProviderConnection, Tenant, UnknownProviderAccount

logger = logging.getLogger("billing.sync")

Q4 = Decimal("0.0001")


class RunLost(Exception):
    """This worker no longer owns the run (it was marked abandoned and restarted)."""


def _q(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(Q4)


# -- start -------------------------------------------------------------------------------


def _abandon_stale(conn_obj: ProviderConnection, kind: str, now: datetime) -> None:
    stale = list(
        SyncRun.objects.filter(
            connection=conn_obj, kind=kind, state=SyncRun.State.RUNNING, heartbeat_at__lt=now - conf.sync_stale_after()
        )
    )
    for run in stale:
        with transaction.atomic():
            if SyncRun.objects.filter(pk=run.pk, state=SyncRun.State.RUNNING, heartbeat_at=run.heartbeat_at).update(
                state=SyncRun.State.FAILED,
                finished_at=now,
                error_message=f"abandoned: no progress since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC",
            ):
                audit_log(
                    actor=None,
                    action="billing.sync.abandoned",
                    data={"run": str(run.uuid), "connection": conn_obj.pk, "kind": kind},
                )
                if run.job_id:
                    job_finish(job_id=run.job_id, ok=False, message="Abandoned: the worker stopped.")


def run_start(*, actor: Actor, connection: ProviderConnection, kind: str) -> SyncRun:
    if getattr(actor, "is_authenticated", False) and not has_perm(actor, "billing.sync"):
        raise NotAllowed("You may not start a sync.", code="forbidden")
    needed = Capability.LIST_BALANCES if kind == SyncRun.Kind.BALANCES else Capability.TRANSACTION_HISTORY
    if not prov.supports(connection, needed):
        raise PortalError(
            prov.unsupported_reason(connection, needed) or "This provider cannot do that.", code="unsupported"
        )
    now = timezone.now()
    _abandon_stale(connection, kind, now)
    label = "Balance sync" if kind == SyncRun.Kind.BALANCES else "Reconciliation"
    staff = actor if isinstance(actor, User) else None
    try:
        with transaction.atomic():
            job = job_create(kind=f"billing.{kind}", title=f"{label}: {connection.name}", created_by=staff)
            run = SyncRun.objects.create(
                connection=connection, kind=kind, started_by=staff, job=job, started_at=now, heartbeat_at=now
            )
            audit_log(
                actor=actor,
                action=f"billing.{'sync' if kind == SyncRun.Kind.BALANCES else 'reconcile'}.started",
                data={"run": str(run.uuid), "connection": connection.pk},
            )
            run_id = run.pk

            def dispatch() -> None:
                from billing.tasks import reconcile_run_task, sync_run_task

                try:
                    (sync_run_task if kind == SyncRun.Kind.BALANCES else reconcile_run_task).delay(run_id)
                except Exception:  # noqa: BLE001 - the run stays visible and is abandoned later
                    logger.warning("could not publish the %s task for run %s", kind, run_id, exc_info=True)

            transaction.on_commit(dispatch)
    except IntegrityError:
        running = SyncRun.objects.filter(connection=connection, kind=kind, state=SyncRun.State.RUNNING).first()
        raise Conflict(
            f"A {label.lower()} is already running for {connection.name}.",
            code="sync_running",
            details={"run": str(running.uuid) if running else None},
        ) from None
    return run


def sync_start(*, actor: Actor, connection: ProviderConnection) -> SyncRun:
    """Start a balance sync of this connection; Conflict if one is already running."""
    return run_start(actor=actor, connection=connection, kind=SyncRun.Kind.BALANCES)


def claim_run(run_id: int) -> tuple[SyncRun, str] | None:
    """The one executor of a run (a duplicated task message finds it taken)."""
    token = uuid.uuid4().hex
    if not SyncRun.objects.filter(pk=run_id, state=SyncRun.State.RUNNING, executor="").update(
        executor=token, heartbeat_at=timezone.now()
    ):
        return None
    return SyncRun.objects.select_related("connection").get(pk=run_id), token


def finish_run(run: SyncRun, token: str, *, ok: bool, message: str = "") -> None:
    now = timezone.now()
    with transaction.atomic():
        done = SyncRun.objects.filter(pk=run.pk, executor=token, state=SyncRun.State.RUNNING).update(
            state=SyncRun.State.SUCCEEDED if ok else SyncRun.State.FAILED,
            finished_at=now,
            heartbeat_at=now,
            error_message=message[:1000],
            errors=F("errors") + (0 if ok else 1),
        )
        if not done:
            return
        run.refresh_from_db()
        kind = "sync" if run.kind == SyncRun.Kind.BALANCES else "reconcile"
        audit_log(
            actor=None,
            action=f"billing.{kind}.{'finished' if ok else 'failed'}",
            data={
                "run": str(run.uuid),
                "connection": run.connection_id,
                "pages": run.pages,
                "seen": run.seen,
                "changed": run.changed,
                "new": run.new,
                "missing": run.missing,
                "errors": run.errors,
                "seconds": run.duration_seconds,
                "message": message[:300],
            },
        )
    if run.job_id:
        summary = (
            f"{run.seen} accounts, {run.changed} changed, {run.new} new, {run.missing} missing"
            if run.kind == SyncRun.Kind.BALANCES
            else f"{run.seen} provider transfers, {run.new} drift"
        )
        job_finish(job_id=run.job_id, ok=ok, message=summary if ok else f"Failed: {message}"[:1000])


# -- execute -------------------------------------------------------------------------------


@dataclass
class PageResult:
    seen: int = 0
    changed: int = 0
    new: int = 0
    missing: int = 0
    balance_total: Decimal = Decimal(0)
    alerts: list[int] = field(default_factory=list)


def sync_execute(*, sync_run_id: int) -> SyncRun | None:
    """Walk the connection's children for this run (see the module docstring)."""
    claimed = claim_run(sync_run_id)
    if claimed is None:
        return None
    run, token = claimed
    conn_obj = run.connection
    started = time.monotonic()
    if run.job_id:
        job_start(job_id=run.job_id, message="Reading accounts from the provider…")
    try:
        try:
            from billing.transfers import budget_refresh

            budget_refresh(connection=conn_obj)
        except Exception:  # noqa: BLE001 - the parent balance is a bonus; the walk is the job
            logger.warning("sync %s: could not refresh the parent balance", run.uuid, exc_info=True)
        last_id: int | None = None
        first = True
        # Summed here, not in SQL: SQLite's decimal arithmetic is REAL and would drift.
        balance_total = Decimal(0)
        for accounts, total in prov.prefetch(prov.iter_children_pages(conn_obj, page_size=conf.sync_page_size())):
            if first and run.job_id and total >= 0:
                job_start(job_id=run.job_id, total=total, message="Walking the accounts…")
                SyncRun.objects.filter(pk=run.pk).update(total_count=total)
                first = False
            hi = int(accounts[-1].account_id)
            page = apply_page(conn_obj, accounts, lo=last_id, hi=hi, run_id=run.pk, token=token, job_id=run.job_id)
            balance_total += page.balance_total
            last_id = hi
        # Tenants above the last id the provider returned are missing too.
        apply_page(conn_obj, [], lo=last_id, hi=None, run_id=run.pk, token=token, job_id=None)
        SyncRun.objects.filter(pk=run.pk, executor=token).update(total_balance=balance_total)
        run.refresh_from_db()
        note = ""
        if run.total_count is not None and run.total_count != run.seen:
            note = f"note: {run.seen} accounts seen, the provider counted {run.total_count} at the start"
        finish_run(run, token, ok=True, message=note)
    except RunLost:
        logger.warning("sync %s lost its lease to a newer run; stopping", run.uuid)
    except Exception as exc:  # noqa: BLE001 - recorded on the run, shown in the console
        logger.exception("sync %s failed", run.uuid)
        finish_run(run, token, ok=False, message=f"{type(exc).__name__}: {exc}")
    logger.info("sync %s done in %.1fs", run.uuid, time.monotonic() - started)
    return SyncRun.objects.get(pk=run.pk)


def tenant_refresh(*, tenant_id: int) -> None:
    """Re-read one tenant's provider data (after a transfer) through the same page logic."""
    tenant = Tenant.objects.select_related("connection").get(pk=tenant_id)
    if tenant.provider_account_id is None or not prov.supports(tenant.connection, Capability.LIST_BALANCES):
        return
    account = prov.child_account(tenant.connection, int(tenant.provider_account_id))
    accounts = [account] if account is not None else []
    apply_page(
        tenant.connection,
        accounts,
        lo=int(tenant.provider_account_id) - 1,
        hi=int(tenant.provider_account_id),
        run_id=None,
        token=None,
        job_id=None,
    )


# The SQL below is built from model table names and fixed column lists only; every value is
# a bound parameter.


def _select_range(sql: str, params: list[Any], lo: int | None, hi: int | None) -> list[tuple[Any, ...]]:
    if lo is not None:
        sql += " AND provider_account_id > %s"
        params.append(lo)
    if hi is not None:
        sql += " AND provider_account_id <= %s"
        params.append(hi)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _same(raw: Any, value: Decimal | None) -> bool:
    """Does a money column read raw hold ``value``? Most rows have not changed, so the cheap
    test comes first: on SQLite the column is a REAL, and two different 4-place amounts
    below 10^11 never share a double, so equal floats mean equal amounts."""
    if raw is None or value is None:
        return raw is None and value is None
    if type(raw) is float:
        return raw == float(value) or _dec(raw) == value
    return bool(raw == value)


def _dec(value: Any) -> Decimal | None:
    """A money column read raw: Decimal on PostgreSQL; on SQLite a REAL holding a 4-place
    value, which rounds back exactly."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(value).quantize(Q4)


def apply_page(
    conn_obj: ProviderConnection,
    accounts: Sequence[AccountSnapshot],
    *,
    lo: int | None,
    hi: int | None,
    run_id: int | None,
    token: str | None,
    job_id: int | None,
) -> PageResult:
    """Write one page: the provider's view of every account with an id in (lo, hi].

    One range read of the tenants (and of the import candidates) on the unique
    (connection, provider_account_id) index, the comparison in Python, then one short
    transaction that writes only what differs (plus the run's counters and the Job's
    progress, so a page costs one commit)."""
    now = timezone.now()
    result = PageResult(seen=len(accounts))
    known = {
        row[1]: row
        for row in _select_range(
            f"SELECT id, provider_account_id, balance, currency, provider_active, provider_frozen, credit_limit, "  # noqa: S608 - table names from models, values bound
            f"low_balance_threshold, is_low_balance, missing_at_provider FROM {Tenant._meta.db_table} "
            f"WHERE connection_id = %s AND provider_account_id IS NOT NULL",
            [conn_obj.pk],
            lo,
            hi,
        )
    }
    stored_unknown = {
        row[1]: row
        for row in _select_range(
            f"SELECT id, provider_account_id, account_name, account_email, balance, currency, active, frozen "  # noqa: S608 - table names from models, values bound
            f"FROM {UnknownProviderAccount._meta.db_table} WHERE connection_id = %s",
            [conn_obj.pk],
            lo,
            hi,
        )
    }
    updates: list[tuple[Any, ...]] = []
    snapshots: list[tuple[Any, ...]] = []
    alerts: list[LowBalanceAlert] = []
    upserts: list[tuple[Any, ...]] = []
    returned: set[int] = set()
    currency_total = (conn_obj.currency or "").upper()
    for account in accounts:
        aid = int(account.account_id)  # an account the sync lists has an integer id
        returned.add(aid)
        balance = None if account.balance is None else account.balance.quantize(Q4)
        currency = (account.currency or "").upper()
        if balance is not None and currency == currency_total:
            result.balance_total += balance
        row = known.get(aid)
        if row is None:
            _note_unknown(conn_obj.pk, account, balance, currency, stored_unknown.get(aid), result, upserts)
            continue
        tenant_id, _, old_balance, old_currency, old_active, old_frozen, old_credit, threshold, was_low, missing = row
        threshold = _dec(threshold)
        credit = None if account.credit_limit is None else account.credit_limit.quantize(Q4)
        low = threshold is not None and balance is not None and balance < threshold
        balance_same = _same(old_balance, balance)
        if (
            not balance_same
            or old_currency != currency
            or _bool(old_active) != account.active
            or _bool(old_frozen) != account.frozen
            or not _same(old_credit, credit)
            or low != bool(was_low)
            or bool(missing)
        ):
            updates.append((tenant_id, balance, currency, account.active, account.frozen, credit, low, False))
            result.changed += 1
        if balance is not None and not balance_same:
            snapshots.append((tenant_id, balance, currency))
        if low and not was_low and balance is not None and threshold is not None:
            alerts.append(
                LowBalanceAlert(
                    tenant_id=tenant_id, balance=balance, threshold=threshold, currency=currency, created_at=now
                )
            )
    missing_ids, newly_missing, vanished_unknown = _gone(known, stored_unknown, returned)
    result.missing = len(missing_ids)
    with transaction.atomic():
        if run_id is not None:
            _advance_run(run_id, token, result, now, hi=hi, page=bool(accounts))
        if updates:
            _bulk_update_tenants(updates, now)
        if newly_missing:
            Tenant.objects.filter(pk__in=newly_missing).update(missing_at_provider=True, updated_at=now)
        if snapshots:
            _insert_snapshots(snapshots, now)
        if upserts:
            _upsert_unknown(upserts, now)
        if vanished_unknown:
            UnknownProviderAccount.objects.filter(pk__in=vanished_unknown).delete()
        if alerts:
            LowBalanceAlert.objects.bulk_create(alerts)
            transaction.on_commit(_dispatch_alerts)
        if job_id and accounts:
            job_advance(job_id=job_id, by=len(accounts))
    return result


def _advance_run(
    run_id: int, token: str | None, result: PageResult, now: datetime, *, hi: int | None, page: bool
) -> None:
    """Add a page's counters to the run (inside the page's transaction); RunLost if this
    worker no longer owns the run."""
    progressed = SyncRun.objects.filter(pk=run_id, executor=token, state=SyncRun.State.RUNNING).update(
        pages=F("pages") + (1 if page else 0),
        seen=F("seen") + result.seen,
        changed=F("changed") + result.changed,
        new=F("new") + result.new,
        missing=F("missing") + result.missing,
        heartbeat_at=now,
        last_account_id=hi if hi is not None else F("last_account_id"),
    )
    if not progressed:
        raise RunLost


def _gone(
    known: dict[Any, tuple[Any, ...]], stored_unknown: dict[Any, tuple[Any, ...]], returned: set[int]
) -> tuple[list[Any], list[Any], list[Any]]:
    """Of the rows read for a page's id range: the tenants the provider did not return (all,
    and those not yet flagged), and the import candidates to drop (gone, or now a tenant)."""
    missing_ids = [row[0] for aid, row in known.items() if aid not in returned]
    newly_missing = [row[0] for aid, row in known.items() if aid not in returned and not row[9]]
    vanished_unknown = [row[0] for aid, row in stored_unknown.items() if aid not in returned or aid in known]
    return missing_ids, newly_missing, vanished_unknown


def _note_unknown(
    conn_pk: int,
    account: AccountSnapshot,
    balance: Decimal | None,
    currency: str,
    old: tuple[Any, ...] | None,
    result: PageResult,
    upserts: list[tuple[Any, ...]],
) -> None:
    """An account no tenant stands for: count it if new, queue an upsert if it changed."""
    values = (account.name or "", account.email or "", balance, currency, account.active, account.frozen)
    if old is None:
        result.new += 1
    if old is None or (old[2], old[3], _dec(old[4]), old[5], _bool(old[6]), _bool(old[7])) != values:
        upserts.append((conn_pk, int(account.account_id), *values))


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _dispatch_alerts() -> None:
    from billing.tasks import low_balance_alerts_task

    try:
        low_balance_alerts_task.delay()
    except Exception:  # noqa: BLE001 - the alerts stay queued in the table for the next run
        logger.warning("could not publish the low-balance alert task", exc_info=True)


# -- bulk writes (one statement per page, whatever the page size) ----------------------------


def _bulk_update_tenants(rows: list[tuple[Any, ...]], now: datetime) -> None:
    table = Tenant._meta.db_table
    ops = connection.ops
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement with array parameters: psycopg re-parses statements with
            # thousands of placeholders slowly, unnest keeps it at nine.
            cols = list(zip(*rows, strict=True))
            cursor.execute(
                f"""UPDATE {table} AS t SET balance = v.balance, currency = v.currency, provider_active = v.active,
                    provider_frozen = v.frozen, credit_limit = v.credit, is_low_balance = v.low,
                    missing_at_provider = v.missing, balance_synced_at = %s, updated_at = %s
                    FROM unnest(%s::bigint[], %s::numeric[], %s::text[], %s::boolean[], %s::boolean[],
                                %s::numeric[], %s::boolean[], %s::boolean[])
                         AS v(id, balance, currency, active, frozen, credit, low, missing)
                    WHERE t.id = v.id""",  # noqa: S608 - table names from models, values bound
                [now, now, *[list(c) for c in cols]],
            )
        else:
            stamp = ops.adapt_datetimefield_value(now)
            cursor.executemany(
                f"UPDATE {table} SET balance = %s, currency = %s, provider_active = %s, provider_frozen = %s, "  # noqa: S608 - table names from models, values bound
                "credit_limit = %s, is_low_balance = %s, missing_at_provider = %s, balance_synced_at = %s, "
                "updated_at = %s WHERE id = %s",
                [
                    (
                        ops.adapt_decimalfield_value(b, 18, 4),
                        cur,
                        act,
                        frz,
                        ops.adapt_decimalfield_value(cr, 18, 4),
                        low,
                        miss,
                        stamp,
                        stamp,
                        tid,
                    )
                    for tid, b, cur, act, frz, cr, low, miss in rows
                ],
            )


def _insert_snapshots(rows: list[tuple[Any, ...]], now: datetime) -> None:
    table = BalanceSnapshot._meta.db_table
    ops = connection.ops
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            ids, balances, currencies = (list(c) for c in zip(*rows, strict=True))
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, balance, currency, taken_at) "  # noqa: S608 - table names from models, values bound
                "SELECT v.id, v.balance, v.currency, %s FROM unnest(%s::bigint[], %s::numeric[], %s::text[]) "
                "AS v(id, balance, currency)",
                [now, ids, balances, currencies],
            )
        else:
            stamp = ops.adapt_datetimefield_value(now)
            cursor.executemany(
                f"INSERT INTO {table} (tenant_id, balance, currency, taken_at) VALUES (%s, %s, %s, %s)",  # noqa: S608 - table names from models, values bound
                [(tid, ops.adapt_decimalfield_value(b, 18, 4), cur, stamp) for tid, b, cur in rows],
            )


def _upsert_unknown(rows: list[tuple[Any, ...]], now: datetime) -> None:
    table = UnknownProviderAccount._meta.db_table
    ops = connection.ops
    stamp = ops.adapt_datetimefield_value(now) if connection.vendor != "postgresql" else now
    with connection.cursor() as cursor:
        cursor.executemany(
            f"""INSERT INTO {table} (connection_id, provider_account_id, account_name, account_email, balance,
                currency, active, frozen, first_seen_at, last_seen_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (connection_id, provider_account_id) DO UPDATE SET account_name = excluded.account_name,
                account_email = excluded.account_email, balance = excluded.balance, currency = excluded.currency,
                active = excluded.active, frozen = excluded.frozen, last_seen_at = excluded.last_seen_at""",  # noqa: S608
            [
                (
                    c,
                    aid,
                    (name or "")[:100],
                    (email or "")[:254],
                    ops.adapt_decimalfield_value(bal, 18, 4) if connection.vendor != "postgresql" else bal,
                    cur[:3],
                    act,
                    frz,
                    stamp,
                    stamp,
                )
                for c, aid, name, email, bal, cur, act, frz in rows
            ],
        )
