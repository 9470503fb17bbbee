"""A balance sync split into id-range shards that any worker can take, and resumed when its
workers die (docs/sync.md, "Shards" and "Resume").

At the start the run's tenants are cut into id ranges of about ``BILLING_SYNC_SHARD_CHUNKS``
chunks each (one index read per range, computed from the database). The plan lives in the
run's Job (``params["sync"]``, no table of its own): per shard its range ``(lo, hi]``, the
last id written, its state (pending, running, done), its owner and heartbeat, and the sums
that cannot live in the run's counters (the balance total, new drift).

Each chunk is written by ``billing.sync.apply_chunk`` (the run's counters, the Job's
progress) and the shard's progress is committed **in the same transaction**, so a shard
killed between two chunks resumes after its last written chunk with counters that count
every tenant once. A chunk read again after a kill writes nothing (snapshots are written
only on change).

The worker that executes the run (billing.sync_run) plans it, publishes one
``billing.sync_shard`` task per further shard and then takes shards itself until none is
left; the worker that finishes the last shard runs discovery and finishes the run. The
SyncRun's executor token fences every write: a run taken over by the sweeper stops its old
workers at their next chunk.

The sweeper (billing.sync_sweep, every minute) resumes a run whose heartbeat is stale: it
frees the run for a new executor, puts the shards that were running back to pending and
queues the run again; and it puts back a single shard whose own heartbeat is stale while the
rest of the run goes on. After ``BILLING_SYNC_MAX_RESUMES`` resumes the run is abandoned.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing import conf, ratelimit, sync_write
from billing import provider as prov
from billing.models import SyncRun
from billing.sync_fetch import ChunkReader, ReaderStats
from portal.audit import audit_log
from portal.jobs import job_create, job_start
from portal.models import Job
from tenants.models import ProviderConnection, Tenant

logger = logging.getLogger("billing.sync")

PENDING, RUNNING, DONE = "pending", "running", "done"
SHARD_KIND = "billing.balances.shard"
_ZERO = {"pages": 0, "seen": 0, "changed": 0, "missing": 0, "drift": 0, "balance": "0"}
SPREAD = 8


class ShardLost(Exception):
    """Another worker owns this shard now (the sweeper gave it away)."""


# -- the plan ---------------------------------------------------------------------------


def _ids(connection_id: int, after: int | None, hi: int | None) -> Any:
    rows = Tenant.objects.filter(connection_id=connection_id, provider_account_id__isnull=False)
    if after is not None:
        rows = rows.filter(provider_account_id__gt=after)
    if hi is not None:
        rows = rows.filter(provider_account_id__lte=hi)
    return rows.order_by("provider_account_id").values_list("provider_account_id", flat=True)


class ShardIds:
    """A shard's ids for its reader, a chunk at a time: the ids of the fixed range
    ``(after, hi]`` are read in one query the first time they are asked for and handed out in
    chunks from memory (a shard holds some 25,000 ids, not the run's), instead of one keyset
    query per chunk. Past the last id read (the open last shard, the reader's final look) it
    asks the database again, so a tenant added above every id during the run is still read;
    one adopted inside the range behind the read waits for the next run."""

    def __init__(self, connection_id: int, hi: int | None, size: int) -> None:
        self.connection_id, self.hi, self.size = connection_id, hi, size
        self._ids: list[int] = []

    def __call__(self, after: int | None) -> list[int]:
        start = 0 if after is None else bisect.bisect_right(self._ids, after)
        if start >= len(self._ids):
            self._ids = [int(i) for i in _ids(self.connection_id, after, self.hi) if i is not None]
            start = 0
        return self._ids[start : start + self.size]


def plan_ranges(connection_id: int, span: int) -> list[tuple[int | None, int | None]]:
    """Id ranges ``(lo, hi]`` of about ``span`` tenants each; the last is open above, so a
    tenant added above every id during the run is read by it."""
    bounds: list[int] = []
    after: int | None = None
    while True:
        hit = list(_ids(connection_id, after, None)[span - 1 : span])
        if not hit:
            break
        after = int(hit[0])
        bounds.append(after)
    ranges: list[tuple[int | None, int | None]] = []
    lo: int | None = None
    for bound in bounds:
        ranges.append((lo, bound))
        lo = bound
    ranges.append((lo, None))
    return ranges


def shard_chunks(chunks: int) -> int:
    """Chunks per shard for a run of ``chunks``: at most BILLING_SYNC_SHARD_CHUNKS, fewer
    so that a small run still makes about ``SPREAD`` shards for idle workers to share, and
    never fewer than twice the reads one worker keeps in flight (each shard's reader fills
    its window at the start and drains it at the end)."""
    return max(2 * conf.sync_concurrency(), min(conf.sync_shard_chunks(), math.ceil(chunks / SPREAD)))


@contextmanager
def _locked(job_id: int) -> Iterator[dict[str, Any]]:
    """The run's shard state under the Job's row lock (inside the caller's transaction)."""
    job = Job.objects.select_for_update().only("id", "params").get(pk=job_id)
    params = dict(job.params or {})
    state: dict[str, Any] = dict(params.get("sync") or {})
    yield state
    params["sync"] = state
    job.params = params
    job.save(update_fields=["params"])


def ensure_plan(run: SyncRun, size: int) -> int:
    """Plan the run's shards unless a resumed run has a plan already; the Job's id."""
    job_id = run.job_id
    if job_id is None:
        job = job_create(kind="billing.balances", title=f"Balance sync: {run.connection.name}")
        SyncRun.objects.filter(pk=run.pk).update(job=job)
        run.job_id = job_id = job.pk
    with transaction.atomic(), _locked(job_id) as state:
        if state.get("shards"):
            return job_id
        span = size * shard_chunks(
            math.ceil(
                Tenant.objects.filter(connection_id=run.connection_id, provider_account_id__isnull=False).count() / size
            )
        )
        ranges = plan_ranges(run.connection_id, span)
        rows = Job.objects.bulk_create(
            [
                Job(
                    kind=SHARD_KIND,
                    title=f"Balance sync shard {index + 1} of {len(ranges)}"[:300],
                    state=Job.State.RUNNING,
                    params={"run": run.pk, "index": index, "owner": "", "last": None, **_ZERO},
                )
                for index in range(len(ranges))
            ]
        )
        state["shards"] = [
            {"lo": lo, "hi": hi, "state": PENDING, "owner": "", "beat": "", "job": row.pk}
            for (lo, hi), row in zip(ranges, rows, strict=True)
        ]
        state.setdefault("resumes", 0)
        state["finalizing"] = ""
    return job_id


def shard_progress(job_id: int) -> list[dict[str, Any]]:
    """Each shard's progress row, in plan order: the last id written, the shard's counters
    (pages, seen, changed, missing), its balance sum and new drift, and ``beat`` (when the
    row last moved)."""
    jobs = [s["job"] for s in shard_state(job_id).get("shards", [])]
    rows = {
        pk: (params, updated)
        for pk, params, updated in Job.objects.filter(pk__in=jobs).values_list("id", "params", "updated_at")
    }
    return [{**rows[pk][0], "beat": rows[pk][1]} for pk in jobs]


def _set_owner(job_ids: list[int], owner: str) -> None:
    """Give shards' progress rows to ``owner`` ("" frees them): the fence every chunk of
    the shard checks in its own transaction."""
    for job in Job.objects.select_for_update().filter(pk__in=job_ids).only("id", "params"):
        job.params = {**(job.params or {}), "owner": owner}
        job.save(update_fields=["params"])


def shard_state(job_id: int) -> dict[str, Any]:
    params = Job.objects.filter(pk=job_id).values_list("params", flat=True).first() or {}
    return dict(params.get("sync") or {})


def _claim(job_id: int, owner: str) -> tuple[int, dict[str, Any]] | None:
    with transaction.atomic(), _locked(job_id) as state:
        for index, shard in enumerate(state.get("shards", [])):
            if shard["state"] == PENDING:
                shard.update(state=RUNNING, owner=owner, beat=timezone.now().isoformat())
                _set_owner([shard["job"]], owner)
                last = (Job.objects.filter(pk=shard["job"]).values_list("params", flat=True).first() or {}).get("last")
                return index, {**shard, "last": last}
    return None


def _publish(run: SyncRun, token: str, job_id: int) -> None:
    """The run's counters, heartbeat and progress bar from its shards' rows (a short
    statement after a chunk's commit, billing.sync_write.publish_run); RunLost if the run is
    another executor's now."""
    from billing.sync import RunLost

    jobs = [s["job"] for s in shard_state(job_id).get("shards", [])]
    if not sync_write.publish_run(run.pk, token, job_id, jobs, timezone.now()):
        raise RunLost


def _done(job_id: int, index: int, owner: str, stats: ReaderStats) -> None:
    with transaction.atomic(), _locked(job_id) as state:
        shard = state["shards"][index]
        if shard["owner"] != owner or shard["state"] != RUNNING:
            raise ShardLost
        shard["state"] = DONE
        shard["beat"] = timezone.now().isoformat()
        reader = dict(state.get("reader") or {})
        reader["max_in_flight"] = max(int(reader.get("max_in_flight", 0)), stats.max_in_flight)
        reader["max_held"] = max(int(reader.get("max_held", 0)), stats.max_held)
        reader["concurrency"] = conf.sync_concurrency()
        reader["throttled"] = int(reader.get("throttled", 0)) + stats.throttled
        reader["reads"] = int(reader.get("reads", 0)) + stats.reads
        reader["limit_wait_s"] = round(float(reader.get("limit_wait_s", 0)) + stats.limit_wait, 3)
        reader["read_s"] = round(float(reader.get("read_s", 0)) + stats.read_time, 3)
        reader["min_window"] = min(int(reader.get("min_window", stats.min_window)), stats.min_window)
        state["reader"] = reader


def _take_finalization(job_id: int, owner: str) -> bool:
    """True for the one caller that finishes the run, once every shard is done."""
    with transaction.atomic(), _locked(job_id) as state:
        shards = state.get("shards", [])
        if not shards or any(s["state"] != DONE for s in shards) or state.get("finalizing"):
            return False
        state["finalizing"] = owner
        return True


# -- executing ----------------------------------------------------------------------------


def execute_run(sync_run_id: int) -> SyncRun | None:
    """billing.sync_run: claim the run, plan (or keep a resumed run's plan), hand the further
    shards to other workers, then take shards here until none is left."""
    from billing.sync import RunLost, claim_run, finish_run

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
        size = prov.ids_per_read(conn_obj, conf.sync_page_size())
        total = Tenant.objects.filter(connection=conn_obj, provider_account_id__isnull=False).count()
        SyncRun.objects.filter(pk=run.pk).update(total_count=total)
        job_id = ensure_plan(run, size)
        job_start(job_id=job_id, total=total, message="Reading the tenants' accounts…")
        pending = sum(1 for s in shard_state(job_id).get("shards", []) if s["state"] == PENDING)
        _dispatch_shards(run.pk, token, pending - 1)
        work(run, token, size)
    except RunLost:
        logger.warning("sync %s lost its lease to a newer executor; stopping", run.uuid)
    except Exception as exc:  # noqa: BLE001 - recorded on the run, shown in the console
        logger.exception("sync %s failed", run.uuid)
        finish_run(run, token, ok=False, message=f"{type(exc).__name__}: {exc}")
    logger.info("sync %s: this worker done in %.1fs", run.uuid, time.monotonic() - started)
    return SyncRun.objects.get(pk=run.pk)


def shard_execute(sync_run_id: int, token: str) -> None:
    """billing.sync_shard: take shards of a running run until none is left."""
    from billing.sync import RunLost, finish_run

    run = (
        SyncRun.objects.select_related("connection")
        .filter(pk=sync_run_id, executor=token, state=SyncRun.State.RUNNING)
        .first()
    )
    if run is None or run.job_id is None:
        return
    try:
        work(run, token, prov.ids_per_read(run.connection, conf.sync_page_size()))
    except RunLost:
        logger.warning("sync %s: a shard worker lost the run; stopping", run.uuid)
    except Exception as exc:  # noqa: BLE001 - recorded on the run, shown in the console
        logger.exception("sync %s failed in a shard", run.uuid)
        finish_run(run, token, ok=False, message=f"{type(exc).__name__}: {exc}")


def work(run: SyncRun, token: str, size: int) -> None:
    """Take pending shards until none is left, read one after the other through one reader
    (_Stream); the caller that completes the plan finishes the run."""
    assert run.job_id is not None
    owner = f"{token[:12]}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    while True:
        claimed = _claim(run.job_id, owner)
        if claimed is None:
            break
        stream = _Stream(run, run.job_id, owner, size, first=claimed, more=True)
        stats = _run_stream(run, token, run.job_id, owner, stream)
        _done(run.job_id, stream.claimed[-1][0], owner, stats)
    if _take_finalization(run.job_id, owner):
        finalize(run, token, size)


class _Stream:
    """The ids of the shards one worker reads, as one stream for one reader: when a shard's
    ids run out, the next pending shard is claimed and its ids follow, so its reads start
    while the last chunks of the shard before are still in flight (no drain of the reads
    between two shards). ``tags`` says which claimed shard each chunk handed out belongs to,
    in the order the reader hands the chunks back."""

    def __init__(
        self, run: SyncRun, job_id: int, owner: str, size: int, *, first: tuple[int, dict[str, Any]], more: bool
    ) -> None:
        self.run, self.job_id, self.owner, self.size, self.more = run, job_id, owner, size, more
        self.claimed: list[tuple[int, dict[str, Any]]] = []
        self.tags: deque[int] = deque()
        self._start(first)

    def _start(self, claimed: tuple[int, dict[str, Any]]) -> None:
        shard = claimed[1]
        self.claimed.append(claimed)
        self.ids = ShardIds(self.run.connection_id, shard["hi"], self.size)
        self.after = shard["last"] if shard["last"] is not None else shard["lo"]

    def __call__(self, _last: int | None) -> list[int]:
        while True:
            chunk = self.ids(self.after)
            if chunk:
                self.after = chunk[-1]
                self.tags.append(len(self.claimed) - 1)
                return chunk
            taken = _claim(self.job_id, self.owner) if self.more else None
            if taken is None:
                return []
            self._start(taken)


def _run_shard(
    run: SyncRun, token: str, job_id: int, index: int, owner: str, shard: dict[str, Any], size: int
) -> ReaderStats:
    """One claimed shard read and written on its own (the caller marks it done)."""
    return _run_stream(run, token, job_id, owner, _Stream(run, job_id, owner, size, first=(index, shard), more=False))


def _run_stream(run: SyncRun, token: str, job_id: int, owner: str, stream: _Stream) -> ReaderStats:
    """Write the stream's chunks in order, each batch on the rows of its own shard; every
    shard but the last claimed is marked done once a chunk of a later shard comes (the
    caller marks the last one done, with the reader's record)."""
    from billing.sync import RunLost, apply_chunk

    conn_obj: ProviderConnection = run.connection
    jobs = [s["job"] for s in shard_state(job_id).get("shards", [])]
    concurrency = conf.sync_concurrency()
    rate = conf.provider_rate_per_second()
    reader = ChunkReader(
        conn_obj,
        stream,
        after=None,
        concurrency=concurrency,
        limiter=ratelimit.for_connection(conn_obj, float(rate)) if rate else None,
    )
    finished = 0  # stream.claimed[:finished] are marked done
    every = conf.sync_publish_seconds()
    published = time.monotonic() - every  # the first chunk shows at once
    unpublished = False
    try:
        # A writer that falls behind the reads writes the chunks waiting for it together.
        for batch in reader.batches(concurrency):
            tags = [stream.tags.popleft() for _ in batch]
            for position in sorted(set(tags)):
                while finished < position:
                    _done(
                        job_id,
                        stream.claimed[finished][0],
                        owner,
                        ReaderStats(window=concurrency, min_window=concurrency),
                    )
                    finished += 1
                part = [chunk for chunk, tag in zip(batch, tags, strict=True) if tag == position]
                shard = stream.claimed[position][1]
                progress = sync_write.ShardProgress(job_id=shard["job"], owner=owner, run_id=run.pk, token=token)
                asked = [aid for ids, _ in part for aid in ids]
                accounts = [account for _, answer in part for account in answer]
                # The chunk and the shard's progress: one transaction on rows of this shard only.
                apply_chunk(
                    conn_obj, asked, accounts, run_id=run.pk, token=token, job_id=None, chunks=len(part), shard=progress
                )
                unpublished = True
            # The rows every shard shares (the run's counters and heartbeat, the progress bar)
            # move in a statement of their own after the commit, at most every
            # BILLING_SYNC_PUBLISH_MS:
            # the shards' rows already hold every chunk's counters, a reader of the bar sees it
            # move a few times a second, and a batch costs no extra round trips for it.
            if time.monotonic() - published >= every:
                if not sync_write.publish_run(run.pk, token, job_id, jobs, timezone.now()):
                    raise RunLost
                published, unpublished = time.monotonic(), False
        if unpublished and not sync_write.publish_run(run.pk, token, job_id, jobs, timezone.now()):
            raise RunLost
        while finished < len(stream.claimed) - 1:
            _done(job_id, stream.claimed[finished][0], owner, ReaderStats(window=concurrency, min_window=concurrency))
            finished += 1
    except ShardLost as exc:
        raise RunLost from exc
    except RunLost:
        raise
    except Exception:
        # A read or a write that failed for good ends the run: its counters still show every
        # chunk committed before it (the run's failure is recorded by the caller).
        if unpublished:
            try:
                sync_write.publish_run(run.pk, token, job_id, jobs, timezone.now())
            except Exception:  # noqa: BLE001 - the failure being raised is the one to record
                logger.warning("sync %s: could not publish the counters of a failed stream", run.uuid, exc_info=True)
        raise
    return reader.stats


def finalize(run: SyncRun, token: str, size: int) -> None:
    """Every shard is written: discovery, the balance total, the note, the run finished."""
    from billing.sync import _discover, finish_run

    assert run.job_id is not None
    _publish(run, token, run.job_id)
    found = _discover(run.connection, run.pk, token, size)
    state = shard_state(run.job_id)
    shards = shard_progress(run.job_id)
    balance = sum((Decimal(s.get("balance") or "0") for s in shards), Decimal(0))
    drift = sum(int(s.get("drift") or 0) for s in shards)
    # Summed here, not in SQL: SQLite's decimal arithmetic is REAL and would drift.
    SyncRun.objects.filter(pk=run.pk, executor=token).update(total_balance=balance + found.balance)
    run.refresh_from_db()
    notes = [found.note] if found.note else []
    if drift:
        notes.append(f"{drift} new drift item{'s' if drift != 1 else ''} recorded")
    throttled = int((state.get("reader") or {}).get("throttled", 0))
    if throttled:
        notes.append(f"the provider throttled {throttled} read{'s' if throttled != 1 else ''}; the sync slowed down")
    if int(state.get("resumes", 0)):
        notes.append(f"resumed {state['resumes']} time{'s' if state['resumes'] != 1 else ''}")
    finish_run(run, token, ok=True, message="; ".join(notes))


def _dispatch_shards(run_id: int, token: str, count: int) -> None:
    from billing.tasks import sync_shard_task

    for _ in range(max(0, count)):
        try:
            sync_shard_task.delay(run_id, token)
        except Exception:  # noqa: BLE001 - the executor takes the shard itself; the sweeper re-queues
            logger.warning("could not publish a shard task for run %s", run_id, exc_info=True)
            return


# -- the sweeper --------------------------------------------------------------------------


def sync_sweep(now: datetime | None = None) -> list[int]:
    """Resume every balance run whose heartbeat is stale, and re-queue single stale shards of
    runs that go on; the ids of the runs resumed."""
    now = now or timezone.now()
    stale_before = now - conf.sync_stale_after()
    resumed = []
    for run in SyncRun.objects.filter(kind=SyncRun.Kind.BALANCES, state=SyncRun.State.RUNNING).select_related(
        "connection"
    ):
        if run.heartbeat_at < stale_before:
            if resume(run, now):
                resumed.append(run.pk)
        elif run.job_id and run.executor:
            released = _release_stale_shards(run.job_id, stale_before)
            if released:
                logger.warning("sync %s: %d stale shard(s) re-queued", run.uuid, released)
                _dispatch_shards(run.pk, run.executor, released)
    return resumed


def _release_stale_shards(job_id: int, stale_before: datetime) -> int:
    released: list[int] = []
    with transaction.atomic(), _locked(job_id) as state:
        moved = {
            pk: updated
            for pk, updated in Job.objects.filter(
                pk__in=[s["job"] for s in state.get("shards", []) if s["state"] == RUNNING]
            ).values_list("id", "updated_at")
        }
        for shard in state.get("shards", []):
            if shard["state"] != RUNNING:
                continue
            beats = [datetime.fromisoformat(shard["beat"])] if shard.get("beat") else []
            if shard["job"] in moved:
                beats.append(moved[shard["job"]])
            if not beats or max(beats) < stale_before:
                shard.update(state=PENDING, owner="")
                released.append(shard["job"])
        _set_owner(released, "")
    return len(released)


def resume(run: SyncRun, now: datetime) -> bool:
    """Free a stale run for a new executor that continues from its unfinished shards; after
    too many resumes, abandon it (the start's stale-run rule)."""
    from billing.sync import _abandon_stale

    state = shard_state(run.job_id) if run.job_id else {}
    if int(state.get("resumes", 0)) >= conf.sync_max_resumes():
        _abandon_stale(run.connection, run.kind, now)
        return False
    with transaction.atomic():
        if not SyncRun.objects.filter(
            pk=run.pk, state=SyncRun.State.RUNNING, executor=run.executor, heartbeat_at=run.heartbeat_at
        ).update(executor="", heartbeat_at=now):
            return False
        if run.job_id:
            with _locked(run.job_id) as locked:
                freed = []
                for shard in locked.get("shards", []):
                    if shard["state"] == RUNNING:
                        shard.update(state=PENDING, owner="")
                        freed.append(shard["job"])
                _set_owner(freed, "")
                locked["resumes"] = int(locked.get("resumes", 0)) + 1
                locked["finalizing"] = ""
        audit_log(
            actor=None,
            action="billing.sync.resumed",
            data={"run": str(run.uuid), "connection": run.connection_id},
        )
        run_id = run.pk

        def dispatch() -> None:
            from billing.tasks import sync_run_task

            try:
                sync_run_task.delay(run_id)
            except Exception:  # noqa: BLE001 - the next sweep tries again
                logger.warning("could not publish the resumed run %s", run_id, exc_info=True)

        transaction.on_commit(dispatch)
    logger.warning("sync %s resumed from its unfinished shards", run.uuid)
    return True
