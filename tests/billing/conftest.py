"""Billing test helpers: tenants backed by real sandbox child accounts, money checks."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

_names = itertools.count(1)


@pytest.fixture(autouse=True)
def _billing_test_settings(settings: Any) -> Iterator[None]:
    """Fast clocks for the state machine: no settle wait, no pending grace. Tests that need
    the real windows set them back."""
    settings.BILLING_SETTLE_SECONDS = 0
    settings.BILLING_PENDING_GRACE_SECONDS = 0
    settings.BILLING_REFRESH_AFTER_TRANSFER = False
    settings.STAFF_ALERT_EMAILS = ["staff-alerts@reseller.example"]
    yield
    from billing import provider

    provider.forget_clients()


class Money:
    """The sandbox, one Voximplant connection and helpers to make funded tenants."""

    def __init__(self, sandbox: Any, connection: Any) -> None:
        self.sandbox = sandbox
        self.connection = connection

    @property
    def client(self) -> Any:
        from billing import provider

        return provider.client(self.connection)

    def child(self, *, balance: Decimal | str = "0", active: bool = True) -> int:
        n = next(_names)
        stamp = f"{int(time.time() * 1000) % 10**6}"
        added = self.client.add_account(
            account_name=f"ten{n}x{stamp}",
            account_email=f"t{n}x{stamp}@tenants.example",
            account_password="Sandbox-Pass-1!",
            active=active,
        )
        if Decimal(balance):
            self.deposit(added.account_id, Decimal(balance))
        return int(added.account_id)

    def deposit(self, account_id: int, amount: Decimal) -> None:
        from sandbox import money
        from sandbox.store import DEPOSIT_TYPE, Store

        store = self.sandbox.store()
        try:
            with store.write() as conn:
                Store.add_transaction(
                    conn,
                    account_id=account_id,
                    amount=money.parse(str(amount)),
                    currency="USD",
                    transaction_type=DEPOSIT_TYPE,
                    ts=int(time.time()),
                    description="test deposit",
                )
        finally:
            store.close()

    def tenant(self, *, balance: Decimal | str = "0", account_id: int | None = None, **extra: Any) -> Any:
        """A tenant on a real sandbox child account (a new one holding ``balance`` unless
        ``account_id`` names one), before the portal has read its balance."""
        from tests.factories import TenantFactory

        aid = account_id if account_id is not None else self.child(balance=balance)
        fields: dict[str, Any] = {
            "connection": self.connection,
            "provider_account_id": aid,
            "provider_account_ref": "",
            "account_name": f"acct{aid}",
            "account_email": f"acct{aid}@tenants.example",
            "balance": None,
            "balance_synced_at": None,
        }
        fields.update(extra)
        return TenantFactory(**fields)

    def parent_balance(self) -> Decimal:
        store = self.sandbox.store()
        try:
            return store.parent_account()["balance"]
        finally:
            store.close()

    def child_balance(self, account_id: int) -> Decimal:
        store = self.sandbox.store()
        try:
            return store.account(account_id)["balance"]
        finally:
            store.close()

    def ops(self, reference: str) -> int:
        """How many provider transfer operations carry this reference (never more than one)."""
        store = self.sandbox.store()
        try:
            return store.transfer_ops_by_reference(reference)
        finally:
            store.close()

    def sandbox_problems(self) -> list[str]:
        store = self.sandbox.store()
        try:
            return store.check_invariants()
        finally:
            store.close()

    def transfer_calls(self) -> int:
        """TransferMoneyToChildAccount requests the sandbox has seen a fault rule match (needs a rule)."""
        faults = self.sandbox.admin("GET", "faults").json()
        return sum(1 for entry in faults.get("log", []) if entry["method"] == "TransferMoneyToChildAccount")


@pytest.fixture
def money(sandbox: Any, vox_connection: Any) -> Money:
    return Money(sandbox, vox_connection)


def check_invariants(money: Money) -> None:
    """The money rules, checked against the journal and the sandbox: every payment reference is
    applied at the provider at most once; the journal sums to zero and the sandbox conserves
    money; money in flight equals the open transfers; no budget goes below zero and each equals
    its ledger balance; a succeeded transfer is at the provider exactly once, a failed one never.
    Raises AssertionError saying which rule broke."""
    from billing import ledger
    from billing.models import ResellerBudget, Transfer

    assert ledger.total() == 0, "journal does not sum to zero"
    assert money.sandbox_problems() == [], money.sandbox_problems()
    conn = money.connection
    open_sum = sum((t.amount for t in Transfer.objects.filter(connection=conn, state__in=Transfer.OPEN)), Decimal(0))
    assert ledger.balance(account="in_flight", connection_id=conn.pk) == open_sum, "in_flight != open transfers"
    for budget in ResellerBudget.objects.filter(connection=conn):
        assert budget.available >= 0, "a reseller budget went below zero"
        assert ledger.balance(account="reseller", connection_id=conn.pk, currency=budget.currency) == budget.available
    store = money.sandbox.store()
    try:
        for t in Transfer.objects.filter(connection=conn):
            if t.direction in Transfer.USER_DIRECTIONS:
                _check_user_transfer(money, t)
                continue
            ops = store.transfer_ops_by_reference(t.payment_reference)
            assert ops <= 1, f"{t.payment_reference} applied {ops} times at the provider"
            if t.state == Transfer.State.SUCCEEDED:
                assert ops == 1, f"{t.payment_reference} succeeded but is not at the provider"
                rows = [
                    r
                    for r in store.transactions_by_reference(t.payment_reference)
                    if r["account_id"] == t.child_account_id
                ]
                assert len(rows) == 1 and abs(rows[0]["amount"]) == t.amount
            if t.state == Transfer.State.FAILED:
                assert ops == 0, f"{t.payment_reference} failed but the provider applied it"
    finally:
        store.close()


def _check_user_transfer(money: Money, t: Any) -> None:
    """Money moved to or from a PBX user carries no payment reference at the provider: its
    user's side is found by the reference in the description (GetTransactionHistory)."""
    from datetime import UTC, datetime, timedelta

    rows = money.client.find_user_transfers(
        account_id=t.child_account_id,
        user_id=t.provider_user_id,
        reference=t.payment_reference,
        from_date=t.dup_check_from,
        to_date=datetime.now(UTC) + timedelta(days=1),
    )
    assert len(rows) <= 1, f"{t.payment_reference} moved {len(rows)} times at the provider"
    if t.state == "succeeded":
        sign = 1 if t.direction == "to_user" else -1
        assert len(rows) == 1 and sign * rows[0].amount == t.amount, f"{t.payment_reference} not at the provider"
    if t.state == "failed":
        assert not rows, f"{t.payment_reference} failed but the provider moved it"


