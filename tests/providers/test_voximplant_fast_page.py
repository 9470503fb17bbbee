"""The sync's reads decode a GetChildrenAccounts page straight into snapshots (a typed decode
that skips the fields a snapshot has no use for) and leave anything unusual to the general
parser. Either way a page gives the same snapshots, and an error or a malformed answer the
same error."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from providers.base import AccountSnapshot
from providers.errors import ProviderError
from providers.voximplant import ServiceAccountCredentials, VoximplantClient
from providers.voximplant import children as children_module

from .conftest import SandboxEnv


def _general_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(children_module, "_fast_page", lambda content: None)


def test_sandbox_pages_take_the_typed_decode_and_match_the_general_parser(
    env: SandboxEnv, vox: VoximplantClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.seed import seed_children

    info = seed_children(str(env.db_path), 40, seed=3)
    ids = list(range(info["first_account_id"], info["last_account_id"] + 1))
    taken: list[bool] = []
    real = children_module._fast_page

    def spy(content: bytes) -> Any:
        page = real(content)
        taken.append(page is not None)
        return page

    monkeypatch.setattr(children_module, "_fast_page", spy)
    fast = vox.get_accounts(ids)
    assert taken == [True]
    _general_only(monkeypatch)
    general = vox.get_accounts(ids)
    assert fast == general and len(fast) == 40
    assert all(type(a) is AccountSnapshot and isinstance(a.balance, Decimal) for a in fast)
    assert {type(a.account_id) for a in fast} == {int}


ROW = {"account_id": 7, "account_name": "n", "account_email": "e@x", "active": True, "frozen": False}

BODIES = [
    pytest.param({"result": [{**ROW, "balance": 12.3456, "credit_limit": 0, "currency": "USD"}]}, id="common"),
    pytest.param({"result": [{**ROW, "balance": "12.50", "min_balance_to_notify": "3"}]}, id="amounts-as-strings"),
    pytest.param({"result": [{**ROW, "active": "1", "frozen": 0}]}, id="flags-as-text-and-numbers"),
    pytest.param({"result": [{**ROW, "account_id": "7"}]}, id="id-as-text"),
    pytest.param({"result": [{**ROW, "balance": "NaN"}]}, id="amount-not-finite"),
    pytest.param({"result": [{**ROW, "balance": "Infinity"}]}, id="amount-infinite"),
    pytest.param({"result": [{**ROW, "balance": "twelve"}]}, id="amount-not-a-number"),
    pytest.param({"result": [{**ROW, "balance": True}]}, id="amount-a-boolean"),
    pytest.param({"result": [{"account_name": "no id"}]}, id="row-without-id"),
    pytest.param({"result": [ROW], "total_count": True}, id="count-a-boolean"),
    pytest.param({"result": [ROW], "error": {"code": 100, "msg": "Authorization failed"}}, id="error-beside-result"),
    pytest.param({"error": {"code": 185, "msg": "Too many requests"}}, id="error"),
    pytest.param({"result": "nope"}, id="result-not-a-list"),
    pytest.param({"count": 0}, id="no-result"),
    pytest.param({"result": [{**ROW, "account_name": 5, "currency": None}]}, id="odd-name"),
]


@pytest.mark.parametrize("body", BODIES)
def test_an_unusual_page_reads_as_the_general_parser_reads_it(
    body: dict[str, Any], rsa_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = ServiceAccountCredentials.from_mapping({"account_id": 1, "key_id": "k", "private_key": rsa_pem})
    client = VoximplantClient(
        credentials=creds,
        base_url="http://stub",
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=body)),
    )

    def read() -> Any:
        try:
            return client.get_children_snapshots(count=1, child_account_id=[7])
        except ProviderError as exc:
            return (type(exc), str(exc))

    fast = read()
    _general_only(monkeypatch)
    assert fast == read()


def test_amounts_are_read_exactly_never_through_a_float() -> None:
    body = b'{"result": [{"account_id": 7, "balance": 0.1, "credit_limit": 12345678901234.5678, "currency": "USD"}]}'
    page = children_module._fast_page(body)
    assert page is not None
    (account,) = page.accounts
    assert account.balance == Decimal("0.1") and str(account.credit_limit) == "12345678901234.5678"
    assert page.total_count == 1
