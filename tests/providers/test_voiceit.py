"""VoiceIt sub-account client against the sandbox: every call, errors and faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from providers import build_client
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    Duplicate,
    InvalidArgument,
    NotFound,
    NotSent,
    OutcomeUnknown,
    RateLimited,
)
from providers.redaction import Secret
from providers.voiceit import SubAccount, VoiceItClient, VoiceItCredentials

from .conftest import FAST_RETRY, SandboxEnv, Sleeps

CREATE = "CreateManagedSubAccount"


def requests_seen(env: SandboxEnv) -> int:
    return int(env.admin("GET", "faults").json()["requests_seen"])


def test_create_managed_sub_account_with_everything_given(voiceit: VoiceItClient) -> None:
    sub = voiceit.create_managed_sub_account(
        first_name="Ann",
        last_name="Lee",
        email="ann@tenant.example",
        password="Tenant-pass-1",
        content_language="en-US",
    )
    assert isinstance(sub, SubAccount)
    assert sub.api_key.startswith("key_")
    assert isinstance(sub.api_token, Secret) and sub.api_token.reveal().startswith("tok_")
    assert sub.password is not None and sub.password.reveal() == "Tenant-pass-1"
    assert sub.email == "ann@tenant.example"
    assert sub.type == "managed"
    assert sub.content_language == "en-US"
    assert sub.email_validation_required is True


def test_create_unmanaged_sub_account_lets_voiceit_generate_the_rest(voiceit: VoiceItClient) -> None:
    sub = voiceit.create_unmanaged_sub_account()
    assert sub.type == "unmanaged"
    assert sub.email  # generated
    assert sub.password is not None and sub.password.reveal()  # generated, echoed once
    assert sub.content_language  # inherited from the master


def test_new_credentials_work_at_once_and_see_their_own_users(voiceit: VoiceItClient) -> None:
    sub = voiceit.create_managed_sub_account()
    assert voiceit.check_credentials(api_key=sub.api_key, api_token=sub.api_token)
    user_id = voiceit.create_user(api_key=sub.api_key, api_token=sub.api_token)
    assert user_id.startswith("usr_")
    page = voiceit.list_users(api_key=sub.api_key, api_token=sub.api_token.reveal())
    assert [u.user_id for u in page.users] == [user_id]
    assert page.count == 1
    master_page = voiceit.list_users()
    assert user_id not in [u.user_id for u in master_page.users]


def test_regenerating_the_token_revokes_the_old_one(voiceit: VoiceItClient) -> None:
    sub = voiceit.create_managed_sub_account()
    rotated = voiceit.regenerate_sub_account_api_token(sub.api_key)
    assert rotated.account_id == sub.api_key
    assert rotated.api_token != sub.api_token
    assert voiceit.check_credentials(api_key=sub.api_key, api_token=rotated.api_token)
    assert not voiceit.check_credentials(api_key=sub.api_key, api_token=sub.api_token)
    with pytest.raises(AuthenticationError) as caught:
        voiceit.list_users(api_key=sub.api_key, api_token=sub.api_token)
    assert (caught.value.code, caught.value.http_status) == ("UNAC", 401)


def test_deleting_a_sub_account_kills_its_credentials(voiceit: VoiceItClient) -> None:
    sub = voiceit.create_unmanaged_sub_account()
    voiceit.delete_sub_account(sub.api_key)
    assert not voiceit.check_credentials(api_key=sub.api_key, api_token=sub.api_token)
    with pytest.raises(NotFound) as caught:
        voiceit.delete_sub_account(sub.api_key)
    assert (caught.value.code, caught.value.field) == ("SANF", "api_key")
    voiceit.delete_sub_account(sub.api_key, missing_ok=True)
    with pytest.raises(NotFound):
        voiceit.regenerate_sub_account_api_token(sub.api_key)


def test_unknown_sub_account_key(voiceit: VoiceItClient) -> None:
    with pytest.raises(NotFound) as caught:
        voiceit.regenerate_sub_account_api_token("key_" + "0" * 32)
    assert caught.value.code == "SANF"
    with pytest.raises(InvalidArgument):
        voiceit.delete_sub_account("  ")


def test_wrong_master_credentials(env: SandboxEnv, tmp_path: Path) -> None:
    path = tmp_path / "voiceit.json"
    path.write_text(json.dumps({"apiKey": "key_" + "1" * 32, "apiToken": "tok_" + "2" * 32}))
    client = env.voiceit(voiceit_credentials_path=path)
    with pytest.raises(AuthenticationError) as caught:
        client.create_managed_sub_account()
    assert caught.value.code == "UNAC"


def test_duplicate_and_invalid_create_fields(voiceit: VoiceItClient) -> None:
    voiceit.create_managed_sub_account(email="dup@tenant.example")
    with pytest.raises(Duplicate) as dup:
        voiceit.create_managed_sub_account(email="dup@tenant.example")
    assert (dup.value.code, dup.value.field) == ("EAEX", "email")
    with pytest.raises(InvalidArgument) as bad_email:
        voiceit.create_managed_sub_account(email="not an email")
    assert (bad_email.value.code, bad_email.value.field) == ("ISAE", "email")
    with pytest.raises(InvalidArgument) as bad_lang:
        voiceit.create_unmanaged_sub_account(content_language="xx-NOPE")
    assert (bad_lang.value.code, bad_lang.value.field) == ("INCP", "content_language")


def test_a_sub_account_cannot_manage_sub_accounts(env: SandboxEnv, voiceit: VoiceItClient, tmp_path: Path) -> None:
    sub = voiceit.create_managed_sub_account()
    path = tmp_path / "sub.json"
    path.write_text(json.dumps({"apiKey": sub.api_key, "apiToken": sub.api_token.reveal()}))
    as_sub = env.voiceit(voiceit_credentials_path=path)
    with pytest.raises(AuthenticationError) as caught:
        as_sub.create_managed_sub_account()
    assert caught.value.code == "FBDN"


# -- faults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "applied"),
    [
        ("http_500", False),
        ("http_502", False),
        ("html", False),
        ("empty", False),
        ("reset", False),
        ("apply_then_drop", True),
        ("apply_then_500", True),
    ],
)
def test_a_create_without_a_usable_answer_is_outcome_unknown_and_not_retried(
    env: SandboxEnv, kind: str, applied: bool
) -> None:
    sleeps = Sleeps()
    client = env.voiceit(sleep=sleeps)
    env.set_faults([{"method": CREATE, "kind": kind, "count": 1}])
    with pytest.raises(OutcomeUnknown):
        client.create_managed_sub_account(email=f"{kind}@tenant.example")
    assert sleeps == [] and requests_seen(env) == 1
    # Whether it exists is exactly what the client cannot know (RECOVERABLE_CREATE is absent).
    env.clear_faults()
    if applied:
        with pytest.raises(Duplicate):
            client.create_managed_sub_account(email=f"{kind}@tenant.example")
    else:
        client.create_managed_sub_account(email=f"{kind}@tenant.example")


@pytest.mark.parametrize("kind", ["http_500", "html", "empty", "reset", "apply_then_drop"])
def test_listing_users_is_retried_through_a_transient_fault(env: SandboxEnv, kind: str) -> None:
    sleeps = Sleeps()
    client = env.voiceit(sleep=sleeps)
    env.set_faults([{"method": "GetAllUsers", "kind": kind, "count": 1}])
    client.list_users()
    assert len(sleeps) == 1


def test_call_limit_is_retried_for_reads_only(env: SandboxEnv) -> None:
    client = env.voiceit()
    env.set_faults([{"method": "GetAllUsers", "kind": "error_code", "code": "ACLR", "count": 1}])
    client.list_users()
    env.set_faults([{"method": CREATE, "kind": "error_code", "code": "ACLR", "count": 1}])
    with pytest.raises(RateLimited) as caught:
        client.create_managed_sub_account()
    assert caught.value.code == "ACLR"
    assert requests_seen(env) == 1


def test_http_429_on_a_create_is_not_retried(env: SandboxEnv) -> None:
    client = env.voiceit()
    env.set_faults([{"method": CREATE, "kind": "http_429", "count": 1, "retry_after": 3}])
    with pytest.raises(RateLimited) as caught:
        client.create_managed_sub_account()
    assert caught.value.retry_after == 3
    assert requests_seen(env) == 1


def test_general_error_on_delete_is_outcome_unknown(env: SandboxEnv, voiceit: VoiceItClient) -> None:
    sub = voiceit.create_managed_sub_account()
    env.set_faults([{"method": "DeleteSubAccount", "kind": "error_code", "code": "GERR", "count": 1}])
    with pytest.raises(OutcomeUnknown) as caught:
        voiceit.delete_sub_account(sub.api_key)
    assert caught.value.code == "GERR"
    voiceit.delete_sub_account(sub.api_key)  # a human or a reconcile step retries knowingly


def test_regenerate_dropped_after_apply_is_outcome_unknown(env: SandboxEnv, voiceit: VoiceItClient) -> None:
    sub = voiceit.create_managed_sub_account()
    env.set_faults([{"method": "RegenerateSubAccountAPIToken", "kind": "apply_then_drop", "count": 1}])
    with pytest.raises(OutcomeUnknown):
        voiceit.regenerate_sub_account_api_token(sub.api_key)
    # Applied: the old token is gone, and only a fresh rotation gets a usable one.
    assert not voiceit.check_credentials(api_key=sub.api_key, api_token=sub.api_token)
    fresh = voiceit.regenerate_sub_account_api_token(sub.api_key)
    assert voiceit.check_credentials(api_key=sub.api_key, api_token=fresh.api_token)


def test_read_timeout_on_create_is_outcome_unknown(env: SandboxEnv) -> None:
    client = env.voiceit(timeout=(2.0, 0.3))
    env.set_faults([{"method": CREATE, "kind": "latency", "latency_ms": 800, "count": 1}])
    with pytest.raises(OutcomeUnknown):
        client.create_managed_sub_account()


def test_connection_refused_is_not_sent(env: SandboxEnv, closed_port: int) -> None:
    sleeps = Sleeps()
    client = build_client(
        "voiceit",
        base_url=f"http://127.0.0.1:{closed_port}",
        voiceit_credentials_path=env.voiceit_path,
        retry=FAST_RETRY,
        sleep=sleeps,
    )
    with pytest.raises(NotSent):
        client.create_managed_sub_account()
    assert len(sleeps) == FAST_RETRY.max_attempts - 1
    client.close()


# -- credentials file -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        {"apiKey": "key_a", "apiToken": "tok_b"},
        {"api_key": "key_a", "api_token": "tok_b"},
        {"result": {"apiKey": "key_a", "apiToken": "tok_b"}},
        {"master": {"api_key": "key_a", "api_token": "tok_b"}},
    ],
)
def test_voiceit_credentials_file_forms(tmp_path: Path, content: dict[str, object]) -> None:
    path = tmp_path / "voiceit.json"
    path.write_text(json.dumps(content))
    creds = VoiceItCredentials.from_file(path)
    assert creds.api_key == "key_a"
    assert creds.api_token.reveal() == "tok_b"


@pytest.mark.parametrize("content", ["nope", "[]", '{"apiKey": "key_a"}'])
def test_bad_voiceit_credentials_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "voiceit.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError):
        VoiceItCredentials.from_file(path)
