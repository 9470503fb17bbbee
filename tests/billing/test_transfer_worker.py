"""Kill cases with real Celery worker processes (killed after the claim, killed after the
provider applied the transfer, a lost publish): the worker is SIGKILLed at the worst moments; the sweeper and a fresh worker finish the job, and the
provider sees the money move exactly once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from billing import services
from billing.models import Transfer
from tenants.models import ProviderConnection
from tests.billing.conftest import check_invariants, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TRANSFER = "TransferMoneyToChildAccount"
COUNT_CALLS = {"method": TRANSFER, "kind": "latency", "latency_ms": 0}


class Blackhole:
    """Accepts connections, reads, never answers: a request that never reaches the provider."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        for conn in self.conns:
            conn.close()


def _state(t: Transfer) -> str:
    return Transfer.objects.get(pk=t.pk).state


def _finish_with_a_fresh_worker(workers, t: Transfer) -> Transfer:
    time.sleep(2.2)  # the dead worker's lease (2 s) runs out
    counts = services.transfer_sweep()
    assert counts["expired"] == 1, counts
    workers.start()
    wait_for(lambda: _state(t) in ("succeeded", "failed", "needs_review"), 60, "the transfer to settle", workers)
    return Transfer.objects.get(pk=t.pk)


def killed_at_the_claim(money, workers, count_calls: dict, create: Callable[[], Transfer]) -> Transfer:
    """``create`` a transfer while the provider's address swallows every call, kill the worker
    once it has claimed the transfer and called; then the transfer as a fresh worker leaves it
    (the sandbox counting ``count_calls`` from the start)."""
    hole = Blackhole()
    sandbox_url = money.connection.base_url
    ProviderConnection.objects.filter(pk=money.connection.pk).update(base_url=hole.url)
    money.sandbox.set_faults([count_calls])
    worker = workers.start()
    try:
        t = create()
        wait_for(lambda: _state(t) == "sending" and hole.conns, 30, "the worker to claim and call")
        worker.kill()
    finally:
        hole.close()
    ProviderConnection.objects.filter(pk=money.connection.pk).update(base_url=sandbox_url)
    return _finish_with_a_fresh_worker(workers, t)


def test_killed_after_the_claim_before_the_provider_heard_of_it(money, reseller_billing, workers) -> None:
    tenant = money.tenant()
    t = killed_at_the_claim(
        money,
        workers,
        COUNT_CALLS,
        lambda: services.transfer_create(
            actor=reseller_billing, tenant=tenant, amount=Decimal("10"), direction="to_tenant", reason="f7"
        ),
    )
    assert t.state == "succeeded", workers.logs()
    assert t.attempt == 2  # the lost attempt, then one resend after two empty lookups
    assert money.ops(t.payment_reference) == 1
    assert money.transfer_calls() == 1
    check_invariants(money)


def killed_after_the_provider_applied(
    money, workers, count_calls: dict, create: Callable[[], Transfer], applied: Callable[[Transfer], bool]
) -> Transfer:
    """``create`` a transfer whose answer the provider holds back after applying it, kill the
    worker once ``applied`` says the provider has it (the record still "sending"); then the
    transfer as a fresh worker leaves it."""
    method = count_calls["method"]
    money.sandbox.set_faults(
        [count_calls, {"method": method, "kind": "latency", "latency_ms": 20000, "latency_when": "after"}]
    )
    worker = workers.start()
    t = create()
    wait_for(lambda: applied(t), 30, "the provider to apply the transfer")
    worker.kill()
    assert _state(t) == "sending"
    money.sandbox.set_faults([count_calls])
    return _finish_with_a_fresh_worker(workers, t)


def test_killed_after_the_provider_applied_before_the_record(money, reseller_billing, workers) -> None:
    tenant = money.tenant()
    t = killed_after_the_provider_applied(
        money,
        workers,
        COUNT_CALLS,
        lambda: services.transfer_create(
            actor=reseller_billing, tenant=tenant, amount=Decimal("10"), direction="to_tenant", reason="f8"
        ),
        lambda t: money.ops(t.payment_reference) == 1,
    )
    assert t.state == "succeeded", workers.logs()
    assert t.attempt == 1  # found by lookup: no second send
    assert money.ops(t.payment_reference) == 1
    assert money.transfer_calls() == 0  # the new worker never called TransferMoneyToChildAccount
    check_invariants(money)


def test_a_lost_publish_is_redispatched_by_the_sweeper(money, reseller_billing, workers) -> None:
    from tests.conftest import purge_broker

    tenant = money.tenant()
    t = services.transfer_create(
        actor=reseller_billing, tenant=tenant, amount=Decimal("10"), direction="to_tenant", reason="f10"
    )
    purge_broker()  # the message is gone (Redis restarted, publish lost)
    workers.start()
    time.sleep(1.0)
    assert _state(t) == "pending"
    assert services.transfer_sweep()["pending"] == 1
    wait_for(lambda: _state(t) == "succeeded", 60, "the swept transfer to run")
    assert money.ops(t.payment_reference) == 1
    check_invariants(money)
