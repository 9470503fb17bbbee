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
from providers.errors import InvalidArgument, Unsupported
from providers.voiceit import VoiceItClient
from providers.voximplant import VoximplantClient

from .conftest import SandboxEnv

PASSWORD = "Sandbox-Pa55word!"

# One call per capability that has a generic operation (the others are informational).
GENERIC_CALLS: dict[Capability, Callable[[ProviderClient], Any]] = {
    Capability.CREATE: lambda c: c.create_account(name="child-x", email="x@t.example", password=PASSWORD),
    Capability.RECOVERABLE_CREATE: lambda c: c.find_account(name="child-x"),
    Capability.CLONE: lambda c: c.clone_account(
        source_account_id=2, name="child-y", email="y@t.example", password=PASSWORD
    ),
    Capability.FREEZE: lambda c: c.freeze_account(2),
    Capability.UNFREEZE: lambda c: c.unfreeze_account(2),
    Capability.LIST_ACCOUNTS: lambda c: list(c.iter_accounts()),
    Capability.TRANSFER_MONEY: lambda c: c.transfer_money(
        account_id=2,
        amount=Decimal("1.00"),
        payment_reference="rp-cap",
        check_duplicate_reference_from=datetime(2020, 1, 1, tzinfo=UTC),
    ),
    Capability.TRANSACTION_HISTORY: lambda c: list(
        c.iter_transactions(from_date=datetime.now(UTC) - timedelta(days=1), to_date=datetime.now(UTC))
    ),
    Capability.CLOSE_DELETE: lambda c: c.close_account(2),
    Capability.ROTATE_CREDENTIALS: lambda c: c.rotate_credentials(2),
    Capability.CHECK_CREDENTIALS: lambda c: c.check_credentials(api_key="key_x", api_token="tok_y"),
    Capability.UPDATE_PROFILE: lambda c: c.update_account(2, email="new@t.example"),
}


@pytest.mark.parametrize("matrix", [VOXIMPLANT_MATRIX, VOICEIT_MATRIX], ids=["voximplant", "voiceit"])
def test_every_capability_is_decided_and_every_absence_has_a_reason(matrix: CapabilityMatrix) -> None:
    for cap in Capability:
        reason = matrix.reason(cap)
        assert matrix.supports(cap) == (reason is None)
        if reason is not None:
            assert len(reason) > 20


def test_the_matrices_say_what_the_specs_say() -> None:
    vox, vit = VOXIMPLANT_MATRIX, VOICEIT_MATRIX
    for cap in (
        Capability.CREATE,
        Capability.LIST_BALANCES,
        Capability.TRANSFER_MONEY,
        Capability.FREEZE,
        Capability.TRANSACTION_HISTORY,
        Capability.CLONE,
    ):
        assert vox.supports(cap)
    assert not vox.supports(Capability.CLOSE_DELETE)
    assert vit.supported == {
        Capability.CREATE,
        Capability.CLOSE_DELETE,
        Capability.ROTATE_CREDENTIALS,
        Capability.CHECK_CREDENTIALS,
    }
    assert (
        vit.reason(Capability.LIST_BALANCES)
        == "VoiceIt has no balance API (managed sub-accounts spend the master's funds)."
    )


def test_an_incomplete_matrix_is_refused() -> None:
    with pytest.raises(ValueError):
        CapabilityMatrix("x", {Capability.CREATE: None})
    with pytest.raises(ValueError):
        CapabilityMatrix("x", {cap: "" for cap in Capability})


@pytest.mark.parametrize("kind", ["voximplant", "voiceit"])
def test_absent_capabilities_raise_unsupported_with_the_reason_and_send_nothing(env: SandboxEnv, kind: str) -> None:
    client: ProviderClient = env.vox() if kind == "voximplant" else env.voiceit()
    assert client.capabilities == client.capability_matrix.supported
    for cap, call in GENERIC_CALLS.items():
        if client.supports(cap):
            continue
        with pytest.raises(Unsupported) as caught:
            call(client)
        assert caught.value.message == client.unsupported_reason(cap)
        assert caught.value.provider == kind
    assert env.admin("GET", "faults").json()["requests_seen"] == 0


def test_voximplant_generic_operations_work(env: SandboxEnv, vox: VoximplantClient) -> None:
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
