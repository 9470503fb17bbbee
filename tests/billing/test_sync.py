"""The nightly balance sync against the sandbox: only changes written, snapshots only on
change, unknown and missing accounts, low-balance alerts once per crossing, the DB lock,
failures halfway, children added and removed during the walk, a killed worker."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from billing import services
from billing.models import BalanceSnapshot, LowBalanceAlert, SyncRun
from billing.shards import shard_progress
from portal.errors import Conflict
from tenants.models import Membership, Tenant, UnknownProviderAccount
from tests.billing.conftest import wait_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

CHILDREN = "GetChildrenAccounts"


@pytest.fixture(autouse=True)
def _small_pages(settings: Any) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 7


@pytest.fixture(autouse=True)
def _listing_allowed(money: Any) -> None:
    """These tests cover the discovery of unknown accounts too: the sandbox lists every child
    (tests/billing/test_sync_id_lists.py covers the provider that refuses)."""
    money.sandbox.admin("PUT", "options", {"children_require_filter": False})


def charge(money: Any, account_id: int, amount: str) -> None:
    from sandbox import money as units
    from sandbox.store import CHARGE_TYPE, Store

    store = money.sandbox.store()
    try:
        with store.write() as conn:
            Store.add_transaction(
                conn,
                account_id=account_id,
                amount=-units.parse(amount),
                currency="USD",
                transaction_type=CHARGE_TYPE,
                ts=int(time.time()),
                description="test call",
            )
    finally:
        store.close()


def run_sync(money: Any) -> SyncRun:
    run = services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()
    return run


def sandbox_children(money: Any) -> dict[int, dict[str, Any]]:
    store = money.sandbox.store()
    try:
        with store.connection() as conn:
            ids = [r[0] for r in conn.execute("SELECT account_id FROM accounts WHERE parent_id IS NOT NULL")]
        return {i: store.account(i) for i in ids}
    finally:
        store.close()


def seed(money: Any, n: int) -> list[int]:
    from sandbox.seed import seed_children

    info = seed_children(str(money.sandbox.db_path), n, seed=7)
    return list(range(info["first_account_id"], info["last_account_id"] + 1))


def test_first_and_repeat_sync(money) -> None:
    ids = seed(money, 30)
    tenants = {aid: money.tenant(account_id=aid, currency="") for aid in ids[:20]}
    gone = [money.tenant(account_id=10**9 + i, currency="") for i in range(2)]
    run = run_sync(money)
    assert run.state == "succeeded", run.error_message
    # seen: the tenants the provider returned; new: accounts discovered; pages: chunks of ids.
    assert (run.seen, run.changed, run.new, run.missing) == (20, 20, 10, 2)
    assert run.pages == 4 and run.errors == 0 and run.total_count == 22
    truth = sandbox_children(money)
    for aid, tenant in tenants.items():
        tenant.refresh_from_db()
        assert tenant.balance == truth[aid]["balance"]
        assert tenant.currency == truth[aid]["currency"]
        assert tenant.provider_active == truth[aid]["active"] and tenant.provider_frozen == truth[aid]["frozen"]
        assert tenant.credit_limit == truth[aid]["credit_limit"]
        assert not tenant.missing_at_provider
    assert BalanceSnapshot.objects.count() == 20
    unknown = {u.provider_account_id: u for u in UnknownProviderAccount.objects.all()}
    assert set(unknown) == set(ids[20:])
    assert unknown[ids[25]].balance == truth[ids[25]]["balance"]
    assert all(Tenant.objects.get(pk=t.pk).missing_at_provider for t in gone)

    # Repeat: only what changed is written.
    before = dict(Tenant.objects.values_list("pk", "updated_at"))
    charge(money, ids[3], "1.25")
    charge(money, ids[11], "0.0001")
    again = run_sync(money)
    assert (again.seen, again.changed, again.new, again.missing) == (20, 2, 0, 2)
    assert BalanceSnapshot.objects.count() == 22
    after = dict(Tenant.objects.values_list("pk", "updated_at"))
    assert {pk for pk in after if after[pk] != before[pk]} == {tenants[ids[3]].pk, tenants[ids[11]].pk}
    assert Tenant.objects.get(pk=tenants[ids[3]].pk).balance == truth[ids[3]]["balance"] - Decimal("1.25")

    # An adopted import candidate leaves the list; a returning account is no longer missing.
    Tenant.objects.filter(pk=gone[0].pk).update(provider_account_id=ids[29])
    third = run_sync(money)
    assert ids[29] not in set(UnknownProviderAccount.objects.values_list("provider_account_id", flat=True))
    assert not Tenant.objects.get(pk=gone[0].pk).missing_at_provider
    assert third.missing == 1


def test_low_balance_alerts_once_per_crossing(money, mailoutbox) -> None:
    aid = money.child(balance="20")
    tenant = money.tenant(account_id=aid)
    owner = UserFactory(username="owner1", role="customer_owner")
    Membership.objects.create(user=owner, tenant=tenant)
    viewer = UserFactory(username="viewer1", role="customer_viewer")
    Membership.objects.create(user=viewer, tenant=tenant)
    admin = UserFactory(username="adm", role="reseller_admin")
    services.tenant_set_low_balance_threshold(actor=admin, tenant=tenant, threshold=Decimal("10"))
    run_sync(money)
    assert not Tenant.objects.get(pk=tenant.pk).is_low_balance and not mailoutbox
    charge(money, aid, "15")
    run_sync(money)
    services.low_balance_alerts_send()
    assert Tenant.objects.get(pk=tenant.pk).is_low_balance
    assert sorted(m.to[0] for m in mailoutbox) == ["owner1@example.com", "staff-alerts@reseller.example"]
    # Still low the next night: no new email.
    charge(money, aid, "1")
    run_sync(money)
    services.low_balance_alerts_send()
    services.low_balance_alerts_send()
    assert len(mailoutbox) == 2
    # Back above, then below again: a new crossing, new emails.
    money.deposit(aid, Decimal("50"))
    run_sync(money)
    assert not Tenant.objects.get(pk=tenant.pk).is_low_balance
    charge(money, aid, "50")
    run_sync(money)
    services.low_balance_alerts_send()
    assert len(mailoutbox) == 4
    assert LowBalanceAlert.objects.count() == 2
    assert Tenant.objects.filter(is_low_balance=True).count() == 1


def _seed_passing_first_then_failing(n_fail: int) -> int:
    """A fault seed under which, at rate 0.5, the first request passes and the next n fail
    (the sandbox draws one number per matching request from random.Random(seed))."""
    for candidate in range(10_000):
        rng = random.Random(candidate)
        draws = [rng.random() for _ in range(n_fail + 1)]
        if draws[0] >= 0.5 and all(d < 0.5 for d in draws[1:]):
            return candidate
    raise AssertionError("no seed")


def test_a_page_that_keeps_failing_fails_the_run_and_changes_nothing_beyond_it(money, settings) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 5
    settings.BILLING_SYNC_CONCURRENCY = 1  # the fault's draws follow the order of the requests
    ids = seed(money, 15)
    for aid in ids:
        money.tenant(account_id=aid, currency="")
    # Page 1 answers; page 2 fails four times in a row (the client's read retries give up).
    money.sandbox.set_faults(
        [{"method": CHILDREN, "kind": "http_502", "rate": 0.5}], seed=_seed_passing_first_then_failing(4)
    )
    run = run_sync(money)
    assert run.state == "failed" and run.errors == 1 and "502" in run.error_message
    assert run.pages == 1 and run.seen == 5
    synced = set(Tenant.objects.filter(balance_synced_at__isnull=False).values_list("provider_account_id", flat=True))
    assert synced == set(ids[:5])
    assert not Tenant.objects.filter(missing_at_provider=True).exists()
    money.sandbox.clear_faults()
    again = run_sync(money)
    assert again.state == "succeeded" and again.seen == 15 and again.changed == 10
    assert BalanceSnapshot.objects.count() == Tenant.objects.filter(balance__isnull=False).count()


def test_children_added_and_removed_during_the_walk(money, settings) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 5
    ids = seed(money, 20)
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "latency", "latency_ms": 250}])
    run = services.sync_start(actor=None, connection=money.connection)
    thread = threading.Thread(
        target=lambda: (services.sync_execute(sync_run_id=run.pk), __import__("django.db").db.connection.close())
    )
    thread.start()
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).new >= 1, 30, "the first page")
    # Remove two children already walked past, add three new ones.
    from sandbox.store import Store

    store = money.sandbox.store()
    try:
        with store.write() as conn:
            conn.execute("DELETE FROM accounts WHERE account_id IN (?, ?)", (ids[0], ids[2]))
            Store.bump_accounts_version(conn)
    finally:
        store.close()
    added = seed(money, 3)
    thread.join(60)
    run.refresh_from_db()
    assert run.state == "succeeded", run.error_message
    final = set(sandbox_children(money))
    seen = set(UnknownProviderAccount.objects.values_list("provider_account_id", flat=True))
    assert final <= seen, f"skipped: {sorted(final - seen)}"
    assert set(added) <= seen
    assert run.new == len(seen), "an account was counted twice"
    money.sandbox.clear_faults()
    second = run_sync(money)
    assert set(UnknownProviderAccount.objects.values_list("provider_account_id", flat=True)) == final
    assert second.new == 0 and len(final) == 21


def test_one_running_sync_per_connection_and_one_executor_per_run(money) -> None:
    run = services.sync_start(actor=None, connection=money.connection)
    with pytest.raises(Conflict):
        services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=run.pk)
    assert services.sync_execute(sync_run_id=run.pk) is None  # a duplicated task message
    run.refresh_from_db()
    assert run.state == "succeeded"
    services.sync_start(actor=None, connection=money.connection)  # free again


def test_a_stale_run_is_abandoned_and_a_new_one_starts(money, settings) -> None:
    settings.BILLING_SYNC_STALE_SECONDS = 1
    run = services.sync_start(actor=None, connection=money.connection)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timezone.timedelta(seconds=5))
    fresh = services.sync_start(actor=None, connection=money.connection)
    run.refresh_from_db()
    assert run.state == "failed" and "abandoned" in run.error_message
    assert fresh.state == "running"
    # The abandoned run's executor, if it still lives, can no longer write.
    assert services.sync_execute(sync_run_id=run.pk) is None


def test_the_nightly_beat_syncs_every_connection_that_lists_balances(money, voiceit_connection) -> None:
    from billing.tasks import sync_nightly_task

    sync_nightly_task()
    sync_nightly_task()  # a second beat: the running run's constraint admits one
    assert list(SyncRun.objects.values_list("connection_id", "kind")) == [(money.connection.pk, "balances")]


def test_a_tenant_is_refreshed_after_a_transfer(money, reseller_billing) -> None:
    tenant = money.tenant(balance="5")
    t = services.transfer_create(
        actor=reseller_billing, tenant=tenant, amount=Decimal("2"), direction="to_tenant", reason="refresh"
    )
    services.transfer_execute(transfer_id=t.pk)
    services.tenant_refresh(tenant_id=tenant.pk)
    tenant.refresh_from_db()
    assert tenant.balance == Decimal("7")
    assert BalanceSnapshot.objects.filter(tenant=tenant).count() == 1


@pytest.mark.worker
@pytest.mark.slow
def test_a_sync_killed_halfway_leaves_whole_pages_and_the_next_run_completes(money, workers, settings) -> None:
    settings.BILLING_SYNC_STALE_SECONDS = 1
    ids = seed(money, 30)
    tenants = [money.tenant(account_id=aid, currency="") for aid in ids]
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "latency", "latency_ms": 400}])
    # The run's counters after every batch, so the kill lands between two of them.
    worker = workers.start(BILLING_SYNC_PAGE_SIZE="5", BILLING_SYNC_PUBLISH_MS="0")
    run = services.sync_start(actor=None, connection=money.connection)
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).pages >= 2, 60, "two pages", workers)
    worker.kill()
    run.refresh_from_db()
    assert run.state == "running" and 2 <= run.pages < 6
    done = Tenant.objects.filter(pk__in=[t.pk for t in tenants], balance_synced_at__isnull=False)
    # Whole pages only: every synced tenant is at or below the last id the shard's progress
    # row committed with its chunk, none above (the run's own counters follow just after).
    (progress,) = shard_progress(run.job_id)
    assert set(done.values_list("provider_account_id", flat=True)) == {a for a in ids if a <= progress["last"]}
    assert run.last_account_id <= progress["last"] < ids[-1]
    assert BalanceSnapshot.objects.count() == Tenant.objects.filter(balance__isnull=False).count()
    money.sandbox.clear_faults()
    time.sleep(1.1)
    fresh = run_sync(money)
    assert fresh.state == "succeeded" and fresh.seen == 30
    run.refresh_from_db()
    assert run.state == "failed"
    assert Tenant.objects.filter(balance_synced_at__isnull=True).count() == 0
    assert BalanceSnapshot.objects.count() == Tenant.objects.filter(balance__isnull=False).count()
