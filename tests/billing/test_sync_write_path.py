"""The balance sync's write path per database: on PostgreSQL a COPY into a temporary table and
one set statement, elsewhere (and with BILLING_SYNC_WRITE = "portable") the comparison in
Python and executemany. Both give the same tenant rows, snapshots, import candidates, missing
flags, alerts, drift and counters; only changed rows are touched; money stays exact to four
places, NULL included.

Runs on SQLite by default (the portable path only); with DATABASE_URL pointing at PostgreSQL
it runs both paths, and the comparison test syncs the same provider accounts through each."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from billing import services, sync_write
from billing.models import BalanceSnapshot, DriftItem, LowBalanceAlert, SyncRun
from billing.sync import apply_chunk
from providers.base import AccountSnapshot
from tenants.models import Tenant, UnknownProviderAccount

pytestmark = pytest.mark.django_db(transaction=True)

on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="the set-based path is PostgreSQL's")

PATHS = [
    pytest.param("portable", id="portable"),
    pytest.param("auto", id="set-based", marks=on_postgres),
]


@pytest.fixture(autouse=True)
def _small_chunks(settings: Any) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 4


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, settings: Any) -> str:
    settings.BILLING_SYNC_WRITE = request.param
    assert sync_write.set_based() == (request.param == "auto" and connection.vendor == "postgresql")
    return str(request.param)


def seed(money: Any, n: int) -> list[int]:
    from sandbox.seed import seed_children

    info = seed_children(str(money.sandbox.db_path), n, seed=5)
    return list(range(info["first_account_id"], info["last_account_id"] + 1))


def charge(money: Any, account_id: int, amount: str) -> None:
    from sandbox import money as units
    from sandbox.store import CHARGE_TYPE, Store

    store = money.sandbox.store()
    try:
        with store.write() as conn:
            Store.add_transaction(
                conn,
                account_id=account_id,
                amount=-units.parse(amount),
                currency="USD",
                transaction_type=CHARGE_TYPE,
                ts=int(time.time()),
                description="test call",
            )
    finally:
        store.close()


def truth(money: Any, account_id: int) -> dict[str, Any]:
    store = money.sandbox.store()
    try:
        return dict(store.account(account_id))
    finally:
        store.close()


def run_sync(conn_obj: Any) -> SyncRun:
    run = services.sync_start(actor=None, connection=conn_obj)
    services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()
    assert run.state == "succeeded", run.error_message
    return run


def stamps(conn_obj: Any) -> dict[int, Any]:
    return dict(Tenant.objects.filter(connection=conn_obj).values_list("provider_account_id", "updated_at"))


def test_only_changed_rows_are_written_and_money_stays_exact(money, path: str) -> None:
    money.sandbox.admin("PUT", "options", {"children_require_filter": True})
    ids = seed(money, 10)
    tenants = {aid: money.tenant(account_id=aid, currency="") for aid in ids[:8]}
    gone = money.tenant(account_id=10**9, currency="")

    first = run_sync(money.connection)
    assert (first.pages, first.seen, first.changed, first.missing, first.new) == (3, 8, 8, 1, 0)
    usd = Decimal(0)
    for aid, tenant in tenants.items():
        tenant.refresh_from_db()
        provider = truth(money, aid)
        assert tenant.balance == provider["balance"] and tenant.currency == provider["currency"]
        assert (tenant.provider_active, tenant.provider_frozen) == (provider["active"], provider["frozen"])
        assert tenant.credit_limit == provider["credit_limit"]
        assert tenant.balance_synced_at is not None and not tenant.missing_at_provider
        if provider["currency"] == "USD":
            usd += provider["balance"]
    assert first.total_balance == usd  # summed exactly, no float on the way
    assert BalanceSnapshot.objects.count() == 8
    assert Tenant.objects.get(pk=gone.pk).missing_at_provider

    # Nothing changed at the provider: nothing is written, the missing flag stays.
    before = stamps(money.connection)
    same = run_sync(money.connection)
    assert (same.seen, same.changed, same.missing) == (8, 0, 1)
    assert stamps(money.connection) == before
    assert BalanceSnapshot.objects.count() == 8

    # Two calls charged, one of them the smallest amount there is: exactly those two rows.
    charge(money, ids[2], "0.0001")
    charge(money, ids[5], "1.2345")
    expected = {aid: truth(money, aid)["balance"] for aid in (ids[2], ids[5])}
    again = run_sync(money.connection)
    assert (again.seen, again.changed, again.missing) == (8, 2, 1)
    after = stamps(money.connection)
    assert {aid for aid in after if after[aid] != before[aid]} == {ids[2], ids[5]}
    for aid, balance in expected.items():
        assert Tenant.objects.get(pk=tenants[aid].pk).balance == balance
        latest = BalanceSnapshot.objects.filter(tenant=tenants[aid]).latest("taken_at")
        assert latest.balance == balance and latest.balance.as_tuple().exponent == -4
    assert BalanceSnapshot.objects.count() == 10


def test_a_balance_going_to_null_and_back(money, path: str) -> None:
    aid = money.child(balance="12.3456")
    tenant = money.tenant(account_id=aid, currency="")

    def read(balance: Decimal | None) -> Any:
        account = AccountSnapshot(aid, "n", "e", True, False, balance, "usd", Decimal("0.5"), None)
        return apply_chunk(money.connection, [aid], [account], run_id=None, token=None, job_id=None)

    assert read(Decimal("12.3456")).changed == 1
    tenant.refresh_from_db()
    assert (tenant.balance, tenant.currency, tenant.credit_limit) == (Decimal("12.3456"), "USD", Decimal("0.5"))
    assert read(None).changed == 1
    tenant.refresh_from_db()
    assert tenant.balance is None
    assert read(None).changed == 0  # NULL is NULL: nothing to write
    assert read(Decimal("12.3456")).changed == 1
    tenant.refresh_from_db()
    assert tenant.balance == Decimal("12.3456")
    # A snapshot per balance read, none for "no balance".
    assert list(BalanceSnapshot.objects.filter(tenant=tenant).order_by("id").values_list("balance", flat=True)) == [
        Decimal("12.3456"),
        Decimal("12.3456"),
    ]


def test_chunks_inside_one_longer_transaction_see_only_their_own_rows(money, path: str) -> None:
    # A chunk that commits alone leaves its rows to ON COMMIT DELETE ROWS; two chunks in one
    # transaction must not see each other's rows (the second would count and write the first's).
    from django.db import transaction

    first, second = money.child(balance="1.0000"), money.child(balance="2.0000")
    tenants = [money.tenant(account_id=aid, currency="") for aid in (first, second)]

    def account(aid: int, balance: str) -> AccountSnapshot:
        return AccountSnapshot(aid, "n", "e", True, False, Decimal(balance), "usd", None, None)

    both = [first, second]
    with transaction.atomic():
        one = apply_chunk(money.connection, [first], [account(first, "1.5")], run_id=None, token=None, job_id=None)
        accounts = [account(first, "1.5"), account(second, "2.5")]
        two = apply_chunk(money.connection, both, accounts, run_id=None, token=None, job_id=None)
    assert (one.seen, one.changed, two.seen, two.changed) == (1, 1, 2, 1)
    assert [Tenant.objects.get(pk=t.pk).balance for t in tenants] == [Decimal("1.5"), Decimal("2.5")]
    assert BalanceSnapshot.objects.count() == 2
    # And the next chunk on its own, after that commit, starts from an empty table too.
    three = apply_chunk(money.connection, [first], [account(first, "1.5")], run_id=None, token=None, job_id=None)
    assert (three.seen, three.changed) == (1, 0)


def test_unknown_accounts_are_upserted_and_left_alone_when_unchanged(money, path: str) -> None:
    money.sandbox.admin("PUT", "options", {"children_require_filter": False})
    ids = seed(money, 9)
    for aid in ids[:3]:
        money.tenant(account_id=aid, currency="")

    first = run_sync(money.connection)
    assert (first.seen, first.changed, first.new) == (3, 3, 6)
    unknown = {u.provider_account_id: u for u in UnknownProviderAccount.objects.all()}
    assert set(unknown) == set(ids[3:])
    for aid, row in unknown.items():
        provider = truth(money, aid)
        assert (row.balance, row.currency, row.active, row.frozen) == (
            provider["balance"],
            provider["currency"],
            provider["active"],
            provider["frozen"],
        )
    seen_at = {aid: row.last_seen_at for aid, row in unknown.items()}

    charge(money, ids[4], "0.0002")
    again = run_sync(money.connection)
    assert (again.new, again.changed) == (0, 0)
    now = dict(UnknownProviderAccount.objects.values_list("provider_account_id", "last_seen_at"))
    assert {aid for aid in now if now[aid] != seen_at[aid]} == {ids[4]}
    assert UnknownProviderAccount.objects.get(provider_account_id=ids[4]).balance == truth(money, ids[4])["balance"]


def dump(conn_obj: Any) -> dict[str, Any]:
    """Everything the sync wrote for a connection, keyed by provider account id."""
    tenants = {
        t.provider_account_id: (
            t.balance,
            t.currency,
            t.provider_active,
            t.provider_frozen,
            t.credit_limit,
            t.provider_threshold,
            t.is_low_balance,
            t.missing_at_provider,
            t.has_drift,
            t.balance_synced_at is not None,
        )
        for t in Tenant.objects.filter(connection=conn_obj)
    }
    aid_of = dict(Tenant.objects.filter(connection=conn_obj).values_list("pk", "provider_account_id"))
    return {
        "tenants": tenants,
        "snapshots": sorted(
            (aid_of[s.tenant_id], s.balance, s.currency) for s in BalanceSnapshot.objects.filter(tenant_id__in=aid_of)
        ),
        "alerts": sorted(
            (aid_of[a.tenant_id], a.balance, a.threshold, a.currency)
            for a in LowBalanceAlert.objects.filter(tenant_id__in=aid_of)
        ),
        "drift": sorted(
            (aid_of[d.tenant_id], d.kind, d.portal_amount, d.provider_amount, str(sorted(d.evidence.items())))
            for d in DriftItem.objects.filter(connection=conn_obj)
        ),
        "unknown": sorted(
            UnknownProviderAccount.objects.filter(connection=conn_obj).values_list(
                "provider_account_id", "account_name", "account_email", "balance", "currency", "active", "frozen"
            )
        ),
    }


def counters(run: SyncRun) -> tuple[Any, ...]:
    return (run.pages, run.seen, run.changed, run.new, run.missing, run.total_count, run.total_balance)


@on_postgres
def test_both_paths_write_the_same_rows(money, settings: Any) -> None:
    """Two connections to one provider, each with tenants on the same accounts: one synced
    through the portable path, one through COPY and the set statement, step by step."""
    from tests.factories import ProviderConnectionFactory

    money.sandbox.admin("PUT", "options", {"children_require_filter": False})
    ids = seed(money, 14)
    twin = ProviderConnectionFactory(
        name="Voximplant (same provider)",
        kind="voximplant",
        base_url=money.connection.base_url,
        credentials_path=money.connection.credentials_path,
        parent_api_key_path=money.connection.parent_api_key_path,
        parent_account_id=money.connection.parent_account_id,
        currency="USD",
    )
    frozen_here = ids[1]
    money.client.set_low_balance_threshold(ids[2], Decimal("7.5"))
    for conn_obj, tag in ((money.connection, "a"), (twin, "b")):
        for aid in ids[:10]:
            money.tenant(
                account_id=aid,
                connection=conn_obj,
                currency="",
                account_name=f"{tag}{aid}",
                account_email=f"{tag}{aid}@tenants.example",
                status="frozen" if aid == frozen_here else "active",
                low_balance_threshold={ids[0]: Decimal("1000000"), ids[2]: Decimal("5")}.get(aid),
            )
        money.tenant(
            account_id=10**9,
            connection=conn_obj,
            currency="",
            account_name=f"{tag}x",
            account_email=f"{tag}x@e.example",
        )

    def both() -> tuple[SyncRun, SyncRun]:
        settings.BILLING_SYNC_WRITE = "portable"
        portable = run_sync(money.connection)
        settings.BILLING_SYNC_WRITE = "auto"
        set_based = run_sync(twin)
        assert dump(money.connection) == dump(twin)
        assert counters(portable) == counters(set_based)
        assert portable.error_message == set_based.error_message
        return portable, set_based

    first, _ = both()
    assert (first.seen, first.changed, first.missing, first.new) == (10, 10, 1, 4)
    assert dump(twin)["alerts"] and dump(twin)["drift"]

    charge(money, ids[3], "0.0001")
    charge(money, ids[12], "0.25")
    Tenant.objects.filter(provider_account_id=10**9).update(provider_account_id=ids[13])
    before = (stamps(money.connection), stamps(twin))
    second, _ = both()
    assert (second.changed, second.missing) == (2, 0)  # the charged tenant and the one back from missing
    for conn_obj, old in zip((money.connection, twin), before, strict=True):
        now = stamps(conn_obj)
        assert {aid for aid in now if now[aid] != old[aid]} == {ids[3], ids[13]}
