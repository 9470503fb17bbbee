"""Money between a tenant's account and one PBX user's own balance, through the transfer
state machine, against the sandbox's fault injection: lost replies after the provider applied
it, 5xx, HTML bodies, throttling, refusals. TransferMoneyToUser has no duplicate check, so each
case checks through GetTransactionHistory (over HTTP) that exactly one movement happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import services
from billing.models import JournalLine, Transfer
from tenants.services import users as pbx
from tests.billing.conftest import check_invariants, settle

pytestmark = pytest.mark.django_db(transaction=True)

USER_TRANSFER = "TransferMoneyToUser"
COUNT_CALLS = {"method": USER_TRANSFER, "kind": "latency", "latency_ms": 0}
PASSWORD = "Pbx-User-Pass-1!"


def make_user(money, owner_or_staff, *, balance="50", own=True, name="alice"):
    tenant = money.tenant(balance=balance)
    user = pbx.pbx_user_create(
        actor=owner_or_staff,
        tenant=tenant,
        user_name=name,
        display_name=name.title(),
        password=PASSWORD,
        own_balance=own,
    )
    return tenant, user


def movements(money, transfer: Transfer) -> list:
    """The user's side of this transfer in the provider's history, read over HTTP."""
    return list(
        money.client.find_user_transfers(
            account_id=transfer.child_account_id,
            user_id=transfer.provider_user_id,
            reference=transfer.payment_reference,
            from_date=datetime.now(UTC) - timedelta(days=2),
            to_date=datetime.now(UTC) + timedelta(days=1),
        )
    )


def user_calls(money) -> int:
    faults = money.sandbox.admin("GET", "faults").json()
    return sum(1 for entry in faults.get("log", []) if entry["method"] == USER_TRANSFER)


def _send(money, actor, tenant, user, amount="10", direction="to_user", **extra) -> Transfer:
    return services.user_transfer_create(
        actor=actor, tenant=tenant, pbx_user=user, amount=Decimal(amount), direction=direction, **extra
    )


def user_balance(money, tenant, user) -> Decimal:
    (snap,) = money.client.get_users(account_id=tenant.provider_account_id, user_id=user.provider_user_id)
    return snap.balance


def tenant_line(transfer: Transfer) -> Decimal:
    from billing import ledger

    return ledger.exact_sum(JournalLine.objects.filter(account="tenant", tenant_id=transfer.tenant_id), "amount", 4)


def test_money_moves_to_a_user_and_back_through_the_state_machine(money, reseller_billing) -> None:
    tenant, user = make_user(money, reseller_billing)
    t = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user, "12.50").pk)
    assert t.state == "succeeded" and t.attempt == 1 and t.direction == "to_user"
    assert t.pbx_user_id == user.pk and t.provider_user_id == user.provider_user_id
    assert user_balance(money, tenant, user) == Decimal("12.5")
    assert money.child_balance(tenant.provider_account_id) == Decimal("37.5")
    assert t.balance_after == Decimal("37.5")
    back = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user, "2.5", "from_user").pk)
    assert back.state == "succeeded"
    assert user_balance(money, tenant, user) == Decimal("10")
    assert money.child_balance(tenant.provider_account_id) == Decimal("40")
    assert [m.amount for m in movements(money, t)] == [Decimal("12.5")]
    assert [m.amount for m in movements(money, back)] == [Decimal("-2.5")]
    # Money inside one account: the tenant's journal line nets to zero; no budget, no daily limit.
    assert tenant_line(t) == 0
    check_invariants(money)


def test_the_budget_and_the_daily_limit_do_not_apply_inside_one_account(money, reseller_billing, settings) -> None:
    from billing.models import ResellerBudget, StaffDailyUsage

    settings.BILLING_DAILY_LIMIT_PER_STAFF = Decimal("5")
    settings.BILLING_APPROVAL_THRESHOLD = Decimal("5")
    tenant, user = make_user(money, reseller_billing)
    t = _send(money, reseller_billing, tenant, user, "20")
    assert not t.requires_approval
    assert not StaffDailyUsage.objects.exists() and not ResellerBudget.objects.exists()
    assert services.transfer_execute(transfer_id=t.pk).state == "succeeded"


def test_applied_then_reply_lost_is_found_by_lookup_without_a_resend(money, reseller_billing) -> None:
    tenant, user = make_user(money, reseller_billing)
    money.sandbox.set_faults([COUNT_CALLS, {"method": USER_TRANSFER, "kind": "apply_then_drop", "count": 1}])
    t = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user).pk)
    assert t.state == "unknown" and t.ambiguous_attempts == 1
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "succeeded" and t.provider_txn_id
    assert len(movements(money, t)) == 1
    assert user_calls(money) == 1  # never resent
    assert user_balance(money, tenant, user) == Decimal("10")
    check_invariants(money)


@pytest.mark.parametrize("kind", ["apply_then_500", "http_500", "http_502", "html", "empty"])
def test_a_5xx_or_an_unreadable_body_is_unknown_and_moves_money_once(money, reseller_billing, kind) -> None:
    tenant, user = make_user(money, reseller_billing)
    money.sandbox.set_faults([COUNT_CALLS, {"method": USER_TRANSFER, "kind": kind, "count": 1}])
    t = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user).pk)
    assert t.state == "unknown"
    t = settle(t)
    assert t.state == "succeeded"
    assert len(movements(money, t)) == 1
    assert user_balance(money, tenant, user) == Decimal("10")
    # Applied before the 500: found by the lookup, never resent; the others are resent once,
    # after two lookups proved nothing moved.
    assert user_calls(money) == (1 if kind == "apply_then_500" else 2)
    check_invariants(money)


def test_a_request_that_never_arrived_is_resent_only_after_two_empty_lookups(money, reseller_billing) -> None:
    tenant, user = make_user(money, reseller_billing)
    money.sandbox.set_faults([COUNT_CALLS, {"method": USER_TRANSFER, "kind": "reset", "count": 1}])
    t = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user).pk)
    assert t.state == "unknown"
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "unknown" and t.empty_lookups == 1
    assert user_calls(money) == 1  # one empty lookup proves nothing: no send yet
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "resend"
    t = services.transfer_execute(transfer_id=t.pk)
    assert t.state == "succeeded" and t.attempt == 2
    assert len(movements(money, t)) == 1 and user_calls(money) == 2
    check_invariants(money)


def test_a_burst_of_throttling_backs_off_and_moves_money_once(money, reseller_billing, settings) -> None:
    settings.BILLING_TRANSFER_MAX_ATTEMPTS = 5
    tenant, user = make_user(money, reseller_billing)
    money.sandbox.set_faults([COUNT_CALLS, {"method": USER_TRANSFER, "kind": "http_429", "count": 5}])
    t = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user).pk)
    assert t.state == "pending" and t.attempt == 1 and t.next_attempt_at > timezone.now()
    t = services.transfer_execute(transfer_id=t.pk, now=t.next_attempt_at + timedelta(seconds=1))
    assert t.state == "succeeded" and t.attempt == 2
    assert len(movements(money, t)) == 1
    check_invariants(money)


def test_a_user_without_its_own_balance_is_a_definite_refusal_with_a_clear_message(money, reseller_billing) -> None:
    tenant, user = make_user(money, reseller_billing)
    # The user was switched to the account's money behind the portal's back.
    money.client.set_user_info(
        account_id=tenant.provider_account_id, user_id=user.provider_user_id, parent_accounting=True
    )
    t = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user).pk)
    assert t.state == "failed"
    assert "no balance of its own" in t.last_error and "573" in t.last_error
    assert movements(money, t) == []
    check_invariants(money)
    # Known in the portal: refused before anything is recorded.
    pbx.pbx_users_read(actor=reseller_billing, tenant=tenant)
    user.refresh_from_db()
    with pytest.raises(Exception, match="no balance of its own"):
        _send(money, reseller_billing, tenant, user)


def test_a_user_holding_less_is_refused_once(money, reseller_billing) -> None:
    tenant, user = make_user(money, reseller_billing)
    t = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user, "3", "from_user").pk)
    assert t.state == "failed" and "127" in t.last_error
    check_invariants(money)


def test_an_idempotency_key_replays_and_never_moves_money_twice(money, reseller_billing) -> None:
    tenant, user = make_user(money, reseller_billing)
    first = _send(money, reseller_billing, tenant, user, idempotency_key="k-1")
    again = _send(money, reseller_billing, tenant, user, idempotency_key="k-1")
    assert again.pk == first.pk and again.replayed
    with pytest.raises(Exception, match="different parameters"):
        _send(money, reseller_billing, tenant, user, "11", idempotency_key="k-1")


def test_reconciliation_checks_user_transfers_against_the_users_history(money, reseller_billing) -> None:
    from billing.models import DriftItem

    tenant, user = make_user(money, reseller_billing)
    ok = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user).pk)
    assert ok.state == "succeeded"
    # A second movement with the same reference, made outside the portal.
    money.client.transfer_money_to_user(
        account_id=tenant.provider_account_id,
        user_id=user.provider_user_id,
        amount=Decimal("1"),
        user_transaction_description=ok.payment_reference,
    )
    quiet = services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user, "2").pk)
    run = services.reconcile_start(actor=reseller_billing, connection=money.connection)
    run = services.reconcile_execute(sync_run_id=run.pk, now=timezone.now() + timedelta(minutes=5))
    assert run.state == "succeeded", run.error_message
    kinds = {d.payment_reference: d.kind for d in DriftItem.objects.all()}
    assert kinds == {ok.payment_reference: DriftItem.Kind.DUPLICATE_AT_PROVIDER}
    quiet.refresh_from_db()
    assert quiet.reconciled_at is not None


def test_the_statement_tells_user_movements_as_sentences(money, reseller_billing) -> None:
    from billing.selectors import statement_rows

    tenant, user = make_user(money, reseller_billing)
    services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user, "10").pk)
    services.transfer_execute(transfer_id=_send(money, reseller_billing, tenant, user, "4", "from_user").pk)
    statement = statement_rows(tenant=tenant)
    words = [(r.description, r.amount) for r in statement.rows]
    assert ("Moved from the company balance to Alice (alice)", Decimal("-10")) in words
    assert ("Returned from Alice (alice) to the company balance", Decimal("4")) in words
    assert len(words) == 3  # the deposit and the account's side of each movement, not the user's
    assert statement.closing == money.child_balance(tenant.provider_account_id) == Decimal("44")
