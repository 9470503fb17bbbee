"""The capability matrix and the provider-neutral interface, driven against the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from providers import Capability, ProviderClient
from providers.base import AccountSnapshot, CreatedAccount
from providers.capabilities import VOICEIT_MATRIX, VOXIMPLANT_MATRIX, CapabilityMatrix
from providers.errors import InsufficientFunds, InvalidArgument, Unsupported
from providers.voiceit import VoiceItClient
from providers.voximplant import VoximplantClient

from .conftest import SandboxEnv

PASSWORD = "Sandbox-Pa55word!"

# What a user of the matrix sees, as providers/README.md documents it: None = the provider
# does it; otherwise words the refusal's reason must contain.
DOCUMENTED: dict[str, dict[Capability, tuple[str, ...] | None]] = {
    "voximplant": {
        Capability.CREATE: None,
        Capability.CLONE: None,
        Capability.FREEZE: None,
        Capability.UNFREEZE: None,
        Capability.LIST_ACCOUNTS: None,
        Capability.LIST_BALANCES: None,
        Capability.TRANSFER_MONEY: None,
        Capability.DEDUPLICATED_TRANSFER: None,
        Capability.CLOSE_DELETE: ("no call to close or delete", "disable it instead"),
        Capability.ROTATE_CREDENTIALS: ("regenerate a child account's api key",),
        Capability.CHECK_CREDENTIALS: ("holds no voximplant child credentials",),
        Capability.TRANSACTION_HISTORY: None,
        Capability.UPDATE_PROFILE: None,
        Capability.RECOVERABLE_CREATE: None,
        Capability.CHANGE_BILLING_MODE: ("no billing mode to switch",),
        Capability.ACCOUNT_CALLBACKS: None,
        Capability.ACCOUNT_PLANS: None,
        Capability.ACCOUNT_VERIFICATION: None,
        Capability.PBX_USERS: None,
        Capability.PBX_USER_TRANSFERS: None,
    },
    "voiceit": {
        Capability.CREATE: None,
        Capability.CLONE: ("no call to clone",),
        Capability.FREEZE: ("no suspend api", "withhold"),
        Capability.UNFREEZE: ("freshly rotated token",),
        Capability.LIST_ACCOUNTS: ("no call to list sub-accounts", "source of truth"),
        Capability.LIST_BALANCES: ("voiceit has no balance api",),
        Capability.TRANSFER_MONEY: ("no credit transfer", "to fund"),
        Capability.DEDUPLICATED_TRANSFER: ("no transfers",),
        Capability.CLOSE_DELETE: None,
        Capability.ROTATE_CREDENTIALS: None,
        Capability.CHECK_CREDENTIALS: None,
        Capability.TRANSACTION_HISTORY: ("no usage or transaction api",),
        Capability.UPDATE_PROFILE: ("only at creation",),
        Capability.RECOVERABLE_CREATE: ("no idempotency key and no lookup",),
        Capability.CHANGE_BILLING_MODE: ("removed switchtype in 2026",),
        Capability.ACCOUNT_CALLBACKS: ("posts no account events",),
        Capability.ACCOUNT_PLANS: ("no subscription plans",),
        Capability.ACCOUNT_VERIFICATION: ("no document verification",),
        Capability.PBX_USERS: ("no telephony users",),
        Capability.PBX_USER_TRANSFERS: ("no balances to move",),
    },
}

# Every generic operation and the capability that governs it.
GENERIC_CALLS: list[tuple[Capability, Callable[[ProviderClient], Any]]] = [
    (Capability.CREATE, lambda c: c.create_account(name="child-x", email="x@t.example", password=PASSWORD)),
    (Capability.RECOVERABLE_CREATE, lambda c: c.find_account(name="child-x")),
    (
        Capability.CLONE,
        lambda c: c.clone_account(source_account_id=2, name="child-y", email="y@t.example", password=PASSWORD),
    ),
    (Capability.FREEZE, lambda c: c.freeze_account(2)),
    (Capability.UNFREEZE, lambda c: c.unfreeze_account(2)),
    (Capability.LIST_ACCOUNTS, lambda c: list(c.iter_accounts())),
    (Capability.LIST_ACCOUNTS, lambda c: c.get_account(2)),
    (Capability.LIST_BALANCES, lambda c: list(c.iter_balance_pages())),
    (Capability.LIST_BALANCES, lambda c: c.get_own_account()),
    (
        Capability.TRANSFER_MONEY,
        lambda c: c.transfer_money(
            account_id=2,
            amount=Decimal("1.00"),
            payment_reference="rp-cap",
            check_duplicate_reference_from=datetime(2020, 1, 1, tzinfo=UTC),
        ),
    ),
    (
        Capability.TRANSFER_MONEY,
        lambda c: c.withdraw_money(
            account_id=2,
            amount=Decimal("1.00"),
            payment_reference="rp-cap-back",
            check_duplicate_reference_from=datetime(2020, 1, 1, tzinfo=UTC),
        ),
    ),
    (
        Capability.TRANSACTION_HISTORY,
        lambda c: list(c.iter_transactions(from_date=datetime.now(UTC) - timedelta(days=1), to_date=datetime.now(UTC))),
    ),
    (Capability.CLOSE_DELETE, lambda c: c.close_account(2)),
    (Capability.ROTATE_CREDENTIALS, lambda c: c.rotate_credentials(2)),
    (Capability.CHECK_CREDENTIALS, lambda c: c.check_credentials(api_key="key_x", api_token="tok_y")),
    (Capability.UPDATE_PROFILE, lambda c: c.update_account(2, email="new@t.example")),
    (Capability.UPDATE_PROFILE, lambda c: c.set_low_balance_threshold(2, Decimal("5"))),
    (Capability.ACCOUNT_PLANS, lambda c: c.get_account_plans(2)),
    (Capability.ACCOUNT_PLANS, lambda c: c.get_available_plans(2)),
    (Capability.ACCOUNT_VERIFICATION, lambda c: c.get_account_documents(2)),
    (Capability.PBX_USERS, lambda c: c.get_users(account_id=2)),
    (
        Capability.PBX_USER_TRANSFERS,
        lambda c: c.transfer_money_to_user(
            account_id=2, user_id=1, amount=Decimal(1), user_transaction_description="r"
        ),
    ),
]


@pytest.mark.parametrize("matrix", [VOXIMPLANT_MATRIX, VOICEIT_MATRIX], ids=["voximplant", "voiceit"])
def test_every_capability_is_decided_and_every_absence_has_a_reason(matrix: CapabilityMatrix) -> None:
    for cap in Capability:
        reason = matrix.reason(cap)
        assert matrix.supports(cap) == (reason is None)
        if reason is not None:
            assert len(reason) > 20


@pytest.mark.parametrize("kind", ["voximplant", "voiceit"])
def test_each_provider_offers_and_refuses_what_its_documentation_says(env: SandboxEnv, kind: str) -> None:
    client: ProviderClient = env.vox() if kind == "voximplant" else env.voiceit()
    documented = DOCUMENTED[kind]
    assert set(documented) == set(Capability), "a capability the README does not decide"
    assert client.capabilities == {cap for cap, refusal in documented.items() if refusal is None}
    for cap, refusal in documented.items():
        assert client.supports(cap) == (refusal is None), cap
        reason = client.unsupported_reason(cap)
        if refusal is None:
            assert reason is None, cap
        else:
            assert reason is not None, cap
            for words in refusal:
                assert words in reason.lower(), (cap, reason)


def test_an_incomplete_matrix_is_refused() -> None:
    with pytest.raises(ValueError):
        CapabilityMatrix("x", {Capability.CREATE: None})
    with pytest.raises(ValueError):
        CapabilityMatrix("x", {cap: "" for cap in Capability})


@pytest.mark.parametrize("kind", ["voximplant", "voiceit"])
def test_a_refused_operation_says_why_and_sends_nothing(env: SandboxEnv, kind: str) -> None:
    client: ProviderClient = env.vox() if kind == "voximplant" else env.voiceit()
    refused = [(cap, call) for cap, call in GENERIC_CALLS if DOCUMENTED[kind][cap] is not None]
    # VoiceIt refuses every money, listing and editing call; Voximplant the three it has no call for.
    assert {cap for cap, _ in refused} == (
        {
            Capability.RECOVERABLE_CREATE,
            Capability.CLONE,
            Capability.FREEZE,
            Capability.UNFREEZE,
            Capability.LIST_ACCOUNTS,
            Capability.LIST_BALANCES,
            Capability.TRANSFER_MONEY,
            Capability.TRANSACTION_HISTORY,
            Capability.UPDATE_PROFILE,
            Capability.ACCOUNT_PLANS,
            Capability.ACCOUNT_VERIFICATION,
            Capability.PBX_USERS,
            Capability.PBX_USER_TRANSFERS,
        }
        if kind == "voiceit"
        else {Capability.CLOSE_DELETE, Capability.ROTATE_CREDENTIALS, Capability.CHECK_CREDENTIALS}
    )
    for cap, call in refused:
        with pytest.raises(Unsupported) as caught:
            call(client)
        for words in DOCUMENTED[kind][cap] or ():
            assert words in caught.value.message.lower(), (cap, caught.value.message)
        assert caught.value.provider == kind
    assert env.admin("GET", "faults").json()["requests_seen"] == 0


def test_voiceit_refuses_a_transfer_because_there_is_nothing_to_fund(voiceit: VoiceItClient) -> None:
    with pytest.raises(Unsupported) as caught:
        voiceit.transfer_money(
            account_id="key_x",
            amount=Decimal("5.00"),
            payment_reference="rp-vit",
            check_duplicate_reference_from=datetime(2020, 1, 1, tzinfo=UTC),
        )
    assert caught.value.message == "VoiceIt has no credit transfer: there is no per-sub-account balance to fund."


def test_voximplant_generic_operations_work(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    created = vox.create_account(name="child-gen", email="gen@t.example", password=PASSWORD, first_name="Gen")
    assert isinstance(created, CreatedAccount) and isinstance(created.account_id, int)
    assert created.active is True and created.api_key is not None
    found = vox.find_account(name="child-gen")
    assert isinstance(found, AccountSnapshot) and found.account_id == created.account_id
    assert vox.find_account(name="child-ge") is None  # exact match, not substring
    clone = vox.clone_account(
        source_account_id=created.account_id, name="child-gen2", email="gen2@t.example", password=PASSWORD
    )
    assert clone.account_id != created.account_id
    vox.freeze_account(created.account_id)
    assert env.store().account(created.account_id)["active"] in (False, 0)
    vox.unfreeze_account(created.account_id)
    assert env.store().account(created.account_id)["active"] in (True, 1)
    vox.update_account(created.account_id, email="gen-new@t.example")
    since = datetime.now(UTC) - timedelta(hours=1)
    result = vox.transfer_money(
        account_id=created.account_id,
        amount=Decimal("3.00"),
        payment_reference="rp-gen",
        check_duplicate_reference_from=since,
    )
    assert result.balance == Decimal("9997.00")
    snapshots = list(vox.iter_accounts())
    by_id = {s.account_id: s for s in snapshots}
    assert by_id[created.account_id].balance == Decimal("3.00")
    assert by_id[created.account_id].email == "gen-new@t.example"
    moves = list(
        vox.iter_transactions(
            from_date=since,
            to_date=datetime.now(UTC) + timedelta(days=1),
            payment_reference="rp-gen",
            transaction_types=["money_transfer_to_child"],
        )
    )
    assert [(m.amount, m.payment_reference) for m in moves] == [(Decimal("-3.00"), "rp-gen")]


def test_voiceit_generic_operations_work(voiceit: VoiceItClient) -> None:
    created = voiceit.create_account(name="ignored", email="g@t.example", password="Tenant-pass-1", managed=False)
    assert isinstance(created.account_id, str) and created.api_token is not None
    assert voiceit.check_credentials(api_key=created.account_id, api_token=created.api_token)
    rotated = voiceit.rotate_credentials(created.account_id)
    assert voiceit.check_credentials(api_key=created.account_id, api_token=rotated.api_token)
    voiceit.close_account(created.account_id)
    voiceit.close_account(created.account_id)  # already gone: still closed, no error
    assert not voiceit.check_credentials(api_key=created.account_id, api_token=rotated.api_token)


@pytest.mark.parametrize("bad", ["1;2", "1%3B2", "all", "0", "-1", "٢", " 2", "2.0", True, [2]])
def test_voximplant_generic_ids_accept_digits_and_refuse_everything_else(
    env: SandboxEnv, vox: VoximplantClient, bad: Any
) -> None:
    child = vox.add_account(account_name="child-ids", account_email="ids@t.example", account_password=PASSWORD)
    vox.freeze_account(str(child.account_id))  # a portal may keep the id as text
    assert env.store().account(child.account_id)["active"] in (False, 0)
    before = env.admin("GET", "faults").json()["requests_seen"]
    with pytest.raises(InvalidArgument):
        vox.transfer_money(
            account_id=bad,
            amount=Decimal("1.00"),
            payment_reference="rp-ids",
            check_duplicate_reference_from=datetime(2020, 1, 1, tzinfo=UTC),
        )
    with pytest.raises(InvalidArgument):
        vox.unfreeze_account(bad)
    assert env.admin("GET", "faults").json()["requests_seen"] == before


def test_voximplant_account_lookup_by_id(env: SandboxEnv, vox: VoximplantClient) -> None:
    child = vox.add_account(account_name="child-look", account_email="look@t.example", account_password=PASSWORD)
    vox.transfer_money(
        account_id=child.account_id,
        amount=Decimal("4.50"),
        payment_reference="rp-look",
        check_duplicate_reference_from=datetime.now(UTC) - timedelta(hours=1),
    )
    stored = env.store().account(child.account_id)
    found = vox.get_account(child.account_id)
    assert found == AccountSnapshot(
        account_id=child.account_id,
        name="child-look",
        email="look@t.example",
        active=bool(stored["active"]),
        frozen=bool(stored["frozen"]),
        balance=Decimal("4.50"),
        currency=stored["currency"],
        credit_limit=stored["credit_limit"],
    )
    assert vox.get_account(str(child.account_id)) == found  # a portal may keep the id as text
    assert vox.get_account(child.account_id + 10_000) is None  # unknown to the provider
    before = env.admin("GET", "faults").json()["requests_seen"]
    for bad in ("1;2", "all", 0, True):
        with pytest.raises(InvalidArgument):
            vox.get_account(bad)
    assert env.admin("GET", "faults").json()["requests_seen"] == before


def test_voiceit_account_lookup_is_refused_with_the_reason(env: SandboxEnv, voiceit: VoiceItClient) -> None:
    created = voiceit.create_account(name="ignored", email="look@t.example", password="Tenant-pass-1")
    before = env.admin("GET", "faults").json()["requests_seen"]
    with pytest.raises(Unsupported) as caught:
        voiceit.get_account(created.account_id)
    assert "no call to list sub-accounts" in caught.value.message
    assert caught.value.provider == "voiceit"
    assert env.admin("GET", "faults").json()["requests_seen"] == before


def test_voximplant_money_back_own_balance_threshold_and_tenant_history(env: SandboxEnv, vox: VoximplantClient) -> None:
    since = datetime.now(UTC) - timedelta(hours=1)
    child = vox.add_account(account_name="child-back", account_email="back@t.example", account_password=PASSWORD)
    other = vox.add_account(account_name="child-other", account_email="other@t.example", account_password=PASSWORD)
    kwargs: dict[str, Any] = dict(check_duplicate_reference_from=since)
    vox.transfer_money(account_id=child.account_id, amount=Decimal("10.00"), payment_reference="rp-in", **kwargs)
    vox.transfer_money(account_id=other.account_id, amount=Decimal("1.00"), payment_reference="rp-in2", **kwargs)
    back = vox.withdraw_money(
        account_id=child.account_id, amount=Decimal("4.00"), payment_reference="rp-back", **kwargs
    )
    assert back.balance == Decimal("9993.00")  # the reseller's balance afterwards
    assert env.store().account(child.account_id)["balance"] == Decimal("6.00")
    own = vox.get_own_account()
    assert own.account_id == env.account_id and own.balance == Decimal("9993.00")
    with pytest.raises(InsufficientFunds):  # strict: never emptied to what is there
        vox.withdraw_money(account_id=child.account_id, amount=Decimal("7.00"), payment_reference="rp-b2", **kwargs)
    vox.set_low_balance_threshold(child.account_id, Decimal("2.5"))
    assert env.store().account(child.account_id)["min_balance_to_notify"] == Decimal("2.5")

    window = dict(from_date=since, to_date=datetime.now(UTC) + timedelta(days=1))
    mine = list(vox.iter_transactions(account_id=child.account_id, tenant_side=True, **window))
    assert [(m.account_id, m.amount, m.transaction_type) for m in mine] == [
        (child.account_id, Decimal("10.00"), "money_acceptance_from_parent"),
        (child.account_id, Decimal("-4.00"), "money_transfer_to_parent"),
    ]
    every = list(vox.iter_transactions(tenant_side=True, transaction_types=["money_acceptance_from_parent"], **window))
    assert {(m.account_id, m.amount) for m in every} == {
        (child.account_id, Decimal("10.00")),
        (other.account_id, Decimal("1.00")),
    }
    reseller = list(vox.iter_transactions(**window))
    assert {m.account_id for m in reseller} == {env.account_id}
