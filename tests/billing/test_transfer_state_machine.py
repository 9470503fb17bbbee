"""Model-based test: random interleavings of create, deliver, duplicate
delivery, faults at the HTTP seam, crashes after the claim, lost replies, lease expiry,
sweeps and reconciliation, with the invariants checked after every step:

nothing is transferred twice (≤ 1 provider operation per reference; exactly one iff
succeeded, none if failed); money is conserved (the journal sums to zero; the sandbox's
ledger conserves); no intent is lost (at the end everything is final or visibly
needs_review); provider rows match succeeded transfers one to one with equal amounts; the
reseller's available budget is ≥ 0 and equal to its journal account; in_flight equals the
open transfers. Bounded: a dozen examples of ≤ 15 steps. Replay a failure with the seed
hypothesis prints.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from billing import conf, services
from billing.models import Transfer
from portal.errors import PortalError
from tenants.models import ProviderConnection
from tests.billing.conftest import Money, check_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TRANSFER = "TransferMoneyToChildAccount"
FAULTS = ["apply_then_drop", "reset", "apply_then_500", "http_502", "html", "empty", "http_429", "error_127"]
_connections = itertools.count(1)


def test_transfer_state_machine_keeps_the_invariants(sandbox: Any, reseller_billing: Any) -> None:
    class TransferMachine(RuleBasedStateMachine):
        transfers = Bundle("transfers")

        @initialize()
        def setup(self) -> None:
            self.offset = timedelta(0)
            sandbox.clear_faults()
            connection = ProviderConnection.objects.create(
                name=f"sm-{next(_connections)}",
                kind="voximplant",
                base_url=sandbox.base_url,
                credentials_path=str(sandbox.credentials_path),
                parent_api_key_path=str(sandbox.parent_api_key_path),
                currency="USD",
            )
            self.money = Money(sandbox, connection)
            self.tenants = [self.money.tenant(balance="40") for _ in range(2)]

        def now(self) -> Any:
            return timezone.now() + self.offset

        @rule(
            target=transfers,
            which=st.integers(0, 1),
            amount=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("30"), places=2),
            direction=st.sampled_from(["to_tenant", "to_tenant", "to_parent"]),
        )
        def create(self, which: int, amount: Decimal, direction: str) -> Any:
            try:
                return services.transfer_create(
                    actor=reseller_billing,
                    tenant=self.tenants[which],
                    amount=amount,
                    direction=direction,
                    reason="state machine",
                    dispatch=False,
                ).pk
            except PortalError:
                return services.transfer_create(
                    actor=reseller_billing,
                    tenant=self.tenants[which],
                    amount=Decimal("0.01"),
                    direction="to_tenant",
                    reason="state machine (fallback)",
                    dispatch=False,
                ).pk

        @rule(t=transfers)
        def deliver(self, t: int) -> None:
            services.transfer_execute(transfer_id=t, now=self.now())

        @rule(t=transfers)
        def duplicate_delivery(self, t: int) -> None:
            services.transfer_execute(transfer_id=t, now=self.now())
            services.transfer_execute(transfer_id=t, now=self.now())

        @rule(t=transfers, fault=st.sampled_from(FAULTS))
        def deliver_through_a_fault(self, t: int, fault: str) -> None:
            rule_ = (
                {"method": TRANSFER, "kind": "error_code", "code": 127, "count": 1}
                if fault == "error_127"
                else {"method": TRANSFER, "kind": fault, "count": 1}
            )
            sandbox.set_faults([rule_])
            try:
                services.transfer_execute(transfer_id=t, now=self.now())
            finally:
                sandbox.clear_faults()

        @rule(t=transfers)
        def crash_after_claim(self, t: int) -> None:
            """A worker killed right after its claim committed: exactly the claim's UPDATE, and
            nothing after it (the code under test wrote nothing more before the kill)."""
            row = Transfer.objects.get(pk=t)
            if row.state in ("pending", "resend") and not row.awaiting_approval and row.attempt < conf.max_attempts():
                Transfer.objects.filter(pk=t, state=row.state, attempt=row.attempt).update(
                    state="sending",
                    attempt=row.attempt + 1,
                    lease_until=self.now() + conf.lease(),
                    last_sent_at=self.now(),
                )

        @rule()
        def time_passes(self) -> None:
            self.offset += conf.lease() + timedelta(seconds=1)

        @rule()
        def sweep(self) -> None:
            services.transfer_sweep(now=self.now())

        @rule(t=transfers)
        def reconcile(self, t: int) -> None:
            services.transfer_reconcile(transfer_id=t, now=self.now())

        @invariant()
        def invariants_hold(self) -> None:
            if hasattr(self, "money"):
                check_invariants(self.money)

        def teardown(self) -> None:
            if not hasattr(self, "money"):
                return
            sandbox.clear_faults()
            # No lost intent: with the provider healthy, every intent reaches an end state.
            for _ in range(8):
                self.offset += conf.lease() + timedelta(seconds=1)
                services.transfer_sweep(now=self.now())
                open_rows = list(
                    Transfer.objects.filter(
                        connection=self.money.connection, state__in=["pending", "sending", "unknown", "resend"]
                    )
                )
                if not open_rows:
                    break
                for row in open_rows:
                    if row.state == "unknown":
                        services.transfer_reconcile(transfer_id=row.pk, now=self.now())
                    else:
                        services.transfer_execute(transfer_id=row.pk, now=self.now())
            stuck = list(
                Transfer.objects.filter(
                    connection=self.money.connection, state__in=["pending", "sending", "unknown", "resend"]
                )
            )
            assert not stuck, [(r.payment_reference, r.state) for r in stuck]
            check_invariants(self.money)

    run_state_machine_as_test(
        TransferMachine,
        settings=settings(
            max_examples=10,
            stateful_step_count=12,
            deadline=None,
            derandomize=False,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.function_scoped_fixture,
                HealthCheck.filter_too_much,
            ],
        ),
    )
