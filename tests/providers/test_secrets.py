"""No secret in logs, exception messages or reprs."""

from __future__ import annotations

import json
import logging
import pickle
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from providers.errors import ProviderError
from providers.redaction import Secret, redact, register_secret

from .conftest import SandboxEnv

PASSWORD = "Sandbox-Pa55word!"


def _pem_fragments(pem: str) -> list[str]:
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return [lines[1], lines[len(lines) // 2], lines[-2]]


def test_nothing_secret_reaches_logs_errors_or_reprs(
    env: SandboxEnv, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    creds = json.loads(env.credentials_path.read_text())
    creds = creds.get("result", creds)
    parent_key = env.parent_api_key_path.read_text().strip()
    master_token = json.loads(env.voiceit_path.read_text())["api_token"]
    secrets: list[str] = [parent_key, master_token, *_pem_fragments(creds["private_key"])]
    texts: list[str] = []

    def attempt(fn: Any) -> Any:
        try:
            return fn()
        except ProviderError as err:
            texts.extend([str(err), repr(err), str(err.__cause__ or ""), repr(err.args)])
            return None

    vox = env.vox()
    voiceit = env.voiceit()
    texts.extend([repr(vox), repr(vox.credentials), repr(vox.signer), repr(voiceit), repr(voiceit.credentials)])

    # Voximplant: success paths that carry secrets in the answer.
    info = vox.get_account_info()
    child = vox.add_account(account_name="child-secret", account_email="s@t.example", account_password=PASSWORD)
    secrets += [vox.signer.token(), child.api_key.reveal(), PASSWORD]
    assert info.account.api_key is not None
    secrets.append(info.account.api_key.reveal())
    listed = list(vox.iter_children())
    texts += [repr(info), repr(child), repr(listed), str(child)]
    texts.append(
        repr(
            vox.transfer_money_to_child_account(
                child_account_id=child.account_id,
                amount=Decimal("1.00"),
                payment_reference="rp-s",
                check_duplicate_reference_from=datetime(2020, 1, 1, tzinfo=UTC),
            )
        )
    )

    # Voximplant: failures, retries, faults.
    env.set_faults([{"method": "GetAccountInfo", "kind": "http_500", "count": 2}])
    vox.get_account_info()
    env.set_faults([{"method": "AddAccount", "kind": "reset", "count": 1}])
    attempt(lambda: vox.add_account(account_name="child-s2", account_email="s2@t.example", account_password=PASSWORD))
    env.clear_faults()
    attempt(lambda: vox.add_account(account_name="child-s3", account_email="s3@t.example", account_password="weak"))
    wrong = tmp_path / "wrong_parent_key"
    wrong.write_text("wrong-parent-key-0000000000\n")
    secrets.append("wrong-parent-key-0000000000")
    attempt(
        lambda: env.vox(parent_api_key_path=wrong).add_account(
            account_name="child-s4", account_email="s4@t.example", account_password=PASSWORD
        )
    )
    attempt(
        lambda: vox.set_child_account_info(child_account_id=child.account_id, new_child_account_password="n0-Special")
    )

    # VoiceIt: the create answer holds the token and the password in clear.
    sub = voiceit.create_managed_sub_account(password="Tenant-Secret-9")
    rotated = voiceit.regenerate_sub_account_api_token(sub.api_key)
    secrets += [sub.api_token.reveal(), "Tenant-Secret-9", rotated.api_token.reveal()]
    texts += [repr(sub), str(sub), repr(rotated)]
    attempt(lambda: voiceit.list_users(api_key=sub.api_key, api_token=sub.api_token))  # revoked -> 401
    env.set_faults([{"method": "CreateManagedSubAccount", "kind": "apply_then_500", "count": 1}])
    attempt(lambda: voiceit.create_managed_sub_account(password="Tenant-Secret-10"))
    secrets.append("Tenant-Secret-10")
    env.clear_faults()

    everything = "\n".join([caplog.text, *texts])
    assert "retrying after OutcomeUnknown" in caplog.text  # the retries above did log
    assert len(texts) > 20
    for secret in secrets:
        assert secret and secret not in everything, "a secret leaked"
    assert "eyJ" not in everything  # no JWT of any age
    assert "PRIVATE KEY" not in everything


def test_secret_hides_itself() -> None:
    secret = Secret("s3cr3t-value-123")
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert "s3cr3t" not in repr({"k": secret, "l": [secret]})
    assert secret == Secret("s3cr3t-value-123") and secret != Secret("other")
    assert pickle.loads(pickle.dumps(secret)) == secret
    with pytest.raises(AttributeError):
        secret._value = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJl", "eyJhbGci"),
        ("auth Basic a2V5X2FiYzp0b2tfZGVm failed", "a2V5X2FiYzp0b2tfZGVm"),
        ("token tok_0123456789abcdef0123456789abcdef revoked", "0123456789abcdef"),
        ("bad parent_account_api_key=abcd-efgh-ijkl", "abcd-efgh-ijkl"),
        ('{"api_key": "12345678-aaaa"}', "12345678-aaaa"),
        ("password: hunter2hunter2", "hunter2hunter2"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "MIIEvQIBADANBg"),
    ],
)
def test_redact_masks_secret_shapes(text: str, leak: str) -> None:
    assert leak not in redact(text)


def test_redact_masks_registered_values_anywhere() -> None:
    register_secret("a-registered-credential-value")
    assert "a-registered-credential-value" not in redact("echo: xa-registered-credential-valuex")
    assert redact("nothing to hide here") == "nothing to hide here"


def test_provider_error_messages_are_redacted_and_pickle() -> None:
    err = ProviderError(
        "rejected api_key=deadbeefcafe for eyJabc.def.ghi",
        provider="voximplant",
        code=100,
        field="api_key",
        method="GetAccountInfo",
        http_status=200,
    )
    assert "deadbeefcafe" not in str(err) and "eyJabc" not in repr(err)
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.code, clone.field, clone.method, clone.message) == (err.code, err.field, err.method, err.message)
