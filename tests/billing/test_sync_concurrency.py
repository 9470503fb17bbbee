"""The sync reads several chunks at once, never more than BILLING_SYNC_CONCURRENCY, holding
at most one chunk more than that; a provider that throttles slows the run down and the run
still syncs every tenant; the connection's rate limit is one bucket shared by every caller."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from billing import ratelimit, services
from billing.models import BalanceSnapshot, SyncRun
from billing.shards import shard_state
from tenants.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)

CHILDREN = "GetChildrenAccounts"


def seed(money: Any, n: int) -> list[int]:
    from sandbox.seed import seed_children

    info = seed_children(str(money.sandbox.db_path), n, seed=5)
    return list(range(info["first_account_id"], info["last_account_id"] + 1))


def run_sync(money: Any) -> SyncRun:
    run = services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()
    return run


def children_calls(money: Any) -> int:
    log = money.sandbox.admin("GET", "faults").json().get("log", [])
    return sum(1 for entry in log if entry["method"] == CHILDREN)


def test_chunks_are_read_side_by_side_never_more_than_the_setting(money, settings) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 4
    settings.BILLING_SYNC_CONCURRENCY = 3
    ids = seed(money, 40)
    for aid in ids:
        money.tenant(account_id=aid, currency="")
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "latency", "latency_ms": 200}])

    run = run_sync(money)

    assert run.state == "succeeded", run.error_message
    assert (run.seen, run.pages, run.changed) == (40, 10, 40)
    # Ten chunks, ten provider calls (nothing read twice), and the discovery walk's one call
    # that the provider refuses (it lists children only by id, name or email).
    assert children_calls(money) == 11
    reader = shard_state(run.job_id)["reader"]
    assert reader["concurrency"] == 3
    # Side by side (with 200 ms a call, the three first reads overlap) but never more than 3;
    # chunks held = those in flight + the one being written.
    assert 2 <= reader["max_in_flight"] <= 3
    assert reader["max_held"] <= 3 + 1
    assert Tenant.objects.filter(balance_synced_at__isnull=True).count() == 0
    assert BalanceSnapshot.objects.count() == Tenant.objects.filter(balance__isnull=False).count()


def test_one_chunk_at_a_time_holds_two(money, settings) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 3
    settings.BILLING_SYNC_CONCURRENCY = 1
    for aid in seed(money, 12):
        money.tenant(account_id=aid, currency="")
    run = run_sync(money)
    assert run.state == "succeeded", run.error_message
    reader = shard_state(run.job_id)["reader"]
    assert reader["max_in_flight"] == 1 and reader["max_held"] <= 2


def test_a_throttling_provider_slows_the_run_down_and_every_tenant_is_synced(money, settings) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 4
    settings.BILLING_SYNC_CONCURRENCY = 2
    ids = seed(money, 16)
    for aid in ids:
        money.tenant(account_id=aid, currency="")
    # The first 8 calls answer 429: whatever the interleaving of the two readers, one of them
    # exhausts the client's four attempts, so the sync itself sees the throttling.
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "http_429", "rate": 1.0, "count": 8, "retry_after": 0}])

    run = run_sync(money)

    assert run.state == "succeeded", run.error_message
    assert run.seen == 16 and run.errors == 0
    assert "throttled" in run.error_message and "slowed down" in run.error_message
    reader = shard_state(run.job_id)["reader"]
    assert reader["throttled"] >= 1
    assert reader["min_window"] == 1  # the window was halved from 2
    # The connection's shared rate was halved for every worker (and recovers slowly).
    assert ratelimit.for_connection(money.connection, 20.0).factor() < 0.75
    assert Tenant.objects.filter(balance_synced_at__isnull=True).count() == 0
    assert BalanceSnapshot.objects.count() == 16


def _stores(tmp_path: Any) -> list[Any]:
    stores: list[Any] = [ratelimit.FileStore(tmp_path / "buckets")]
    try:
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/10", socket_connect_timeout=0.5).ping()
    except Exception:  # noqa: BLE001 - no local Redis: the file store is still covered
        return stores
    store = ratelimit.RedisStore("redis://127.0.0.1:6379/10")
    store.client.delete("portal:ratelimit:shared-test")
    stores.append(store)
    return stores


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_the_bucket_is_shared_by_every_caller(tmp_path, kind: str) -> None:
    stores = {type(s).__name__: s for s in _stores(tmp_path)}
    store = stores.get("FileStore" if kind == "file" else "RedisStore")
    if store is None:
        pytest.skip("no Redis on 127.0.0.1:6379")
    rate, burst, each = 20.0, 2.0, 15
    done: list[int] = []

    def caller() -> None:
        # Each caller has a bucket object of its own: only the store is shared.
        limiter = ratelimit.RateLimiter("shared-test", rate, burst=burst, store=store)
        for _ in range(each):
            limiter.acquire()
            done.append(1)

    started = time.monotonic()
    threads = [threading.Thread(target=caller) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - started
    assert len(done) == 2 * each
    # 30 tokens at 20/s with a burst of 2 need at least 1.4 s together; a bucket per caller
    # would have let them through in half that. (A lower bound: a slow machine only adds.)
    assert elapsed >= 0.9 * (2 * each - burst) / rate, elapsed

    # Throttling seen by one caller slows the other down too.
    one = ratelimit.RateLimiter("shared-test-2", rate, store=store)
    other = ratelimit.RateLimiter("shared-test-2", rate, store=store)
    one.throttled()
    assert other.factor() < 0.6
