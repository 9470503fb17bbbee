"""Two shards of one run write side by side: a chunk's transaction touches the shard's own
progress row and the tenants of its range, never a row every shard shares (the SyncRun, the
run's Job); the run's counters follow in a short statement after the commit. A shard the
sweeper gave away writes nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections, transaction

from billing import provider as prov
from billing import services, sync_write
from billing.models import SyncRun
from billing.shards import ShardIds, _claim, _set_owner, ensure_plan, shard_progress
from billing.sync import RunLost, apply_chunk, claim_run
from portal.models import Job
from tenants.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)

SIZE = 4


@pytest.fixture(autouse=True)
def _small_shards(settings: Any) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = SIZE
    settings.BILLING_SYNC_CONCURRENCY = 1
    settings.BILLING_SYNC_SHARD_CHUNKS = 2  # shards of 8 tenants


def _planned_run(money: Any, n: int) -> tuple[SyncRun, str, int]:
    from sandbox.seed import seed_children

    info = seed_children(str(money.sandbox.db_path), n, seed=5)
    for aid in range(info["first_account_id"], info["last_account_id"] + 1):
        money.tenant(account_id=aid, currency="")
    run = services.sync_start(actor=None, connection=money.connection)
    claimed = claim_run(run.pk)
    assert claimed is not None
    run, token = claimed
    return run, token, ensure_plan(run, SIZE)


def _first_chunk(run: SyncRun, token: str, job_id: int, owner: str) -> tuple[list[int], Any, Any]:
    taken = _claim(job_id, owner)
    assert taken is not None
    _, shard = taken
    ids = ShardIds(run.connection_id, shard["hi"], SIZE)(shard["lo"])
    progress = sync_write.ShardProgress(job_id=shard["job"], owner=owner, run_id=run.pk, token=token)
    return ids, prov.read_children(run.connection, ids), progress


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks between sessions: PostgreSQL")
def test_two_shards_are_in_their_chunk_transactions_at_once(money) -> None:
    run, token, job_id = _planned_run(money, 16)
    first = _first_chunk(run, token, job_id, f"{token[:12]}:test:1:a")
    second = _first_chunk(run, token, job_id, f"{token[:12]}:test:2:b")
    inside, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold_first_chunk_open() -> None:
        try:
            with transaction.atomic():
                ids, accounts, progress = first
                apply_chunk(run.connection, ids, accounts, run_id=run.pk, token=token, job_id=None, shard=progress)
                inside.set()
                assert release.wait(30)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failure.append(exc)
            inside.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold_first_chunk_open)
    thread.start()
    try:
        assert inside.wait(30) and not failure, failure
        with transaction.atomic(), connection.cursor() as cursor:
            # Waiting on the other shard's transaction would fail here instead of hanging.
            cursor.execute("SET LOCAL lock_timeout = '3s'")
            cursor.execute(f"SELECT id FROM {SyncRun._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT", [run.pk])  # noqa: S608 - model table
            cursor.execute(f"SELECT id FROM {Job._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT", [job_id])  # noqa: S608 - model table
            ids, accounts, progress = second
            page = apply_chunk(run.connection, ids, accounts, run_id=run.pk, token=token, job_id=None, shard=progress)
            assert page.seen == SIZE
    finally:
        release.set()
        thread.join(30)
    assert not failure, failure

    # Both chunks committed on their shards' rows; the run's counters follow on publish.
    rows = shard_progress(job_id)
    assert [(r["seen"], r["last"]) for r in rows[:2]] == [(SIZE, first[0][-1]), (SIZE, second[0][-1])]
    assert SyncRun.objects.get(pk=run.pk).seen == 0
    shards = [r["job"] for r in _plan(job_id)]
    assert sync_write.publish_run(run.pk, token, job_id, shards, run.heartbeat_at)
    run.refresh_from_db()
    assert (run.seen, run.pages, Job.objects.get(pk=job_id).done) == (2 * SIZE, 2, 2 * SIZE)


def test_a_shard_given_away_writes_nothing(money) -> None:
    run, token, job_id = _planned_run(money, 8)
    ids, accounts, progress = _first_chunk(run, token, job_id, f"{token[:12]}:test:1:a")
    with transaction.atomic():
        _set_owner([progress.job_id], "")  # the sweeper freed the shard

    with pytest.raises(RunLost):
        with transaction.atomic():
            apply_chunk(run.connection, ids, accounts, run_id=run.pk, token=token, job_id=None, shard=progress)
    assert not Tenant.objects.filter(balance_synced_at__isnull=False).exists()
    assert shard_progress(job_id)[0]["seen"] == 0
    # A run taken by another executor cannot publish counters either.
    assert not sync_write.publish_run(run.pk, "another", job_id, [progress.job_id], run.heartbeat_at)


def _plan(job_id: int) -> list[dict[str, Any]]:
    from billing.shards import shard_state

    return list(shard_state(job_id)["shards"])
