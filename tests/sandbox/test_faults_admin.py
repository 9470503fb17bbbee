"""Fault injection (every kind, in-process and over a real socket) and the admin surface."""

from __future__ import annotations

import time

import httpx
import pytest

from sandbox.app import SandboxApp
from sandbox.server import start_in_thread
from sandbox.transport import SandboxTransport

from .conftest import Env


def _faults(env: Env, rules: list[dict], seed: int = 1) -> None:
    r = env.admin("PUT", "faults", {"seed": seed, "rules": rules})
    assert r.status_code == 200, r.text


def _transfer(env: Env, child_id: int, ref: str, **kw) -> httpx.Response:
    return env.vox_raw(
        "TransferMoneyToChildAccount", {"child_account_id": child_id, "amount": "1", "payment_reference": ref}, **kw
    )


def _applied(env: Env, ref: str) -> bool:
    return env.store.transfer_ops_by_reference(ref) == 1


def test_reset_drops_before_applying(both: Env) -> None:
    child = both.add_child()
    _faults(both, [{"method": "TransferMoneyToChildAccount", "kind": "reset", "count": 1}])
    with pytest.raises(httpx.RemoteProtocolError):
        _transfer(both, child["account_id"], "f-reset")
    assert not _applied(both, "f-reset")
    assert _transfer(both, child["account_id"], "f-reset").json()["result"] == 1  # count used up


def test_apply_then_drop(both: Env) -> None:
    child = both.add_child()
    _faults(both, [{"method": "TransferMoneyToChildAccount", "kind": "apply_then_drop", "count": 1}])
    with pytest.raises(httpx.RemoteProtocolError):
        _transfer(both, child["account_id"], "f-atd")
    assert _applied(both, "f-atd")


def test_apply_then_500(both: Env) -> None:
    child = both.add_child()
    _faults(both, [{"method": "TransferMoneyToChildAccount", "kind": "apply_then_500", "count": 1}])
    r = _transfer(both, child["account_id"], "f-at5")
    assert r.status_code == 500 and "text/html" in r.headers["content-type"]
    assert _applied(both, "f-at5")


@pytest.mark.parametrize(
    ("kind", "status", "ctype"),
    [
        ("http_500", 500, "text/html"),
        ("http_502", 502, "text/html"),
        ("http_429", 429, "text/html"),
        ("html", 200, "text/html"),
        ("empty", 200, "application/json"),
    ],
)
def test_not_applied_http_kinds(both: Env, kind: str, status: int, ctype: str) -> None:
    child = both.add_child()
    _faults(both, [{"method": "*", "kind": kind, "count": 1, "retry_after": 3}])
    r = _transfer(both, child["account_id"], f"f-{kind}")
    assert r.status_code == status and r.headers["content-type"].startswith(ctype)
    if kind == "empty":
        assert r.content == b""
    if kind == "http_429":
        assert r.headers["retry-after"] == "3"
    assert not _applied(both, f"f-{kind}")


def test_error_code_kind(both: Env) -> None:
    child = both.add_child()
    _faults(both, [{"method": "TransferMoneyToChildAccount", "kind": "error_code", "code": 484, "count": 2}])
    r = _transfer(both, child["account_id"], "f-err")
    assert r.status_code == 200 and r.json()["error"]["code"] == 484
    assert both.vox("GetAccountInfo")["result"]["account_id"] == both.account_id  # other methods untouched
    assert _transfer(both, child["account_id"], "f-err").json()["error"]["code"] == 484
    assert _transfer(both, child["account_id"], "f-err").json()["result"] == 1
    # VoiceIt flavour: envelope with responseCode.
    _faults(both, [{"method": "CreateManagedSubAccount", "kind": "error_code", "code": "ACLR"}])
    v = both.client.post("/subaccount/managed", auth=both.master)
    assert v.status_code == 429 and v.json()["responseCode"] == "ACLR"


