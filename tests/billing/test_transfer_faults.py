"""The transfer state machine against the sandbox's fault injection: lost replies, requests
that never arrive, 5xx, refusals, HTML or empty replies, throttling, the database away while
recording, the provider's duplicate check and the day boundary. Steps are driven here, one
service call at a time; the kill cases with a real worker are in test_transfer_worker.py."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing import services
from billing.models import JournalEntry, ResellerBudget
from portal.models import AuditEvent
from tests.billing.conftest import check_invariants, settle

pytestmark = pytest.mark.django_db(transaction=True)

TRANSFER = "TransferMoneyToChildAccount"
# Fires on every transfer request without changing it, so the fault log counts the calls.
COUNT_CALLS = {"method": TRANSFER, "kind": "latency", "latency_ms": 0}


def _create(money, actor, amount="10", direction="to_tenant", tenant=None):
    tenant = tenant or money.tenant(balance="50")
    return services.transfer_create(
        actor=actor, tenant=tenant, amount=Decimal(amount), direction=direction, reason="fault test"
    )


def test_a_top_up_and_a_pull_move_money_exactly(money, reseller_billing) -> None:
    tenant = money.tenant(balance="5")
    parent_before = money.parent_balance()
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing, "10.50", tenant=tenant).pk)
    assert t.state == "succeeded" and t.attempt == 1
    assert money.child_balance(tenant.provider_account_id) == Decimal("15.5")
    p = services.transfer_execute(transfer_id=_create(money, reseller_billing, "3", "to_parent", tenant).pk)
    assert p.state == "succeeded"
    assert money.child_balance(tenant.provider_account_id) == Decimal("12.5")
    assert money.parent_balance() == parent_before - Decimal("7.5")
    assert p.balance_after == money.parent_balance()
    check_invariants(money)


def test_applied_then_reply_lost_is_found_by_lookup_without_a_resend(money, reseller_billing) -> None:
    money.sandbox.set_faults([COUNT_CALLS, {"method": TRANSFER, "kind": "apply_then_drop", "count": 1}])
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    assert t.state == "unknown" and t.ambiguous_attempts == 1
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "succeeded"
    assert t.provider_txn_id
    assert money.ops(t.payment_reference) == 1
    assert money.transfer_calls() == 1  # no resend
    check_invariants(money)


def test_request_never_arrives_two_empty_lookups_then_one_resend(money, reseller_billing) -> None:
    money.sandbox.set_faults([COUNT_CALLS, {"method": TRANSFER, "kind": "reset", "count": 1}])
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    assert t.state == "unknown"
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "unknown" and t.empty_lookups == 1  # one empty lookup is not enough
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "resend"
    t = services.transfer_execute(transfer_id=t.pk)
    assert t.state == "succeeded" and t.attempt == 2
    assert money.ops(t.payment_reference) == 1
    assert money.transfer_calls() == 2
    sent = [e.data for e in AuditEvent.objects.filter(action="billing.transfer.sending").order_by("id")]
    assert [d["attempt"] for d in sent] == [1, 2]
    check_invariants(money)


def test_an_empty_lookup_within_the_settle_window_is_not_believed(money, reseller_billing, settings) -> None:
    settings.BILLING_SETTLE_SECONDS = 30
    money.sandbox.set_faults([{"method": TRANSFER, "kind": "reset", "count": 1}])
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    assert t.state == "unknown"
    # Too early: the reconciler does not even look.
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "unknown" and t.empty_lookups == 0
    later = timezone.now() + timedelta(seconds=31)
    t = services.transfer_reconcile(transfer_id=t.pk, now=later)
    assert t.empty_lookups == 1 and t.state == "unknown"
    t = services.transfer_reconcile(transfer_id=t.pk, now=later + timedelta(seconds=5))
    assert t.state == "unknown", "the second lookup must wait a settle window after the first"
    t = services.transfer_reconcile(transfer_id=t.pk, now=later + timedelta(seconds=31))
    assert t.state == "resend"


@pytest.mark.parametrize("kind", ["apply_then_500", "http_500", "http_502"])
def test_a_5xx_is_unknown_never_failed(money, reseller_billing, kind) -> None:
    money.sandbox.set_faults([COUNT_CALLS, {"method": TRANSFER, "kind": kind, "count": 1}])
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    assert t.state == "unknown"
    t = settle(t)
    assert t.state == "succeeded"
    assert money.ops(t.payment_reference) == 1
    # Applied before the 500: found by the lookup, not resent.
    assert money.transfer_calls() == (1 if kind == "apply_then_500" else 2)
    check_invariants(money)


@pytest.mark.parametrize("code", [127, 125, 194])
def test_a_definite_refusal_fails_once_and_releases_the_reservation(money, reseller_billing, code) -> None:
    money.sandbox.set_faults([COUNT_CALLS, {"method": TRANSFER, "kind": "error_code", "code": code}])
    services.budget_refresh(connection=money.connection)
    available = ResellerBudget.objects.get(connection=money.connection).available
    t = _create(money, reseller_billing)
    assert ResellerBudget.objects.get(connection=money.connection).available == available - 10
    t = services.transfer_execute(transfer_id=t.pk)
    assert t.state == "failed" and str(code) in t.last_error
    assert ResellerBudget.objects.get(connection=money.connection).available == available
    assert JournalEntry.objects.filter(transfer=t, kind="release").count() == 1
    # No retry: the sweeper leaves a failed transfer alone.
    services.transfer_sweep(now=timezone.now() + timedelta(hours=1))
    assert services.transfer_execute(transfer_id=t.pk).state == "failed"
    assert money.transfer_calls() == 1
    check_invariants(money)


def test_a_real_insufficient_funds_refusal_from_the_child(money, reseller_billing) -> None:
    tenant = money.tenant(balance="2")
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing, "3", "to_parent", tenant).pk)
    assert t.state == "failed" and "127" in t.last_error
    assert money.child_balance(tenant.provider_account_id) == Decimal("2")
    check_invariants(money)


@pytest.mark.parametrize("kind", ["html", "empty"])
def test_an_html_or_empty_200_is_unknown(money, reseller_billing, kind) -> None:
    money.sandbox.set_faults([{"method": TRANSFER, "kind": kind, "count": 1}])
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    assert t.state == "unknown"
    t = settle(t)
    assert t.state == "succeeded"
    assert money.ops(t.payment_reference) == 1
    check_invariants(money)


def test_a_burst_of_throttling_backs_off_and_moves_money_once(money, reseller_billing, settings) -> None:
    settings.BILLING_TRANSFER_MAX_ATTEMPTS = 5
    # The client retries throttles refused before execution itself (4 tries); past that the
    # transfer goes back to pending with a jittered next_attempt_at.
    money.sandbox.set_faults(
        [
            COUNT_CALLS,
            {"method": TRANSFER, "kind": "http_429", "count": 4},
            {"method": TRANSFER, "kind": "error_code", "code": 340, "count": 2},
            {"method": TRANSFER, "kind": "error_code", "code": 416, "count": 1},
        ]
    )
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    assert t.state == "pending" and t.attempt == 1
    assert t.next_attempt_at > timezone.now()
    # Not due yet: nothing happens.
    assert services.transfer_execute(transfer_id=t.pk).attempt == 1
    t = services.transfer_execute(transfer_id=t.pk, now=t.next_attempt_at + timedelta(seconds=1))
    assert t.state == "succeeded" and t.attempt == 2
    assert money.ops(t.payment_reference) == 1
    assert money.transfer_calls() == 8
    check_invariants(money)


def test_attempts_are_bounded(money, reseller_billing, settings) -> None:
    settings.BILLING_TRANSFER_MAX_ATTEMPTS = 2
    money.sandbox.set_faults([{"method": TRANSFER, "kind": "error_code", "code": 340}])
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    t = services.transfer_execute(transfer_id=t.pk, now=timezone.now() + timedelta(hours=1))
    assert t.state == "needs_review" and "not sent after 2 attempts" in t.review_reason
    assert money.ops(t.payment_reference) == 0
    check_invariants(money)


def test_the_database_away_while_recording_retries_the_write_not_the_call(money, reseller_billing, caplog) -> None:
    t = _create(money, reseller_billing)
    # The provider answers after 1.5 s; meanwhile the database refuses this worker's writes.
    money.sandbox.set_faults(
        [COUNT_CALLS, {"method": TRANSFER, "kind": "latency", "latency_ms": 1500, "latency_when": "after"}]
    )
    result: dict[str, object] = {}

    def worker() -> None:
        from django.db import connection as conn

        if conn.vendor == "sqlite":
            conn.settings_dict = {**conn.settings_dict, "OPTIONS": {**conn.settings_dict["OPTIONS"], "timeout": 0.3}}
        try:
            result["transfer"] = services.transfer_execute(transfer_id=t.pk)
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc
        finally:
            conn.close()

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 10
    while money.ops(t.payment_reference) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert money.ops(t.payment_reference) == 1
    blocker = None
    if connection.vendor == "sqlite":
        blocker = sqlite3.connect(connection.settings_dict["NAME"], timeout=5, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        time.sleep(2.5)  # the reply arrives and the record step hits a locked database
        blocker.execute("ROLLBACK")
        blocker.close()
    else:
        time.sleep(1.2)
        with connection.cursor() as cursor:  # drop every other session: the worker's too
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                "current_database() AND pid <> pg_backend_pid()"
            )
    thread.join(30)
    assert "error" not in result, result
    assert "database unavailable" in caplog.text  # the record step really met the outage
    t.refresh_from_db()
    assert t.state == "succeeded"
    assert money.transfer_calls() == 1
    assert money.ops(t.payment_reference) == 1
    check_invariants(money)


def test_sandbox_contract_a_duplicate_reference_is_skipped_with_result_1(money) -> None:
    """Pins the reply to a skipped duplicate, which the provider does not document: {result: 1, balance: unchanged}."""
    child = money.child()
    since = (timezone.now() - timedelta(hours=48)).replace(microsecond=0)
    first = money.client.transfer_money(
        account_id=child, amount=Decimal("2.50"), payment_reference="rp-contract", check_duplicate_reference_from=since
    )
    second = money.client.transfer_money(
        account_id=child, amount=Decimal("2.50"), payment_reference="rp-contract", check_duplicate_reference_from=since
    )
    assert money.ops("rp-contract") == 1
    assert money.child_balance(child) == Decimal("2.5")
    assert second.balance == first.balance == money.parent_balance()


def test_a_transfer_at_235959_utc_is_found_whatever_the_accounts_timezone(money, reseller_billing) -> None:
    money.sandbox.set_faults([{"method": TRANSFER, "kind": "apply_then_drop", "count": 1}])
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    assert t.state == "unknown"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(hour=23, minute=59, second=59, microsecond=0)
    store = money.sandbox.store()
    try:
        with store.write() as conn:
            conn.execute(
                "UPDATE transactions SET performed_ts = ? WHERE payment_reference = ?",
                (int(yesterday.timestamp()), t.payment_reference),
            )
            # A parent far east of UTC: read as local time, 23:59:59 UTC would be "tomorrow".
            conn.execute("UPDATE accounts SET location = 'Pacific/Kiritimati' WHERE parent_id IS NULL")
    finally:
        store.close()
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "succeeded"
    assert t.evidence["provider_transactions"][0]["performed_at"].startswith(yesterday.strftime("%Y-%m-%dT23:59:59"))


def test_a_refusal_after_an_unanswered_attempt_is_settled_by_lookup(money, reseller_billing) -> None:
    money.sandbox.set_faults(
        [
            {"method": TRANSFER, "kind": "reset", "count": 1},
            {"method": TRANSFER, "kind": "error_code", "code": 127, "count": 1},
        ]
    )
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    assert t.state == "unknown"
    t = services.transfer_reconcile(transfer_id=t.pk)
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "resend"
    t = services.transfer_execute(transfer_id=t.pk)
    # The resend was refused, but the first attempt's fate is only known from history.
    assert t.state == "unknown" and t.refused_after_unknown
    t = settle(t)
    # Empty lookups cannot prove the unanswered attempt did nothing (history can lag), so the
    # worker never marks it failed: a person decides, with the evidence on the page.
    assert t.state == "needs_review"
    assert "refused the last attempt" in t.review_reason
    check_invariants(money)


def test_several_provider_rows_for_one_reference_need_review(money, reseller_billing) -> None:
    money.sandbox.set_faults([{"method": TRANSFER, "kind": "apply_then_drop", "count": 1}])
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    # Someone moved money by hand with the same reference (outside the dup window).
    money.client.transfer_money(
        account_id=t.child_account_id,
        amount=Decimal("10"),
        payment_reference=t.payment_reference,
        check_duplicate_reference_from=timezone.now() + timedelta(minutes=1),
    )
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "needs_review"
    assert len(t.evidence["provider_transactions"]) == 2
    # Staff cannot mark it failed: the provider shows it.
    with pytest.raises(Exception, match="cannot be marked failed"):
        services.transfer_resolve(actor=reseller_billing, transfer=t, outcome="failed", note="checked")
    services.transfer_resolve(actor=reseller_billing, transfer=t, outcome="succeeded", note="checked, duplicate")
    t.refresh_from_db()
    assert t.state == "succeeded"
    assert AuditEvent.objects.filter(action="billing.transfer.resolved_succeeded").count() == 1


def test_an_unknown_transfer_too_old_goes_to_review_not_failed(money, reseller_billing, settings) -> None:
    settings.BILLING_UNKNOWN_REVIEW_AFTER_SECONDS = 60
    t = _create(money, reseller_billing)
    money.sandbox.set_faults([{"method": "*", "kind": "reset"}])
    t = services.transfer_execute(transfer_id=t.pk)
    money.sandbox.clear_faults()
    t = services.transfer_reconcile(transfer_id=t.pk, now=timezone.now() + timedelta(minutes=5))
    assert t.state == "needs_review"
    assert money.ops(t.payment_reference) == 0
    # One empty lookup (the one made when resolving) is not the evidence "failed" needs.
    with pytest.raises(Exception, match="0 of 2 empty lookups"):
        services.transfer_resolve(actor=reseller_billing, transfer=t, outcome="failed", note="provider shows nothing")
    services.transfer_resolve(actor=reseller_billing, transfer=t, outcome="recheck", note="look again")
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "unknown" and t.empty_lookups == 1
    services.transfer_resolve(actor=reseller_billing, transfer=t, outcome="failed", note="provider shows nothing")
    t.refresh_from_db()
    assert t.state == "failed"
    check_invariants(money)


def test_lookup_failures_keep_the_transfer_unknown(money, reseller_billing) -> None:
    money.sandbox.set_faults(
        [
            {"method": TRANSFER, "kind": "apply_then_drop", "count": 1},
            {"method": "GetTransactionHistory", "kind": "http_500"},
        ]
    )
    t = services.transfer_execute(transfer_id=_create(money, reseller_billing).pk)
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.state == "unknown" and "lookup failed" in t.last_error
    money.sandbox.clear_faults()
    t = services.transfer_reconcile(transfer_id=t.pk, now=timezone.now() + timedelta(minutes=5))
    assert t.state == "succeeded"


def test_withdraw_balance_pulls_everything_back_for_the_close_flow(money, reseller_admin) -> None:
    tenant = money.tenant(balance="12.3456")
    t = services.transfer_withdraw_balance(actor=reseller_admin, tenant=tenant, reason="closing")
    assert t is not None and t.direction == "to_parent" and t.amount == Decimal("12.34") and t.origin == "system"
    t = services.transfer_execute(transfer_id=t.pk)
    assert t.state == "succeeded"
    assert money.child_balance(tenant.provider_account_id) == Decimal("0.0056")
    # Less than a cent left: nothing to pull, and the skip is audited.
    assert services.transfer_withdraw_balance(actor=reseller_admin, tenant=tenant, reason="closing") is None
    assert AuditEvent.objects.filter(action="billing.transfer.withdraw_skipped", tenant_id=tenant.pk).exists()
    check_invariants(money)


def test_transfer_get_is_scoped_to_the_tenant(money, reseller_billing) -> None:
    from django.http import Http404

    from billing import selectors

    mine, other = money.tenant(), money.tenant()
    t = _create(money, reseller_billing, tenant=mine)
    assert selectors.transfer_get(uuid=t.uuid, tenant=mine).pk == t.pk
    for bad in [
        {"uuid": t.uuid, "tenant": other},
        {"uuid": "not-a-uuid"},
        {"uuid": "00000000-0000-0000-0000-000000000000"},
    ]:
        with pytest.raises(Http404):
            selectors.transfer_get(**bad)
    page = selectors.transfer_list(tenant=other)
    assert page.items == [] and page.next_cursor is None
