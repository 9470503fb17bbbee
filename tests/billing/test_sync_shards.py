"""A balance run is split into id-range shards that any worker can take: together they cover
every tenant once, two workers share them, and a run whose worker was killed is resumed by
the sweeper from the shards it had not finished, with every tenant counted and snapshotted
exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from billing import services
from billing.models import BalanceSnapshot, SyncRun
from billing.shards import plan_ranges, shard_state, sync_sweep
from portal.models import AuditEvent
from tenants.models import Tenant
from tests.billing.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CHILDREN = "GetChildrenAccounts"
SHARDED = {"BILLING_SYNC_PAGE_SIZE": "4", "BILLING_SYNC_CONCURRENCY": "1", "BILLING_SYNC_SHARD_CHUNKS": "2"}


@pytest.fixture(autouse=True)
def _sharded(settings: Any) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 4
    settings.BILLING_SYNC_CONCURRENCY = 1
    settings.BILLING_SYNC_SHARD_CHUNKS = 2  # shards of 8 tenants


def seed(money: Any, n: int) -> list[int]:
    from sandbox.seed import seed_children

    info = seed_children(str(money.sandbox.db_path), n, seed=9)
    return list(range(info["first_account_id"], info["last_account_id"] + 1))


def children_calls(money: Any) -> int:
    log = money.sandbox.admin("GET", "faults").json().get("log", [])
    return sum(1 for entry in log if entry["method"] == CHILDREN)


def snapshots_per_tenant() -> set[int]:
    return {BalanceSnapshot.objects.filter(tenant=t).count() for t in Tenant.objects.filter(balance__isnull=False)}


def test_the_shards_cover_every_tenant_once_and_a_repeat_writes_nothing(money) -> None:
    ids = seed(money, 40)
    for aid in ids:
        money.tenant(account_id=aid, currency="")
    run = services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()

    assert run.state == "succeeded", run.error_message
    assert (run.seen, run.changed, run.pages) == (40, 40, 10)
    shards = shard_state(run.job_id)["shards"]
    # Ranges (lo, hi] of 8 tenants, back to back, the last open above.
    assert [(s["lo"], s["hi"]) for s in shards] == plan_ranges(money.connection.pk, 8)
    assert len(shards) == 6 and shards[0]["lo"] is None and shards[-1]["hi"] is None
    assert all(s["state"] == "done" for s in shards)
    assert all(shards[i]["hi"] == shards[i + 1]["lo"] for i in range(len(shards) - 1))
    assert run.job.done == 40 and run.job.state == "succeeded"
    assert snapshots_per_tenant() == {1}

    again = services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=again.pk)
    again.refresh_from_db()
    assert (again.state, again.seen, again.changed) == ("succeeded", 40, 0)
    assert BalanceSnapshot.objects.count() == 40


@pytest.mark.worker
@pytest.mark.slow
def test_two_workers_share_the_shards_of_one_run(money, workers) -> None:
    ids = seed(money, 48)
    for aid in ids:
        money.tenant(account_id=aid, currency="")
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "latency", "latency_ms": 300}])
    workers.start(**SHARDED)
    workers.start(**SHARDED)

    run = services.sync_start(actor=None, connection=money.connection)
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).state != "running", 90, "the run", workers)
    run.refresh_from_db()

    assert run.state == "succeeded", run.error_message
    assert (run.seen, run.pages) == (48, 12)
    shards = shard_state(run.job_id)["shards"]
    # The owner names the worker process that wrote the shard: both took part.
    processes = {s["owner"].split(":")[2] for s in shards if s["owner"]}
    assert len(processes) == 2, shards
    assert children_calls(money) == 12 + 1  # each chunk once, and the refused discovery call
    assert snapshots_per_tenant() == {1}


@pytest.mark.worker
@pytest.mark.slow
def test_a_killed_run_is_resumed_from_its_unfinished_shards(money, workers, settings) -> None:
    settings.BILLING_SYNC_STALE_SECONDS = 1
    ids = seed(money, 40)
    tenants = [money.tenant(account_id=aid, currency="") for aid in ids]
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "latency", "latency_ms": 400}])
    first = workers.start(**SHARDED)
    run = services.sync_start(actor=None, connection=money.connection)
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).pages >= 3, 60, "three chunks", workers)
    first.kill()
    run.refresh_from_db()
    assert run.state == "running" and 3 <= run.pages < 10
    states = [s["state"] for s in shard_state(run.job_id)["shards"]]
    assert "done" in states and "pending" in states, states

    # The sweeper finds the run's heartbeat stale and queues it again; a new worker resumes.
    wait_for(lambda: run.pk in sync_sweep(), 30, "the sweeper to resume the run")
    workers.start(**SHARDED)
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).state != "running", 90, "the resumed run", workers)
    run.refresh_from_db()

    assert run.state == "succeeded", run.error_message
    assert "resumed 1 time" in run.error_message
    # Every tenant counted once over both workers, none missed, one snapshot each.
    assert (run.seen, run.changed, run.pages, run.missing) == (40, 40, 10, 0)
    assert not Tenant.objects.filter(pk__in=[t.pk for t in tenants], balance_synced_at__isnull=True).exists()
    assert snapshots_per_tenant() == {1} and BalanceSnapshot.objects.count() == 40
    # Not read again from zero: the chunks written before the kill were not asked again (at
    # most the chunk being written and the one in flight when the worker died are read
    # twice); the resumed worker's discovery call is the one more.
    assert 10 + 1 <= children_calls(money) <= 10 + 1 + 2, children_calls(money)
    assert AuditEvent.objects.filter(action="billing.sync.resumed", data__run=str(run.uuid)).count() == 1

    # A repeat finds nothing changed: the re-read chunk wrote no second snapshot.
    for worker in workers.started:
        worker.kill()
    again = services.sync_start(actor=None, connection=money.connection)
    money.sandbox.clear_faults()
    services.sync_execute(sync_run_id=again.pk)
    again.refresh_from_db()
    assert (again.state, again.changed) == ("succeeded", 0)
    assert BalanceSnapshot.objects.count() == 40
