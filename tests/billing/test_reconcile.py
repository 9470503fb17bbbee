"""Nightly reconciliation: portal transfers against the provider's history (every succeeded
transfer appears there once, with its amount), drift with evidence, audited resolution; a
day with more than 10,000 history rows."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import ledger, services
from billing.models import DriftItem, JournalEntry, SyncRun, Transfer
from portal.audit import audit_events
from portal.errors import Conflict
from tenants.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)


def reconcile(money) -> SyncRun:
    run = services.reconcile_start(actor=None, connection=money.connection)
    services.reconcile_execute(sync_run_id=run.pk, now=timezone.now() + timedelta(minutes=5))
    run.refresh_from_db()
    return run


def move(money, actor, tenant, amount: str, direction: str = "to_tenant") -> Transfer:
    t = services.transfer_create(
        actor=actor, tenant=tenant, amount=Decimal(amount), direction=direction, reason="reconcile test"
    )
    t = services.transfer_execute(transfer_id=t.pk)
    assert t.state == "succeeded"
    return t


def test_every_transfer_matches_one_provider_row(money, reseller_billing) -> None:
    a, b = money.tenant(balance="20"), money.tenant()
    moved = [
        move(money, reseller_billing, a, "5"),
        move(money, reseller_billing, b, "7.25"),
        move(money, reseller_billing, a, "3", "to_parent"),
    ]
    run = reconcile(money)
    assert run.state == "succeeded", run.error_message
    assert run.seen == 3 and run.new == 0
    assert not DriftItem.objects.exists()
    assert all(Transfer.objects.get(pk=t.pk).reconciled_at for t in moved)
    assert not Tenant.objects.filter(has_drift=True).exists()


def test_mismatches_become_drift_with_evidence_and_are_resolved_with_an_audit_trail(money, reseller_billing) -> None:
    a, b, c = money.tenant(), money.tenant(), money.tenant()
    # 1. A transfer made outside the portal (the provider's console).
    money.client.transfer_money(
        account_id=a.provider_account_id,
        amount=Decimal("4"),
        payment_reference="manual-1",
        check_duplicate_reference_from=timezone.now() - timedelta(days=2),
    )
    # 2. A transfer whose amount the provider shows differently.
    odd = move(money, reseller_billing, b, "6")
    store = money.sandbox.store()
    try:
        with store.write() as conn:
            conn.execute(
                "UPDATE transactions SET amount = 50000 WHERE payment_reference = ? AND account_id = ?",
                (odd.payment_reference, b.provider_account_id),
            )
    finally:
        store.close()
    # 3. A transfer the portal counts as succeeded that the provider never saw.
    ghost = services.transfer_create(
        actor=reseller_billing, tenant=c, amount=Decimal("2"), direction="to_tenant", reason="never sent"
    )
    Transfer.objects.filter(pk=ghost.pk).update(state="succeeded", completed_at=timezone.now())
    run = reconcile(money)
    assert run.state == "succeeded", run.error_message
    kinds = {d.tenant_id: d for d in DriftItem.objects.all()}
    assert kinds[a.pk].kind == "missing_in_portal" and kinds[a.pk].provider_amount == Decimal("4")
    assert kinds[a.pk].evidence["payment_reference"] == "manual-1"
    assert kinds[b.pk].kind == "amount_mismatch" and kinds[b.pk].provider_amount == Decimal("5")
    assert kinds[c.pk].kind == "missing_at_provider" and kinds[c.pk].transfer_id == ghost.pk
    assert set(Tenant.objects.filter(has_drift=True).values_list("pk", flat=True)) == {a.pk, b.pk, c.pk}
    # The next night finds the same drift, and records nothing new.
    assert reconcile(money).new == 0
    assert DriftItem.objects.count() == 3

    services.drift_resolve(
        actor=reseller_billing, item=kinds[a.pk], resolution="ledger_adjusted", note="console transfer by the owner"
    )
    services.drift_resolve(
        actor=reseller_billing, item=kinds[b.pk], resolution="acknowledged", note="provider rounding, agreed"
    )
    with pytest.raises(Conflict):
        services.drift_resolve(actor=reseller_billing, item=kinds[b.pk], resolution="acknowledged", note="again")
    entry = JournalEntry.objects.get(kind="drift")
    assert ledger.balance(account="tenant", tenant_id=a.pk) == Decimal("4")
    assert entry.lines.count() == 2
    assert set(Tenant.objects.filter(has_drift=True).values_list("pk", flat=True)) == {c.pk}
    resolved = [e.data for e in audit_events(action_prefix="billing.drift.resolved")]
    assert {d["resolution"] for d in resolved} == {"ledger_adjusted", "acknowledged"}
    assert ledger.total() == 0


def test_two_reconciliations_never_run_at_once(money) -> None:
    services.reconcile_start(actor=None, connection=money.connection)
    with pytest.raises(Conflict):
        services.reconcile_start(actor=None, connection=money.connection)


@pytest.mark.slow
def test_a_day_with_more_than_10000_history_rows_misses_nothing(money, reseller_billing) -> None:
    from sandbox.store import Store

    tenant = money.tenant()
    now = timezone.now()
    n = 10_050
    refs = [f"rp-{uuid.uuid4()}" for _ in range(n)]
    Transfer.objects.bulk_create(
        [
            Transfer(
                tenant=tenant,
                connection=money.connection,
                child_account_id=tenant.provider_account_id,
                direction="to_tenant",
                amount=Decimal("0.01"),
                currency="USD",
                reason="bulk history",
                payment_reference=ref,
                dup_check_from=now - timedelta(days=2),
                state="succeeded",
                completed_at=now - timedelta(hours=2),
                created_at=now - timedelta(hours=2),
            )
            for ref in refs
        ],
        batch_size=2000,
    )
    ts = int((now - timedelta(hours=2)).timestamp())
    store = money.sandbox.store()
    try:
        with store.write() as conn:
            # Child-side rows, all within one hour (the parent's side is not what is walked).
            conn.executemany(
                "INSERT INTO transactions(account_id, performed_ts, amount, currency, transaction_type, "
                "description, payment_reference) VALUES (?, ?, 100, 'USD', 'money_acceptance_from_parent', "
                "'test', ?)",
                [(tenant.provider_account_id, ts + (i % 3600), ref) for i, ref in enumerate(refs)],
            )
            conn.execute(
                "UPDATE accounts SET balance = balance + ? WHERE account_id = ?", (100 * n, tenant.provider_account_id)
            )
            Store.bump_accounts_version(conn)
    finally:
        store.close()
    started = time.monotonic()
    run = reconcile(money)
    assert run.state == "succeeded", run.error_message
    assert run.seen == n
    assert run.new == 0, list(DriftItem.objects.values_list("kind", "payment_reference")[:5])
    assert Transfer.objects.filter(reconciled_at__isnull=True).count() == 0
    assert time.monotonic() - started < 60
