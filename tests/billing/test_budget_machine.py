"""The reseller's budget never promises more than the parent holds.

A Hypothesis state machine drives the real services (transfer create, execute, reconcile,
budget refresh) against a live sandbox: top-ups and pulls are created, sent with a reply,
sent with the reply lost after the provider applied them, sent into a dropped connection
(not applied), refused (released), looked up and settled, and the budget is refreshed from
the parent balance, sometimes with a transfer settling while that balance is on the wire.
After every step: ``available`` <= what the parent holds at the provider − the open top-ups
the provider has not applied yet, ``available`` >= 0, and the journal agrees with the row.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from billing import ledger, services
from billing import provider as prov
from billing.models import ResellerBudget, Transfer
from portal.errors import PortalError
from tests.billing.conftest import Money

pytestmark = pytest.mark.django_db(transaction=True)

TRANSFER = "TransferMoneyToChildAccount"
State = Transfer.State
SENDABLE = {State.PENDING, State.RESEND}
PARENT_START = Decimal("1000")
_seq = itertools.count(1)
FAULTS: dict[str, dict[str, Any] | None] = {
    "with_reply": None,
    "applied_reply_lost": {"kind": "apply_then_drop"},
    "never_arrives": {"kind": "reset"},
    "refused": {"kind": "error_code", "code": 127},
}


def _room(machine: Any) -> bool:
    """A rule's precondition: few enough open transfers that each gets taken to an end."""
    return Transfer.objects.filter(pk__in=getattr(machine, "ids", []), state__in=Transfer.OPEN).count() < 3


def _has(states: set[str]) -> Callable[[Any], bool]:
    """A rule's precondition: the example has a transfer in one of ``states``."""
    return lambda machine: Transfer.objects.filter(pk__in=getattr(machine, "ids", []), state__in=states).exists()


