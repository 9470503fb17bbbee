"""The `disabled_methods` option: listed platform_api methods answer 103 Unknown command,
as a provider answers a method it has withdrawn; the others keep working."""

from __future__ import annotations

from .conftest import Env


def test_disabled_methods_answer_unknown_command_and_do_nothing(both: Env) -> None:
    child = both.add_child()
    both.set_options(disabled_methods="TransferMoneyToChildAccount; GetTransactionHistory")
    before = both.store.money_totals()

    body = both.transfer(child["account_id"], "5")
    assert body["error"]["code"] == 103 and body["error"]["msg"] == "Unknown command"
    assert both.error_code("GetTransactionHistory", {"from_date": "2026-01-01 00:00:00"}) == 103
    assert both.balance(child["account_id"]) == 0
    assert both.store.money_totals() == before
    # Methods not listed still answer.
    assert both.ok("GetChildrenAccounts", {"child_account_id": child["account_id"]})["count"] == 1


def test_the_cmd_field_is_disabled_too(env: Env) -> None:
    env.set_options(disabled_methods="GetAccountInfo")
    assert env.error_code("GetAccountInfo", style="cmd") == 103


def test_clearing_the_option_brings_methods_back(env: Env) -> None:
    child = env.add_child()
    env.set_options(disabled_methods="TransferMoneyToChildAccount")
    assert env.transfer(child["account_id"], "1")["error"]["code"] == 103
    env.set_options(disabled_methods="")
    assert env.transfer(child["account_id"], "1")["result"] == 1
    assert str(env.balance(child["account_id"])) == "1.0000"


def test_transfer_method_option_still_works_beside_it(env: Env) -> None:
    child = env.add_child()
    env.set_options(transfer_method="forbidden", disabled_methods="CloneAccount")
    assert env.transfer(child["account_id"], "1")["error"]["code"] == 104
    env.set_options(transfer_method="unknown_command", disabled_methods="")
    assert env.transfer(child["account_id"], "1")["error"]["code"] == 103


def test_an_unknown_name_in_the_list_changes_nothing_else(env: Env) -> None:
    env.set_options(disabled_methods="NoSuchMethod;;")
    assert "result" in env.ok("GetAccountInfo")


def test_a_non_string_value_is_refused(env: Env) -> None:
    response = env.admin("PUT", "options", {"disabled_methods": ["TransferMoneyToChildAccount"]})
    assert response.status_code == 400
