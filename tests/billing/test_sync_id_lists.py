"""The balance sync reads the portal's tenants by id lists, under both readings of
GetChildrenAccounts (a filter required, or the listing of every child allowed) and both
ways the provider may match names: tenants read chunk by chunk, missing ones flagged,
discovery only where the provider lists everything, the provider's threshold stored, and
threshold and status drift recorded once and resolved with an audit row."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from billing import services
from billing.models import BalanceSnapshot, DriftItem, SyncRun
from portal.errors import PortalError
from portal.models import AuditEvent
from tenants.models import Tenant, UnknownProviderAccount
from tests.billing.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CHILDREN = "GetChildrenAccounts"
READINGS = [
    pytest.param(True, "substring", id="filter-required-substring"),
    pytest.param(True, "exact", id="filter-required-exact"),
    pytest.param(False, "substring", id="listing-allowed-substring"),
    pytest.param(False, "exact", id="listing-allowed-exact"),
]


@pytest.fixture(autouse=True)
def _small_chunks(settings: Any) -> None:
    settings.BILLING_SYNC_PAGE_SIZE = 4


def provider_reads(money: Any, require_filter: bool, match: str) -> None:
    money.sandbox.admin("PUT", "options", {"children_require_filter": require_filter, "children_filter_match": match})


def seed(money: Any, n: int) -> list[int]:
    from sandbox.seed import seed_children

    info = seed_children(str(money.sandbox.db_path), n, seed=11)
    return list(range(info["first_account_id"], info["last_account_id"] + 1))


def run_sync(money: Any) -> SyncRun:
    run = services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()
    return run


def store_update(money: Any, sql: str, args: tuple[Any, ...]) -> None:
    from sandbox.store import Store

    store = money.sandbox.store()
    try:
        with store.write() as conn:
            conn.execute(sql, args)
            Store.bump_accounts_version(conn)
    finally:
        store.close()


@pytest.mark.parametrize(("require_filter", "match"), READINGS)
def test_tenants_are_read_by_id_lists_under_both_readings(money, require_filter: bool, match: str) -> None:
    provider_reads(money, require_filter, match)
    ids = seed(money, 12)
    tenants = {aid: money.tenant(account_id=aid, currency="") for aid in ids[:9]}
    gone = money.tenant(account_id=10**9, currency="")
    money.client.set_low_balance_threshold(ids[0], Decimal("7.5"))

    run = run_sync(money)

    assert run.state == "succeeded", run.error_message
    # 10 tenants in chunks of 4: three GetChildrenAccounts calls with child_account_id lists.
    assert (run.total_count, run.pages, run.seen, run.missing) == (10, 3, 9, 1)
    store = money.sandbox.store()
    try:
        for aid, tenant in tenants.items():
            tenant.refresh_from_db()
            assert tenant.balance == store.account(aid)["balance"]
            assert not tenant.missing_at_provider
    finally:
        store.close()
    assert Tenant.objects.get(pk=tenants[ids[0]].pk).provider_threshold == Decimal("7.5")
    assert Tenant.objects.get(pk=gone.pk).missing_at_provider
    assert BalanceSnapshot.objects.count() == 9
    unknown = set(UnknownProviderAccount.objects.values_list("provider_account_id", flat=True))
    if require_filter:
        # Discovery needs the listing of every child: the run says why it skipped it.
        assert unknown == set() and run.new == 0
        assert "only lists accounts by id, name or email" in run.error_message
    else:
        assert unknown == set(ids[9:]) and run.new == 3
        assert "only lists" not in run.error_message

    # A repeat writes nothing new; the missing tenant stays flagged, counted again.
    again = run_sync(money)
    assert (again.seen, again.changed, again.new, again.missing) == (9, 0, 0, 1)
    assert BalanceSnapshot.objects.count() == 9


@pytest.mark.parametrize("require_filter", [True, False], ids=["filter-required", "listing-allowed"])
def test_children_removed_and_tenants_added_during_the_run(money, settings, require_filter: bool) -> None:
    provider_reads(money, require_filter, "substring")
    settings.BILLING_SYNC_PAGE_SIZE = 3
    settings.BILLING_SYNC_CONCURRENCY = 1  # the removed child must be far ahead of the reads
    ids = seed(money, 12)
    for aid in ids[:9]:
        money.tenant(account_id=aid, currency="")
    money.sandbox.set_faults([{"method": CHILDREN, "kind": "latency", "latency_ms": 250}])
    run = services.sync_start(actor=None, connection=money.connection)
    thread = threading.Thread(
        target=lambda: (services.sync_execute(sync_run_id=run.pk), __import__("django.db").db.connection.close())
    )
    thread.start()
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).pages >= 1, 30, "the first chunk")
    # A child far ahead of the reader disappears at the provider; a tenant is adopted for a
    # child above every id read so far.
    store_update(money, "DELETE FROM accounts WHERE account_id = ?", (ids[8],))
    late = money.tenant(account_id=ids[10], currency="")
    thread.join(60)
    run.refresh_from_db()
    money.sandbox.clear_faults()

    assert run.state == "succeeded", run.error_message
    assert Tenant.objects.get(provider_account_id=ids[8]).missing_at_provider
    late.refresh_from_db()
    assert late.balance_synced_at is not None and not late.missing_at_provider
    assert run.seen == 9 and run.missing == 1
    assert set(Tenant.objects.filter(missing_at_provider=True).values_list("provider_account_id", flat=True)) == {
        ids[8]
    }


@pytest.mark.parametrize("require_filter", [True, False], ids=["filter-required", "listing-allowed"])
def test_threshold_and_status_drift_is_recorded_once_and_resolved_with_audit(
    money, client, reseller_admin, require_filter: bool
) -> None:
    provider_reads(money, require_filter, "exact")
    ids = seed(money, 4)
    wants_ten = money.tenant(account_id=ids[0], currency="", low_balance_threshold=Decimal("10"))
    disabled = money.tenant(account_id=ids[1], currency="")
    frozen_here = money.tenant(account_id=ids[2], currency="", status=Tenant.Status.FROZEN)
    calm = money.tenant(account_id=ids[3], currency="", low_balance_threshold=Decimal("3"))
    money.client.set_low_balance_threshold(ids[0], Decimal("2"))
    money.client.set_low_balance_threshold(ids[3], Decimal("3"))
    money.client.freeze_account(ids[1])  # disabled at the provider, active in the portal
    store_update(money, "UPDATE accounts SET active = 1, frozen = 0 WHERE account_id = ?", (ids[2],))

    run_sync(money)
    run_sync(money)  # nightly again: nothing recorded twice

    items = {(d.tenant_id, d.kind): d for d in DriftItem.objects.all()}
    assert set(items) == {
        (wants_ten.pk, DriftItem.Kind.THRESHOLD_MISMATCH),
        (disabled.pk, DriftItem.Kind.STATUS_MISMATCH),
        (frozen_here.pk, DriftItem.Kind.STATUS_MISMATCH),
    }
    threshold = items[(wants_ten.pk, DriftItem.Kind.THRESHOLD_MISMATCH)]
    assert threshold.evidence == {"portal_threshold": "10.0000", "provider_threshold": "2.0000"}
    assert items[(disabled.pk, DriftItem.Kind.STATUS_MISMATCH)].evidence["provider_active"] is False
    assert set(Tenant.objects.filter(has_drift=True).values_list("pk", flat=True)) == {
        wants_ten.pk,
        disabled.pk,
        frozen_here.pk,
    }
    assert not Tenant.objects.get(pk=calm.pk).has_drift

    # The drift page says what differs in words, and offers only the resolutions that apply.
    client.force_login(reseller_admin)
    page = client.get(reverse("billing:drift")).content.decode()
    assert threshold.currency == "USD"
    assert "the portal wants 10.00 USD, the provider warns below 2.00 USD" in page
    assert "the provider reports the account disabled" in page
    assert "the provider reports the account enabled and not frozen" in page
    assert "Portal set to the provider&#x27;s value" in page or "Portal set to the provider's value" in page

    # The portal takes the provider's threshold.
    services.drift_resolve(actor=reseller_admin, item=threshold, resolution="portal_updated", note="provider wins")
    assert Tenant.objects.get(pk=wants_ten.pk).low_balance_threshold == Decimal("2")
    assert not Tenant.objects.get(pk=wants_ten.pk).has_drift
    # The portal takes the provider's status: the disabled tenant becomes frozen.
    status = items[(disabled.pk, DriftItem.Kind.STATUS_MISMATCH)]
    services.drift_resolve(actor=reseller_admin, item=status, resolution="portal_updated", note="disabled there")
    assert Tenant.objects.get(pk=disabled.pk).status == Tenant.Status.FROZEN
    # A frozen portal tenant cannot be re-frozen at the provider from here; it is refused,
    # nothing changes, and acknowledging it works.
    other = items[(frozen_here.pk, DriftItem.Kind.STATUS_MISMATCH)]
    with pytest.raises(PortalError, match="freeze"):
        services.drift_resolve(actor=reseller_admin, item=other, resolution="provider_updated", note="push")
    other.refresh_from_db()
    assert other.resolved_at is None
    with pytest.raises(PortalError, match="does not apply"):
        services.drift_resolve(actor=reseller_admin, item=other, resolution="ledger_adjusted", note="money?")
    services.drift_resolve(actor=reseller_admin, item=other, resolution="acknowledged", note="known")
    assert not Tenant.objects.filter(has_drift=True).exists()
    audited = list(AuditEvent.objects.filter(action="billing.drift.resolved").values_list("data", flat=True))
    assert sorted(d["resolution"] for d in audited) == ["acknowledged", "portal_updated", "portal_updated"]
    assert all(d["evidence"] for d in audited)

    # The next night finds the resolved findings again with the same values: still one each.
    run_sync(money)
    assert DriftItem.objects.count() == 3


def test_an_open_threshold_operation_is_not_drift(money) -> None:
    from tenants.models import TenantOperation

    ids = seed(money, 1)
    tenant = money.tenant(account_id=ids[0], currency="", low_balance_threshold=Decimal("10"))
    money.client.set_low_balance_threshold(ids[0], Decimal("2"))
    TenantOperation.objects.create(tenant=tenant, kind=TenantOperation.Kind.SET_THRESHOLD, state="pending")
    run_sync(money)
    assert not DriftItem.objects.exists() and not Tenant.objects.get(pk=tenant.pk).has_drift
