"""AddAccount, CloneAccount, SetChildAccountInfo, GetChildrenAccounts."""

from __future__ import annotations

import pytest

from sandbox.voximplant import Voximplant

from .conftest import STRONG_PASSWORD, Env


def _add(env: Env, **overrides: str) -> dict:
    params = {
        "account_name": "validname",
        "account_email": "valid@example.com",
        "account_password": STRONG_PASSWORD,
        "parent_account_id": str(env.account_id),
        "parent_account_api_key": env.api_key,
    }
    params.update(overrides)
    return env.vox("AddAccount", {k: v for k, v in params.items() if v is not None})


def test_add_account_success_and_defaults(env: Env) -> None:
    body = _add(env)
    assert body["result"] == 1 and body["active"] is False
    assert set(body) == {"result", "account_id", "api_key", "active"}
    child = env.store.account(body["account_id"])
    assert child["parent_id"] == env.account_id and child["currency"] == "USD" and child["active"] is False
    assert child["api_key"] == body["api_key"] and child["location"] == "Etc/GMT" and child["language_code"] == "en"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("abcd", 113),
        ("a" * 21, 113),
        ("Abcde", 114),
        ("1abcde", 114),
        ("-abcde", 114),
        ("abc_de", 114),
        ("abcdе", 114),  # Cyrillic е
        ("abcde\n", 114),  # `$` would match before the newline; fullmatch does not
        ("abc de", 114),
        ("abc\u200dde", 114),
        ("support", 173),
    ],
)
def test_account_name_rules(env: Env, name: str, code: int) -> None:
    assert _add(env, account_name=name)["error"]["code"] == code


def test_account_name_edges_accepted(env: Env) -> None:
    assert _add(env, account_name="abcde", account_email="a1@example.com")["result"] == 1
    assert _add(env, account_name="a" + "-9" * 9 + "z", account_email="a2@example.com")["result"] == 1


def test_uniqueness_name_and_email_case_insensitive(env: Env) -> None:
    assert _add(env)["result"] == 1
    assert _add(env, account_email="other@example.com")["error"]["code"] == 106
    assert _add(env, account_name="othername", account_email="VALID@Example.COM")["error"]["code"] == 128


@pytest.mark.parametrize(
    ("email", "code"),
    [("no-at-sign", 136), ("a@b", 136), (" valid2@example.com x", 136), ("a" * 250 + "@example.com", 136)],
)
def test_email_rules(env: Env, email: str, code: int) -> None:
    assert _add(env, account_email=email)["error"]["code"] == code


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("", 463),
        ("Sh0rt!", 464),
        ("alllowercase1!", 464),
        ("ALLUPPER1!", 464),
        ("NoDigits!!", 464),
        ("NoSpecial123", 464),
        ("With Space1!", 524),
        ("Password1!", 523),
    ],
)
def test_password_rules(env: Env, password: str, code: int) -> None:
    assert _add(env, account_password=password)["error"]["code"] == code


def test_add_account_parent_credentials(env: Env) -> None:
    # JWT alone is not enough by default (docs list the parent credentials as required).
    assert _add(env, parent_account_id=None, parent_account_api_key=None)["error"]["code"] == 485
    assert _add(env, parent_account_api_key="wrong")["error"]["code"] == 100
    assert _add(env, parent_account_id="424242")["error"]["code"] == 177
    # Legacy only: no JWT at all.
    body = env.vox(
        "AddAccount",
        {
            "account_name": "legacyonly",
            "account_email": "legacy@example.com",
            "account_password": STRONG_PASSWORD,
            "parent_account_name": "reseller-parent",
            "parent_account_api_key": env.api_key,
        },
        token=False,
    )
    assert body["result"] == 1
    env.set_options(addaccount_requires_parent_credentials=False)
    assert _add(env, parent_account_id=None, parent_account_api_key=None, account_name="jwtonly1")["result"] == 1


def test_add_account_other_validation(env: Env) -> None:
    assert _add(env, language_code="xx")["error"]["code"] == 202
    assert _add(env, location="Mars/Base")["error"]["code"] == 496
    assert _add(env, account_custom_data="x" * 8192)["error"]["code"] == 211
    assert _add(env, account_first_name="x" * 50)["error"]["code"] == 163
    assert _add(env, active="maybe")["error"]["code"] == 496
    assert _add(env, account_name=None)["error"]["code"] == 485
    assert _add(env, account_name="")["error"]["code"] == 134
    env.set_options(children_per_day_limit=1)
    assert _add(env)["result"] == 1
    assert _add(env, account_name="second", account_email="s@example.com")["error"]["code"] == 397


