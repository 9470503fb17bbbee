"""The CLI through real subprocesses: init, seed, spend, serve."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sandbox.store import Store

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=120
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_init_seed_spend_conserve(tmp_path: Path) -> None:
    db, out = tmp_path / "s.sqlite3", tmp_path / "creds"
    first = json.loads(run("init", "--db", str(db), "--out", str(out), "--balance", "2500.5").stdout)
    assert first["created"] is True
    creds = json.loads((out / "credentials.json").read_text())
    assert set(creds) == {"account_id", "key_id", "private_key", "account_email"}
    assert creds["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert set(json.loads((out / "voiceit.json").read_text())) == {"api_key", "api_token"}
    assert (out / "parent_api_key").read_text().strip() and (out / "sandbox_admin_token").read_text().strip()

    seeded = json.loads(run("seed", "--db", str(db), "--children", "500").stdout)
    assert seeded["children_added"] == 500
    store = Store(str(db))
    try:
        assert store.children_count() == 500
        totals = store.money_totals()
        assert totals["conserved"]
        children = [store.account(i) for i in range(seeded["first_account_id"], seeded["last_account_id"] + 1)]
        assert len({c["currency"] for c in children}) > 1
        assert {c["active"] for c in children} == {True, False}
        assert any(c["balance"] < 0 for c in children) and any(c["balance"] == 0 for c in children)
        before = store.total_money()

        # Running init again keeps the data and re-writes the same credentials.
        again = json.loads(run("init", "--db", str(db), "--out", str(tmp_path / "creds2")).stdout)
        assert again["created"] is False and again["account_id"] == first["account_id"]
        assert json.loads((tmp_path / "creds2" / "credentials.json").read_text()) == creds
        assert store.children_count() == 500

        spent = json.loads(run("spend", "--db", str(db), "--children", "200", "--max", "3.75", "--seed", "5").stdout)
        assert spent["charged"] > 0
        assert store.total_money() == before
        assert store.money_totals()["conserved"] and store.check_invariants() == []
        assert len(store.transactions(transaction_type="resource_charge")) == spent["charged"]
    finally:
        store.close()


def test_seed_without_init_fails_clearly(tmp_path: Path) -> None:
    proc = run("seed", "--db", str(tmp_path / "none.sqlite3"), "--children", "3", check=False)
    assert proc.returncode == 2 and "init" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_env_fallbacks(tmp_path: Path) -> None:
    db, out = tmp_path / "s.sqlite3", tmp_path / "creds"
    run("init", "--db", str(db), "--out", str(out))
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SANDBOX_DB": str(db),
        "SANDBOX_ADMIN_TOKEN": "tok-from-env",
        "SANDBOX_FAULTS": json.dumps({"seed": 3, "rules": [{"method": "GetCurrencyRate", "kind": "http_502"}]}),
        "SANDBOX_OPTIONS": json.dumps({"duplicate_reply": "error"}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--port", str(port), "--spend-rate", "50"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/_sandbox/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        headers = {"X-Sandbox-Token": "tok-from-env"}
        assert httpx.get(f"{base}/_sandbox/options", headers=headers).json()["duplicate_reply"] == "error"
        assert httpx.get(f"{base}/_sandbox/faults", headers=headers).json()["rules"][0]["kind"] == "http_502"
        assert httpx.post(f"{base}/platform_api/GetCurrencyRate").status_code == 502
        api_key = (out / "parent_api_key").read_text().strip()
        account_id = json.loads((out / "credentials.json").read_text())["account_id"]
        info = httpx.get(f"{base}/platform_api/GetAccountInfo", params={"account_id": account_id, "api_key": api_key})
        assert info.json()["result"]["account_id"] == account_id
    finally:
        proc.terminate()
        proc.wait(timeout=10)