WORKER_ENV = {
    "BILLING_SETTLE_SECONDS": "0",
    "BILLING_PENDING_GRACE_SECONDS": "0",
    "BILLING_TRANSFER_LEASE_SECONDS": "2",
    "BILLING_REFRESH_AFTER_TRANSFER": "false",
}


class Workers:
    """Real `celery worker` processes on the test database, started and killed on demand."""

    def __init__(self, tmp_path: Any) -> None:
        self.tmp_path = tmp_path
        self.started: list[Any] = []

    def start(self, **env: str) -> Any:
        from tests.conftest import start_worker

        worker = start_worker(self.tmp_path / f"worker{len(self.started)}.log", {**WORKER_ENV, **env})
        self.started.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.started)


@pytest.fixture
def workers(transactional_db: None, tmp_path: Any) -> Iterator[Workers]:
    from tests.conftest import purge_broker

    purge_broker()
    pool = Workers(tmp_path)
    try:
        yield pool
    finally:
        for worker in pool.started:
            worker.kill()  # nothing to finish gracefully in a test; saves the warm shutdown


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition", workers: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    log = f"\nworker log:\n{workers.logs()[-5000:]}" if workers is not None else ""
    raise AssertionError(f"timed out waiting for {what}{log}")


def settle(transfer: Any, steps: int = 6) -> Any:
    """Run the reconciler/executor until the transfer stops moving (settle window is 0 here)."""
    from datetime import timedelta

    from django.utils import timezone

    from billing import services
    from billing.models import Transfer

    for _ in range(steps):
        transfer.refresh_from_db()
        if transfer.state in (Transfer.State.SUCCEEDED, Transfer.State.FAILED, Transfer.State.NEEDS_REVIEW):
            break
        if transfer.state == Transfer.State.UNKNOWN:
            services.transfer_reconcile(transfer_id=transfer.pk)
        else:
            services.transfer_execute(transfer_id=transfer.pk, now=timezone.now() + timedelta(minutes=10))
    transfer.refresh_from_db()
    return transfer
