"""The nightly balance sync (docs/sync.md).

One run reads every tenant of a connection from the provider by id: the tenants' provider
ids come from the database in ascending order, a chunk (1,000) at a time by keyset, and each
chunk is one GetChildrenAccounts call with ``child_account_id=a;b;c``
(billing.provider.read_children, an independent function: ids in, snapshots out). Each
chunk is written in one short transaction: only the tenants whose provider data changed
(one bulk statement), a balance snapshot only for a changed balance, the asked ids the
provider did not return (missing_at_provider), low-balance crossings, threshold and status
drift, and the run's counters. Several chunks are read at once (BILLING_SYNC_CONCURRENCY,
billing.sync_fetch) under a rate limit shared by every worker (billing.ratelimit); memory
holds that many chunks and one more whatever the number of tenants.

Then, where the provider lists every child, a cheap id-only walk discovers the accounts no
tenant stands for (UnknownProviderAccount, for import). A provider that lists children only
by id, name or email refuses that walk; the run notes it and succeeds.

A run is a SyncRun row; a partial unique index allows one running run per connection, so
two beats (or a beat and a staff member) cannot walk the same connection at once. A run
is split into id-range shards that any worker can take (billing.shards); a run killed
halfway leaves every finished chunk committed and consistent, and the sweeper resumes it
from the shards it had not finished.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F
from django.utils import timezone

from billing import conf, sync_write
from billing import provider as prov
from billing.models import DriftItem, LowBalanceAlert, SyncRun
from portal.audit import audit_log
from portal.errors import Conflict, NotAllowed, PortalError
from portal.jobs import job_advance, job_create, job_finish
from portal.models import Job
from portal.roles import Actor, has_perm
from providers.base import AccountSnapshot, ListingNeedsFilter
from providers.capabilities import Capability
from tenants.models import ProviderConnection, Tenant, TenantOperation, UnknownProviderAccount

logger = logging.getLogger("billing.sync")

Q4 = sync_write.Q4


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
        if ok and run.kind == SyncRun.Kind.BALANCES:
            from billing import runway  # kept beside its one use in this module

            currency = (run.connection.currency or "USD").upper()
            total = runway.tenants_balance(connection_id=run.connection_id, currency=currency)
            SyncRun.objects.filter(pk=run.pk).update(tenants_balance=total)
            runway.publish_runway_check(run.connection_id, currency)
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
    drift: int = 0
    balance_total: Decimal = Decimal(0)
    alerts: list[int] = field(default_factory=list)


def sync_execute(*, sync_run_id: int) -> SyncRun | None:
    """Read the connection's tenants by id list, then discover the rest (module docstring).
    The run is split into id-range shards that several workers may take, each read several
    chunks at a time (billing.shards, billing.sync_fetch); None when another executor has
    the run."""
    from billing.shards import execute_run

    return execute_run(sync_run_id)


def tenant_refresh(*, tenant_id: int) -> None:
    """Re-read one tenant's provider data (after a transfer) through the same chunk logic."""
    tenant = Tenant.objects.select_related("connection").get(pk=tenant_id)
    if tenant.provider_account_id is None or not prov.supports(tenant.connection, Capability.LIST_BALANCES):
        return
    aid = int(tenant.provider_account_id)
    apply_chunk(
        tenant.connection, [aid], prov.read_children(tenant.connection, [aid]), run_id=None, token=None, job_id=None
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


@dataclass
class _ChunkWrites:
    updates: list[tuple[Any, ...]] = field(default_factory=list)
    snapshots: list[tuple[Any, ...]] = field(default_factory=list)
    alerts: list[LowBalanceAlert] = field(default_factory=list)
    drift: list[_Drift] = field(default_factory=list)


def apply_chunk(
    conn_obj: ProviderConnection,
    asked: Sequence[int],
    accounts: Sequence[AccountSnapshot],
    *,
    run_id: int | None,
    token: str | None,
    job_id: int | None,
    chunks: int = 1,
    shard: sync_write.ShardProgress | None = None,
) -> PageResult:
    """Write one chunk: the provider's view of the tenants whose ids were ``asked`` (ascending).
    ``chunks`` consecutive chunks may be written together (one transaction); the run's
    ``pages`` counts them all.

    One short transaction that writes only what differs: the changed tenants, a snapshot per
    changed balance, the tenants the provider did not return (missing_at_provider),
    low-balance crossings, new drift, and the progress: a shard's chunk moves the shard's own
    progress row (``shard``; RunLost when the shard or the run is no longer this worker's,
    and the chunk rolls back), and billing.shards publishes the run's counters after the
    commit; a chunk of no shard moves the run's counters and the Job's progress here. On
    PostgreSQL a COPY and one set statement compare and write (_apply_chunk_set,
    billing/sync_write.py); elsewhere one range read of those tenants on the unique
    (connection, provider_account_id) index, the comparison in Python, then executemany."""
    now = timezone.now()
    result = PageResult()
    if not asked:
        return result
    if sync_write.set_based():
        return _apply_chunk_set(
            conn_obj, asked, accounts, run_id=run_id, token=token, job_id=job_id, now=now, chunks=chunks, shard=shard
        )
    wanted = set(asked)
    known = {
        row[1]: row
        for row in _select_range(
            f"SELECT id, provider_account_id, balance, currency, provider_active, provider_frozen, credit_limit, "  # noqa: S608 - table names from models, values bound
            f"low_balance_threshold, is_low_balance, missing_at_provider, provider_threshold, status "
            f"FROM {Tenant._meta.db_table} WHERE connection_id = %s AND provider_account_id IS NOT NULL",
            [conn_obj.pk],
            min(asked) - 1,
            max(asked),
        )
        if row[1] in wanted
    }
    writes = _ChunkWrites()
    returned: set[int] = set()
    currency_total = (conn_obj.currency or "").upper()
    for account in accounts:
        aid = int(account.account_id)
        row = known.get(aid)
        if row is None or aid in returned:
            continue
        returned.add(aid)
        _compare(account, row, result, writes, currency_total, now)
    result.seen = len(returned)
    missing = [row for aid, row in known.items() if aid not in returned]
    newly_missing = [row[0] for row in missing if not row[9]]
    result.missing = len(missing)
    fresh_drift = _new_drift(conn_obj, writes.drift, run_id)
    result.drift = len(fresh_drift)
    # No savepoint: the caller's transaction (a shard's chunk and its progress) is the unit.
    with transaction.atomic(savepoint=False):
        if shard is not None:
            _advance_shard(shard, result, max(asked), len(asked), chunks, now)
        elif run_id is not None:
            _advance_run(run_id, token, result, now, hi=max(asked), pages=chunks)
        if writes.updates:
            sync_write.bulk_update_tenants(writes.updates, now)
        if newly_missing:
            Tenant.objects.filter(pk__in=newly_missing).update(missing_at_provider=True, updated_at=now)
        if writes.snapshots:
            sync_write.insert_snapshots(writes.snapshots, now)
        if fresh_drift:
            DriftItem.objects.bulk_create(fresh_drift, ignore_conflicts=True)
            Tenant.objects.filter(pk__in={d.tenant_id for d in fresh_drift}).update(has_drift=True, updated_at=now)
        if writes.alerts:
            LowBalanceAlert.objects.bulk_create(writes.alerts)
            transaction.on_commit(_dispatch_alerts)
        if job_id:
            job_advance(job_id=job_id, by=len(asked))
    return result


def _apply_chunk_set(
    conn_obj: ProviderConnection,
    asked: Sequence[int],
    accounts: Sequence[AccountSnapshot],
    *,
    run_id: int | None,
    token: str | None,
    job_id: int | None,
    now: datetime,
    chunks: int,
    shard: sync_write.ShardProgress | None,
) -> PageResult:
    """apply_chunk on PostgreSQL: the chunk's rows COPYed into a temporary table and one set
    statement (billing.sync_write.write_chunk_set) that compares and writes in the database,
    drift, alerts and the shard's progress included; Python sees only counters."""
    wanted = set(asked)
    answered: set[int] = set()
    lines: list[str] = []
    line = sync_write.copy_line
    for a in accounts:
        aid = int(a.account_id)
        if aid in wanted and aid not in answered:  # the first answer for an id counts, as in _compare
            answered.add(aid)
            lines.append(line(aid, a.balance, a.currency, a.active, a.frozen, a.credit_limit, a.min_balance_to_notify))
    result = PageResult()
    with transaction.atomic(savepoint=False):
        done = sync_write.write_chunk_set(
            conn_obj.pk,
            asked,
            lines,
            answered,
            now,
            (conn_obj.currency or "").upper(),
            run_id=run_id,
            shard=shard,
            pages=chunks,
        )
        if not done.progressed:
            raise RunLost
        result.seen, result.changed, result.missing = done.seen, done.changed, done.missing
        result.balance_total, result.drift = done.balance_total, done.drift
        if done.alerts:
            transaction.on_commit(_dispatch_alerts)
        if shard is None and run_id is not None:
            _advance_run(run_id, token, result, now, hi=max(asked), pages=chunks)
        if job_id:
            job_advance(job_id=job_id, by=len(asked))
    return result


def _compare(
    account: AccountSnapshot,
    row: tuple[Any, ...],
    result: PageResult,
    writes: _ChunkWrites,
    currency_total: str,
    now: datetime,
) -> None:
    """One tenant: queue its update, snapshot, low-balance crossing and drift findings."""
    tenant_id, _, old_balance, old_currency, old_active, old_frozen, old_credit, threshold, was_low, missing = row[:10]
    old_provider_threshold, status = row[10], row[11]
    balance = None if account.balance is None else account.balance.quantize(Q4)
    currency = (account.currency or "").upper()
    if balance is not None and currency == currency_total:
        result.balance_total += balance
    threshold = _dec(threshold)
    credit = None if account.credit_limit is None else account.credit_limit.quantize(Q4)
    notify = None if account.min_balance_to_notify is None else account.min_balance_to_notify.quantize(Q4)
    low = threshold is not None and balance is not None and balance < threshold
    balance_same = _same(old_balance, balance)
    if (
        not balance_same
        or old_currency != currency
        or _bool(old_active) != account.active
        or _bool(old_frozen) != account.frozen
        or not _same(old_credit, credit)
        or not _same(old_provider_threshold, notify)
        or low != bool(was_low)
        or bool(missing)
    ):
        writes.updates.append(
            (tenant_id, balance, currency, account.active, account.frozen, credit, low, False, notify)
        )
        result.changed += 1
    if balance is not None and not balance_same:
        writes.snapshots.append((tenant_id, balance, currency))
    if low and not was_low and balance is not None and threshold is not None:
        writes.alerts.append(
            LowBalanceAlert(
                tenant_id=tenant_id, balance=balance, threshold=threshold, currency=currency, created_at=now
            )
        )
    writes.drift.extend(_drift_findings(tenant_id, status, threshold, notify, account, currency))


# -- drift the sync sees: the provider's threshold and status against the portal's ----------

THRESHOLD_OPS = (TenantOperation.Kind.SET_THRESHOLD, TenantOperation.Kind.EDIT)
STATUS_OPS = (
    TenantOperation.Kind.FREEZE,
    TenantOperation.Kind.UNFREEZE,
    TenantOperation.Kind.ACTIVATE,
    TenantOperation.Kind.CLOSE,
)


@dataclass(frozen=True)
class _Drift:
    tenant_id: int
    kind: str
    fingerprint: str
    evidence: dict[str, Any]
    portal_amount: Decimal | None = None
    provider_amount: Decimal | None = None
    currency: str = ""


def _drift_findings(
    tenant_id: int,
    status: str,
    threshold: Decimal | None,
    notify: Decimal | None,
    account: AccountSnapshot,
    currency: str,
) -> list[_Drift]:
    """What differs between the portal and the provider for one tenant (no database)."""
    found: list[_Drift] = []
    if threshold is not None and notify is not None and notify != threshold:
        found.append(
            _Drift(
                tenant_id=tenant_id,
                kind=DriftItem.Kind.THRESHOLD_MISMATCH,
                fingerprint=f"threshold:{tenant_id}:{threshold}:{notify}",
                evidence={"portal_threshold": str(threshold), "provider_threshold": str(notify)},
                portal_amount=threshold,
                provider_amount=notify,
                currency=currency[:3],
            )
        )
    portal_active = status == Tenant.Status.ACTIVE
    # The portal freezes a tenant by disabling it (active=false); a frozen tenant the
    # provider reports enabled and not frozen is the disagreement.
    if (portal_active and (account.frozen is True or account.active is False)) or (
        status == Tenant.Status.FROZEN and account.active is True and account.frozen is not True
    ):
        found.append(
            _Drift(
                tenant_id=tenant_id,
                kind=DriftItem.Kind.STATUS_MISMATCH,
                fingerprint=f"status:{tenant_id}:{status}:{account.active}:{account.frozen}",
                evidence={
                    "portal_status": status,
                    "provider_active": account.active,
                    "provider_frozen": account.frozen,
                },
            )
        )
    return found


def _new_drift(conn_obj: ProviderConnection, found: list[_Drift], run_id: int | None) -> list[DriftItem]:
    """The findings not recorded before and not explained by an operation in flight: two
    reads for the whole chunk (open operations, known fingerprints), none when nothing
    differs. A finding keeps its fingerprint while the values stay the same, so a nightly
    run never records it twice, resolved or not."""
    if not found:
        return []
    tenant_ids = {f.tenant_id for f in found}
    busy = set(
        TenantOperation.objects.filter(
            tenant_id__in=tenant_ids, state__in=TenantOperation.OPEN_STATES, kind__in=[*THRESHOLD_OPS, *STATUS_OPS]
        ).values_list("tenant_id", "kind")
    )
    recorded = set(
        DriftItem.objects.filter(fingerprint__in=[f.fingerprint for f in found]).values_list("fingerprint", flat=True)
    )
    items = []
    for f in found:
        ops = THRESHOLD_OPS if f.kind == DriftItem.Kind.THRESHOLD_MISMATCH else STATUS_OPS
        if f.fingerprint in recorded or any((f.tenant_id, op) in busy for op in ops):
            continue
        items.append(
            DriftItem(
                connection=conn_obj,
                tenant_id=f.tenant_id,
                kind=f.kind,
                fingerprint=f.fingerprint,
                portal_amount=f.portal_amount,
                provider_amount=f.provider_amount,
                currency=f.currency,
                evidence=f.evidence,
                sync_run_id=run_id,
            )
        )
    return items


def _advance_run(
    run_id: int, token: str | None, result: PageResult, now: datetime, *, hi: int | None, pages: int
) -> None:
    """Add a chunk's counters to the run (inside the chunk's transaction); RunLost if this
    worker no longer owns the run."""
    progressed = SyncRun.objects.filter(pk=run_id, executor=token, state=SyncRun.State.RUNNING).update(
        pages=F("pages") + pages,
        seen=F("seen") + result.seen,
        changed=F("changed") + result.changed,
        new=F("new") + result.new,
        missing=F("missing") + result.missing,
        heartbeat_at=now,
        last_account_id=hi if hi is not None else F("last_account_id"),
    )
    if not progressed:
        raise RunLost


def _advance_shard(
    shard: sync_write.ShardProgress, result: PageResult, last: int, asked: int, pages: int, now: datetime
) -> None:
    """A chunk's progress on the shard's own progress row (the portable path; PostgreSQL
    does it inside the chunk statement): the last id written and the shard's counters.
    RunLost if the shard or the run is no longer this worker's."""
    params = Job.objects.filter(pk=shard.job_id).values_list("params", flat=True).first() or {}
    params = dict(params)
    for key, more in (
        ("pages", pages),
        ("seen", result.seen),
        ("changed", result.changed),
        ("missing", result.missing),
        ("drift", result.drift),
    ):
        params[key] = int(params.get(key) or 0) + more
    params["balance"] = str(Decimal(params.get("balance") or "0") + result.balance_total)
    params["last"] = last
    live = SyncRun.objects.filter(pk=shard.run_id, executor=shard.token, state=SyncRun.State.RUNNING)
    if not Job.objects.filter(Exists(live), pk=shard.job_id, params__owner=shard.owner).update(
        params=params, done=F("done") + asked, updated_at=now
    ):
        raise RunLost


# -- discovery: accounts no tenant stands for (import candidates) ----------------------------


@dataclass
class Discovery:
    balance: Decimal = Decimal(0)
    note: str = ""


def _discover(conn_obj: ProviderConnection, run_id: int, token: str, size: int) -> Discovery:
    """Walk every child id (a cheap id-only walk) where the provider lists them, and keep the
    accounts no tenant stands for as import candidates (UnknownProviderAccount): new ones
    added, changed ones updated, those gone or adopted dropped. Where the provider lists
    children only by id, name or email, the run says so and leaves the candidates as they
    are; staff import by id, name or email instead."""
    found = Discovery()
    last: int | None = None
    currency_total = (conn_obj.currency or "").upper()
    try:
        for ids in prov.prefetch(prov.iter_children_id_pages(conn_obj, page_size=size)):
            if not ids:
                continue
            found.balance += _discover_page(
                conn_obj, ids, lo=last, hi=ids[-1], run_id=run_id, token=token, currency=currency_total
            )
            last = ids[-1]
    except ListingNeedsFilter:
        found.note = "discovery skipped: " + LISTING_REFUSED
        return found
    _discover_page(conn_obj, [], lo=last, hi=None, run_id=run_id, token=token, currency=currency_total)
    return found


LISTING_REFUSED = (
    "this provider only lists accounts by id, name or email; import by id, name or email on the import page"
)


def _discover_page(
    conn_obj: ProviderConnection,
    ids: Sequence[int],
    *,
    lo: int | None,
    hi: int | None,
    run_id: int | None,
    token: str | None,
    currency: str,
) -> Decimal:
    """One page of the discovery walk: the child ids in (lo, hi]. Only the ids no tenant has
    are read in full (usually none)."""
    now = timezone.now()
    tenant_ids = {
        row[0]
        for row in _select_range(
            f"SELECT provider_account_id FROM {Tenant._meta.db_table} "  # noqa: S608 - table names from models, values bound
            f"WHERE connection_id = %s AND provider_account_id IS NOT NULL",
            [conn_obj.pk],
            lo,
            hi,
        )
    }
    stored = {
        row[1]: row
        for row in _select_range(
            f"SELECT id, provider_account_id, account_name, account_email, balance, currency, active, frozen "  # noqa: S608 - table names from models, values bound
            f"FROM {UnknownProviderAccount._meta.db_table} WHERE connection_id = %s",
            [conn_obj.pk],
            lo,
            hi,
        )
    }
    strangers = [i for i in ids if i not in tenant_ids]
    result = PageResult()
    upserts: list[tuple[Any, ...]] = []
    returned: set[int] = set()
    balance_total = Decimal(0)
    for account in prov.read_children(conn_obj, strangers) if strangers else ():
        aid = int(account.account_id)
        returned.add(aid)
        balance = None if account.balance is None else account.balance.quantize(Q4)
        cur = (account.currency or "").upper()
        if balance is not None and cur == currency:
            balance_total += balance
        _note_unknown(conn_obj.pk, account, balance, cur, stored.get(aid), result, upserts)
    vanished = [row[0] for aid, row in stored.items() if aid not in returned]
    with transaction.atomic():
        if run_id is not None:
            _advance_run(run_id, token, result, now, hi=None, pages=0)
        if upserts:
            sync_write.upsert_unknown(upserts, now)
        if vanished:
            UnknownProviderAccount.objects.filter(pk__in=vanished).delete()
    return balance_total


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
