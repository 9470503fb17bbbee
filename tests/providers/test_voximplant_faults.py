"""Transport and server faults (sandbox admin fault API) mapped to error kinds, with the
retry rule: reads and NotSent are retried, a write that may have been applied never is."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from providers import RetryPolicy, build_client
from providers.errors import (
    InsufficientFunds,
    NotSent,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from providers.voximplant import VoximplantClient

from .conftest import FAST_RETRY, SandboxEnv, Sleeps

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
TRANSFER = "TransferMoneyToChildAccount"

# kind -> does the sandbox apply the request before failing?
AMBIGUOUS_KINDS = {
    "http_500": False,
    "http_502": False,
    "html": False,
    "empty": False,
    "reset": False,
    "apply_then_drop": True,
    "apply_then_500": True,
}


def requests_seen(env: SandboxEnv) -> int:
    return int(env.admin("GET", "faults").json()["requests_seen"])


@pytest.fixture
def child_id(vox: VoximplantClient) -> int:
    return vox.add_account(
        account_name="child-fault", account_email="fault@tenants.example", account_password="Sandbox-Pa55word!"
    ).account_id


def transfer(vox: VoximplantClient, child_id: int, reference: str, amount: str = "5.00") -> Any:
    return vox.transfer_money_to_child_account(
        child_account_id=child_id,
        amount=Decimal(amount),
        payment_reference=reference,
        check_duplicate_reference_from=LONG_AGO,
    )


@pytest.mark.parametrize(("kind", "applied"), sorted(AMBIGUOUS_KINDS.items()))
def test_a_write_without_a_usable_answer_is_outcome_unknown_and_not_resent(
    env: SandboxEnv, child_id: int, kind: str, applied: bool
) -> None:
    sleeps = Sleeps()
    vox = env.vox(sleep=sleeps)
    env.set_faults([{"method": TRANSFER, "kind": kind, "count": 1}])
    with pytest.raises(OutcomeUnknown) as caught:
        transfer(vox, child_id, f"rp-{kind}")
    assert caught.value.method == TRANSFER
    assert sleeps == []  # no retry
    assert requests_seen(env) == 1
    # The sandbox really did (or did not) apply it: exactly why the client cannot guess.
    assert env.store().transfer_ops_by_reference(f"rp-{kind}") == (1 if applied else 0)


@pytest.mark.parametrize("kind", sorted(AMBIGUOUS_KINDS))
def test_a_read_is_retried_through_a_transient_fault(env: SandboxEnv, kind: str) -> None:
    sleeps = Sleeps()
    vox = env.vox(sleep=sleeps)
    env.set_faults([{"method": "GetAccountInfo", "kind": kind, "count": 1}])
    info = vox.get_account_info()
    assert info.account.account_id == env.account_id
    assert len(sleeps) == 1
    assert requests_seen(env) == 2


@pytest.mark.parametrize("kind", ["http_500", "reset", "html"])
def test_a_read_gives_up_after_the_retry_bound(env: SandboxEnv, kind: str) -> None:
    sleeps = Sleeps()
    vox = env.vox(sleep=sleeps, retry=RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=0.75))
    env.set_faults([{"method": "GetChildrenAccounts", "kind": kind}])
    with pytest.raises(OutcomeUnknown):
        vox.get_children_accounts()
    assert requests_seen(env) == 3
    # Jittered exponential backoff within [d/2, d], d = min(max, base * 2^(n-1)).
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.375 <= sleeps[1] <= 0.75


def test_http_429_is_refused_before_execution_so_even_a_transfer_is_retried(env: SandboxEnv, child_id: int) -> None:
    """Pins the sandbox contract the retry relies on: a 429
    comes before execution, so resending the transfer pays exactly once."""
    sleeps = Sleeps()
    vox = env.vox(sleep=sleeps, retry=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=5.0))
    env.set_faults([{"method": TRANSFER, "kind": "http_429", "count": 1, "retry_after": 2}])
    result = transfer(vox, child_id, "rp-429")
    assert result.balance == Decimal("9995.00")
    assert env.store().transfer_ops_by_reference("rp-429") == 1
    assert requests_seen(env) == 2
    assert sleeps and sleeps[0] >= 2  # Retry-After honoured


def test_http_429_retry_can_be_switched_off_for_writes(env: SandboxEnv, child_id: int) -> None:
    vox = env.vox()
    vox.http_429_refused_before_execution = False
    env.set_faults([{"method": TRANSFER, "kind": "http_429", "count": 1}])
    with pytest.raises(RateLimited) as caught:
        transfer(vox, child_id, "rp-429-off")
    assert caught.value.http_status == 429
    assert caught.value.retry_after == 1
    assert requests_seen(env) == 1


@pytest.mark.parametrize("code", [340, 416, 162])
def test_rate_limit_codes_are_retried_for_writes(env: SandboxEnv, child_id: int, code: int) -> None:
    vox = env.vox()
    env.set_faults([{"method": TRANSFER, "kind": "error_code", "code": code, "count": 1}])
    transfer(vox, child_id, f"rp-rate-{code}")
    assert env.store().transfer_ops_by_reference(f"rp-rate-{code}") == 1
    assert requests_seen(env) == 2


def test_rate_limit_that_persists_surfaces_as_rate_limited(env: SandboxEnv, child_id: int) -> None:
    vox = env.vox()
    env.set_faults([{"method": TRANSFER, "kind": "error_code", "code": 340}])
    with pytest.raises(RateLimited) as caught:
        transfer(vox, child_id, "rp-rate-forever")
    assert caught.value.code == 340
    assert caught.value.refused_before_execution is True
    assert requests_seen(env) == FAST_RETRY.max_attempts
    assert env.store().transfer_ops_by_reference("rp-rate-forever") == 0


@pytest.mark.parametrize(
    ("code", "kind"),
    [(127, InsufficientFunds), (2, OutcomeUnknown), (1, OutcomeUnknown), (999, ProviderError)],
)
def test_error_codes_in_a_200_body_map_to_kinds_and_writes_are_not_retried(
    env: SandboxEnv, child_id: int, code: int, kind: type[ProviderError]
) -> None:
    vox = env.vox()
    env.set_faults([{"method": TRANSFER, "kind": "error_code", "code": code, "count": 1}])
    with pytest.raises(kind) as caught:
        transfer(vox, child_id, f"rp-code-{code}")
    assert caught.value.code == code
    assert caught.value.http_status == 200
    assert requests_seen(env) == 1


def test_a_read_timeout_on_a_write_is_outcome_unknown_and_the_write_lands_later(env: SandboxEnv, child_id: int) -> None:
    vox = env.vox(timeout=(2.0, 0.3))
    env.set_faults([{"method": TRANSFER, "kind": "latency", "latency_ms": 800, "count": 1}])
    with pytest.raises(OutcomeUnknown) as caught:
        transfer(vox, child_id, "rp-slow")
    assert "ReadTimeout" in caught.value.message
    assert requests_seen(env) == 1
    import time

    deadline = time.monotonic() + 5
    while env.store().transfer_ops_by_reference("rp-slow") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    # It was applied after we gave up: the reason OutcomeUnknown must be resolved by lookup.
    assert env.store().transfer_ops_by_reference("rp-slow") == 1


def test_a_read_timeout_on_a_read_is_retried(env: SandboxEnv) -> None:
    sleeps = Sleeps()
    vox = env.vox(timeout=(2.0, 0.3), sleep=sleeps)
    env.set_faults([{"method": "GetAccountInfo", "kind": "latency", "latency_ms": 800, "count": 1}])
    vox.get_account_info()
    assert len(sleeps) == 1


def test_latency_below_the_timeout_is_just_slow(env: SandboxEnv, child_id: int) -> None:
    vox = env.vox(timeout=(2.0, 3.0))
    env.set_faults([{"method": TRANSFER, "kind": "latency", "latency_ms": 100}])
    transfer(vox, child_id, "rp-latency")
    assert env.store().transfer_ops_by_reference("rp-latency") == 1


def _vox_at(env: SandboxEnv, base_url: str, sleeps: Sleeps) -> VoximplantClient:
    return build_client(
        "voximplant",
        base_url=base_url,
        credentials_path=env.credentials_path,
        parent_api_key_path=env.parent_api_key_path,
        retry=FAST_RETRY,
        sleep=sleeps,
        timeout=(1.0, 2.0),
    )


def test_connection_refused_is_not_sent_and_retried_even_for_writes(env: SandboxEnv, closed_port: int) -> None:
    sleeps = Sleeps()
    vox = _vox_at(env, f"http://127.0.0.1:{closed_port}", sleeps)
    with pytest.raises(NotSent) as caught:
        transfer(vox, 2, "rp-refused")
    assert caught.value.retry_safe is True
    assert len(sleeps) == FAST_RETRY.max_attempts - 1
    with pytest.raises(NotSent):
        vox.get_account_info()
    vox.close()


def test_an_unresolvable_host_is_not_sent(env: SandboxEnv) -> None:
    sleeps = Sleeps()
    vox = _vox_at(env, "http://no-such-host.invalid", sleeps)
    with pytest.raises(NotSent):
        vox.get_account_info()
    vox.close()


def test_a_tls_handshake_failure_is_not_sent(socket_env: SandboxEnv) -> None:
    env = socket_env
    # Speaking TLS to the plain-HTTP sandbox fails in the handshake: nothing was sent.
    sleeps = Sleeps()
    vox = _vox_at(env, env.base_url.replace("http://", "https://"), sleeps)
    with pytest.raises(NotSent):
        transfer(vox, 2, "rp-tls")
    assert env.store().transfer_ops_by_reference("rp-tls") == 0
    vox.close()


def test_not_sent_then_success_pays_once(socket_env: SandboxEnv) -> None:
    """A client that could not connect retries; once it gets through, exactly one transfer."""
    import httpx

    env = socket_env
    child_id = (
        env.vox()
        .add_account(
            account_name="child-flaky", account_email="flaky@tenants.example", account_password="Sandbox-Pa55word!"
        )
        .account_id
    )

    attempts: list[int] = []

    class FlakyConnect(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            attempts.append(1)
            if len(attempts) == 1:
                raise httpx.ConnectError("connection refused (first attempt)", request=request)
            return super().handle_request(request)

    vox = env.vox(transport=FlakyConnect())
    transfer(vox, child_id, "rp-flaky")
    assert len(attempts) == 2
    assert env.store().transfer_ops_by_reference("rp-flaky") == 1


def test_faults_on_other_methods_do_not_leak(env: SandboxEnv, child_id: int) -> None:
    vox = env.vox()
    env.set_faults([{"method": "GetCurrencyRate", "kind": "http_500"}])
    transfer(vox, child_id, "rp-unaffected")
    with pytest.raises(OutcomeUnknown):
        vox.get_currency_rate(currency="EUR")
