"""Every Voximplant call against the sandbox, with its documented error paths."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    Duplicate,
    InsufficientFunds,
    InvalidArgument,
    NotFound,
    ProviderError,
    Unsupported,
)
from providers.redaction import Secret
from providers.voximplant import (
    AccountInfo,
    AddedAccount,
    ClonedAccount,
    CurrencyRates,
    MoneyAmountToCharge,
    TransferMoneyResult,
    VoximplantClient,
)

from .conftest import SandboxEnv

PASSWORD = "Sandbox-Pa55word!"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def requests_seen(env: SandboxEnv) -> int:
    return int(env.admin("GET", "faults").json()["requests_seen"])


def add_child(vox: VoximplantClient, name: str = "child-one", **kwargs: Any) -> AddedAccount:
    return vox.add_account(
        account_name=name, account_email=f"{name}@tenants.example", account_password=PASSWORD, **kwargs
    )


# -- GetAccountInfo ---------------------------------------------------------------------------


def test_get_account_info_returns_the_parent_with_decimal_money(env: SandboxEnv, vox: VoximplantClient) -> None:
    info = vox.get_account_info()
    assert info.account.account_id == env.account_id
    assert info.account.balance == Decimal("10000")
    assert isinstance(info.account.balance, Decimal)
    assert info.account.currency == "USD"
    assert info.account.created is not None and info.account.created.tzinfo is not None
    assert info.api_address


def test_get_account_info_with_fixed_balance(vox: VoximplantClient) -> None:
    info = vox.get_account_info(return_live_balance=False)
    assert info.account.balance == info.account.fixed_balance


def test_a_key_the_provider_does_not_know_is_an_authentication_error(
    env: SandboxEnv, tmp_path: Any, rsa_pem: str
) -> None:
    import json

    creds = json.loads(env.credentials_path.read_text())
    creds["private_key"] = rsa_pem
    path = tmp_path / "other-key.json"
    path.write_text(json.dumps(creds))
    client = env.vox(credentials_path=path)
    with pytest.raises(AuthenticationError) as caught:
        client.get_account_info()
    assert caught.value.code is not None
    assert caught.value.provider == "voximplant"


# -- AddAccount -----------------------------------------------------------------------------------


def test_add_account_creates_an_inactive_child_with_a_secret_api_key(env: SandboxEnv, vox: VoximplantClient) -> None:
    added = add_child(vox)
    assert isinstance(added.api_key, Secret) and added.api_key.reveal()
    assert added.active is False  # docs: active defaults to false
    stored = env.store().child_by_name("child-one")
    assert stored is not None and stored["account_id"] == added.account_id


def test_add_account_active_and_profile_fields(vox: VoximplantClient) -> None:
    added = add_child(
        vox,
        "child-active",
        active=True,
        language_code="ru",
        location="Europe/Moscow",
        min_balance_to_notify=Decimal("12.5"),
        account_first_name="Ann",
        account_last_name="Lee",
        account_custom_data="tenant=42",
    )
    child = vox.get_children_accounts(child_account_id=added.account_id).accounts[0]
    assert child.active is True
    assert child.language_code == "ru"
    assert child.location == "Europe/Moscow"
    assert child.min_balance_to_notify == Decimal("12.5")


@pytest.mark.parametrize(
    ("kwargs", "kind", "code", "field"),
    [
        ({"account_name": "abc"}, InvalidArgument, 113, "account_name"),
        ({"account_name": "Bad_Name"}, InvalidArgument, 114, "account_name"),
        ({"account_name": "administrator"}, InvalidArgument, 173, "account_name"),
        ({"account_email": "not-an-email"}, InvalidArgument, 136, "account_email"),
        ({"account_password": "short"}, InvalidArgument, None, "account_password"),
        ({"account_password": "alllowercase1!"}, InvalidArgument, None, "account_password"),
    ],
)
def test_add_account_refusals_name_the_field(
    vox: VoximplantClient, kwargs: dict[str, str], kind: type[Exception], code: int | None, field: str
) -> None:
    params: dict[str, Any] = {
        "account_name": "child-valid",
        "account_email": "valid@tenants.example",
        "account_password": PASSWORD,
    }
    params.update(kwargs)
    with pytest.raises(kind) as caught:
        vox.add_account(**params)
    err = caught.value
    assert getattr(err, "field", None) == field
    if code is not None:
        assert getattr(err, "code", None) == code
    else:
        assert getattr(err, "code", None) in (112, 463, 464, 523, 524)


def test_add_account_duplicate_name_and_email(vox: VoximplantClient) -> None:
    add_child(vox, "child-dup")
    with pytest.raises(Duplicate) as by_name:
        vox.add_account(account_name="child-dup", account_email="other@tenants.example", account_password=PASSWORD)
    assert (by_name.value.code, by_name.value.field) == (106, "account_name")
    with pytest.raises(Duplicate) as by_email:
        vox.add_account(account_name="child-dup2", account_email="child-dup@tenants.example", account_password=PASSWORD)
    assert (by_email.value.code, by_email.value.field) == (128, "account_email")


def test_add_account_without_the_parent_api_key_is_refused_before_sending(env: SandboxEnv) -> None:
    from providers import build_client

    client = build_client(
        "voximplant",
        base_url=env.base_url,
        credentials_path=env.credentials_path,
        transport=env.transport_factory(),
    )
    before = requests_seen(env)
    with pytest.raises(ConfigurationError):
        add_child(client)  # type: ignore[arg-type]
    assert requests_seen(env) == before
    client.close()


def test_add_account_with_a_wrong_parent_api_key_is_an_authentication_error(env: SandboxEnv, tmp_path: Any) -> None:
    wrong = tmp_path / "wrong_key"
    wrong.write_text("00000000-0000-0000-0000-000000000000\n")
    client = env.vox(parent_api_key_path=wrong)
    with pytest.raises(AuthenticationError):
        add_child(client)


# -- CloneAccount ---------------------------------------------------------------------------------


def test_clone_child_account(env: SandboxEnv, vox: VoximplantClient) -> None:
    source = add_child(vox, "child-source")
    cloned = vox.clone_child_account(
        account_id=source.account_id,
        new_account_name="child-clone",
        new_account_email="clone@tenants.example",
        new_account_password=PASSWORD,
    )
    assert isinstance(cloned, ClonedAccount)
    assert cloned.account_id != source.account_id
    assert cloned.account_name == "child-clone"
    assert env.store().child_by_name("child-clone") is not None


def test_clone_by_name_and_unknown_source(vox: VoximplantClient) -> None:
    add_child(vox, "child-source")
    cloned = vox.clone_child_account(
        account_name="child-source",
        new_account_name="child-clone2",
        new_account_email="clone2@tenants.example",
        new_account_password=PASSWORD,
    )
    assert cloned.account_name == "child-clone2"
    with pytest.raises(NotFound) as caught:
        vox.clone_child_account(
            account_id=999_999,
            new_account_name="child-clone3",
            new_account_email="clone3@tenants.example",
            new_account_password=PASSWORD,
        )
    assert (caught.value.code, caught.value.field) == (115, "account_id")


def test_clone_needs_exactly_one_source(env: SandboxEnv, vox: VoximplantClient) -> None:
    before = requests_seen(env)
    with pytest.raises(InvalidArgument):
        vox.clone_child_account(
            new_account_name="child-x", new_account_email="x@tenants.example", new_account_password=PASSWORD
        )
    with pytest.raises(InvalidArgument):
        vox.clone_child_account(
            account_id=2,
            account_name="child-one",
            new_account_name="child-x",
            new_account_email="x@tenants.example",
            new_account_password=PASSWORD,
        )
    assert requests_seen(env) == before


def test_clone_duplicate_new_name(vox: VoximplantClient) -> None:
    source = add_child(vox, "child-source")
    with pytest.raises(Duplicate) as caught:
        vox.clone_child_account(
            account_id=source.account_id,
            new_account_name="child-source",
            new_account_email="fresh@tenants.example",
            new_account_password=PASSWORD,
        )
    assert caught.value.code == 106


# -- GetChildrenAccounts -------------------------------------------------------------------------


def test_get_children_accounts_outputs_and_filters(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    a = add_child(vox, "child-aaa", active=True)
    b = add_child(vox, "child-bbb")
    full = vox.get_children_accounts(order_by="child_account_id")
    assert [c.account_id for c in full.accounts] == [a.account_id, b.account_id]
    assert full.total_count == 2
    assert all(isinstance(c, AccountInfo) and c.balance == Decimal(0) for c in full.accounts)
    brief = vox.get_children_accounts(brief_output=True)
    assert {c.account_id for c in brief.accounts} == {a.account_id, b.account_id}
    assert all(c.account_name is None for c in brief.accounts)
    medium = vox.get_children_accounts(medium_output=True, order_by="child_account_name")
    assert [c.account_name for c in medium.accounts] == ["child-aaa", "child-bbb"]
    assert all(c.balance is None for c in medium.accounts)
    active = vox.get_children_accounts(active=True)
    assert [c.account_id for c in active.accounts] == [a.account_id]
    by_ids = vox.get_children_accounts(
        child_account_id=[a.account_id, b.account_id], count=1, offset=1, order_by="child_account_id"
    )
    assert [c.account_id for c in by_ids.accounts] == [b.account_id]
    assert by_ids.total_count == 2
    by_email = vox.get_children_accounts(child_account_email="child-bbb@tenants.example")
    assert [c.account_id for c in by_email.accounts] == [b.account_id]


def test_get_children_accounts_unknown_id(vox: VoximplantClient) -> None:
    child = add_child(vox)
    with pytest.raises(NotFound) as caught:
        vox.get_children_accounts(child_account_id=[child.account_id, 987_654])
    assert (caught.value.code, caught.value.field) == (194, "child_account_id")
    assert isinstance(caught.value, InvalidArgument)
    page = vox.get_children_accounts(child_account_id=[child.account_id, 987_654], ignore_invalid_accounts=True)
    assert [c.account_id for c in page.accounts] == [child.account_id]


def test_get_children_accounts_count_is_capped_client_side(env: SandboxEnv, vox: VoximplantClient) -> None:
    before = requests_seen(env)
    with pytest.raises(InvalidArgument):
        vox.get_children_accounts(count=1001)
    assert requests_seen(env) == before


# -- SetChildAccountInfo --------------------------------------------------------------------------


def test_set_child_account_info_disables_and_edits(env: SandboxEnv, vox: VoximplantClient) -> None:
    child = add_child(vox, active=True)
    vox.set_child_account_info(
        child_account_id=child.account_id, active=False, language_code="de", min_balance_to_notify=Decimal("3.25")
    )
    info = vox.get_children_accounts(child_account_id=child.account_id).accounts[0]
    assert info.active is False
    assert info.language_code == "de"
    assert info.min_balance_to_notify == Decimal("3.25")
    vox.set_child_account_info(
        child_account_name="child-one", active=True, new_child_account_email="renamed@tenants.example"
    )
    info = vox.get_children_accounts(child_account_id=child.account_id).accounts[0]
    assert info.active is True
    assert info.account_email == "renamed@tenants.example"


def test_set_child_account_info_errors(env: SandboxEnv, vox: VoximplantClient) -> None:
    with pytest.raises(NotFound) as caught:
        vox.set_child_account_info(child_account_id=987_654, active=False)
    assert caught.value.code == 194
    child = add_child(vox)
    with pytest.raises(InvalidArgument) as bad_password:
        vox.set_child_account_info(child_account_id=child.account_id, new_child_account_password="weak")
    assert bad_password.value.field in ("account_password", "new_child_account_password")
    before = requests_seen(env)
    with pytest.raises(InvalidArgument):
        vox.set_child_account_info(active=False)  # no target
    with pytest.raises(InvalidArgument):
        vox.set_child_account_info(child_account_id=child.account_id, child_account_name="child-one", active=False)
    with pytest.raises(InvalidArgument):
        vox.set_child_account_info(child_account_name="all", active=False)
    assert requests_seen(env) == before


# -- TransferMoneyToChildAccount ---------------------------------------------------------------------


def test_transfer_moves_money_once_and_reports_the_parent_balance(env: SandboxEnv, vox: VoximplantClient) -> None:
    child = add_child(vox)
    result = vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal("25.50"),
        payment_reference="rp-first",
        check_duplicate_reference_from=LONG_AGO,
    )
    assert isinstance(result, TransferMoneyResult)
    assert result.balance == Decimal("9974.50")
    store = env.store()
    assert store.account(child.account_id)["balance"] == Decimal("25.50")
    assert store.transfer_ops_by_reference("rp-first") == 1


def test_transfer_with_descriptions_and_currency(env: SandboxEnv, vox: VoximplantClient) -> None:
    child = add_child(vox)
    vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal("1"),
        currency="USD",
        payment_reference="rp-desc",
        check_duplicate_reference_from=LONG_AGO,
        child_transaction_description="top-up for ${child_account_name}",
        parent_transaction_description="to ${child_account_id}",
    )
    rows = env.store().transactions_by_reference("rp-desc")
    assert len(rows) == 2


def test_a_resent_reference_is_skipped_not_paid_twice(env: SandboxEnv, vox: VoximplantClient) -> None:
    """The same reference and check_duplicate_reference_from sent twice -> one
    provider transaction. The sandbox's default reply to the skipped duplicate is
    {result: 1, balance: <unchanged>}; we pin that here."""
    child = add_child(vox)
    since = datetime.now(UTC) - timedelta(hours=48)
    first = vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal("10.00"),
        payment_reference="rp-dup",
        check_duplicate_reference_from=since,
    )
    second = vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal("10.00"),
        payment_reference="rp-dup",
        check_duplicate_reference_from=since,
    )
    assert second.balance == first.balance
    store = env.store()
    assert store.transfer_ops_by_reference("rp-dup") == 1
    assert store.account(child.account_id)["balance"] == Decimal("10.00")


def test_a_duplicate_reported_as_an_error_is_a_duplicate(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(duplicate_reply="error", duplicate_error_code=515)
    child = add_child(vox)
    since = datetime.now(UTC) - timedelta(hours=48)
    kwargs: dict[str, Any] = dict(
        child_account_id=child.account_id,
        amount=Decimal("10.00"),
        payment_reference="rp-dup-err",
        check_duplicate_reference_from=since,
    )
    vox.transfer_money_to_child_account(**kwargs)
    with pytest.raises(Duplicate) as caught:
        vox.transfer_money_to_child_account(**kwargs)
    assert caught.value.code == 515
    assert env.store().transfer_ops_by_reference("rp-dup-err") == 1


def test_the_duplicate_check_only_looks_back_to_the_given_time(env: SandboxEnv, vox: VoximplantClient) -> None:
    child = add_child(vox)
    vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal("1.00"),
        payment_reference="rp-window",
        check_duplicate_reference_from=LONG_AGO,
    )
    vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal("1.00"),
        payment_reference="rp-window",
        check_duplicate_reference_from=datetime.now(UTC) + timedelta(hours=1),
    )
    assert env.store().transfer_ops_by_reference("rp-window") == 2


def test_transfer_refusals(vox: VoximplantClient) -> None:
    child = add_child(vox)
    with pytest.raises(InsufficientFunds) as poor:
        vox.transfer_money_to_child_account(
            child_account_id=child.account_id,
            amount=Decimal("1000000.00"),
            payment_reference="rp-poor",
            check_duplicate_reference_from=LONG_AGO,
        )
    assert poor.value.code == 127
    with pytest.raises(NotFound) as unknown:
        vox.transfer_money_to_child_account(
            child_account_id=987_654,
            amount=Decimal("1.00"),
            payment_reference="rp-unknown",
            check_duplicate_reference_from=LONG_AGO,
        )
    assert (unknown.value.code, unknown.value.field) == (194, "child_account_id")
    with pytest.raises(InvalidArgument) as currency:
        vox.transfer_money_to_child_account(
            child_account_id=child.account_id,
            amount=Decimal("1.00"),
            currency="XYZ",
            payment_reference="rp-cur",
            check_duplicate_reference_from=LONG_AGO,
        )
    assert (currency.value.code, currency.value.field) == (210, "currency")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"child_account_id": [2]}, "child_account_id"),
        ({"child_account_id": "all"}, "child_account_id"),
        ({"child_account_id": "2"}, "child_account_id"),
        ({"child_account_id": True}, "child_account_id"),
        ({"child_account_id": 0}, "child_account_id"),
        ({"child_account_id": -2}, "child_account_id"),
        ({"amount": Decimal("-1.00")}, "amount"),
        ({"amount": Decimal("0")}, "amount"),
        ({"amount": Decimal("0.001")}, "amount"),
        ({"amount": Decimal("10.005")}, "amount"),
        ({"amount": Decimal("NaN")}, "amount"),
        ({"amount": Decimal("Infinity")}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": 10}, "amount"),
        ({"payment_reference": ""}, "payment_reference"),
        ({"payment_reference": "x" * 127}, "payment_reference"),
        ({"payment_reference": "a\nb"}, "payment_reference"),
        ({"check_duplicate_reference_from": datetime(2024, 1, 1)}, "check_duplicate_reference_from"),
        ({"currency": "usd"}, "currency"),
        ({"child_transaction_description": "d" * 120}, "child_transaction_description"),
    ],
)
def test_transfer_shape_is_guarded_before_sending(
    env: SandboxEnv, vox: VoximplantClient, override: dict[str, Any], field: str
) -> None:
    kwargs: dict[str, Any] = dict(
        child_account_id=2,
        amount=Decimal("10.00"),
        payment_reference="rp-guard",
        check_duplicate_reference_from=LONG_AGO,
    )
    kwargs.update(override)
    before = requests_seen(env)
    with pytest.raises(InvalidArgument) as caught:
        vox.transfer_money_to_child_account(**kwargs)
    assert caught.value.field == field
    assert caught.value.code is None  # the client refused it, not the provider
    assert requests_seen(env) == before


def test_transfer_always_sends_strict_mode(env: SandboxEnv, vox: VoximplantClient) -> None:
    # With strict_mode off the provider would clamp to what is available; strict refuses.
    env.set_options(strict_mode_default=False)
    child = add_child(vox)
    with pytest.raises(InsufficientFunds):
        vox.transfer_money_to_child_account(
            child_account_id=child.account_id,
            amount=Decimal("20000.00"),
            payment_reference="rp-strict",
            check_duplicate_reference_from=LONG_AGO,
        )
    assert env.store().account(child.account_id)["balance"] == Decimal(0)


# -- GetTransactionHistory ------------------------------------------------------------------------------


def test_get_transaction_history_finds_a_transfer_by_reference(env: SandboxEnv, vox: VoximplantClient) -> None:
    child = add_child(vox)
    before = datetime.now(UTC) - timedelta(minutes=5)
    vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal("7.25"),
        payment_reference="rp-find",
        check_duplicate_reference_from=LONG_AGO,
    )
    after = datetime.now(UTC) + timedelta(days=1)
    page = vox.get_transaction_history(from_date=before, to_date=after, payment_reference="rp-find")
    assert page.total_count == 1
    (row,) = page.transactions
    assert row.amount == Decimal("-7.25")
    assert row.transaction_type == "money_transfer_to_child"
    assert row.payment_reference == "rp-find"
    assert row.account_id == env.account_id
    assert row.performed_at.tzinfo is not None
    assert before <= row.performed_at <= after
    assert page.timezone == "Etc/GMT"
    typed = vox.get_transaction_history(
        from_date=before, to_date=after, transaction_type=["money_transfer_to_child"], count=5, offset=0
    )
    assert [r.transaction_id for r in typed.transactions] == [row.transaction_id]
    child_side = vox.get_transaction_history(
        from_date=before, to_date=after, child_account_id=child.account_id, payment_reference="rp-find"
    )
    # The child's leg is in there (the sandbox also lists the parent's leg naming the child).
    assert (child.account_id, Decimal("7.25")) in [(r.account_id, r.amount) for r in child_side.transactions]
    nothing = vox.get_transaction_history(from_date=before, to_date=after, payment_reference="rp-none")
    assert nothing.transactions == () and nothing.total_count == 0


def test_get_transaction_history_errors(env: SandboxEnv, vox: VoximplantClient) -> None:
    now = datetime.now(UTC)
    with pytest.raises(InvalidArgument) as caught:
        vox.get_transaction_history(from_date=now, to_date=now - timedelta(days=1))
    assert caught.value.code == 123
    before = requests_seen(env)
    with pytest.raises(InvalidArgument):
        vox.get_transaction_history(from_date=now - timedelta(days=1), to_date=now, offset=10_001)
    with pytest.raises(InvalidArgument):
        vox.get_transaction_history(from_date=now - timedelta(days=1), to_date=now, count=1001)
    with pytest.raises(InvalidArgument):
        vox.get_transaction_history(from_date=datetime(2024, 1, 1), to_date=now)
    assert requests_seen(env) == before


# -- GetCurrencyRate / GetMoneyAmountToCharge ------------------------------------------------------------


def test_get_currency_rate(vox: VoximplantClient) -> None:
    rates = vox.get_currency_rate(currency=["EUR", "RUR", "USD"])
    assert isinstance(rates, CurrencyRates)
    assert rates["USD"] == Decimal(1)
    assert rates["EUR"] == Decimal("0.92")
    assert all(isinstance(v, Decimal) for v in rates.rates.values())
    dated = vox.get_currency_rate(currency="KZT", on_date=date.today())
    assert set(dated.rates) == {"KZT"}
    with pytest.raises(InvalidArgument) as caught:
        vox.get_currency_rate(currency="XYZ")
    assert caught.value.code == 210


def test_get_money_amount_to_charge(vox: VoximplantClient) -> None:
    result = vox.get_money_amount_to_charge()
    assert isinstance(result, MoneyAmountToCharge)
    assert isinstance(result.amount, Decimal) and isinstance(result.min_amount, Decimal)
    dated = vox.get_money_amount_to_charge(currency="USD", charge_date=date.today() + timedelta(days=30))
    assert isinstance(dated.amount, Decimal)


def test_history_timestamps_mean_the_same_instant_in_any_timezone(env: SandboxEnv, vox: VoximplantClient) -> None:
    child = add_child(vox)
    vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal("1.00"),
        payment_reference="rp-tz",
        check_duplicate_reference_from=LONG_AGO,
    )
    start, end = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    instants: set[datetime] = set()
    for tz in ("Etc/GMT", "America/Los_Angeles", "Asia/Tokyo"):
        page = vox.get_transaction_history(from_date=start, to_date=end, timezone=tz, payment_reference="rp-tz")
        assert page.timezone == tz
        instants.update(r.performed_at for r in page.transactions)
    assert len(instants) == 1
    before = requests_seen(env)
    with pytest.raises(InvalidArgument) as caught:
        vox.get_transaction_history(from_date=start, to_date=end, timezone="auto")
    assert caught.value.field == "timezone"
    assert requests_seen(env) == before


def test_add_account_custom_data_too_long(vox: VoximplantClient) -> None:
    with pytest.raises(InvalidArgument) as caught:
        add_child(vox, "child-big", account_custom_data="x" * 8192)
    assert (caught.value.code, caught.value.field) == (211, "account_custom_data")


def test_add_account_children_per_day_limit(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(children_per_day_limit=1)
    add_child(vox, "child-day1")
    with pytest.raises(ProviderError) as caught:
        add_child(vox, "child-day2")
    assert caught.value.code == 397
    assert env.store().child_by_name("child-day2") is None


def test_set_child_account_info_callback_and_email_errors(vox: VoximplantClient) -> None:
    child = add_child(vox)
    with pytest.raises(InvalidArgument) as salt:
        vox.set_child_account_info(child_account_id=child.account_id, callback_salt="s" * 40)
    assert (salt.value.code, salt.value.field) == (399, "callback_salt")
    with pytest.raises(InvalidArgument) as url:
        vox.set_child_account_info(child_account_id=child.account_id, callback_url="not a url")
    assert (url.value.code, url.value.field) == (398, "callback_url")
    with pytest.raises(InvalidArgument) as email:
        vox.set_child_account_info(child_account_id=child.account_id, new_child_account_email="nope")
    assert email.value.field in ("new_child_account_email", "account_email")
    vox.set_child_account_info(
        child_account_id=child.account_id, callback_url="https://portal.example/hooks/vox", callback_salt="salt-1"
    )


def test_history_with_an_unknown_transaction_type(vox: VoximplantClient) -> None:
    now = datetime.now(UTC)
    with pytest.raises(InvalidArgument) as caught:
        vox.get_transaction_history(from_date=now - timedelta(days=1), to_date=now, transaction_type="no_such_type")
    assert (caught.value.code, caught.value.field) == (209, "transaction_type")


@pytest.mark.parametrize(
    ("setting", "kind", "code"), [("unknown_command", Unsupported, 103), ("forbidden", AuthenticationError, 104)]
)
def test_transfer_method_gone_or_forbidden(
    env: SandboxEnv, vox: VoximplantClient, setting: str, kind: type[ProviderError], code: int
) -> None:
    """The legacy transfer call may be gone for JWT callers (the docs do not say)."""
    env.set_options(transfer_method=setting)
    child = add_child(vox)
    with pytest.raises(kind) as caught:
        vox.transfer_money_to_child_account(
            child_account_id=child.account_id,
            amount=Decimal("1.00"),
            payment_reference="rp-gone",
            check_duplicate_reference_from=LONG_AGO,
        )
    assert caught.value.code == code
    assert env.store().transfer_ops_by_reference("rp-gone") == 0


def test_a_token_lifetime_the_provider_will_not_accept(env: SandboxEnv) -> None:
    env.set_options(jwt_max_ttl_seconds=30)
    with pytest.raises(AuthenticationError) as caught:
        env.vox().get_account_info()  # exp - iat = 65 s here
    assert caught.value.code == 454
    with VoximplantClient.from_files(
        base_url=env.base_url,
        credentials_path=env.credentials_path,
        transport=env.transport_factory(),
        token_lifetime=20,
        token_refresh_margin=5,
    ) as short_lived:
        assert short_lived.get_account_info()


def test_pulling_money_back_from_a_child(env: SandboxEnv, vox: VoximplantClient) -> None:
    child = add_child(vox)
    kwargs: dict[str, Any] = dict(child_account_id=child.account_id, check_duplicate_reference_from=LONG_AGO)
    vox.transfer_money_to_child_account(amount=Decimal("10.00"), payment_reference="rp-in", **kwargs)
    result = vox.transfer_money_from_child_account(amount=Decimal("4.00"), payment_reference="rp-out", **kwargs)
    assert result.balance == Decimal("9994.00")
    store = env.store()
    assert store.account(child.account_id)["balance"] == Decimal("6.00")
    assert {r["transaction_type"] for r in store.transactions_by_reference("rp-out")} == {
        "money_transfer_to_parent",
        "money_acceptance_from_child",
    }
    # Strict mode: more than the child holds is refused, not clamped.
    with pytest.raises(InsufficientFunds):
        vox.transfer_money_from_child_account(amount=Decimal("7.00"), payment_reference="rp-out2", **kwargs)
    assert store.account(child.account_id)["balance"] == Decimal("6.00")
    before = requests_seen(env)
    for bad in (Decimal("-4.00"), Decimal("0"), Decimal("1.001")):
        with pytest.raises(InvalidArgument):
            vox.transfer_money_from_child_account(amount=bad, payment_reference="rp-out3", **kwargs)
    assert requests_seen(env) == before
