"""Account plans and document verification over HTTP: GetAccountPlans, GetAvailablePlans,
ChangeAccountPlan (upgrades only; the next month's fee plus taxes is reserved at once) and
GetAccountDocuments with the admin endpoint that sets a child's verification."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .conftest import Env


def _as_child(env: Env, child_id: int) -> dict[str, Any]:
    return {"account_id": child_id}


def _funded_child(env: Env, amount: str = "100") -> int:
    child = env.add_child()
    assert env.transfer(child["account_id"], amount)["result"] == 1
    return int(child["account_id"])


def test_a_new_account_is_on_the_cheapest_plan_of_each_type_with_its_packages(both: Env) -> None:
    child = _funded_child(both)
    plans = both.ok("GetAccountPlans", _as_child(both, child))["result"]
    assert [(p["plan_type"], p["plan_subscription_template_id"]) for p in plans] == [("IM", 101), ("MAU", 201)]
    im = plans[0]
    assert im["plan_name"] == "IM Start" and Decimal(str(im["price"])) == Decimal("10")
    assert len(im["next_charge"]) == 10 and im["next_charge"].endswith("-01")
    assert im["packages"][0]["remaining_amount"] == 1000

    only_mau = both.ok("GetAccountPlans", {**_as_child(both, child), "plan_type": "MAU"})["result"]
    assert [p["plan_type"] for p in only_mau] == ["MAU"]
    by_id = both.ok("GetAccountPlans", {**_as_child(both, child), "plan_subscription_template_id": "101"})["result"]
    assert [p["plan_subscription_template_id"] for p in by_id] == [101]


def test_available_plans_are_only_the_dearer_ones(env: Env) -> None:
    child = _funded_child(env)
    available = env.ok("GetAvailablePlans", {**_as_child(env, child), "plan_type": "IM"})["result"]
    assert [p["plan_subscription_template_id"] for p in available] == [102, 103]
    assert all(Decimal(str(p["price"])) > Decimal("10") for p in available)


def test_an_upgrade_reserves_next_months_fee_plus_taxes(both: Env) -> None:
    child = _funded_child(both, "100")
    body = both.ok(
        "ChangeAccountPlan", {**_as_child(both, child), "plan_type": "IM", "plan_subscription_template_id": 102}
    )
    assert body["result"] == 1
    info = body["account_info"]
    # 25 + 20 % tax = 30 on hold; the ledger balance is untouched, the available money drops.
    assert Decimal(str(info["money_on_hold"])) == Decimal("30")
    assert Decimal(str(info["live_balance"])) == Decimal("70")
    assert Decimal(str(info["balance"])) == Decimal("100")
    assert both.balance(child) == Decimal("100")
    account = both.ok("GetAccountInfo", _as_child(both, child))["result"]
    assert Decimal(str(account["money_on_hold"])) == Decimal("30") and Decimal(str(account["live_balance"])) == 70
    plans = both.ok("GetAccountPlans", {**_as_child(both, child), "plan_type": "IM"})["result"]
    assert plans[0]["plan_subscription_template_id"] == 102
    assert both.store.check_invariants() == []


def test_hold_in_balance_option_lowers_the_balance_too(env: Env) -> None:
    env.set_options(plan_hold_in_balance=True, plan_tax_percent="0")
    child = _funded_child(env, "100")
    info = env.ok(
        "ChangeAccountPlan", {**_as_child(env, child), "plan_type": "MAU", "plan_subscription_template_id": 202}
    )["account_info"]
    assert Decimal(str(info["balance"])) == Decimal("25") and Decimal(str(info["money_on_hold"])) == Decimal("75")


def test_a_downgrade_or_the_same_plan_is_forbidden_379(env: Env) -> None:
    child = _funded_child(env, "500")
    env.ok("ChangeAccountPlan", {**_as_child(env, child), "plan_type": "IM", "plan_subscription_template_id": 103})
    for template in (101, 102, 103):
        params = {**_as_child(env, child), "plan_type": "IM", "plan_subscription_template_id": template}
        assert env.error_code("ChangeAccountPlan", params) == 379
    assert env.ok("GetAccountPlans", _as_child(env, child))["result"][0]["plan_subscription_template_id"] == 103


def test_plan_errors_426_110_485_and_244(env: Env) -> None:
    child = _funded_child(env, "20")
    me = _as_child(env, child)
    assert env.error_code("ChangeAccountPlan", {**me, "plan_type": "SMS", "plan_subscription_template_id": 102}) == 426
    assert env.error_code("ChangeAccountPlan", {**me, "plan_type": "IM", "plan_subscription_template_id": 999}) == 110
    assert env.error_code("ChangeAccountPlan", {**me, "plan_type": "IM", "plan_subscription_template_id": 202}) == 110
    assert env.error_code("ChangeAccountPlan", {**me, "plan_type": "IM", "plan_subscription_template_id": "x"}) == 110
    assert env.error_code("ChangeAccountPlan", {**me, "plan_subscription_template_id": 102}) == 485
    assert env.error_code("ChangeAccountPlan", {**me, "plan_type": "IM"}) == 485
    assert env.error_code("GetAccountPlans", {**me, "plan_type": "IM;XX"}) == 426
    assert env.error_code("GetAvailablePlans", {**me, "plan_subscription_template_id": "0"}) == 110
    # 20 available, 25 + tax needed: nothing changes, nothing is held.
    assert env.error_code("ChangeAccountPlan", {**me, "plan_type": "IM", "plan_subscription_template_id": 102}) == 244
    account = env.ok("GetAccountInfo", me)["result"]
    assert Decimal(str(account["money_on_hold"])) == 0


def test_documents_default_and_set_by_the_admin_endpoint(both: Env) -> None:
    child = both.add_child()["account_id"]
    rows = both.ok("GetAccountDocuments", {"child_account_id": child, "children_verifications_only": "true"})["result"]
    assert rows[0]["account_id"] == child
    assert rows[0]["verifications"][0]["verification_status"] == "REQUIRED"
    assert len(rows[0]["verifications"][0]["unverified_hold_until"]) == 10

    response = both.admin(
        "POST",
        "documents",
        {
            "account_id": child,
            "verification_status": "IN_PROGRESS",
            "unverified_hold_until": "2031-05-04",
            "documents": [{"name": "passport"}],
        },
    )
    assert response.status_code == 200, response.text
    rows = both.ok(
        "GetAccountDocuments",
        {"child_account_id": child, "children_verifications_only": "true", "with_details": "true"},
    )["result"]
    entry = rows[0]["verifications"][0]
    assert entry["verification_status"] == "IN_PROGRESS" and entry["unverified_hold_until"] == "2031-05-04"
    assert entry["documents"] == [{"name": "passport"}]
    # The parent itself is verified; filters apply.
    own = both.ok("GetAccountDocuments")["result"]
    assert own == [
        {
            "account_id": both.account_id,
            "verifications": [{"verification_name": "default", "verification_status": "VERIFIED"}],
        }
    ]
    none = both.ok(
        "GetAccountDocuments",
        {"child_account_id": child, "verification_status": "VERIFIED", "children_verifications_only": "true"},
    )["result"]
    assert none == []


def test_documents_validation(env: Env) -> None:
    child = env.add_child()["account_id"]
    assert env.error_code("GetAccountDocuments", {"child_account_id": 999999}) == 194
    assert env.error_code("GetAccountDocuments", {"verification_status": "MAYBE"}) == 496
    assert env.error_code("GetAccountDocuments", {"from_unverified_hold_until": "tomorrow"}) == 233
    assert env.admin("POST", "documents", {"account_id": child, "verification_status": "NOPE"}).status_code == 400
    assert env.admin("POST", "documents", {"account_id": 987654, "verification_status": "VERIFIED"}).status_code == 404
    assert (
        env.admin("POST", "documents", {"account_id": child, "verification_status": "VERIFIED"}, token=None).status_code
        == 403
    )
