"""The sandbox's defaults on money follow the documents: no child_account_id=all for
TransferMoneyToChildAccount, no more than two decimals in an amount, a one-month window for
GetTransactionHistory without dates; the other readings stay options. History lag."""

from __future__ import annotations

import time
from decimal import Decimal

from .conftest import Env


def test_transfer_to_all_children_is_refused_by_default(env: Env) -> None:
    a = env.add_child()
    assert env.transfer("all", "1")["error"]["code"] == 194
    assert env.balance(a["account_id"]) == 0
    env.set_options(transfer_allow_all=True)
    assert env.transfer("all", "1")["result"] == 1
    assert env.balance(a["account_id"]) == Decimal("1")


def test_more_than_two_decimals_is_refused_by_default(env: Env) -> None:
    child = env.add_child()
    for amount in ("1.001", "1.0001", "-1.005"):
        assert env.transfer(child["account_id"], amount)["error"]["code"] == 125, amount
    assert env.balance(child["account_id"]) == 0
    assert env.transfer(child["account_id"], "1.10")["result"] == 1
    env.set_options(amount_max_places=4)
    assert env.transfer(child["account_id"], "1.0001")["result"] == 1
    assert env.transfer(child["account_id"], "1.00001")["error"]["code"] == 125
    assert str(env.balance(child["account_id"])) == "2.1001"


def test_rounding_to_the_allowed_places_is_an_option(env: Env) -> None:
    child = env.add_child()
    env.set_options(amount_extra_precision="round")
    assert env.transfer(child["account_id"], "1.005")["result"] == 1  # half-even: 1.00
    assert env.transfer(child["account_id"], "1.015")["result"] == 1  # half-even: 1.02
    assert str(env.balance(child["account_id"])) == "2.0200"
    assert env.transfer(child["account_id"], "0.004")["error"]["code"] == 226  # rounds to nothing


def test_history_without_dates_covers_one_month(env: Env) -> None:
    child = env.add_child()
    now = int(time.time())
    with env.store.write() as conn:
        for days, amount in ((20, -1), (40, -2)):
            conn.execute(
                "INSERT INTO transactions(account_id, performed_ts, amount, currency, transaction_type) "
                "VALUES (?, ?, ?, 'USD', 'resource_charge')",
                (child["account_id"], now - days * 86400, amount),
            )
    params = {"child_account_id": child["account_id"], "children_transactions_only": "true"}
    rows = env.ok("GetTransactionHistory", params)["result"]
    assert [r["amount"] for r in rows] == [-0.0001]  # 20 days ago is in, 40 days ago is out
    env.set_options(history_dates_required=True)
    assert env.error_code("GetTransactionHistory", params) == 485


def test_history_lag_hides_new_rows_but_not_from_the_duplicate_check(env: Env) -> None:
    child = env.add_child()
    env.set_options(history_lag_seconds=3600)
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 86400))
    ref = {"payment_reference": "lag-1", "check_duplicate_reference_from": since}
    assert env.transfer(child["account_id"], "3", **ref)["result"] == 1
    assert env.ok("GetTransactionHistory", {"payment_reference": "lag-1"})["total_count"] == 0
    # The provider's own duplicate check sees the transfer at once: nothing moves twice.
    assert env.transfer(child["account_id"], "3", **ref)["result"] == 1
    assert env.store.transfer_ops_by_reference("lag-1") == 1
    env.set_options(history_lag_seconds=0)
    assert env.ok("GetTransactionHistory", {"payment_reference": "lag-1"})["total_count"] == 1
