"""The plan and verification calls of the Voximplant client against the sandbox."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from providers.capabilities import VOICEIT_MATRIX, VOXIMPLANT_MATRIX, Capability
from providers.errors import InsufficientFunds, InvalidArgument, OutcomeUnknown, Unsupported
from providers.plans import AccountPlan, PlanChangeForbidden
from providers.voiceit import VoiceItClient
from providers.voximplant import VoximplantClient

from .conftest import SandboxEnv

PASSWORD = "Sandbox-Pa55word!"


def _funded(vox: VoximplantClient, name: str, amount: str = "100") -> int:
    child = vox.add_account(account_name=name, account_email=f"{name}@tenants.example", account_password=PASSWORD)
    vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal(amount),
        payment_reference=f"fund-{name}",
        check_duplicate_reference_from=datetime(2020, 1, 1, tzinfo=UTC),
    )
    return child.account_id


def test_plans_are_typed_with_decimal_money(vox: VoximplantClient) -> None:
    child = _funded(vox, "plans-read")
    plans = vox.get_account_plans(child)
    assert [(p.plan_type, p.plan_id) for p in plans] == [("IM", 101), ("MAU", 201)]
    assert isinstance(plans[0], AccountPlan) and plans[0].price == Decimal("10")
    assert isinstance(plans[0].price, Decimal) and isinstance(plans[0].next_charge, date)
    assert plans[0].packages[0].remaining_amount == 1000
    available = vox.get_available_plans(child, plan_types=["MAU"])
    assert [p.plan_id for p in available] == [202, 203]
    with pytest.raises(InvalidArgument):
        vox.get_account_plans(child, plan_types=["SMS"])


def test_an_upgrade_reports_the_money_on_hold_and_a_downgrade_is_forbidden(vox: VoximplantClient) -> None:
    child = _funded(vox, "plans-up")
    change = vox.change_account_plan(child, plan_type="IM", plan_id=102)
    assert change.money_on_hold == Decimal("30") and change.live_balance == Decimal("70")
    assert vox.get_account_plans(child, plan_types=["IM"])[0].plan_id == 102
    with pytest.raises(PlanChangeForbidden) as caught:
        vox.change_account_plan(child, plan_type="IM", plan_id=101)
    assert caught.value.code == 379
    with pytest.raises(InvalidArgument) as bad:
        vox.change_account_plan(child, plan_type="IM", plan_id=999)
    assert bad.value.code == 110


def test_a_reservation_the_money_cannot_cover_is_insufficient_funds(vox: VoximplantClient) -> None:
    child = _funded(vox, "plans-poor", "5")
    with pytest.raises(InsufficientFunds):
        vox.change_account_plan(child, plan_type="MAU", plan_id=203)


def test_a_lost_reply_after_the_change_is_outcome_unknown_and_not_resent(
    env: SandboxEnv, vox: VoximplantClient
) -> None:
    child = _funded(vox, "plans-lost")
    env.set_faults([{"method": "ChangeAccountPlan", "kind": "apply_then_drop", "count": 1}])
    with pytest.raises(OutcomeUnknown):
        vox.change_account_plan(child, plan_type="IM", plan_id=103)
    env.clear_faults()
    assert vox.get_account_plans(child, plan_types=["IM"])[0].plan_id == 103
    # Applied once: one reservation (60 + 20 %).
    assert vox.get_children_accounts(child_account_id=child).accounts[0].money_on_hold == Decimal("72")


def test_documents_read_the_status_and_hold_date(env: SandboxEnv, vox: VoximplantClient) -> None:
    child = vox.add_account(account_name="plans-docs", account_email="docs@tenants.example", account_password=PASSWORD)
    assert vox.get_account_documents(child.account_id).status == "REQUIRED"
    env.admin(
        "POST",
        "documents",
        {"account_id": child.account_id, "verification_status": "VERIFIED", "unverified_hold_until": None},
    )
    verification = vox.get_account_documents(child.account_id)
    assert verification.status == "VERIFIED" and verification.hold_until is None


def test_the_matrix_says_voiceit_has_no_plans(voiceit: VoiceItClient) -> None:
    assert VOXIMPLANT_MATRIX.supports(Capability.ACCOUNT_PLANS)
    assert VOXIMPLANT_MATRIX.supports(Capability.ACCOUNT_VERIFICATION)
    assert "VoiceIt" in (VOICEIT_MATRIX.reason(Capability.ACCOUNT_PLANS) or "")
    with pytest.raises(Unsupported):
        voiceit.get_account_plans("key_x")
    with pytest.raises(Unsupported):
        voiceit.get_account_documents("key_x")