def test_clone_account(env: Env) -> None:
    src = env.add_child(language_code="de")
    params = {
        "account_id": src["account_id"],
        "new_account_name": "clone-one",
        "new_account_email": "clone@example.com",
        "new_account_password": STRONG_PASSWORD,
        "parent_account_api_key": env.api_key,
    }
    body = env.ok("CloneAccount", params)
    result = body["result"]
    assert result["account_name"] == "clone-one" and result["active"] is False and result["api_key"]
    assert result["users"] == [] and "admin_users" in result
    clone = env.store.account(result["account_id"])
    assert clone["language_code"] == "de" and clone["parent_id"] == env.account_id and clone["balance"] == 0
    # Legacy: no JWT, the parent is the source's parent.
    legacy = env.vox(
        "CloneAccount", {**params, "new_account_name": "clone-two", "new_account_email": "c2@example.com"}, token=False
    )
    assert legacy["result"]["account_name"] == "clone-two"
    assert env.error_code("CloneAccount", {**params, "account_id": 999999}) == 115
    assert env.error_code("CloneAccount", {**params, "new_account_name": "clone-one"}) == 106
    assert env.error_code("CloneAccount", {**params, "parent_account_api_key": "nope"}) == 100


def test_set_child_account_info(env: Env) -> None:
    a, b = env.add_child(), env.add_child()
    assert env.ok("SetChildAccountInfo", {"child_account_id": a["account_id"], "active": "false"})["result"] == 1
    assert env.store.account(a["account_id"])["active"] is False
    env.ok("SetChildAccountInfo", {"child_account_name": b["account_name"], "min_balance_to_notify": "12.3456"})
    assert str(env.store.account(b["account_id"])["min_balance_to_notify"]) == "12.3456"
    env.ok("SetChildAccountInfo", {"child_account_id": "all", "news_notifications": "true"})
    assert (
        env.store.account(a["account_id"])["news_notifications"]
        and env.store.account(b["account_id"])["news_notifications"]
    )
    env.ok("SetChildAccountInfo", {"child_account_email": f"{a['account_name'].upper()}@EXAMPLE.COM", "active": "True"})
    assert env.store.account(a["account_id"])["active"] is True
    codes = {
        "none": env.error_code("SetChildAccountInfo", {"active": "false"}),
        "two selectors": env.error_code(
            "SetChildAccountInfo", {"child_account_id": a["account_id"], "child_account_name": b["account_name"]}
        ),
        "bad id": env.error_code("SetChildAccountInfo", {"child_account_id": "999999", "active": "false"}),
        "bad name": env.error_code("SetChildAccountInfo", {"child_account_name": "nobody-here", "active": "false"}),
        "bad email": env.error_code(
            "SetChildAccountInfo", {"child_account_email": "x@nowhere.test", "active": "false"}
        ),
        "new email taken": env.error_code(
            "SetChildAccountInfo",
            {"child_account_id": a["account_id"], "new_child_account_email": f"{b['account_name']}@example.com"},
        ),
        "new email invalid": env.error_code(
            "SetChildAccountInfo", {"child_account_id": a["account_id"], "new_child_account_email": "bad"}
        ),
        "salt": env.error_code("SetChildAccountInfo", {"child_account_id": a["account_id"], "callback_salt": "s" * 40}),
        "url": env.error_code("SetChildAccountInfo", {"child_account_id": a["account_id"], "callback_url": "ftp://x"}),
    }
    assert codes == {
        "none": 485,
        "two selectors": 458,
        "bad id": 194,
        "bad name": 198,
        "bad email": 199,
        "new email taken": 128,
        "new email invalid": 201,
        "salt": 399,
        "url": 398,
    }


def _seed_children(env: Env, n: int) -> list[dict]:
    from sandbox.seed import seed_children

    seed_children(str(env.db_path), n, seed=7)
    return []


def test_children_paging_defaults_caps_and_total(env: Env) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    _seed_children(env, 1200)
    body = env.ok("GetChildrenAccounts")
    assert body["count"] == 20 and body["total_count"] == 1200 and len(body["result"]) == 20
    names = [r["account_name"] for r in body["result"]]
    assert names == sorted(names)
    capped = env.ok("GetChildrenAccounts", {"count": 5000})
    assert capped["count"] == 1000 and capped["total_count"] == 1200
    tail = env.ok("GetChildrenAccounts", {"count": 1000, "offset": 1000})
    assert tail["count"] == 200
    everything = env.ok("GetChildrenAccounts", {"brief_output": "true"})
    assert everything["count"] == 1200 and set(everything["result"][0]) == {"account_id"}
    medium = env.ok("GetChildrenAccounts", {"medium_output": "true", "count": 3})
    assert medium["count"] == 3 and set(medium["result"][0]) == {"account_id", "account_name", "account_email"}
    row = body["result"][0]
    for key in (
        "account_id",
        "account_name",
        "account_email",
        "api_key",
        "created",
        "active",
        "frozen",
        "balance",
        "credit_limit",
        "currency",
        "live_balance",
        "fixed_balance",
        "min_balance_to_notify",
    ):
        assert key in row
    by_id = env.ok("GetChildrenAccounts", {"order_by": "child_account_id", "count": 50})
    ids = [r["account_id"] for r in by_id["result"]]
    assert ids == sorted(ids)
    by_email = env.ok("GetChildrenAccounts", {"order_by": "child_account_email", "count": 50})
    emails = [r["account_email"] for r in by_email["result"]]
    assert emails == sorted(emails)
    assert env.error_code("GetChildrenAccounts", {"order_by": "balance"}) == 496
    assert env.error_code("GetChildrenAccounts", {"count": "-1"}) == 496
    assert env.error_code("GetChildrenAccounts", {"count": "ten"}) == 496


