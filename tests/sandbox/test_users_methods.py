"""Applications and app users over HTTP: AddUser, SetUserInfo, GetUsers, DelUser,
TransferMoneyToUser and their rows in GetTransactionHistory.

Users live in a child account; the parent's key acts for the child with an ``account_id``
form field, as for every other child-scoped method.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from .conftest import STRONG_PASSWORD, Env


def _in(child: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"account_id": child["account_id"], **params}


def _app(env: Env, child: dict[str, Any]) -> dict[str, Any]:
    body = env.ok("GetApplications", _in(child))
    assert body["total_count"] == 1
    return body["result"][0]


def _add_user(env: Env, child: dict[str, Any], name: str, **extra: Any) -> int:
    params = _in(
        child,
        user_name=name,
        user_display_name=name.title(),
        user_password=STRONG_PASSWORD,
        application_id=_app(env, child)["application_id"],
        parent_accounting="false",
    )
    params.update(extra)
    return int(env.ok("AddUser", params)["user_id"])


def _users(env: Env, child: dict[str, Any], **params: Any) -> dict[str, Any]:
    return env.ok("GetUsers", _in(child, application_id=_app(env, child)["application_id"], **params))


@pytest.fixture
def child(env: Env) -> dict[str, Any]:
    c = env.add_child()
    assert env.transfer(c["account_id"], "100")["result"] == 1
    return c


def test_every_account_has_a_default_application(env: Env, child: dict[str, Any]) -> None:
    app = _app(env, child)
    assert app["application_name"] == f"pbx.{child['account_name']}.voximplant.com"
    added = env.ok("AddApplication", _in(child, application_name="second"))
    assert added["application_name"] == f"second.{child['account_name']}.voximplant.com"
    assert env.ok("GetApplications", _in(child))["total_count"] == 2
    assert env.error_code("AddApplication", _in(child, application_name="second")) == 496  # taken
    assert env.error_code("AddApplication", _in(child, application_name="Bad_Name")) == 496


def test_add_user_answers_the_new_id_and_validates_each_parameter(env: Env, child: dict[str, Any]) -> None:
    app_id = _app(env, child)["application_id"]
    good = _in(
        child, user_name="alice", user_display_name="Alice", user_password=STRONG_PASSWORD, application_id=app_id
    )
    body = env.ok("AddUser", good)
    assert body["result"] == 1 and isinstance(body["user_id"], int)
    cases = [
        ({"user_name": "al"}, 122),
        ({"user_name": "-alice"}, 122),
        ({"user_name": "Alice"}, 122),
        ({"user_name": "a" * 51}, 122),
        ({"user_name": "alice"}, 118),
        ({"user_name": "bob", "user_password": ""}, 463),
        ({"user_name": "bob", "user_password": "Sh0rt!"}, 464),
        ({"user_name": "bob", "user_password": "With space1!"}, 524),
        ({"user_name": "bob", "user_password": "P@ssw0rd"}, 523),
        ({"user_name": "bob", "application_id": "999999"}, 116),
        ({"user_name": "bob", "application_id": "x"}, 116),
        ({"user_name": "bob", "user_custom_data": "x" * 8192}, 212),
        ({"user_name": "bob", "user_display_name": "d" * 256}, 496),
        ({"user_name": "bob", "parent_accounting": "maybe"}, 496),
    ]
    for change, code in cases:
        assert env.error_code("AddUser", {**good, **change}) == code, change
    missing = dict(good, user_name="bob")
    del missing["application_id"]
    assert env.error_code("AddUser", missing) == 485
    del missing["user_password"]
    assert env.error_code("AddUser", missing) == 485
    # The same name in another account (or application) is fine: names are unique per application.
    other = env.add_child()
    assert env.ok(
        "AddUser", {**good, "account_id": other["account_id"], "application_id": _app(env, other)["application_id"]}
    )
    by_name = dict(good, user_name="carol", application_name=_app(env, child)["application_name"])
    del by_name["application_id"]
    assert env.ok("AddUser", by_name)["user_id"] > body["user_id"]
    assert env.error_code("AddUser", dict(by_name, user_name="dave", application_name="nope")) == 496


def test_user_limit_per_account_is_error_109(env: Env, child: dict[str, Any]) -> None:
    env.set_options(users_per_account_limit=2)
    a = _add_user(env, child, "one")
    _add_user(env, child, "two")
    assert (
        env.error_code(
            "AddUser",
            _in(
                child,
                user_name="three",
                user_display_name="T",
                user_password=STRONG_PASSWORD,
                application_id=_app(env, child)["application_id"],
            ),
        )
        == 109
    )
    env.ok("DelUser", _in(child, user_id=a))
    _add_user(env, child, "three")


def test_get_users_shows_user_info_and_pages(env: Env, child: dict[str, Any]) -> None:
    names = [f"user{i:02d}" for i in range(25)]
    ids = [_add_user(env, child, n, user_custom_data="cd" if n == "user00" else "") for n in names]
    first = _users(env, child)
    assert first["total_count"] == 25 and first["count"] == 20  # count defaults to 20
    row = first["result"][0]
    assert row["user_name"] == "user00" and row["user_id"] == ids[0]
    assert row["user_display_name"] == "User00" and row["user_custom_data"] == "cd"
    assert row["user_active"] is True and row["parent_accounting"] is False and row["frozen"] is False
    assert row["two_factor_auth_required"] is False
    assert row["balance"] == row["live_balance"] == row["fixed_balance"] == 0
    assert row["application_id"] == _app(env, child)["application_id"]
    seen: list[int] = []
    offset = 0
    while True:
        page = _users(env, child, count=7, offset=offset, order_by="user_id")
        seen += [r["user_id"] for r in page["result"]]
        offset += page["count"]
        if page["count"] == 0:
            break
    assert seen == ids
    assert [r["user_id"] for r in _users(env, child, user_id=f"{ids[3]};{ids[1]}")["result"]] == [ids[1], ids[3]]
    assert _users(env, child, user_name="user1")["total_count"] == 10  # substring ("name part")
    env.set_options(users_filter_match="exact")
    assert _users(env, child, user_name="user1")["total_count"] == 0
    assert _users(env, child, user_name="user10")["result"][0]["user_id"] == ids[10]
    assert env.error_code("GetUsers", _in(child)) == 485  # application is required by default
    env.set_options(get_users_requires_application=False)
    assert env.ok("GetUsers", _in(child, count=100))["total_count"] == 25
    assert env.error_code("GetUsers", _in(child, order_by="email")) == 496
    assert env.error_code("GetUsers", _in(child, user_id="abc")) == 117


def test_set_user_info_changes_fields_and_validates(env: Env, child: dict[str, Any]) -> None:
    uid = _add_user(env, child, "erin")
    _add_user(env, child, "frank")
    env.ok(
        "SetUserInfo",
        _in(
            child,
            user_id=uid,
            new_user_name="erin2",
            user_display_name="Erin Two",
            user_active="false",
            user_custom_data="x",
            user_password="N3w!Passw0rd",
        ),
    )
    row = _users(env, child, user_id=uid)["result"][0]
    assert (row["user_name"], row["user_display_name"], row["user_active"], row["user_custom_data"]) == (
        "erin2",
        "Erin Two",
        False,
        "x",
    )
    app = _app(env, child)
    by_name = _in(child, user_name="erin2", application_id=app["application_id"], parent_accounting="true")
    assert env.ok("SetUserInfo", by_name) == {"result": 1}
    assert _users(env, child, user_id=uid)["result"][0]["parent_accounting"] is True
    assert env.error_code("SetUserInfo", _in(child, user_id=uid, new_user_name="frank")) == 118
    assert env.error_code("SetUserInfo", _in(child, user_id=uid, new_user_name="X")) == 122
    assert env.error_code("SetUserInfo", _in(child, user_id=999999, user_active="true")) == 117
    assert env.error_code("SetUserInfo", _in(child, user_name="erin2", user_active="true")) == 485
    assert env.error_code("SetUserInfo", _in(child, user_id=uid, user_password="weak")) == 464
    assert env.error_code("SetUserInfo", _in(child, user_active="true")) == 485
    # A user of another account is not found here.
    other = env.add_child()
    assert (
        env.error_code("SetUserInfo", {"account_id": other["account_id"], "user_id": uid, "user_active": "true"}) == 117
    )


def test_del_user_removes_it_and_frees_the_name(env: Env, child: dict[str, Any]) -> None:
    uid = _add_user(env, child, "gina")
    assert env.ok("DelUser", _in(child, user_id=uid)) == {"result": 1}
    assert _users(env, child)["total_count"] == 0
    assert env.error_code("DelUser", _in(child, user_id=uid)) == 117
    assert _add_user(env, child, "gina") != uid
    app = _app(env, child)
    assert env.ok("DelUser", _in(child, user_name="gina", application_name=app["application_name"]))
    assert env.error_code("DelUser", _in(child)) == 485


def test_transfer_money_to_user_moves_money_both_ways_and_writes_history(env: Env, child: dict[str, Any]) -> None:
    uid = _add_user(env, child, "henry")
    cid = child["account_id"]
    body = env.ok(
        "TransferMoneyToUser",
        _in(
            child,
            user_id=uid,
            amount="12.5",
            user_transaction_description="ref-1 to ${user_name}",
            account_transaction_description="ref-1 for ${user_id}",
        ),
    )
    assert body == {"result": 1, "balance": Decimal("87.5")} or body["balance"] == 87.5
    assert env.balance(cid) == Decimal("87.5")
    assert _users(env, child, user_id=uid)["result"][0]["balance"] == 12.5
    # A negative amount moves money from the user back to the account.
    assert env.ok("TransferMoneyToUser", _in(child, user_id=uid, amount="-2.5"))["balance"] == 90
    assert _users(env, child, user_id=uid)["result"][0]["balance"] == 10
    # No duplicate check: the same request twice pays twice.
    again = _in(child, user_id=uid, amount="1", user_transaction_description="ref-2")
    env.ok("TransferMoneyToUser", again)
    env.ok("TransferMoneyToUser", again)
    assert _users(env, child, user_id=uid)["result"][0]["balance"] == 12
    assert env.store.check_invariants() == []

    history = env.ok(
        "GetTransactionHistory",
        {"child_account_id": cid, "children_transactions_only": "true", "user_id": uid, "count": 100},
    )
    rows = history["result"]
    assert len(rows) == 8 and all(r["user_id"] == uid for r in rows)
    assert all(r["transaction_type"] == "user_money_transfer" for r in rows)
    assert {r["account_id"] for r in rows} == {str(cid)}
    first_two = {r["transaction_description"]: r["amount"] for r in rows[:2]}
    assert first_two == {f"ref-1 for {uid}": -12.5, "ref-1 to henry": 12.5}
    user_side = env.ok(
        "GetTransactionHistory",
        {
            "child_account_id": cid,
            "children_transactions_only": "true",
            "users_transactions_only": "true",
            "count": 100,
        },
    )["result"]
    assert [r["amount"] for r in user_side] == [12.5, -2.5, 1, 1]
    assert [r["transaction_description"] for r in user_side if "ref-2" in r["transaction_description"]] == ["ref-2"] * 2
    typed = env.ok(
        "GetTransactionHistory",
        {
            "child_account_id": cid,
            "children_transactions_only": "true",
            "transaction_type": "user_money_transfer",
            "user_id": uid,
        },
    )
    assert typed["total_count"] == 8
    assert env.error_code("GetTransactionHistory", {"child_account_id": cid, "user_id": 999999}) == 117
    # A deleted user's rows stay findable.
    env.ok("TransferMoneyToUser", _in(child, user_id=uid, amount="-12"))
    env.ok("DelUser", _in(child, user_id=uid))
    assert env.ok("GetTransactionHistory", {"child_account_id": cid, "user_id": uid, "count": 100})["total_count"] == 10


def test_transfer_money_to_user_validation_and_refusals(env: Env, child: dict[str, Any]) -> None:
    uid = _add_user(env, child, "ivan")
    shared = _add_user(env, child, "judy", parent_accounting="true")
    base = _in(child, user_id=uid, amount="1")
    cases = [
        ({"amount": "abc"}, 125),
        ({"amount": "1e2"}, 125),
        ({"amount": "1.001"}, 125),
        ({"amount": "0.001"}, 225),
        ({"amount": "0"}, 225),
        ({"amount": "0.00"}, 225),
        ({"user_id": "999999"}, 117),
        ({"user_id": "x"}, 117),
        ({"user_id": shared}, 573),
        ({"user_id": f"{uid};{shared}"}, 573),
        ({"user_transaction_description": "d" * 120}, 234),
        ({"account_transaction_description": "d" * 120}, 235),
        ({"currency": "XXX"}, 210),
        ({"amount": "1000"}, 127),
        ({"amount": "-5"}, 127),
    ]
    for change, code in cases:
        assert env.error_code("TransferMoneyToUser", {**base, **change}) == code, change
    assert env.error_code("TransferMoneyToUser", _in(child, amount="1")) == 485
    assert env.error_code("TransferMoneyToUser", _in(child, user_name="ivan", amount="1")) == 485
    assert env.error_code("TransferMoneyToUser", _in(child, user_id=uid, user_name="ivan", amount="1")) == 458
    assert env.balance(child["account_id"]) == Decimal("100")
    # Non-strict mode moves what the account has.
    assert env.ok("TransferMoneyToUser", {**base, "amount": "1000", "strict_mode": "false"})["balance"] == 0
    assert _users(env, child, user_id=uid)["result"][0]["balance"] == 100
    # By name within an application; `all` skips users spending the account's money.
    env.transfer(child["account_id"], "10")
    app = _app(env, child)
    env.ok("TransferMoneyToUser", _in(child, user_name="ivan", application_id=app["application_id"], amount="1"))
    env.ok("TransferMoneyToUser", _in(child, user_id="all", amount="1"))
    assert _users(env, child, user_id=uid)["result"][0]["balance"] == 102
    assert env.store.check_invariants() == []


def test_shared_balance_switch_and_delete_with_money_are_refused_by_default(env: Env, child: dict[str, Any]) -> None:
    uid = _add_user(env, child, "kate")
    env.ok("TransferMoneyToUser", _in(child, user_id=uid, amount="5"))
    assert env.error_code("SetUserInfo", _in(child, user_id=uid, parent_accounting="true")) == 496
    assert env.error_code("DelUser", _in(child, user_id=uid)) == 496
    env.set_options(del_user_with_balance="return")
    env.ok("DelUser", _in(child, user_id=uid))
    assert env.balance(child["account_id"]) == Decimal("100")
    assert env.store.check_invariants() == []


def test_parent_accounting_defaults_to_the_accounts_money(env: Env, child: dict[str, Any]) -> None:
    app_id = _app(env, child)["application_id"]
    uid = env.ok(
        "AddUser",
        _in(child, user_name="leo", user_display_name="Leo", user_password=STRONG_PASSWORD, application_id=app_id),
    )["user_id"]
    assert _users(env, child, user_id=uid)["result"][0]["parent_accounting"] is True
    assert env.error_code("TransferMoneyToUser", _in(child, user_id=uid, amount="1")) == 573


@pytest.mark.parametrize("kind", ["apply_then_drop", "apply_then_500"])
def test_faults_apply_to_user_transfers(env: Env, child: dict[str, Any], kind: str) -> None:
    uid = _add_user(env, child, "mia")
    rule = {"method": "TransferMoneyToUser", "kind": kind, "count": 1}
    assert env.admin("PUT", "faults", {"seed": 1, "rules": [rule]}).status_code == 200
    params = {k: str(v) for k, v in _in(child, user_id=uid, amount="3", user_transaction_description="ref-x").items()}
    headers = {"Authorization": f"Bearer {env.token()}"}
    if kind == "apply_then_drop":
        with pytest.raises(httpx.RemoteProtocolError):
            env.client.post("/platform_api/TransferMoneyToUser", data=params, headers=headers)
    else:
        response = env.client.post("/platform_api/TransferMoneyToUser", data=params, headers=headers)
        assert response.status_code == 500 and "html" in response.headers["content-type"]
    assert _users(env, child, user_id=uid)["result"][0]["balance"] == 3  # applied


@pytest.mark.parametrize("kind", ["http_429", "html", "reset"])
def test_faults_before_applying_leave_users_alone(env: Env, child: dict[str, Any], kind: str) -> None:
    rule = {"method": "AddUser", "kind": kind, "count": 1}
    assert env.admin("PUT", "faults", {"seed": 1, "rules": [rule]}).status_code == 200
    app_id = _app(env, child)["application_id"]
    params = {
        k: str(v)
        for k, v in _in(
            child, user_name="ned", user_display_name="Ned", user_password=STRONG_PASSWORD, application_id=app_id
        ).items()
    }
    try:
        response = env.client.post(
            "/platform_api/AddUser", data=params, headers={"Authorization": f"Bearer {env.token()}"}
        )
        assert response.status_code in (200, 429) and "error" not in response.text
    except httpx.RemoteProtocolError:
        assert kind == "reset"
    assert _users(env, child)["total_count"] == 0
