"""A provider shows a transaction in its history some time after applying it. With a lag
longer than the settle window, the lookups of an unknown transfer find nothing although the
money moved: the resend is still kept to one transfer at the provider by the duplicate check
on the payment reference, and a lag no automatic path can outwait ends in needs_review, never
in a second transfer or a wrong "failed"."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing import provider as prov
from billing import services
from billing.models import Transfer
from tests.billing.conftest import check_invariants

pytestmark = pytest.mark.django_db(transaction=True)

TRANSFER = "TransferMoneyToChildAccount"
SETTLE = 30
LAG = 3600  # an hour: far longer than the settle window


def _applied_reply_lost(money, actor) -> Transfer:
    tenant = money.tenant(balance="5")
    t = services.transfer_create(
        actor=actor, tenant=tenant, amount=Decimal("15"), direction="to_tenant", reason="history lag"
    )
    money.sandbox.set_faults([{"method": TRANSFER, "kind": "apply_then_drop", "count": 1}])
    t = services.transfer_execute(transfer_id=t.pk)
    money.sandbox.clear_faults()
    assert t.state == "unknown" and money.ops(t.payment_reference) == 1
    return t


def _history(money, t: Transfer):
    t.refresh_from_db()
    return prov.lookup_transfer(
        money.connection,
        direction=t.direction,
        payment_reference=t.payment_reference,
        dup_check_from=t.dup_check_from,
        now=t.last_sent_at,
    )


def test_the_duplicate_check_keeps_a_resend_to_one_transfer_when_history_lags(
    money, reseller_billing, settings
) -> None:
    settings.BILLING_SETTLE_SECONDS = SETTLE
    money.sandbox.admin("PUT", "options", {"history_lag_seconds": LAG})
    t = _applied_reply_lost(money, reseller_billing)
    assert _history(money, t) == []  # applied, but not in the history yet
    clock = t.last_sent_at
    t = services.transfer_reconcile(transfer_id=t.pk, now=clock + timedelta(seconds=SETTLE + 1))
    assert t.state == "unknown" and t.empty_lookups == 1
    t = services.transfer_reconcile(transfer_id=t.pk, now=clock + timedelta(seconds=2 * SETTLE + 2))
    assert t.state == "resend"  # two empty lookups: the lag fooled the portal
    t = services.transfer_execute(transfer_id=t.pk, now=clock + timedelta(seconds=2 * SETTLE + 2))
    assert t.state == "succeeded" and t.attempt == 2
    # The provider skipped the resend as a duplicate of the first call: one transfer only.
    assert money.ops(t.payment_reference) == 1
    # Once the lag has passed, the history shows the one transfer.
    money.sandbox.admin("PUT", "options", {"history_lag_seconds": 0})
    (found,) = _history(money, t)
    assert found.amount == Decimal("15")
    check_invariants(money)


def test_a_lag_no_automatic_path_outwaits_ends_in_review(money, reseller_billing, settings) -> None:
    settings.BILLING_SETTLE_SECONDS = SETTLE
    settings.BILLING_TRANSFER_MAX_ATTEMPTS = 3
    # The provider answers a skipped duplicate with an error: every resend stays unanswered.
    money.sandbox.admin("PUT", "options", {"history_lag_seconds": LAG, "duplicate_reply": "error"})
    t = _applied_reply_lost(money, reseller_billing)
    clock = t.last_sent_at
    seen = []
    for _ in range(30):
        t.refresh_from_db()
        seen.append(t.state)
        if t.state in Transfer.TERMINAL or t.state == Transfer.State.NEEDS_REVIEW:
            break
        clock += timedelta(seconds=SETTLE + 1)
        if t.state == Transfer.State.UNKNOWN:
            services.transfer_reconcile(transfer_id=t.pk, now=clock)
        else:
            services.transfer_execute(transfer_id=t.pk, now=clock)
    t.refresh_from_db()
    assert t.state == "needs_review", seen
    assert "resend" in seen and t.attempt == 3
    assert money.ops(t.payment_reference) == 1  # never a second transfer
    assert Transfer.objects.filter(state="failed").count() == 0
    check_invariants(money)


def test_a_refused_resend_after_a_lost_reply_is_never_failed_while_history_lags(
    money, reseller_billing, settings
) -> None:
    """The first attempt moved the money but its reply was lost; the history hides it; the
    resend is refused before the provider's duplicate check (an injected 127). Empty lookups
    then prove nothing, so the worker hands it to a person instead of marking it failed."""
    settings.BILLING_SETTLE_SECONDS = SETTLE
    money.sandbox.admin("PUT", "options", {"history_lag_seconds": LAG})
    t = _applied_reply_lost(money, reseller_billing)
    clock = t.last_sent_at
    for _ in range(2):
        clock += timedelta(seconds=SETTLE + 1)
        t = services.transfer_reconcile(transfer_id=t.pk, now=clock)
    assert t.state == "resend"
    money.sandbox.set_faults([{"method": TRANSFER, "kind": "error_code", "code": 127, "count": 1}])
    t = services.transfer_execute(transfer_id=t.pk, now=clock)
    money.sandbox.clear_faults()
    assert t.state == "unknown" and t.refused_after_unknown
    for _ in range(3):
        clock += timedelta(seconds=SETTLE + 1)
        t = services.transfer_reconcile(transfer_id=t.pk, now=clock)
        if t.state != "unknown":
            break
    assert t.state == "needs_review"
    assert money.ops(t.payment_reference) == 1  # the money moved once, and the portal never said "failed"
    assert Transfer.objects.filter(state="failed").count() == 0
    check_invariants(money)
