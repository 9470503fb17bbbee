"""Concurrency: threads with their own database connections race on the same rows (two
workers on one transfer, a double click with one key, two transfers over the budget, two
beats, two reconcilers, a stale worker); the database decides."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from billing import services
from billing.models import JournalEntry, SyncRun, Transfer
from portal.errors import Conflict, PortalError
from tests.billing.conftest import check_invariants

pytestmark = pytest.mark.django_db(transaction=True)

TRANSFER = "TransferMoneyToChildAccount"
COUNT_CALLS = {"method": TRANSFER, "kind": "latency", "latency_ms": 0}


def race(*funcs: Callable[[], Any]) -> list[Any]:
    """Run the callables in threads released together; returns results or exceptions."""
    barrier = threading.Barrier(len(funcs))
    results: list[Any] = [None] * len(funcs)

    def run(i: int, func: Callable[[], Any]) -> None:
        from django.db import connection as conn

        try:
            barrier.wait(10)
            results[i] = func()
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            results[i] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(funcs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_workers_run_the_same_transfer_at_once_one_http_call(money, reseller_billing) -> None:
    t = services.transfer_create(
        actor=reseller_billing, tenant=money.tenant(), amount=Decimal("10"), direction="to_tenant", reason="c1"
    )
    money.sandbox.set_faults([COUNT_CALLS])
    for _ in range(3):  # a few rounds: the race is real, not one lucky interleaving
        results = race(*[lambda: services.transfer_execute(transfer_id=t.pk)] * 4)
        assert not [r for r in results if isinstance(r, BaseException)], results
    t.refresh_from_db()
    assert t.state == "succeeded" and t.attempt == 1
    assert money.transfer_calls() == 1
    assert money.ops(t.payment_reference) == 1
    check_invariants(money)


def test_a_double_click_with_one_key_records_one_transfer(money, reseller_billing) -> None:
    tenant = money.tenant()

    def create(amount: str = "10") -> Transfer:
        return services.transfer_create(
            actor=reseller_billing,
            tenant=tenant,
            amount=Decimal(amount),
            direction="to_tenant",
            reason="c2",
            idempotency_key="double-click",
        )

    results = race(create, create, create)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert len({r.pk for r in results}) == 1
    assert Transfer.objects.count() == 1
    assert JournalEntry.objects.filter(kind="reserve").count() == 1
    with pytest.raises(Conflict):
        create("11")
    check_invariants(money)


def test_two_transfers_that_together_exceed_the_budget_only_one_reserves(
    money, reseller_billing, reseller_admin, settings
) -> None:
    settings.BILLING_TRANSFER_LIMIT = "100000"
    settings.BILLING_DAILY_LIMIT_PER_STAFF = "100000"
    settings.BILLING_APPROVAL_THRESHOLD = "100000"
    services.budget_refresh(connection=money.connection)
    parent = money.parent_balance()
    amount = (parent / 2 + 1).quantize(Decimal("0.01"))
    a, b = money.tenant(), money.tenant()
    results = race(
        lambda: services.transfer_create(
            actor=reseller_billing, tenant=a, amount=amount, direction="to_tenant", reason="c3a"
        ),
        lambda: services.transfer_create(
            actor=reseller_admin, tenant=b, amount=amount, direction="to_tenant", reason="c3b"
        ),
    )
    made = [r for r in results if isinstance(r, Transfer)]
    refused = [r for r in results if isinstance(r, PortalError)]
    assert len(made) == 1 and len(refused) == 1, results
    assert refused[0].code == "insufficient_funds"
    check_invariants(money)


def test_two_beats_start_one_sync(money) -> None:
    results = race(*[lambda: services.sync_start(actor=None, connection=money.connection)] * 3)
    runs = [r for r in results if isinstance(r, SyncRun)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(runs) == 1 and len(conflicts) == 2, results
    assert SyncRun.objects.filter(state="running").count() == 1


def test_two_reconcilers_resend_once(money, reseller_billing) -> None:
    t = services.transfer_create(
        actor=reseller_billing, tenant=money.tenant(), amount=Decimal("10"), direction="to_tenant", reason="c4"
    )
    money.sandbox.set_faults([COUNT_CALLS, {"method": TRANSFER, "kind": "reset", "count": 1}])
    services.transfer_execute(transfer_id=t.pk)
    services.transfer_reconcile(transfer_id=t.pk)  # first empty lookup
    t.refresh_from_db()
    assert t.state == "unknown" and t.empty_lookups == 1

    def reconcile_then_execute() -> Transfer:
        services.transfer_reconcile(transfer_id=t.pk)
        return services.transfer_execute(transfer_id=t.pk)

    results = race(*[reconcile_then_execute] * 4)
    assert not [r for r in results if isinstance(r, BaseException)], results
    t.refresh_from_db()
    assert t.state == "succeeded" and t.attempt == 2
    assert money.transfer_calls() == 2  # the original and exactly one resend
    assert money.ops(t.payment_reference) == 1
    check_invariants(money)


def test_a_stale_worker_returning_late_cannot_overwrite_the_reconcilers_result(
    money, reseller_billing, settings
) -> None:
    settings.BILLING_TRANSFER_LEASE_SECONDS = 1
    t = services.transfer_create(
        actor=reseller_billing, tenant=money.tenant(), amount=Decimal("10"), direction="to_tenant", reason="c5"
    )
    # Applied at once, answered 2.5 s later: the lease runs out while the worker waits.
    money.sandbox.set_faults(
        [COUNT_CALLS, {"method": TRANSFER, "kind": "latency", "latency_ms": 2500, "latency_when": "after"}]
    )
    late: dict[str, Any] = {}

    def slow_worker() -> None:
        from django.db import connection as conn

        try:
            late["transfer"] = services.transfer_execute(transfer_id=t.pk)
        finally:
            conn.close()

    thread = threading.Thread(target=slow_worker)
    thread.start()
    deadline = time.monotonic() + 10
    while money.ops(t.payment_reference) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.1)
    counts = services.transfer_sweep(now=timezone.now())
    assert counts["expired"] == 1
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "succeeded" and t.attempt == 1
    thread.join(30)
    assert late["transfer"].state == "succeeded"
    # The late reply found the row settled: exactly one settlement, one success audit.
    assert JournalEntry.objects.filter(transfer=t, kind="settle").count() == 1
    from portal.models import AuditEvent

    assert AuditEvent.objects.filter(action="billing.transfer.succeeded", data__transfer=str(t.uuid)).count() == 1
    assert money.transfer_calls() == 1
    check_invariants(money)


def test_the_sweeper_redispatches_stale_pending_and_expired_leases(money, reseller_billing, settings) -> None:
    settings.BILLING_PENDING_GRACE_SECONDS = 60
    t = services.transfer_create(
        actor=reseller_billing, tenant=money.tenant(), amount=Decimal("10"), direction="to_tenant", reason="sweep"
    )
    assert services.transfer_sweep()["pending"] == 0  # young: its own task will run
    assert services.transfer_sweep(now=timezone.now() + timedelta(seconds=61))["pending"] == 1
    Transfer.objects.filter(pk=t.pk).update(state="sending", attempt=1, lease_until=timezone.now())
    assert services.transfer_sweep(now=timezone.now() + timedelta(seconds=1))["expired"] == 1
    t.refresh_from_db()
    assert t.state == "unknown"
