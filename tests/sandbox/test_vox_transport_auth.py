"""Voximplant wire format and authentication."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.voximplant import Voximplant

from .conftest import Env, sign


@pytest.mark.parametrize(
    ("style", "http", "encoding"),
    [
        ("path", "POST", "form"),
        ("cmd", "POST", "form"),
        ("path", "POST", "multipart"),
        ("cmd", "POST", "multipart"),
        ("path", "POST", "query"),
        ("cmd", "POST", "query"),
        ("path", "GET", "query"),
        ("cmd", "GET", "query"),
    ],
)
def test_addressing_styles_and_encodings(env: Env, style: str, http: str, encoding: str) -> None:
    body = env.ok("GetAccountInfo", {"return_live_balance": "TRUE"}, style=style, http=http, encoding=encoding)
    assert body["result"]["account_id"] == env.account_id
    assert body["result"]["balance"] == 10000
    assert body["api_address"].endswith("/platform_api")


def test_query_and_body_are_merged(env: Env) -> None:
    child = env.add_child()
    response = env.client.post(
        "/platform_api/TransferMoneyToChildAccount",
        params={"child_account_id": child["account_id"]},
        data={"amount": "1.25"},
        headers={"Authorization": f"Bearer {env.token()}"},
    )
    assert response.json()["result"] == 1
    assert str(env.balance(child["account_id"])) == "1.2500"


def test_trailing_slash_path_and_errors_are_http_200(env: Env) -> None:
    response = env.client.get("/platform_api/GetAccountInfo/", headers={"Authorization": f"Bearer {env.token()}"})
    assert response.status_code == 200 and response.json()["result"]["account_id"] == env.account_id
    missing = env.client.post("/platform_api", data={}, headers={"Authorization": f"Bearer {env.token()}"})
    assert missing.status_code == 200
    assert missing.json() == {"error": {"msg": "Missing 'cmd' parameter", "code": 102}}
    assert env.error_code("NoSuchMethod") == 103
    assert env.error_code("NoSuchMethod", style="cmd") == 103


def test_every_method_has_a_handler_and_every_handler_is_listed() -> None:
    handlers = {name[2:] for name in dir(Voximplant) if name.startswith("m_")}
    assert handlers == set(Voximplant.METHODS)


@pytest.mark.parametrize("style", ["path", "cmd"])
@pytest.mark.parametrize("method", Voximplant.METHODS)
def test_every_method_is_dispatched_in_both_styles(env: Env, method: str, style: str) -> None:
    body = env.vox(method, style=style)
    assert body.get("error", {}).get("code") not in (102, 103, 104), body


@pytest.mark.parametrize("name", ["m_GetAccountInfo", "handle", "authenticate", "require_caller", "_seek", "store"])
def test_only_listed_methods_are_reachable(env: Env, name: str) -> None:
    assert env.error_code(name) == 103
    assert env.error_code(name, style="cmd") == 103


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "tRuE"])
def test_booleans_case_insensitive(env: Env, value: str) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    env.add_child()
    body = env.ok("GetChildrenAccounts", {"brief_output": value})
    assert body["result"] and set(body["result"][0]) == {"account_id"}


def test_numeric_booleans_are_an_option(env: Env) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    assert env.error_code("GetChildrenAccounts", {"brief_output": "1"}) == 496
    env.set_options(numeric_booleans=True)
    assert "error" not in env.vox("GetChildrenAccounts", {"brief_output": "1"})


# --- JWT -------------------------------------------------------------------------------------------


def test_iss_as_number_or_string(env: Env) -> None:
    assert env.ok("GetAccountInfo", token=env.token(iss=env.account_id))["result"]["account_id"] == env.account_id
    assert env.ok("GetAccountInfo", token=env.token(iss=str(env.account_id)))["result"]["account_id"] == env.account_id


def test_jwt_rejections_each_with_its_code(env: Env) -> None:
    now = time.time()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cases = {
        "no auth": (None, 100),
        "unknown kid": (env.token(kid="00000000-0000-0000-0000-000000000000"), 100),
        "no kid": (env.token(kid=None), 447),
        "bad signature": (env.token(key=other_pem), 100),
        "not a jwt": ("not-a-token", 447),
        "garbage segments": ("aaa.bbb.ccc", 447),
        "ttl over 3600": (env.token(ttl=3601), 454),
        "issued in the future": (env.token(iat=now + 120), 455),
        "expired": (env.token(iat=now - 3000, ttl=60), 456),
        "iss of a stranger": (env.token(iss=999999), 100),
        "iss not a number": (env.token(iss="abc"), 447),
    }
    for label, (token, code) in cases.items():
        got = env.error_code("GetAccountInfo", token=token or False)
        assert got == code, label
    hs = sign(
        {"iss": env.account_id, "iat": int(now), "exp": int(now) + 60}, "s" * 40, env.creds["key_id"], alg="HS256"
    )
    assert env.error_code("GetAccountInfo", token=hs) == 447
    wrong_scheme = env.client.post("/platform_api/GetAccountInfo", headers={"Authorization": "Basic abc"})
    assert wrong_scheme.json()["error"]["code"] == 100


def test_clock_skew_tolerance(env: Env) -> None:
    now = time.time()
    # Documented: exp - iat <= 3600. Tolerated skew (option jwt_clock_skew_seconds) = 10 s.
    assert "result" in env.vox("GetAccountInfo", token=env.token(iat=now + 5))
    assert "result" in env.vox("GetAccountInfo", token=env.token(iat=now - 65, ttl=60))
    assert "result" in env.vox("GetAccountInfo", token=env.token(ttl=3600))
    env.set_options(jwt_clock_skew_seconds=0)
    assert env.error_code("GetAccountInfo", token=env.token(iat=now + 5)) == 455


def test_parent_key_impersonates_child(env: Env) -> None:
    child = env.add_child()
    as_child = env.ok("GetAccountInfo", token=env.token(iss=child["account_id"]))
    assert as_child["result"]["account_id"] == child["account_id"]
    via_field = env.ok("GetAccountInfo", {"account_id": child["account_id"]})
    assert via_field["result"]["account_id"] == child["account_id"]
    env.set_options(jwt_impersonate_children=False)
    assert env.error_code("GetAccountInfo", token=env.token(iss=child["account_id"])) == 100


def test_legacy_api_key_auth(env: Env) -> None:
    body = env.ok("GetAccountInfo", {"account_id": env.account_id, "api_key": env.api_key}, token=False)
    assert body["result"]["account_id"] == env.account_id
    by_name = env.ok("GetAccountInfo", {"account_name": "reseller-parent", "api_key": env.api_key}, token=False)
    assert by_name["result"]["account_id"] == env.account_id
    child = env.add_child()
    mine = env.ok("GetAccountInfo", {"account_id": child["account_id"], "api_key": child["api_key"]}, token=False)
    assert mine["result"]["account_id"] == child["account_id"]
    assert env.error_code("GetAccountInfo", {"account_id": env.account_id, "api_key": "wrong"}, token=False) == 100
    assert env.error_code("GetAccountInfo", {"account_id": env.account_id, "session_id": "x"}, token=False) == 161
    env.set_options(legacy_auth=False)
    assert env.error_code("GetAccountInfo", {"account_id": env.account_id, "api_key": env.api_key}, token=False) == 100
