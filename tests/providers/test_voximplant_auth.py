"""Service-account credentials (both file forms) and the JWT: claims, caching, refresh."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from providers.errors import AuthenticationError, ConfigurationError
from providers.voximplant import JwtSigner, ServiceAccountCredentials

from .conftest import SandboxEnv


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def flat_credentials(env: SandboxEnv) -> dict[str, Any]:
    data = json.loads(env.credentials_path.read_text())
    return data.get("result", data)


def requests_seen(env: SandboxEnv) -> int:
    return int(env.admin("GET", "faults").json()["requests_seen"])


@pytest.mark.parametrize("form", ["flat", "result_wrapper", "result_list"])
def test_both_credentials_json_forms_authenticate(env: SandboxEnv, tmp_path: Path, form: str) -> None:
    flat = flat_credentials(env)
    content: Any = {"flat": flat, "result_wrapper": {"result": flat}, "result_list": {"result": [flat]}}[form]
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(content))
    client = env.vox(credentials_path=path)
    assert client.credentials.account_id == env.account_id
    assert client.get_account_info().account.account_id == env.account_id


def test_account_id_as_a_string_is_accepted(env: SandboxEnv) -> None:
    flat = flat_credentials(env)
    creds = ServiceAccountCredentials.from_mapping({**flat, "account_id": str(flat["account_id"])})
    assert creds.account_id == env.account_id


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        ('{"account_id": 1, "key_id": "k"}', "private_key"),
        ('{"account_id": "abc", "key_id": "k", "private_key": "x"}', "account_id"),
        ('{"result": 5}', "credentials"),
    ],
)
def test_bad_credentials_files_are_configuration_errors(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError) as caught:
        ServiceAccountCredentials.from_file(path)
    assert needle in str(caught.value)


def test_a_missing_credentials_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        ServiceAccountCredentials.from_file(tmp_path / "absent.json")


def test_a_non_rsa_or_garbled_key_is_refused_at_construction() -> None:
    creds = ServiceAccountCredentials.from_mapping(
        {"account_id": 1, "key_id": "k", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}
    )
    with pytest.raises(ConfigurationError) as caught:
        JwtSigner(creds)
    assert "AAAA" not in str(caught.value)


def test_the_token_has_the_documented_shape(rsa_pem: str) -> None:
    creds = ServiceAccountCredentials.from_mapping(
        {"account_id": 4242, "key_id": "0f0e-key-id", "private_key": rsa_pem, "account_email": "a@b.c"}
    )
    clock = FakeClock(1_800_000_000)
    token = JwtSigner(creds, clock=clock).token()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "0f0e-key-id"}
    private_key = load_pem_private_key(rsa_pem.encode(), None)
    assert isinstance(private_key, RSAPrivateKey)
    public_key = private_key.public_key()
    claims = jwt.decode(token, public_key, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == "4242"
    assert claims["iat"] == 1_800_000_000 - 5
    assert claims["exp"] == 1_800_000_000 + 60
    assert claims["exp"] - claims["iat"] <= 3600


def test_lifetimes_beyond_the_documented_maximum_are_refused(rsa_pem: str) -> None:
    creds = ServiceAccountCredentials.from_mapping({"account_id": 1, "key_id": "k", "private_key": rsa_pem})
    with pytest.raises(ValueError):
        JwtSigner(creds, lifetime=3600)
    with pytest.raises(ValueError):
        JwtSigner(creds, lifetime=10, refresh_margin=10)


def test_token_is_reused_while_valid_and_reminted_near_expiry(env: SandboxEnv) -> None:
    # Start 50 s in the past so every token minted here is valid on the sandbox's real clock.
    real = time.time()
    clock = FakeClock(real - 50)
    client = env.vox(clock=clock)
    env.set_options(children_require_filter=False)  # the unfiltered listing is one of the calls
    client.get_account_info()
    first = client.signer.token()
    client.get_children_accounts()
    client.get_currency_rate(currency="EUR")
    assert client.signer.minted == 1
    assert client.signer.token() == first
    # 44 s later: 16 s of life left, more than the 15 s margin -> still cached.
    clock.now = real - 50 + 44
    client.get_account_info()
    assert client.signer.minted == 1
    # 46 s later: 14 s left, inside the margin -> a fresh token, which the provider accepts.
    clock.now = real - 50 + 46
    client.get_account_info()
    assert client.signer.minted == 2
    assert client.signer.token() != first


def test_an_expired_token_is_reminted_once_then_reported(env: SandboxEnv) -> None:
    clock = FakeClock(time.time() - 4000)  # every token this clock mints has expired
    client = env.vox(clock=clock)
    with pytest.raises(AuthenticationError) as caught:
        client.get_account_info()
    assert caught.value.code == 456
    assert requests_seen(env) == 2  # the original and exactly one re-mint
    assert client.signer.minted == 2


def test_a_token_from_the_future_is_an_authentication_error(env: SandboxEnv) -> None:
    client = env.vox(clock=FakeClock(time.time() + 4000))
    with pytest.raises(AuthenticationError) as caught:
        client.get_account_info()
    assert caught.value.code == 455
    assert requests_seen(env) == 1


def test_an_expired_cached_token_is_recovered_by_one_remint(env: SandboxEnv) -> None:
    """The token went stale between minting and use (a long pause, a clock step): the 456
    answer drops it and the single retry with a fresh token succeeds."""
    real = time.time()
    readings = iter([real - 200])  # the first mint happens "200 s ago", later ones now

    def clock() -> float:
        return next(readings, time.time())

    client = env.vox(clock=clock)
    assert client.get_account_info().account.account_id == env.account_id
    assert client.signer.minted == 2
    assert requests_seen(env) == 2
