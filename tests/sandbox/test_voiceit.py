"""VoiceIt sub-accounts and the /users probe."""

from __future__ import annotations

import re

import pytest

from .conftest import Env


def _create(
    env: Env, kind: str = "managed", auth: tuple[str, str] | None = None, multipart: bool = True, **fields: str
):
    data = {"firstName": "", "lastName": "", "email": "", "password": "", "contentLanguage": ""}
    data.update(fields)
    auth = auth or env.master
    if multipart:
        return env.client.post(f"/subaccount/{kind}", files={k: (None, v) for k, v in data.items()}, auth=auth)
    return env.client.post(f"/subaccount/{kind}", data=data, auth=auth)


@pytest.mark.parametrize("kind", ["managed", "unmanaged"])
@pytest.mark.parametrize("multipart", [True, False])
def test_create_sub_account(both: Env, kind: str, multipart: bool) -> None:
    r = _create(
        both,
        kind,
        multipart=multipart,
        email="John.Doe@Example.com",
        password="thisisapassword",
        contentLanguage="en-US",
    )
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == 201 and body["responseCode"] == "SUCC"
    assert re.fullmatch(r"key_[0-9a-f]{32}", body["apiKey"]) and re.fullmatch(r"tok_[0-9a-f]{32}", body["apiToken"])
    assert body["type"] == kind and body["emailValidationRequired"] is True
    assert body["password"] == "thisisapassword" and body["email"] == "John.Doe@Example.com"
    assert body["message"] == f"Created new {kind} developer sub-account with apiKey : {body['apiKey']}"
    assert re.fullmatch(r"\d+\.\d{3}s", body["timeTaken"])
    users = both.client.post("/users", auth=(body["apiKey"], body["apiToken"]))
    assert users.status_code == 201 and users.json()["responseCode"] == "SUCC"


def test_defaults_generated(env: Env) -> None:
    body = _create(env).json()
    assert body["email"] and body["password"] and body["contentLanguage"] == "en-US"


def test_bad_credentials_unac(both: Env) -> None:
    for auth in [None, ("key_nope", "tok_nope"), (both.master[0], "tok_wrong")]:
        r = both.client.post("/subaccount/managed", auth=auth) if auth else both.client.post("/subaccount/managed")
        assert r.status_code == 401
        body = r.json()
        assert body["responseCode"] == "UNAC" and body["status"] == 401 and "timeTaken" in body


def test_regenerate_revokes_old_token(env: Env) -> None:
    sub = _create(env).json()
    key, old = sub["apiKey"], sub["apiToken"]
    r = env.client.post(f"/subaccount/{key}", auth=env.master)
    assert r.status_code == 200
    body = r.json()
    new = body["apiToken"]
    assert new != old and "apiKey" not in body and body["responseCode"] == "SUCC"
    assert body["message"] == f"Regenerated apiToken : {new} for developer sub-account with apiKey : {key}"
    assert env.client.get("/users", auth=(key, old)).status_code == 401
    assert env.client.get("/users", auth=(key, new)).status_code == 200


def test_delete_sub_account(env: Env) -> None:
    sub = _create(env, email="gone@example.com").json()
    key, token = sub["apiKey"], sub["apiToken"]
    r = env.client.delete(f"/subaccount/{key}", auth=env.master)
    assert r.status_code == 200 and r.json()["message"] == f"Deleted developer sub-account with apiKey : {key}"
    assert env.client.get("/users", auth=(key, token)).status_code == 401
    again = env.client.delete(f"/subaccount/{key}", auth=env.master)
    assert again.status_code == 404 and again.json()["responseCode"] == "SANF"
    assert env.client.post(f"/subaccount/{key}", auth=env.master).json()["responseCode"] == "SANF"
    # The email is free again (option voiceit_free_email_on_delete).
    assert _create(env, email="gone@example.com").status_code == 201


def test_only_the_owning_master_can_act(env: Env) -> None:
    sub = _create(env).json()
    other = _create(env).json()
    # A sub-account cannot create sub-accounts, nor regenerate a sibling.
    nested = _create(env, auth=(sub["apiKey"], sub["apiToken"]))
    assert nested.status_code == 403 and nested.json()["responseCode"] == "FBDN"
    sibling = env.client.post(f"/subaccount/{other['apiKey']}", auth=(sub["apiKey"], sub["apiToken"]))
    assert sibling.status_code == 404 and sibling.json()["responseCode"] == "SANF"


def test_switch_type_removed_route(env: Env) -> None:
    sub = _create(env).json()
    r = env.client.post(f"/subaccount/{sub['apiKey']}/switchType", auth=env.master)
    assert r.status_code == 404 and "responseCode" not in r.json()
    env.set_options(voiceit_switch_type=True)
    r = env.client.post(f"/subaccount/{sub['apiKey']}/switchType", auth=env.master)
    assert r.status_code == 200 and r.json()["type"] == "unmanaged"


def test_create_validation(env: Env) -> None:
    bad_email = _create(env, email="not-an-email")
    assert bad_email.status_code == 400 and bad_email.json()["responseCode"] == "ISAE"
    assert _create(env, email="dup@example.com").status_code == 201
    dup = _create(env, email="DUP@example.com")
    assert dup.status_code == 400 and dup.json()["responseCode"] == "EAEX"
    lang = _create(env, contentLanguage="xx-YY")
    assert lang.status_code == 400 and lang.json()["responseCode"] == "INCP"


def test_users_endpoints(env: Env) -> None:
    sub = _create(env).json()
    auth = (sub["apiKey"], sub["apiToken"])
    ids = [env.client.post("/users", auth=auth).json()["userId"] for _ in range(3)]
    listing = env.client.get("/users", auth=auth).json()
    assert listing["count"] == 3 and {u["userId"] for u in listing["users"]} == set(ids)
    assert all(isinstance(u["createdAt"], int) for u in listing["users"])
    assert env.client.get("/users", auth=env.master).json()["count"] == 0  # users are per account
    assert env.client.get(f"/users/{ids[0]}", auth=auth).json()["exists"] is True
    missing = env.client.get("/users/usr_00000000000000000000000000000000", auth=auth)
    assert missing.status_code == 200 and missing.json()["exists"] is False
    assert env.client.delete(f"/users/{ids[0]}", auth=auth).status_code == 200
    gone = env.client.delete(f"/users/{ids[0]}", auth=auth)
    assert gone.status_code == 404 and gone.json()["responseCode"] == "UNFD"


def test_disabled_account_daid(env: Env) -> None:
    sub = _create(env).json()
    assert env.admin("POST", "voiceit_disable", {"api_key": sub["apiKey"], "disabled": True}).status_code == 200
    r = env.client.get("/users", auth=(sub["apiKey"], sub["apiToken"]))
    assert r.status_code == 401 and r.json()["responseCode"] == "DAID"


def test_unknown_routes_404(env: Env) -> None:
    assert env.client.get("/nothing-here").status_code == 404
    assert env.client.get("/subaccount/managed", auth=env.master).status_code == 404
