"""Real Chromium through reselling from end to end: a reseller admin creates a plan with a
monthly fee and a freeze rule and assigns it to a tenant; the month's fee is charged; the
month's invoice run issues the invoice while its page shows the progress; with the clock past
the due date, dunning freezes the tenant at the provider; billing staff record the payment on
the invoice page and the tenant ends unfrozen, at the provider too (the sandbox's state)."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.conftest import screenshot
from tests.factories import PASSWORD, UserFactory
from tests.tenants.conftest import create_vox, drain
from tests.twofactor import complete_two_factor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page, live_server, username: str) -> None:
    """Password (Enter in the password field submits the sign-in form, whatever other forms
    the page holds), then the staff's second factor."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    complete_two_factor(page, live_server, username)
    page.wait_for_selector(".mainnav")


def test_plan_to_charges_to_invoice_to_payment_to_unfreeze(browser, page, live_server, vox_connection, sandbox) -> None:
    from django.db import connection
    from django.utils import timezone

    from reselling.charges import month_of, monthly_fees_derive
    from reselling.dunning import dunning_run
    from reselling.invoices import invoice_run_execute, invoice_run_start
    from reselling.models import Charge, Invoice, PricePlan
    from tenants.models import Tenant

    admin = UserFactory(username="plans-admin", role="reseller_admin")
    biller = UserFactory(username="plans-biller", role="reseller_billing")
    tenant = create_vox(vox_connection, admin, name="dunned-co", company_name="Dunned Co")
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    store = sandbox.store()
    assert store.account(tenant.provider_account_id)["active"]

    # A reseller admin creates the plan and assigns it from today on the tenant's page.
    sign_in(page, live_server, "plans-admin")
    page.goto(f"{live_server.url}/console/reselling/plans/")
    page.click("text=New plan")
    form = page.locator("[data-testid=plan-form]")
    form.locator("input[name=name]").fill("Office 30")
    form.locator("input[name=currency]").fill("USD")
    form.locator("select[name=topup_rule]").select_option("none")
    form.locator("input[name=monthly_fee]").fill("30")
    form.locator("input[name=payment_terms_days]").fill("10")
    form.locator("input[name=freeze_after_days]").fill("5")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".messages")
    assert "Plan Office 30 created." in page.inner_text(".messages")
    plan = PricePlan.objects.get(name="Office 30")
    assert plan.monthly_fee == Decimal("30") and plan.freeze_after_days == 5

    page.goto(f"{live_server.url}/console/tenants/{tenant.uuid}/")
    panel = page.locator("[data-testid=plan-panel]")
    panel.locator("select[name=plan]").select_option(label="Office 30 (USD)")
    panel.locator("[data-testid=assign-form] button[type=submit]").click()
    page.wait_for_selector("[data-testid=current-plan]:has-text('Office 30')")
    assert "Office 30" in page.inner_text("[data-testid=plan-history]")

    # The nightly derivation charges the month's fee at the plan's terms.
    period = month_of(timezone.localdate())
    assert monthly_fees_derive(period=period) == 1
    fee = Charge.objects.get(tenant=tenant)
    assert (fee.kind, fee.revenue, fee.plan_id, fee.period) == ("monthly_fee", Decimal("30"), plan.pk, period)
    page.reload()
    assert "Monthly fee" in page.inner_text("[data-testid=recent-charges]")

    # Billing staff watch the month's invoice run; its worker runs in a thread.
    billing = browser.new_context(viewport={"width": 1280, "height": 900})
    staff = billing.new_page()
    staff.set_default_timeout(15000)
    sign_in(staff, live_server, "plans-biller")
    run = invoice_run_start(actor=biller, period=period, enqueue=False)
    staff.goto(f"{live_server.url}/console/reselling/invoices/runs/{run.pk}/")
    assert staff.inner_text("[data-testid=run-state]") == "Running"
    worker = threading.Thread(target=lambda: (invoice_run_execute(run_id=run.pk), connection.close()))
    worker.start()
    worker.join(60)
    # The page follows the run's job and reloads itself once it has finished.
    staff.wait_for_selector("[data-testid=run-state]:has-text('Succeeded')", timeout=20000)
    assert "1 invoices issued" in staff.inner_text(".card:has([data-testid=run-state])")
    invoice = Invoice.objects.get(tenant=tenant, period=period, kind="invoice")
    assert invoice.plan_id == plan.pk and invoice.subtotal == Decimal("30")
    assert invoice.due_on == timezone.localdate(invoice.issued_at) + timedelta(days=10)

    # The clock moves past the due date and the plan's five days: dunning freezes the tenant.
    assert dunning_run(today=invoice.due_on + timedelta(days=4))["frozen"] == 0
    assert dunning_run(today=invoice.due_on + timedelta(days=5))["frozen"] == 1
    drain()
    tenant.refresh_from_db()
    reason = f"Invoice {invoice.number} overdue since {invoice.due_on.isoformat()}"
    assert tenant.status == Tenant.Status.FROZEN and tenant.status_reason == reason
    assert not store.account(tenant.provider_account_id)["active"]
    staff.goto(f"{live_server.url}/console/tenants/{tenant.uuid}/")
    assert staff.get_attribute("h1 [data-status]", "data-status") == "frozen"
    assert reason in staff.inner_text("[data-testid=status-reason]")

    # Billing staff record the payment on the invoice page.
    staff.goto(f"{live_server.url}/console/reselling/invoices/")
    staff.click(f"[data-testid=invoices] a:text-is('{invoice.number}')")
    staff.wait_for_selector("[data-testid=invoice-status]")
    assert staff.inner_text("[data-testid=invoice-status]") in ("Unpaid", "Overdue")
    payment = staff.locator("form:has(button:text-is('Record payment'))")
    payment.locator("input[name=amount]").fill(f"{invoice.total:f}")
    payment.locator("select[name=method]").select_option("bank")
    payment.locator("input[name=reference]").fill("Bank ref 4711")
    payment.locator("button:text-is('Record payment')").click()
    staff.wait_for_selector("[data-testid=invoice-status]:text-is('Paid')")
    assert "Bank ref 4711" in staff.inner_text("[data-testid=payments]")
    assert "recorded" in staff.inner_text(".messages")
    screenshot(staff, "reselling-invoice-paid")

    # The payment started the unfreeze; its operation runs at the provider.
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert store.account(tenant.provider_account_id)["active"]
    staff.goto(f"{live_server.url}/console/tenants/{tenant.uuid}/")
    staff.wait_for_selector("h1 [data-status=active]")
    assert staff.inner_text("h1 [data-status]") == "Active"
    screenshot(staff, "reselling-tenant-unfrozen")
    billing.close()
