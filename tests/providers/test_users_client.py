"""The Voximplant client's app-user methods against the running sandbox (in-process and over a
socket): typed results, the error mapping, faults, and resolving a lost transfer from history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from providers.capabilities import Capability
from providers.errors import (
    Duplicate,
    InsufficientFunds,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Unsupported,
)
from providers.pbx_users import UserSnapshot
from providers.voiceit import VoiceItClient
from providers.voximplant import VoximplantClient

from .conftest import SandboxEnv

PASSWORD = "Sandbox-Pa55word!"


@pytest.fixture
def child_id(vox: VoximplantClient) -> int:
    child = vox.add_account(
        account_name="pbx-tenant", account_email="pbx@tenants.example", account_password=PASSWORD, active=True
    ).account_id
    vox.transfer_money_to_child_account(
        child_account_id=child,
        amount=Decimal("50.00"),
        payment_reference="fund-pbx",
        check_duplicate_reference_from=datetime.now(UTC) - timedelta(days=1),
    )
    return child


@pytest.fixture
def app_id(vox: VoximplantClient, child_id: int) -> int:
    (app,) = vox.get_applications(account_id=child_id)
    assert app.application_name.startswith("pbx.")
    return app.application_id


def _add(vox: VoximplantClient, child_id: int, app_id: int, name: str, *, shared: bool = False) -> int:
    return vox.add_user(
        account_id=child_id,
        user_name=name,
        user_display_name=name.title(),
        user_password=PASSWORD,
        parent_accounting=shared,
        application_id=app_id,
    )


def test_add_set_get_and_delete_users(vox: VoximplantClient, child_id: int, app_id: int) -> None:
    uid = _add(vox, child_id, app_id, "alice")
    shared = _add(vox, child_id, app_id, "bob", shared=True)
    users = vox.get_users(account_id=child_id)
    assert [u.user_id for u in users] == [uid, shared]
    alice = users[0]
    assert isinstance(alice, UserSnapshot)
    assert (alice.user_name, alice.display_name, alice.active, alice.application_id) == ("alice", "Alice", True, app_id)
    assert alice.balance == Decimal(0) and alice.has_own_balance
    assert users[1].balance is None and not users[1].has_own_balance  # spends the account's money
    vox.set_user_info(account_id=child_id, user_id=uid, new_user_name="alice2", user_active=False, user_custom_data="x")
    found = vox.find_user(account_id=child_id, application_id=app_id, user_name="alice2")
    assert found is not None and found.user_id == uid and found.active is False and found.custom_data == "x"
    assert vox.find_user(account_id=child_id, user_name="alice") is None
    vox.del_user(account_id=child_id, user_id=uid)
    assert [u.user_id for u in vox.get_users(account_id=child_id, application_id=app_id)] == [shared]
    with pytest.raises(NotFound) as exc:
        vox.del_user(account_id=child_id, user_id=uid)
    assert exc.value.code == 117 and exc.value.field == "user_id"


def test_get_users_walks_every_page(vox: VoximplantClient, child_id: int, app_id: int) -> None:
    ids = [_add(vox, child_id, app_id, f"user{i:02d}") for i in range(12)]
    assert [u.user_id for u in vox.get_users(account_id=child_id, application_id=app_id, page_size=5)] == ids
    page = vox.get_users_page(account_id=child_id, application_id=app_id, count=5, offset=10)
    assert page.total_count == 12 and page.count == 2


def test_provider_refusals_are_typed(env: SandboxEnv, vox: VoximplantClient, child_id: int, app_id: int) -> None:
    _add(vox, child_id, app_id, "carol")
    with pytest.raises(Duplicate) as taken:
        _add(vox, child_id, app_id, "carol")
    assert taken.value.code == 118 and taken.value.field == "user_name"
    with pytest.raises(InvalidArgument) as weak:
        vox.add_user(
            account_id=child_id,
            user_name="dave",
            user_display_name="D",
            user_password="weakpass",
            parent_accounting=False,
            application_id=app_id,
        )
    assert weak.value.code == 464 and weak.value.field == "user_password"
    with pytest.raises(NotFound) as app:
        _add(vox, child_id, 999999, "erin")
    assert app.value.code == 116
    env.set_options(users_per_account_limit=1)
    with pytest.raises(InvalidArgument) as limit:
        _add(vox, child_id, app_id, "frank")
    assert limit.value.code == 109


def test_client_guards_refuse_before_sending(vox: VoximplantClient, child_id: int, app_id: int) -> None:
    for bad in ("ab", "Alice", "-x-", "a" * 51):
        with pytest.raises(InvalidArgument) as exc:
            _add(vox, child_id, app_id, bad)
        assert exc.value.code is None and exc.value.field == "user_name"
    uid = _add(vox, child_id, app_id, "gina")
    for amount in (Decimal("0"), Decimal("-1"), Decimal("0.001"), Decimal("NaN")):
        with pytest.raises(InvalidArgument):
            vox.transfer_money_to_user(
                account_id=child_id, user_id=uid, amount=amount, user_transaction_description="r"
            )
    with pytest.raises(InvalidArgument):
        vox.transfer_money_to_user(account_id=child_id, user_id=uid, amount=Decimal(1), user_transaction_description="")
    with pytest.raises(InvalidArgument):
        vox.transfer_money_to_user(
            account_id=child_id, user_id=uid, amount=Decimal(1), user_transaction_description="r" * 120
        )
    with pytest.raises(InvalidArgument):
        vox.del_user(account_id=child_id, user_id=True)  # type: ignore[arg-type]


def test_transfers_to_and_from_a_user(vox: VoximplantClient, child_id: int, app_id: int) -> None:
    uid = _add(vox, child_id, app_id, "henry")
    shared = _add(vox, child_id, app_id, "ivan", shared=True)
    after = vox.transfer_money_to_user(
        account_id=child_id, user_id=uid, amount=Decimal("7.25"), user_transaction_description="ref-1"
    )
    assert after == Decimal("42.75")
    assert vox.get_users(account_id=child_id, user_id=uid)[0].balance == Decimal("7.25")
    assert vox.transfer_money_from_user(
        account_id=child_id, user_id=uid, amount=Decimal("0.25"), user_transaction_description="ref-2"
    ) == Decimal("43")
    with pytest.raises(InvalidArgument) as no_balance:
        vox.transfer_money_to_user(
            account_id=child_id, user_id=shared, amount=Decimal(1), user_transaction_description="r"
        )
    assert no_balance.value.code == 573
    with pytest.raises(InsufficientFunds):
        vox.transfer_money_to_user(
            account_id=child_id, user_id=uid, amount=Decimal(500), user_transaction_description="r"
        )
    with pytest.raises(InsufficientFunds):
        vox.transfer_money_from_user(
            account_id=child_id, user_id=uid, amount=Decimal(8), user_transaction_description="r"
        )
    now = datetime.now(UTC)
    found = vox.find_user_transfers(
        account_id=child_id,
        user_id=uid,
        reference="ref-",
        from_date=now - timedelta(days=1),
        to_date=now + timedelta(days=1),
    )
    assert [(t.amount, t.description, t.user_id) for t in found] == [
        (Decimal("7.25"), "ref-1", uid),
        (Decimal("-0.25"), "ref-2", uid),
    ]


def test_a_lost_reply_is_ambiguous_and_the_history_lookup_resolves_it(
    env: SandboxEnv, vox: VoximplantClient, child_id: int, app_id: int
) -> None:
    uid = _add(vox, child_id, app_id, "judy")
    env.set_faults([{"method": "TransferMoneyToUser", "kind": "apply_then_drop", "count": 1}])
    with pytest.raises(OutcomeUnknown):
        vox.transfer_money_to_user(
            account_id=child_id, user_id=uid, amount=Decimal("3.00"), user_transaction_description="topup 7f3a"
        )
    faults = env.admin("GET", "faults").json()
    assert faults["rules"][0]["fired"] == 1 and faults["requests_seen"] == 1  # sent once, never resent
    now = datetime.now(UTC)
    window = {"from_date": now - timedelta(days=1), "to_date": now + timedelta(days=1)}
    (found,) = vox.find_user_transfers(account_id=child_id, user_id=uid, reference="7f3a", **window)
    assert found.amount == Decimal("3.00") and found.account_id == child_id
    assert vox.find_user_transfers(account_id=child_id, user_id=uid, reference="other", **window) == ()
    env.set_faults([{"method": "TransferMoneyToUser", "kind": "apply_then_500", "count": 1}])
    with pytest.raises(OutcomeUnknown):
        vox.transfer_money_to_user(
            account_id=child_id, user_id=uid, amount=Decimal("1.00"), user_transaction_description="topup 8b2c"
        )
    assert len(vox.find_user_transfers(account_id=child_id, user_id=uid, reference="8b2c", **window)) == 1
    assert vox.get_users(account_id=child_id, user_id=uid)[0].balance == Decimal("4")


def test_an_html_answer_to_add_user_is_ambiguous_and_the_name_lookup_resolves_it(
    env: SandboxEnv, vox: VoximplantClient, child_id: int, app_id: int
) -> None:
    env.set_faults([{"method": "AddUser", "kind": "apply_then_500", "count": 1}])
    with pytest.raises(OutcomeUnknown):
        _add(vox, child_id, app_id, "kate")
    assert vox.find_user(account_id=child_id, application_id=app_id, user_name="kate") is not None
    env.set_faults([{"method": "AddUser", "kind": "html", "count": 1}])
    with pytest.raises(OutcomeUnknown):
        _add(vox, child_id, app_id, "leo")
    assert vox.find_user(account_id=child_id, application_id=app_id, user_name="leo") is None


def test_throttled_writes_are_retried_and_reads_survive_a_5xx(
    env: SandboxEnv, vox: VoximplantClient, child_id: int, app_id: int
) -> None:
    uid = _add(vox, child_id, app_id, "mia")
    env.set_faults([{"method": "TransferMoneyToUser", "kind": "http_429", "count": 1}])
    assert vox.transfer_money_to_user(
        account_id=child_id, user_id=uid, amount=Decimal("2.00"), user_transaction_description="r"
    ) == Decimal("48")
    env.set_faults([{"method": "TransferMoneyToUser", "kind": "http_429", "count": None}])
    with pytest.raises(RateLimited):
        vox.transfer_money_to_user(
            account_id=child_id, user_id=uid, amount=Decimal(1), user_transaction_description="r"
        )
    env.set_faults([{"method": "GetUsers", "kind": "http_502", "count": 1}])
    assert [u.user_id for u in vox.get_users(account_id=child_id, application_id=app_id)] == [uid]


def test_capability_matrix(vox: VoximplantClient, voiceit: VoiceItClient) -> None:
    assert vox.supports(Capability.PBX_USERS) and vox.supports(Capability.PBX_USER_TRANSFERS)
    assert not voiceit.supports(Capability.PBX_USERS)
    assert "voice-biometric" in (voiceit.unsupported_reason(Capability.PBX_USERS) or "")
    with pytest.raises(Unsupported):
        voiceit.get_users(account_id="key_x")
    with pytest.raises(Unsupported):
        voiceit.transfer_money_to_user(
            account_id="key_x", user_id=1, amount=Decimal(1), user_transaction_description="r"
        )