def test_latency_and_read_timeout_then_applied(both: Env) -> None:
    child = both.add_child()
    _faults(both, [{"method": "TransferMoneyToChildAccount", "kind": "latency", "latency_ms": 150, "count": 1}])
    started = time.perf_counter()
    assert _transfer(both, child["account_id"], "f-lat").json()["result"] == 1
    assert time.perf_counter() - started >= 0.15
    # Applied, then the reply arrives after the client's read timeout.
    _faults(both, [{"method": "TransferMoneyToChildAccount", "kind": "apply_then_drop", "latency_ms": 600, "count": 1}])
    with pytest.raises(httpx.ReadTimeout):
        both.client.post(
            "/platform_api/TransferMoneyToChildAccount",
            data={"child_account_id": child["account_id"], "amount": "1", "payment_reference": "f-slow"},
            headers={"Authorization": f"Bearer {both.token()}"},
            timeout=httpx.Timeout(5, read=0.2),
        )
    assert _applied(both, "f-slow")


def test_rate_is_reproducible_from_seed(env: Env) -> None:
    def run() -> list[int]:
        _faults(env, [{"method": "GetAccountInfo", "kind": "http_500", "rate": 0.5}], seed=42)
        return [env.vox_raw("GetAccountInfo").status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second and 200 in first and 500 in first
    _faults(env, [{"method": "GetAccountInfo", "kind": "http_500", "rate": 0.5}], seed=43)
    assert [env.vox_raw("GetAccountInfo").status_code for _ in range(30)] != first
    state = env.admin("GET", "faults").json()
    assert state["seed"] == 43 and state["rules"][0]["fired"] > 0 and state["log"]


def test_faults_at_start_and_clear(tmp_path, template_db) -> None:
    from .conftest import _copy

    db, out = _copy(template_db, tmp_path / "x")
    token = (out / "sandbox_admin_token").read_text().strip()
    running = start_in_thread(
        str(db), admin_token=token, faults={"seed": 1, "rules": [{"method": "*", "kind": "http_502"}]}
    )
    try:
        assert httpx.get(f"{running.base_url}/platform_api/GetAccountInfo").status_code == 502
        assert httpx.get(f"{running.base_url}/_sandbox/health").status_code == 200  # admin never faulted
        r = httpx.delete(f"{running.base_url}/_sandbox/faults", headers={"X-Sandbox-Token": token})
        assert r.json()["rules"] == []
        assert httpx.get(f"{running.base_url}/platform_api/GetAccountInfo").json()["error"]["code"] == 100
    finally:
        running.shutdown()


def test_in_process_transport_with_constructor_faults(tmp_path, template_db) -> None:
    from .conftest import _copy

    db, _ = _copy(template_db, tmp_path / "y")
    app = SandboxApp(str(db), faults=[{"method": "GetAccountInfo", "kind": "reset"}])
    with httpx.Client(transport=SandboxTransport(app), base_url="http://sb") as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/platform_api/GetAccountInfo")
    app.close()


def test_admin_token_and_surface(both: Env) -> None:
    assert both.admin("GET", "health", token=None).json()["ok"] is True
    for method, path in [
        ("GET", "faults"),
        ("PUT", "faults"),
        ("DELETE", "faults"),
        ("GET", "options"),
        ("PUT", "options"),
        ("POST", "spend"),
        ("GET", "money"),
    ]:
        assert both.admin(method, path, {}, token=None).status_code == 403
        assert both.admin(method, path, {}, token="wrong").status_code == 403
    opts = both.admin("GET", "options").json()
    assert opts["duplicate_reply"] == "ok" and opts["strict_mode_default"] is True
    assert both.admin("PUT", "options", {"nope": 1}).status_code == 400
    assert both.admin("PUT", "options", {"duplicate_reply": "maybe"}).status_code == 400
    assert both.admin("PUT", "options", {"duplicate_reply": "error"}).json()["duplicate_reply"] == "error"
    assert both.admin("PUT", "faults", {"rules": [{"kind": "explode"}]}).status_code == 400
    assert both.admin("PUT", "faults", {"rules": [{"kind": "http_500", "rate": 2}]}).status_code == 400
    money = both.admin("GET", "money").json()
    assert money["conserved"] is True and money["invariants"] == []
    assert both.admin("GET", "nope").status_code == 404


def test_no_admin_token_means_admin_disabled(tmp_path) -> None:
    app = SandboxApp(str(tmp_path / "empty.sqlite3"))
    with httpx.Client(transport=SandboxTransport(app), base_url="http://sb") as client:
        assert client.get("/_sandbox/faults", headers={"X-Sandbox-Token": ""}).status_code == 403
        assert client.get("/_sandbox/health").json()["initialized"] is False
    app.close()
