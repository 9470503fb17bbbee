"""What a chunk write leaves behind: a quiet night writes no rows and records no drift twice
(on PostgreSQL it does not even read the recorded drift), the Job's progress is the number of
tenants written, a writer that falls behind writes the waiting chunks together, and a
resumed run skips the shards it had finished."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import services, sync_write
from billing.models import BalanceSnapshot, DriftItem, SyncRun
from billing.shards import ShardIds, _claim, _done, _run_shard, ensure_plan, shard_state, sync_sweep
from billing.sync import claim_run
from billing.sync_fetch import ChunkReader
from portal.models import Job
from tenants.models import Tenant
from tests.billing.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CHILDREN = "GetChildrenAccounts"


@pytest.fixture(autouse=True)
def _small_chunks(settings: Any) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 4
    settings.BILLING_SYNC_CONCURRENCY = 1
    settings.BILLING_SYNC_SHARD_CHUNKS = 2  # shards of 8 tenants


def seed(money: Any, n: int) -> list[int]:
    from sandbox.seed import seed_children

    info = seed_children(str(money.sandbox.db_path), n, seed=11)
    return list(range(info["first_account_id"], info["last_account_id"] + 1))


def run_sync(money: Any) -> SyncRun:
    run = services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()
    return run


def children_calls(money: Any) -> int:
    log = money.sandbox.admin("GET", "faults").json().get("log", [])
    return sum(1 for entry in log if entry["method"] == CHILDREN)


def test_a_quiet_night_writes_nothing_and_records_no_drift_twice(money) -> None:
    ids = seed(money, 12)
    tenants = [money.tenant(account_id=aid, currency="") for aid in ids]
    money.client.freeze_account(ids[0])  # frozen at the provider, active in the portal: drift

    first = run_sync(money)
    assert first.state == "succeeded", first.error_message
    assert (first.seen, first.changed) == (12, 12)
    assert DriftItem.objects.filter(tenant=tenants[0], kind=DriftItem.Kind.STATUS_MISMATCH).count() == 1
    stamps = dict(Tenant.objects.values_list("pk", "updated_at"))
    snapshots, drift = BalanceSnapshot.objects.count(), DriftItem.objects.count()

    with CaptureQueriesContext(connection) as queries:
        quiet = run_sync(money)

    assert (quiet.state, quiet.seen, quiet.changed, quiet.missing) == ("succeeded", 12, 0, 0)
    assert dict(Tenant.objects.values_list("pk", "updated_at")) == stamps  # no tenant row written
    assert BalanceSnapshot.objects.count() == snapshots
    assert DriftItem.objects.count() == drift
    if sync_write.set_based():
        # The recorded fingerprint is left out inside the chunk statement: no drift read.
        drift_table = DriftItem._meta.db_table
        standalone = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
        assert not [sql for sql in standalone if drift_table in sql], standalone


def test_the_job_progress_is_the_number_of_tenants_written(money, settings) -> None:
    settings.BILLING_SYNC_CONCURRENCY = 3
    ids = seed(money, 30)
    for aid in ids:
        money.tenant(account_id=aid, currency="")

    run = run_sync(money)

    assert run.state == "succeeded", run.error_message
    job = Job.objects.get(pk=run.job_id)
    assert run.total_count == 30 and job.total == 30
    assert job.done == run.seen + run.missing == 30
    assert run.pages == 8  # 30 tenants in chunks of 4, however many were written together


def test_a_writer_behind_the_reads_takes_the_waiting_chunks_together(money) -> None:
    ids = seed(money, 20)
    for aid in ids:
        money.tenant(account_id=aid, currency="")
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "latency", "latency_ms": 50}])  # logs the calls
    reader = ChunkReader(
        money.connection,
        ShardIds(money.connection.pk, None, 4),
        after=None,
        concurrency=3,
        limiter=None,
    )
    batches = reader.batches(3)
    first = next(batches)
    # While the first batch is "written", the window's reads come back.
    wait_for(lambda: reader.stats.reads >= 4 and reader.stats.in_flight == 0, 30, "the reads in flight")
    rest = list(batches)

    sizes = [len(b) for b in [first, *rest]]
    assert sum(sizes) == 5 and max(sizes) > 1, sizes
    asked = [aid for batch in [first, *rest] for ids_, _ in batch for aid in ids_]
    assert asked == sorted(ids)  # in id order, every chunk once
    assert reader.stats.max_held <= 3 + 1
    assert children_calls(money) == 5


def test_a_resumed_run_skips_the_shards_it_had_finished(money, settings) -> None:
    settings.BILLING_SYNC_STALE_SECONDS = 1
    ids = seed(money, 24)
    for aid in ids:
        money.tenant(account_id=aid, currency="")
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "latency", "latency_ms": 1}])  # logs the calls
    run = services.sync_start(actor=None, connection=money.connection)
    claimed = claim_run(run.pk)
    assert claimed is not None
    run, token = claimed
    job_id = ensure_plan(run, 4)
    # One worker writes the first shard, then dies before taking the next one.
    owner = f"{token[:12]}:test:1:dead"
    taken = _claim(job_id, owner)
    assert taken is not None
    index, shard = taken
    _done(job_id, index, owner, _run_shard(run, token, job_id, index, owner, shard, 4))
    written = SyncRun.objects.get(pk=run.pk).seen
    assert written == 8
    calls_before = children_calls(money)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=run.heartbeat_at.replace(year=2000))

    assert run.pk in sync_sweep()
    services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()

    assert run.state == "succeeded", run.error_message
    assert (run.seen, run.changed, run.pages, run.missing) == (24, 24, 6, 0)
    # Only the unfinished shards were read again: 4 chunks, and the refused discovery call.
    assert children_calls(money) - calls_before == 4 + 1
    assert Job.objects.get(pk=run.job_id).done == 24
    assert all(s["state"] == "done" for s in shard_state(run.job_id)["shards"])
    assert {BalanceSnapshot.objects.filter(tenant=t).count() for t in Tenant.objects.exclude(balance=None)} == {1}