def test_children_filters(env: Env) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    a = env.add_child("findme-alpha")
    b = env.add_child("findme-beta")
    env.add_child("other-gamma")
    env.ok("SetChildAccountInfo", {"child_account_id": b["account_id"], "active": "false"})
    ids = env.ok("GetChildrenAccounts", {"child_account_id": f"{a['account_id']};{b['account_id']}"})
    assert {r["account_id"] for r in ids["result"]} == {a["account_id"], b["account_id"]} and ids["total_count"] == 2
    assert env.ok("GetChildrenAccounts", {"child_account_id": "all"})["total_count"] == 3
    assert env.error_code("GetChildrenAccounts", {"child_account_id": f"{a['account_id']};999999"}) == 194
    ignored = env.ok(
        "GetChildrenAccounts", {"child_account_id": f"{a['account_id']};999999", "ignore_invalid_accounts": "true"}
    )
    assert ignored["total_count"] == 1
    assert env.error_code("GetChildrenAccounts", {"child_account_id": "1;x"}) == 194
    assert env.error_code("GetChildrenAccounts", {"child_account_id": f"{a['account_id']};0"}) == 194
    # An id given twice is one id: no 194 for a "missing" second copy, one row back.
    twice = env.ok(
        "GetChildrenAccounts", {"child_account_id": f"{b['account_id']};{a['account_id']};{b['account_id']}"}
    )
    assert sorted(r["account_id"] for r in twice["result"]) == sorted([a["account_id"], b["account_id"]])
    assert twice["total_count"] == 2
    part = env.ok("GetChildrenAccounts", {"child_account_name": "findme"})
    assert part["total_count"] == 2
    assert env.ok("GetChildrenAccounts", {"child_account_email": "FINDME-ALPHA@example.com"})["total_count"] == 1
    assert env.ok("GetChildrenAccounts", {"child_account_name": "find_e"})["total_count"] == 0  # LIKE wildcards escaped
    assert env.ok("GetChildrenAccounts", {"active": "false"})["total_count"] == 1
    assert env.ok("GetChildrenAccounts", {"active": "true", "child_account_name": "findme"})["total_count"] == 1
    assert env.ok("GetChildrenAccounts", {"frozen": "true"})["total_count"] == 0
    env.set_options(children_filter_match="exact")
    assert env.ok("GetChildrenAccounts", {"child_account_name": "findme"})["total_count"] == 0
    assert env.ok("GetChildrenAccounts", {"child_account_name": "findme-beta"})["total_count"] == 1
    env.set_options(children_require_filter=True)
    assert env.error_code("GetChildrenAccounts") == 485


@pytest.mark.parametrize("order", ["child_account_name", "child_account_id", "child_account_email"])
def test_deep_offset_seek_matches_plain_offset(env: Env, order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    _seed_children(env, 300)
    full = env.ok("GetChildrenAccounts", {"medium_output": "true", "order_by": order})["result"]
    monkeypatch.setattr(Voximplant, "SKIP", 7)
    for offset in (0, 13, 14, 15, 99, 250, 295, 299, 300, 400):
        page = env.ok("GetChildrenAccounts", {"count": 9, "offset": offset, "order_by": order})
        assert [r["account_id"] for r in page["result"]] == [r["account_id"] for r in full[offset : offset + 9]], offset
        assert page["total_count"] == 300
    # The anchors are rebuilt when accounts change.
    env.add_child("aaaaa-first")
    full = env.ok("GetChildrenAccounts", {"medium_output": "true", "order_by": order})["result"]
    page = env.ok("GetChildrenAccounts", {"count": 9, "offset": 150, "order_by": order})
    assert [r["account_id"] for r in page["result"]] == [r["account_id"] for r in full[150:159]]


def test_child_caller_sees_no_children(env: Env) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    child = env.add_child()
    body = env.ok("GetChildrenAccounts", token=env.token(iss=child["account_id"]))
    assert body["total_count"] == 0 and body["result"] == []
