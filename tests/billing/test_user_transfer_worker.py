"""Kill cases for money moved to a PBX user, with real Celery worker processes: killed after
the claim before the provider heard of it, killed after the provider applied it, and a lost
publish. TransferMoneyToUser has no duplicate check, so the user's history (read over HTTP)
must show exactly one movement each time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import services
from tests.billing.conftest import check_invariants, wait_for
from tests.billing.test_transfer_worker import _state, killed_after_the_provider_applied, killed_at_the_claim
from tests.billing.test_user_transfers import COUNT_CALLS, make_user, movements, user_calls

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_killed_after_the_claim_before_the_provider_heard_of_it(money, reseller_billing, workers) -> None:
    tenant, user = make_user(money, reseller_billing)
    t = killed_at_the_claim(
        money,
        workers,
        COUNT_CALLS,
        lambda: services.user_transfer_create(
            actor=reseller_billing, tenant=tenant, pbx_user=user, amount=Decimal("10"), direction="to_user"
        ),
    )
    assert t.state == "succeeded", workers.logs()
    assert t.attempt == 2  # the lost attempt, then one resend after two empty lookups
    assert len(movements(money, t)) == 1
    assert user_calls(money) == 1
    check_invariants(money)


def test_killed_after_the_provider_applied_before_the_record(money, reseller_billing, workers) -> None:
    tenant, user = make_user(money, reseller_billing)
    t = killed_after_the_provider_applied(
        money,
        workers,
        COUNT_CALLS,
        lambda: services.user_transfer_create(
            actor=reseller_billing, tenant=tenant, pbx_user=user, amount=Decimal("10"), direction="to_user"
        ),
        lambda t: len(movements(money, t)) == 1,
    )
    assert t.state == "succeeded", workers.logs()
    assert t.attempt == 1  # found by lookup: no second send
    assert len(movements(money, t)) == 1
    assert user_calls(money) == 0  # the new worker never called TransferMoneyToUser
    check_invariants(money)


def test_a_lost_publish_is_redispatched_by_the_sweeper(money, reseller_billing, workers) -> None:
    from tests.conftest import purge_broker

    tenant, user = make_user(money, reseller_billing)
    t = services.user_transfer_create(
        actor=reseller_billing, tenant=tenant, pbx_user=user, amount=Decimal("10"), direction="from_user"
    )
    purge_broker()
    workers.start()
    assert services.transfer_sweep()["pending"] == 1
    wait_for(lambda: _state(t) in ("succeeded", "failed"), 60, "the swept transfer to run")
    # The user held nothing: a definite refusal, and nothing moved.
    assert _state(t) == "failed"
    assert movements(money, t) == []
    check_invariants(money)
