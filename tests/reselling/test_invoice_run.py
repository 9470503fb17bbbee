"""The monthly invoice run: one invoice per tenant and period, lines from the charges, tax and
rounding, due dates, gap-free numbers, idempotent and resumable."""

from __future__ import annotations

import re
import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from reselling.invoices import (
    invoice_run_execute,
    invoice_run_start,
    invoice_runs_sweep,
    parse_period,
    reseller_profile,
)
from reselling.models import Invoice, InvoiceLine, InvoiceRun
from tests.factories import TenantFactory
from tests.reselling.invoicing import PERIOD, charge, invoice_of, plan, run

pytestmark = pytest.mark.django_db


def test_one_invoice_per_tenant_with_its_charges_tax_rounding_and_due_date():
    profile = reseller_profile()
    profile.tax_rate_percent = Decimal("12.5")
    profile.rounding = {"KZT": 0}
    profile.save()
    terms = plan(payment_terms_days=30)
    usd, kzt, idle = TenantFactory(), TenantFactory(currency="KZT"), TenantFactory()
    charge(usd, "10.005", plan=terms, description="Calls")
    charge(usd, "5.5", plan=terms, kind="monthly_fee", description="Monthly fee")
    charge(kzt, "1000.6", currency="KZT")
    charge(idle, "1", period=date(2026, 2, 1))  # another month

    done = run()

    assert done.state == "succeeded" and done.invoices_issued == 2
    invoice = invoice_of(usd)
    assert [(line.description, line.amount) for line in invoice.lines.all()] == [
        ("Calls", Decimal("10.01")),
        ("Monthly fee", Decimal("5.50")),
    ]
    assert invoice.subtotal == Decimal("15.51") and invoice.tax == Decimal("1.94")
    assert invoice.total == Decimal("17.45")
    assert invoice.due_on == timezone.localdate() + timedelta(days=30)
    assert invoice.seller["company_name"] == profile.company_name
    tenge = invoice_of(kzt)
    assert tenge.subtotal == Decimal("1001") and tenge.tax == Decimal("125") and tenge.total == Decimal("1126")
    assert tenge.due_on == timezone.localdate() + timedelta(days=14)  # no plan: the default terms
    assert not Invoice.objects.filter(tenant=idle).exists()


def test_numbers_follow_each_other_without_gap_and_the_year_prefix():
    tenants = [TenantFactory() for _ in range(5)]
    for tenant in tenants:
        charge(tenant, "3")
    run(batch_size=2)
    numbers = list(Invoice.objects.order_by("sequence").values_list("number", flat=True))
    year = timezone.localdate().year
    assert numbers == [f"{year}-{n:06d}" for n in range(1, 6)]
    assert all(re.fullmatch(r"\d{4}-\d{6}", n) for n in numbers)


def test_running_twice_issues_one_invoice_and_late_charges_wait():
    tenant = TenantFactory()
    charge(tenant, "4")
    first = run()
    again = invoice_run_start(actor=None, period=PERIOD, enqueue=False)
    assert again.pk == first.pk and again.state == "succeeded"
    charge(tenant, "9")  # arrives after the tenant was invoiced
    InvoiceRun.objects.filter(pk=first.pk).update(state="running", last_tenant_id=0)
    invoice_run_execute(run_id=first.pk)
    assert Invoice.objects.filter(tenant=tenant).count() == 1
    assert InvoiceLine.objects.count() == 1


def test_a_killed_run_resumes_after_its_last_committed_batch():
    tenants = [TenantFactory() for _ in range(4)]
    for tenant in tenants:
        charge(tenant, "2")
    started = invoice_run_start(actor=None, period=PERIOD, enqueue=False)
    # The worker dies after its first batch: the position is committed with the batch.
    from reselling import invoices

    original = invoices._issue
    calls = {"n": 0}

    def dies_on_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return original(*args, **kwargs)

    invoices._issue = dies_on_second_batch
    try:
        with pytest.raises(RuntimeError):
            invoice_run_execute(run_id=started.pk, batch_size=2)
    finally:
        invoices._issue = original
    stopped = InvoiceRun.objects.get(pk=started.pk)
    assert stopped.state == "failed" and stopped.invoices_issued == 2
    assert stopped.last_tenant_id == sorted(t.pk for t in tenants)[1]
    assert "worker killed" in stopped.last_error
    resumed = invoice_run_start(actor=None, period=PERIOD, enqueue=False)
    finished = invoice_run_execute(run_id=resumed.pk, batch_size=2)
    assert finished.state == "succeeded" and finished.invoices_issued == 4
    assert sorted(Invoice.objects.values_list("sequence", flat=True)) == [1, 2, 3, 4]


def test_the_sweeper_picks_up_a_run_whose_lease_expired(monkeypatch):
    tenant = TenantFactory()
    charge(tenant, "2")
    started = invoice_run_start(actor=None, period=PERIOD, enqueue=False)
    InvoiceRun.objects.filter(pk=started.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    queued = []
    monkeypatch.setattr("reselling.invoices._enqueue_run", queued.append)
    assert invoice_runs_sweep() == [started.pk] == queued
    # A live lease keeps a second worker out.
    InvoiceRun.objects.filter(pk=started.pk).update(lease_until=timezone.now() + timedelta(minutes=1))
    assert invoice_run_execute(run_id=started.pk).invoices_issued == 0
    assert not Invoice.objects.exists()


def test_only_an_ended_month_can_be_run():
    from portal.errors import PortalError

    with pytest.raises(PortalError, match="ended"):
        parse_period(timezone.localdate().strftime("%Y-%m"))
    with pytest.raises(PortalError, match="YYYY-MM"):
        parse_period("last month")
    assert parse_period("2026-01") == PERIOD


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_share_the_sequence_without_gap_or_duplicate():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent row locks need PostgreSQL (SQLite serialises writers)")
    from django.db import connections

    tenants = [TenantFactory() for _ in range(40)]
    for tenant in tenants[:20]:
        charge(tenant, "1", period=date(2026, 1, 1))
    for tenant in tenants[20:]:
        charge(tenant, "1", period=date(2026, 2, 1))
    runs = [invoice_run_start(actor=None, period=p, enqueue=False) for p in (date(2026, 1, 1), date(2026, 2, 1))]
    errors = []

    def work(run_id):
        try:
            invoice_run_execute(run_id=run_id, batch_size=3)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(r.pk,)) for r in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    sequences = sorted(Invoice.objects.values_list("sequence", flat=True))
    assert sequences == list(range(1, 41))
