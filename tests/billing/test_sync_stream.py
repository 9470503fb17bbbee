"""One worker reads the shards it takes as one stream: the next shard is claimed when the
ids of the one before run out, so its first reads go out while the last chunks of the shard
before are still being read and written (no pause of the reads between two shards), and
every shard is still marked done once, after its own chunks, with every tenant written once."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from billing import provider as prov
from billing import services, shards
from billing.models import BalanceSnapshot, SyncRun
from portal.models import Job
from tenants.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)

CHILDREN = "GetChildrenAccounts"


@pytest.fixture(autouse=True)
def _small(settings: Any) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 4
    settings.BILLING_SYNC_CONCURRENCY = 2
    settings.BILLING_SYNC_SHARD_CHUNKS = 4  # shards of 16 tenants: 4 chunks, twice the window


def test_one_worker_reads_the_next_shard_before_the_one_before_is_done(money, monkeypatch) -> None:
    from sandbox.seed import seed_children

    info = seed_children(str(money.sandbox.db_path), 48, seed=5)
    ids = list(range(info["first_account_id"], info["last_account_id"] + 1))
    for aid in ids:
        money.tenant(account_id=aid, currency="")
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "latency", "latency_ms": 250}])
    events: list[tuple[str, Any]] = []
    lock = threading.Lock()
    read, done = prov.read_children, shards._done

    def reading(connection: Any, account_ids: Any) -> Any:
        with lock:
            events.append(("read", account_ids[0]))
        return read(connection, account_ids)

    def marking(job_id: int, index: int, owner: str, stats: Any) -> None:
        done(job_id, index, owner, stats)
        with lock:
            events.append(("done", index))

    monkeypatch.setattr(prov, "read_children", reading)
    monkeypatch.setattr(shards, "_done", marking)
    run = services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()

    assert run.state == "succeeded", run.error_message
    plan = shards.shard_state(run.job_id)["shards"]
    assert len(plan) >= 3
    inside = [[i for i in ids if (s["lo"] is None or i > s["lo"]) and (s["hi"] is None or i <= s["hi"])] for s in plan]
    firsts = {index: min(members) for index, members in enumerate(inside) if members}
    assert len(firsts) >= 3
    # Each later shard's first read went out before the shard before it was marked done.
    for index in sorted(firsts)[1:]:
        assert events.index(("read", firsts[index])) < events.index(("done", index - 1)), events
    assert sorted(e[1] for e in events if e[0] == "done") == list(range(len(plan)))  # each once
    # Every chunk read once (two reader threads record their starts in either order).
    reads = [e[1] for e in events if e[0] == "read"]
    assert sorted(reads) == [i for i in sorted(ids) if (i - ids[0]) % 4 == 0] and len(set(reads)) == len(reads)
    assert (run.seen, run.changed, run.pages, run.missing) == (48, 48, 12, 0)
    assert all(s["state"] == "done" for s in shards.shard_state(run.job_id)["shards"])
    assert Job.objects.get(pk=run.job_id).done == 48
    assert {BalanceSnapshot.objects.filter(tenant=t).count() for t in Tenant.objects.exclude(balance=None)} == {1}
    assert SyncRun.objects.get(pk=run.pk).last_account_id == ids[-1]
