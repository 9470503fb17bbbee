"""TransferMoneyToChildAccount, GetTransactionHistory, rates, amounts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from .conftest import Env


def _window(days: int = 1, tz_offset_hours: int = 0) -> dict[str, str]:
    now = datetime.now(UTC) + timedelta(hours=tz_offset_hours)
    return {
        "from_date": (now - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S"),
        "to_date": (now + timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S"),
    }


def _since() -> str:
    return (datetime.now(UTC) - timedelta(hours=48)).strftime("%Y-%m-%d %H:%M:%S")


def test_transfer_to_one_child_writes_paired_rows(env: Env) -> None:
    child = env.add_child()
    body = env.transfer(child["account_id"], "12.34", payment_reference="rp-1")
    assert body == {"result": 1, "balance": 9987.66}
    assert str(env.balance(child["account_id"])) == "12.3400"
    rows = env.store.transactions_by_reference("rp-1")
    assert [(r["account_id"], r["transaction_type"], str(r["amount"])) for r in rows] == [
        (env.account_id, "money_transfer_to_child", "-12.3400"),
        (child["account_id"], "money_acceptance_from_parent", "12.3400"),
    ]
    assert env.store.money_totals()["conserved"]


def test_exact_json_numbers(env: Env) -> None:
    child = env.add_child()
    response = env.vox_raw("TransferMoneyToChildAccount", {"child_account_id": child["account_id"], "amount": "0.1"})
    assert response.text == '{"result":1,"balance":9999.9}'
    env.transfer(child["account_id"], "0.2")
    info = env.vox_raw("GetChildrenAccounts", {"child_account_id": child["account_id"]}).text
    assert '"balance":0.3,' in info and '"live_balance":0.3' in info


def test_multi_target_and_all(env: Env) -> None:
    a, b = env.add_child(), env.add_child()
    body = env.transfer(f"{a['account_id']};{b['account_id']}", "5.67")
    assert body["balance"] == pytest.approx(10000 - 11.34)
    assert str(env.balance(a["account_id"])) == "5.6700" and str(env.balance(b["account_id"])) == "5.6700"
    assert env.transfer("all", "1")["error"]["code"] == 194  # not documented for this method: refused by default
    env.set_options(transfer_allow_all=True)
    env.transfer("all", "1")
    assert str(env.balance(a["account_id"])) == "6.6700"


def test_negative_amount_moves_child_to_parent(env: Env) -> None:
    child = env.add_child()
    env.transfer(child["account_id"], "10")
    body = env.transfer(child["account_id"], "-4", payment_reference="back-1")
    assert body["balance"] == 9994
    assert str(env.balance(child["account_id"])) == "6.0000"
    types = {r["account_id"]: r["transaction_type"] for r in env.store.transactions_by_reference("back-1")}
    assert types == {child["account_id"]: "money_transfer_to_parent", env.account_id: "money_acceptance_from_child"}


def test_strict_and_non_strict(env: Env) -> None:
    child = env.add_child()
    env.transfer(child["account_id"], "10")
    assert env.transfer(child["account_id"], "-11", strict_mode="true")["error"]["code"] == 127
    assert env.transfer(child["account_id"], "-11")["error"]["code"] == 127  # strict by default (option)
    # "take everything" example: amount=-10000000, strict_mode=false clamps.
    body = env.transfer(child["account_id"], "-10000000", strict_mode="false")
    assert body["balance"] == 10000 and env.balance(child["account_id"]) == 0
    assert env.transfer(child["account_id"], "20000", strict_mode="TRUE")["error"]["code"] == 127
    clamped = env.transfer(child["account_id"], "20000", strict_mode="false")
    assert clamped["balance"] == 0 and env.balance(child["account_id"]) == 10000
    assert env.store.money_totals()["conserved"]


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("0", 226),
        ("0.00", 226),
        ("-0.00", 226),
        ("0.001", 226),
        ("10.00005", 125),
        ("NaN", 125),
        ("Infinity", 125),
        ("1e3", 125),
        ("true", 125),
        ("١٠", 125),
        ("１０", 125),
        (" 10", 125),
        ("10,00", 125),
        ("+10", 125),
        ("", 134),
    ],
)
def test_amount_validation(env: Env, amount: str, code: int) -> None:
    child = env.add_child()
    assert env.transfer(child["account_id"], amount)["error"]["code"] == code


def test_amount_rounding_option_and_accepted_forms(env: Env) -> None:
    child = env.add_child()
    for amount in ("10", "10.5", "10.50", "0.01", "0.0001" if False else "0.0100"):
        assert env.transfer(child["account_id"], amount)["result"] == 1
    env.set_options(amount_extra_precision="round")
    assert env.transfer(child["account_id"], "1.00005")["result"] == 1
    assert str(env.balance(child["account_id"])) == "32.0200"


def test_transfer_parameter_errors(env: Env) -> None:
    child = env.add_child()
    cid = child["account_id"]
    assert env.vox("TransferMoneyToChildAccount", {"amount": "1"})["error"]["code"] == 485
    assert env.transfer("999999", "1")["error"]["code"] == 194
    assert env.transfer(f"{cid};999999", "1")["error"]["code"] == 194
    for bad in ("0", "-1", "1%3B2", "abc", "1;;2"):
        assert env.transfer(bad, "1")["error"]["code"] == 194, bad
    assert env.transfer(cid, "1", currency="XYZ")["error"]["code"] == 210
    assert env.transfer(cid, "1", payment_reference="r" * 127)["error"]["code"] == 304
    assert env.transfer(cid, "1", payment_reference="r" * 126)["result"] == 1
    assert env.transfer(cid, "1", parent_transaction_description="d" * 120)["error"]["code"] == 236
    assert env.transfer(cid, "1", child_transaction_description="d" * 120)["error"]["code"] == 237
    assert (
        env.transfer(cid, "1", check_duplicate_reference_from="yesterday", payment_reference="x")["error"]["code"]
        == 111
    )
    # Another parent's child, reached by impersonating a child: not ours.
    assert (
        env.vox("TransferMoneyToChildAccount", {"child_account_id": cid, "amount": "1"}, token=env.token(iss=cid))[
            "error"
        ]["code"]
        == 194
    )


def test_descriptions_macros(env: Env) -> None:
    child = env.add_child()
    env.transfer(
        child["account_id"],
        "1",
        payment_reference="macro",
        parent_transaction_description="to ${child_account_name} (${child_account_id})",
    )
    parent_row = env.store.transactions_by_reference("macro")[0]
    assert parent_row["description"] == f"to {child['account_name']} ({child['account_id']})"


def test_duplicate_reference_is_skipped(env: Env) -> None:
    child = env.add_child()
    since = _since()
    first = env.transfer(child["account_id"], "7", payment_reference="rp-dup", check_duplicate_reference_from=since)
    again = env.transfer(child["account_id"], "7", payment_reference="rp-dup", check_duplicate_reference_from=since)
    assert first == again == {"result": 1, "balance": 9993}
    assert env.store.transfer_ops_by_reference("rp-dup") == 1
    assert len(env.store.transactions_by_reference("rp-dup")) == 2
    # Without the check the reference is not deduplicated (documented: only when given).
    env.transfer(child["account_id"], "7", payment_reference="rp-dup")
    assert env.store.transfer_ops_by_reference("rp-dup") == 2
    # Now two earlier operations match: ambiguous.
    assert (
        env.transfer(child["account_id"], "7", payment_reference="rp-dup", check_duplicate_reference_from=since)[
            "error"
        ]["code"]
        == 303
    )
    # A window that starts after the earlier transfers does not see them.
    future = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    assert (
        env.transfer(child["account_id"], "1", payment_reference="rp-dup", check_duplicate_reference_from=future)[
            "result"
        ]
        == 1
    )


def test_duplicate_reply_options(env: Env) -> None:
    a, b = env.add_child(), env.add_child()
    since = _since()
    env.transfer(a["account_id"], "1", payment_reference="rp-opt", check_duplicate_reference_from=since)
    # Default match is by reference alone, whatever the child.
    assert env.transfer(b["account_id"], "1", payment_reference="rp-opt", check_duplicate_reference_from=since) == {
        "result": 1,
        "balance": 9999,
    }
    env.set_options(duplicate_reply="error", duplicate_error_code=515)
    assert (
        env.transfer(a["account_id"], "1", payment_reference="rp-opt", check_duplicate_reference_from=since)["error"][
            "code"
        ]
        == 515
    )
    env.set_options(duplicate_match="reference_and_child", duplicate_reply="ok")
    assert (
        env.transfer(b["account_id"], "1", payment_reference="rp-opt", check_duplicate_reference_from=since)["result"]
        == 1
    )
    assert env.balance(b["account_id"]) == 1


def test_inactive_and_frozen_children(env: Env) -> None:
    child = env.add_child(active="false")
    assert env.transfer(child["account_id"], "1")["result"] == 1  # default: accepted
    env.set_options(transfer_to_inactive_child="refuse")
    assert env.transfer(child["account_id"], "1")["error"]["code"] == 131
    other = env.add_child()
    assert env.admin("POST", "freeze", {"account_id": other["account_id"], "frozen": True}).status_code == 200
    assert env.transfer(other["account_id"], "1")["result"] == 1
    env.set_options(transfer_to_frozen_child="refuse", inactive_child_error_code=194)
    assert env.transfer(other["account_id"], "1")["error"]["code"] == 194


def test_transfer_method_availability_option(env: Env) -> None:
    child = env.add_child()
    env.set_options(transfer_method="unknown_command")
    assert env.transfer(child["account_id"], "1")["error"]["code"] == 103
    env.set_options(transfer_method="forbidden")
    assert env.transfer(child["account_id"], "1")["error"]["code"] == 104


def test_cross_currency(env: Env) -> None:
    child = env.add_child()
    with env.store.write() as conn:
        conn.execute("UPDATE accounts SET currency = 'EUR' WHERE account_id = ?", (child["account_id"],))
    body = env.transfer(child["account_id"], "100")
    assert body["balance"] == 9900 and str(env.balance(child["account_id"])) == "92.0000"
    body = env.transfer(child["account_id"], "9.2", currency="EUR")
    assert body["balance"] == 9890
    env.set_options(cross_currency_transfers="refuse")
    assert env.transfer(child["account_id"], "1")["error"]["code"] == 210
    assert env.store.money_totals()["ledger_mismatched_accounts"] == 0


def test_concurrent_transfers_cannot_double_spend(live: Env) -> None:
    children = [live.add_child() for _ in range(4)]
    live.transfer(children[0]["account_id"], "9900")  # parent keeps 100
    results: list[dict] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        with httpx.Client(base_url=live.client.base_url, timeout=10) as client:
            r = client.post(
                "/platform_api/TransferMoneyToChildAccount",
                data={"child_account_id": children[1 + i % 3]["account_id"], "amount": "10", "strict_mode": "true"},
                headers={"Authorization": f"Bearer {live.token()}"},
            )
        with lock:
            results.append(r.json())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.get("result") == 1]
    refused = [r for r in results if r.get("error", {}).get("code") == 127]
    assert len(ok) == 10 and len(refused) == 6
    assert live.balance(live.account_id) == 0
    assert live.store.money_totals()["conserved"]


# --- history ---------------------------------------------------------------------------------------


def test_history_filters_and_pairs(env: Env) -> None:
    a, b = env.add_child(), env.add_child()
    env.transfer(a["account_id"], "3", payment_reference="h-a")
    env.transfer(b["account_id"], "4", payment_reference="h-b")
    env.transfer(a["account_id"], "-1", payment_reference="h-back")
    own = env.ok("GetTransactionHistory", _window())
    types = [r["transaction_type"] for r in own["result"]]
    assert types.count("money_transfer_to_child") == 2 and types.count("money_acceptance_from_child") == 1
    assert all(r["account_id"] == str(env.account_id) for r in own["result"])
    assert own["timezone"] == "Etc/GMT" and own["total_count"] == len(own["result"]) == own["count"]
    by_ref = env.ok(
        "GetTransactionHistory",
        {
            **_window(),
            "payment_reference": "h-a",
            "transaction_type": "money_transfer_to_child",
            "child_account_id": a["account_id"],
        },
    )
    assert by_ref["total_count"] == 1 and by_ref["result"][0]["amount"] == -3
    assert by_ref["result"][0]["payment_reference"] == "h-a"
    with_child = env.ok(
        "GetTransactionHistory", {**_window(), "child_account_id": a["account_id"], "payment_reference": "h-a"}
    )
    assert {r["transaction_type"] for r in with_child["result"]} == {
        "money_transfer_to_child",
        "money_acceptance_from_parent",
    }
    children_only = env.ok(
        "GetTransactionHistory", {**_window(), "child_account_id": "all", "children_transactions_only": "true"}
    )
    assert {r["account_id"] for r in children_only["result"]} == {str(a["account_id"]), str(b["account_id"])}
    assert env.error_code("GetTransactionHistory", {**_window(), "transaction_type": "bogus"}) == 209
    assert env.error_code("GetTransactionHistory", {**_window(), "child_account_id": "999999"}) == 194
    assert env.error_code("GetTransactionHistory", {**_window(), "transaction_id": "x"}) == 197
    desc = env.ok("GetTransactionHistory", {**_window(), "desc_order": "true"})
    assert [r["transaction_id"] for r in desc["result"]] == sorted(
        (r["transaction_id"] for r in desc["result"]), reverse=True
    )
    no_total = env.ok("GetTransactionHistory", {**_window(), "with_total_count": "false"})
    assert "total_count" not in no_total
    env.set_options(history_account_id_as_string=False)
    assert env.ok("GetTransactionHistory", _window())["result"][0]["account_id"] == env.account_id


def test_history_dates_and_timezones(env: Env) -> None:
    child = env.add_child()
    env.transfer(child["account_id"], "1", payment_reference="tz")
    env.set_options(history_dates_required=True)
    assert env.error_code("GetTransactionHistory") == 485
    env.set_options(history_dates_required=False)
    assert env.error_code("GetTransactionHistory", {"from_date": "2020-01-01", "to_date": "2020-01-02"}) == 111
    assert (
        env.error_code("GetTransactionHistory", {"from_date": "2020-01-02 00:00:00", "to_date": "2020-01-01 00:00:00"})
        == 123
    )
    assert env.error_code("GetTransactionHistory", {**_window(), "timezone": "Mars/Base"}) == 496
    utc = env.ok("GetTransactionHistory", {**_window(), "timezone": "Etc/GMT", "payment_reference": "tz"})["result"][0]
    msk = env.ok("GetTransactionHistory", {**_window(), "timezone": "Europe/Moscow", "payment_reference": "tz"})
    assert msk["timezone"] == "Europe/Moscow"
    shifted = datetime.strptime(msk["result"][0]["performed_at"], "%Y-%m-%d %H:%M:%S")
    assert shifted - datetime.strptime(utc["performed_at"], "%Y-%m-%d %H:%M:%S") == timedelta(hours=3)
    # A window written in Moscow time that ends before the transfer (in UTC terms) misses it.
    now_utc = datetime.now(UTC)
    early = {
        "from_date": (now_utc - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S"),
        "to_date": (now_utc + timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M:%S"),
        "timezone": "Europe/Moscow",
        "payment_reference": "tz",
    }
    assert env.ok("GetTransactionHistory", early)["total_count"] == 0
    env.set_options(history_dates_required=False)
    assert env.ok("GetTransactionHistory", {"payment_reference": "tz"})["total_count"] == 1


def test_history_count_and_offset_caps(env: Env) -> None:
    child = env.add_child()
    now = int(time.time())
    with env.store.write() as conn:
        conn.executemany(
            "INSERT INTO transactions(account_id, performed_ts, amount, currency, transaction_type) VALUES (?, ?, ?, 'USD', 'resource_charge')",
            [(child["account_id"], now, -1) for _ in range(10050)],
        )
        conn.execute("UPDATE accounts SET balance = balance - 10050 WHERE account_id = ?", (child["account_id"],))
    params = {**_window(), "child_account_id": child["account_id"], "children_transactions_only": "true"}
    first = env.ok("GetTransactionHistory", params)
    assert first["count"] == 20 and first["total_count"] == 10050
    assert env.ok("GetTransactionHistory", {**params, "count": 5000})["count"] == 1000
    assert env.ok("GetTransactionHistory", {**params, "count": 1000, "offset": 10000})["count"] == 50
    assert env.error_code("GetTransactionHistory", {**params, "offset": 10001}) == 496
    env.set_options(history_offset_over_cap="clamp")
    assert env.ok("GetTransactionHistory", {**params, "count": 1000, "offset": 10040})["count"] == 50


def test_currency_rate_and_money_to_charge(env: Env) -> None:
    body = env.ok("GetCurrencyRate", {"currency": "RUR;EUR;USD"})
    assert body == {"result": {"RUR": 90.5, "EUR": 0.92, "USD": 1}}
    assert env.error_code("GetCurrencyRate", {"currency": "XYZ"}) == 210
    assert env.error_code("GetCurrencyRate") == 485
    assert env.error_code("GetCurrencyRate", {"currency": "USD", "date": "2020-13-40"}) == 233
    env.set_options(currency_rates={"USD": "1", "EUR": "0.5", "RUR": "100", "KZT": "500"})
    assert env.ok("GetCurrencyRate", {"currency": "EUR"})["result"] == {"EUR": 0.5}
    charge = env.ok("GetMoneyAmountToCharge")
    assert charge["result"]["amount"] == 0 and charge["result"]["subscriptions"] == []
    child = env.add_child()
    with env.store.write() as conn:
        conn.execute("UPDATE accounts SET balance = -250000 WHERE account_id = ?", (child["account_id"],))
    owed = env.ok("GetMoneyAmountToCharge", token=env.token(iss=child["account_id"]))
    assert owed["result"]["amount"] == 25 and owed["result"]["min_bank_card_amount_usd"] == 25
    assert env.error_code("GetMoneyAmountToCharge", {"currency": "XYZ"}) == 210


def test_money_conserved_after_mixed_operations(env: Env) -> None:
    before = env.store.total_money()
    kids = [env.add_child() for _ in range(3)]
    env.transfer(";".join(str(k["account_id"]) for k in kids), "20")
    env.transfer(kids[0]["account_id"], "-5")
    assert env.admin("POST", "spend", {"children": 3, "max_amount": "30", "seed": 3}).status_code == 200
    env.transfer(kids[1]["account_id"], "-100000", strict_mode="false")
    assert env.store.total_money() == before == Decimal("10000.0000")
    assert env.store.check_invariants() == []
