"""Hypothesis: random transfers, duplicate deliveries, lost replies and spends keep money conserved
and never apply one payment_reference twice."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.app import SandboxApp
from sandbox.transport import SandboxTransport

from .conftest import Env

_counter = itertools.count()


@pytest.fixture(scope="module")
def shared(template_db: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    dest = tmp_path_factory.mktemp("prop")
    shutil.copy(template_db[0], dest / "db.sqlite3")
    shutil.copytree(template_db[1], dest / "out")
    app = SandboxApp(str(dest / "db.sqlite3"))
    client = httpx.Client(transport=SandboxTransport(app), base_url="http://sb", timeout=10)
    env = Env(dest / "db.sqlite3", dest / "out", client, app)
    env.children = [env.add_child()["account_id"] for _ in range(3)]  # type: ignore[attr-defined]
    for child in env.children:  # type: ignore[attr-defined]
        env.transfer(child, "50")
    try:
        yield env
    finally:
        client.close()
        app.close()
        env.store.close()


transfer = st.tuples(
    st.just("transfer"),
    st.integers(0, 2),
    st.integers(-6000, 6000).filter(lambda c: abs(c) >= 1),
    st.booleans(),
    st.booleans(),
)
duplicate = st.tuples(st.just("dup"), st.integers(0, 50))
spend = st.tuples(st.just("spend"), st.integers(1, 3))
ops = st.lists(st.one_of(transfer, transfer, duplicate, spend), min_size=1, max_size=12)


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_random_operations_keep_invariants(shared: Env, ops: list[tuple]) -> None:
    env = shared
    total_before = env.store.total_money()
    since = (datetime.now(UTC) - timedelta(hours=48)).strftime("%Y-%m-%d %H:%M:%S")
    sent: list[dict] = []
    refs: list[str] = []
    for op in ops:
        if op[0] == "transfer":
            _, child, cents, strict, lose_reply = op
            ref = f"prop-{next(_counter)}"
            params = {
                "child_account_id": env.children[child],  # type: ignore[attr-defined]
                "amount": f"{cents / 100:.2f}",
                "strict_mode": "true" if strict else "false",
                "payment_reference": ref,
                "check_duplicate_reference_from": since,
            }
            sent.append(params)
            refs.append(ref)
            if lose_reply:
                env.app.faults.set(
                    {"rules": [{"method": "TransferMoneyToChildAccount", "kind": "apply_then_drop", "count": 1}]}
                )
                with pytest.raises(httpx.RemoteProtocolError):
                    env.vox_raw("TransferMoneyToChildAccount", params)
                env.app.faults.clear()
            else:
                body = env.vox("TransferMoneyToChildAccount", params)
                assert body.get("result") == 1 or body["error"]["code"] == 127
        elif op[0] == "dup" and sent:
            params = sent[op[1] % len(sent)]
            applied_before = env.store.transfer_ops_by_reference(params["payment_reference"])
            body = env.vox("TransferMoneyToChildAccount", params)
            if applied_before:
                assert body.get("result") == 1  # the skipped duplicate's reply (option duplicate_reply=ok)
        elif op[0] == "spend":
            env.admin("POST", "spend", {"children": op[1], "max_amount": "5", "seed": next(_counter)})
    for ref in refs:
        assert env.store.transfer_ops_by_reference(ref) <= 1, ref
    assert env.store.total_money() == total_before
    assert env.store.check_invariants() == []
    parent = env.store.account(env.account_id)
    assert parent["balance"] >= 0