def _machine(sandbox: Any, actor: Any) -> type[RuleBasedStateMachine]:
    from tests.factories import ProviderConnectionFactory

    class BudgetMachine(RuleBasedStateMachine):
        """One example = one fresh connection to the same sandbox parent, with one tenant."""

        @initialize(
            first=st.sampled_from([None, Transfer.Direction.TO_PARENT, Transfer.Direction.TO_TENANT]),
            cents=st.integers(1, 20000),
        )
        def start(self, first: str | None = None, cents: int = 100) -> None:
            """A fresh connection and tenant; ``first``: the example begins with a transfer the
            provider applied but whose reply was lost (the state the probe found the bug in)."""
            n = next(_seq)
            self.connection = ProviderConnectionFactory(
                name=f"Voximplant budget {n}",
                kind="voximplant",
                base_url=sandbox.base_url,
                credentials_path=str(sandbox.credentials_path),
                parent_api_key_path=str(sandbox.parent_api_key_path),
                parent_account_id=sandbox.account_id,
                currency="USD",
            )
            self.money = Money(sandbox, self.connection)
            # Every example starts from the same parent balance, so a replay meets the same world.
            self.money.deposit(sandbox.account_id, PARENT_START - self.money.parent_balance())
            self.tenant = self.money.tenant(balance="100000")
            self.ids: list[int] = []
            services.budget_refresh(connection=self.connection)
            if first is not None:
                self._create(first, cents)
                if self.ids:
                    self.send(0, "applied_reply_lost")

        # -- helpers ---------------------------------------------------------------------------

        def _pick(self, states: set[str], i: int) -> Transfer | None:
            rows = list(Transfer.objects.filter(pk__in=self.ids, state__in=states).order_by("-pk"))
            return rows[i % len(rows)] if rows else None

        def _create(self, direction: str, cents: int) -> None:
            try:
                t = services.transfer_create(
                    actor=actor,
                    tenant=self.tenant,
                    amount=Decimal(cents) / 100,
                    direction=direction,
                    reason="budget machine",
                )
            except PortalError as exc:
                assert exc.code == "insufficient_funds", exc
                return
            self.ids.append(t.pk)

        def _send(self, t: Transfer, fault: dict[str, Any] | None) -> None:
            if fault:
                sandbox.set_faults([{"method": TRANSFER, "count": 1, **fault}])
            try:
                services.transfer_execute(transfer_id=t.pk)
            finally:
                if fault:
                    sandbox.clear_faults()

        # -- rules -----------------------------------------------------------------------------

        @precondition(_room)
        @rule(
            direction=st.sampled_from([Transfer.Direction.TO_TENANT, Transfer.Direction.TO_PARENT]),
            cents=st.integers(1, 20000),
            stale=st.booleans(),
        )
        def create(self, direction: str, cents: int, stale: bool) -> None:
            # stale: the budget is older than the max age, so creating a top-up refreshes it first.
            with override_settings(BILLING_BUDGET_MAX_AGE_SECONDS=0 if stale else 300):
                self._create(direction, cents)

        def create_pull(self, cents: int) -> None:
            self._create(Transfer.Direction.TO_PARENT, cents)

        @precondition(_has(SENDABLE))
        @rule(i=st.integers(0, 2), how=st.sampled_from(list(FAULTS)))
        def send(self, i: int, how: str) -> None:
            """With a reply, applied with the reply lost, never arriving, or refused outright
            (released at once, or unknown after an unanswered attempt)."""
            if t := self._pick(SENDABLE, i):
                self._send(t, FAULTS[how])

        def send_applied_reply_lost(self, i: int) -> None:
            self.send(i, "applied_reply_lost")

        @precondition(_has({State.UNKNOWN}))
        @rule(i=st.integers(0, 2))
        def look_up_unknown(self, i: int) -> None:
            # Found: settled as applied. Empty twice: resend, or failed after a refusal.
            if t := self._pick({State.UNKNOWN}, i):
                services.transfer_reconcile(transfer_id=t.pk)

        @rule()
        def refresh(self) -> None:
            services.budget_refresh(connection=self.connection)

        @precondition(_has({State.UNKNOWN, *SENDABLE}))
        @rule(i=st.integers(0, 2), how=st.sampled_from(["look_up", *FAULTS]))
        def refresh_while_a_transfer_settles(self, i: int, how: str) -> None:
            """The balance is read, then a transfer moves before the refresh's transaction."""
            t = self._pick({State.UNKNOWN} if how == "look_up" else SENDABLE, i)
            if t is None:
                return
            step: Callable[[], None]
            if how == "look_up":

                def step() -> None:
                    services.transfer_reconcile(transfer_id=t.pk)
            else:

                def step() -> None:
                    self._send(t, FAULTS[how])

            real = prov.parent_balance

            def read_then_move(connection: Any) -> Any:
                answer = real(connection)
                step()
                return answer

            prov.parent_balance = read_then_move  # type: ignore[assignment]
            try:
                services.budget_refresh(connection=self.connection)
            finally:
                prov.parent_balance = real  # type: ignore[assignment]

        # -- the invariant ---------------------------------------------------------------------

        @invariant()
        def never_promises_more_than_the_parent_holds(self) -> None:
            if not hasattr(self, "connection"):
                return
            budget = ResellerBudget.objects.filter(connection=self.connection).first()
            assert ledger.total() == 0, "the journal does not sum to zero"
            if budget is None:
                return
            store = sandbox.store()
            try:
                ops = {
                    t.pk: (t, store.transfer_ops_by_reference(t.payment_reference))
                    for t in Transfer.objects.filter(pk__in=self.ids)
                }
                parent = store.parent_account()["balance"]
            finally:
                store.close()
            unpaid = sum(
                (
                    t.amount
                    for t, n in ops.values()
                    if t.state in Transfer.OPEN and t.direction == Transfer.Direction.TO_TENANT and n == 0
                ),
                Decimal(0),
            )
            assert budget.available >= 0
            assert budget.available <= parent - unpaid, (
                f"available {budget.available} > parent {parent} - unpaid top-ups {unpaid}"
            )
            reseller = ledger.balance(account="reseller", connection_id=self.connection.pk, currency=budget.currency)
            assert reseller == budget.available, f"journal {reseller} != budget row {budget.available}"
            for t, n in ops.values():
                assert n <= 1, f"{t.payment_reference} applied {n} times"
                if t.state == State.FAILED:
                    assert n == 0, f"{t.payment_reference} failed but the provider applied it"

    return BudgetMachine


def test_the_budget_never_promises_more_than_the_parent_holds(sandbox, reseller_billing, settings_fixture) -> None:
    run_state_machine_as_test(
        _machine(sandbox, reseller_billing),
        settings=settings(
            max_examples=20,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            database=None,
            # No shrinking: every step talks to the sandbox; the failing steps are printed as found.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_a_pull_whose_reply_was_lost_is_not_counted_twice(sandbox, reseller_billing, settings_fixture) -> None:
    """The probe that found the bug: a pull applied at the provider with its reply lost, the
    balance read while it is unknown, then the pull settles. Its money is counted once."""
    machine = _machine(sandbox, reseller_billing)()
    machine.start()
    machine.create_pull(4000)
    machine.send_applied_reply_lost(0)
    (pull,) = Transfer.objects.filter(pk__in=machine.ids)
    assert pull.state == State.UNKNOWN and machine.money.ops(pull.payment_reference) == 1
    machine.refresh()
    machine.never_promises_more_than_the_parent_holds()
    machine.look_up_unknown(0)
    pull.refresh_from_db()
    assert pull.state == State.SUCCEEDED
    machine.never_promises_more_than_the_parent_holds()
    budget = ResellerBudget.objects.get(connection=machine.connection)
    assert budget.available == machine.money.parent_balance()  # nothing open: exactly the parent


@pytest.fixture
def settings_fixture(settings: Any) -> Any:
    settings.BILLING_DAILY_LIMIT_PER_STAFF = "100000000"
    settings.BILLING_TRANSFER_LIMIT = "1000"
    settings.BILLING_APPROVAL_THRESHOLD = "1000"
    return settings
