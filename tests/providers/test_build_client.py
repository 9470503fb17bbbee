"""build_client (docs/CONTRACTS.md), timeouts, retry policy and the wire encoding."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from providers import DEFAULT_TIMEOUT, RetryPolicy, build_client
from providers.errors import ConfigurationError, InvalidArgument
from providers.http import make_timeout
from providers.voiceit import VoiceItClient
from providers.voximplant import VoximplantClient
from providers.voximplant.wire import encode_params, error_from_body

from .conftest import SandboxEnv


def test_build_client_returns_the_right_client(env: SandboxEnv) -> None:
    vox = build_client(
        "voximplant",
        base_url=env.base_url,
        credentials_path=env.credentials_path,
        parent_api_key_path=env.parent_api_key_path,
        transport=env.transport_factory(),
    )
    voiceit = build_client(
        "voiceit", base_url=env.base_url, voiceit_credentials_path=env.voiceit_path, transport=env.transport_factory()
    )
    with vox, voiceit:
        assert isinstance(vox, VoximplantClient) and vox.kind == "voximplant"
        assert isinstance(voiceit, VoiceItClient) and voiceit.kind == "voiceit"
        # Each client speaks as the account its credential file names.
        assert vox.get_account_info().account.account_id == env.account_id
        master_key = json.loads(env.voiceit_path.read_text())["api_key"]
        assert voiceit.credentials.api_key == master_key
        user_id = voiceit.create_user()
        assert user_id in {u.user_id for u in voiceit.list_users().users}
        # ... and only that one: another sub-account's credentials do not list the user.
        other = voiceit.create_managed_sub_account(email="other@t.example")
        assert user_id not in {
            u.user_id for u in voiceit.list_users(api_key=other.api_key, api_token=other.api_token).users
        }


def test_base_url_may_include_platform_api(env: SandboxEnv) -> None:
    vox = env.vox()
    other = build_client(
        "voximplant",
        base_url=env.base_url + "/platform_api/",
        credentials_path=env.credentials_path,
        transport=env.transport_factory(),
    )
    with other:
        assert other.get_account_info() == vox.get_account_info()


def test_build_client_refuses_bad_configuration(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        build_client("twilio", base_url="http://x")
    with pytest.raises(ConfigurationError):
        build_client("voximplant", base_url="http://x")
    with pytest.raises(ConfigurationError):
        build_client("voiceit", base_url="http://x")
    with pytest.raises(ConfigurationError):
        build_client("voximplant", base_url="http://x", credentials_path=tmp_path / "absent.json")
    empty = tmp_path / "empty_key"
    empty.write_text("  \n")
    with pytest.raises(ConfigurationError):
        build_client("voiceit", base_url="http://x", voiceit_credentials_path=empty)


def test_timeouts_are_mandatory() -> None:
    assert make_timeout(DEFAULT_TIMEOUT).connect == 5.0 and make_timeout(DEFAULT_TIMEOUT).read == 30.0
    pair = make_timeout((1, 7))
    assert (pair.connect, pair.read) == (1.0, 7.0)
    assert make_timeout(3).read == 3.0
    for bad in (httpx.Timeout(None), httpx.Timeout(5.0, connect=None), httpx.Timeout(5.0, read=None), 0, -1):
        with pytest.raises(ValueError):
            make_timeout(bad)  # type: ignore[arg-type]
    for bad_type in (None, True, "5", (1, 2, 3)):
        with pytest.raises(TypeError):
            make_timeout(bad_type)  # type: ignore[arg-type]


def test_retry_policy_backoff_is_jittered_exponential_and_bounded() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=4.0)
    rng = random.Random(3)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (5, 4.0)]:
        waits = {policy.delay(attempt, rng) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jitter
    assert policy.delay(1, rng, retry_after=3.0) >= 3.0
    assert policy.delay(1, rng, retry_after=100.0) <= 4.0
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_encoding_follows_the_spec() -> None:
    encoded = encode_params(
        {
            "flag": True,
            "off": False,
            "ids": [1, 2, 3],
            "names": ("a", "b"),
            "amount": Decimal("1E+1"),
            "small": Decimal("0.10"),
            "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=3))),
            "day": date(2026, 1, 2),
            "count": 20,
            "absent": None,
        }
    )
    assert encoded == {
        "flag": "true",
        "off": "false",
        "ids": "1;2;3",
        "names": "a;b",
        "amount": "10",
        "small": "0.10",
        "when": "2026-01-02 00:04:05",  # converted to UTC
        "day": "2026-01-02",
        "count": "20",
    }
    for bad in ({"amount": 1.5}, {"when": datetime(2026, 1, 1)}, {"names": ["a;b"]}, {"amount": Decimal("NaN")}):
        with pytest.raises(InvalidArgument):
            encode_params(bad)


def test_error_code_mapping_names_fields() -> None:
    err = error_from_body(
        {"code": 485, "msg": "Specify the 'account_email' parameter"}, method="AddAccount", http_status=200
    )
    assert isinstance(err, InvalidArgument) and err.field == "account_email"
    assert error_from_body({"code": 125, "msg": "x"}, method="m", http_status=200).field == "amount"
    assert error_from_body({"code": "oops"}, method="m", http_status=200).code is None


def test_transfer_to_a_child_via_datetime_in_another_zone(env: SandboxEnv) -> None:
    vox = env.vox()
    child = vox.add_account(account_name="child-tz", account_email="tz@t.example", account_password="Sandbox-Pa55word!")
    since = datetime.now(UTC).astimezone(timezone(timedelta(hours=-8))) - timedelta(hours=48)
    vox.transfer_money_to_child_account(
        child_account_id=child.account_id,
        amount=Decimal("2.00"),
        payment_reference="rp-tz",
        check_duplicate_reference_from=since,
    )
    assert env.store().transfer_ops_by_reference("rp-tz") == 1


def test_the_voximplant_client_module_keeps_its_public_names() -> None:
    import providers.voximplant as package
    from providers.voximplant import client

    assert client.DEFAULT_BASE_URL == "https://api.voximplant.com"
    assert client.MAX_PAGE == 1000
    assert client.HISTORY_OFFSET_CAP == 10_000
    assert package.DEFAULT_BASE_URL is client.DEFAULT_BASE_URL
    assert package.VoximplantClient is client.VoximplantClient is VoximplantClient
    assert client.__all__ == ["VoximplantClient"]
    assert client.logger.name == "providers.voximplant"
    # Every provider call and the provider-neutral interface are methods of the one class.
    for name in (
        "get_account_info",
        "get_children_accounts",
        "get_children_snapshots",
        "iter_children_pages",
        "add_account",
        "clone_child_account",
        "set_child_account_info",
        "transfer_money_to_child_account",
        "transfer_money_from_child_account",
        "get_transaction_history",
        "iter_transaction_history",
        "get_currency_rate",
        "get_money_amount_to_charge",
        "iter_balance_pages",
        "set_low_balance_threshold",
        "iter_transactions",
    ):
        assert callable(getattr(VoximplantClient, name)), name
    assert not VoximplantClient.__abstractmethods__
