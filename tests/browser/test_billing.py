"""Real Chromium on the money pages: a top-up from the tenant's billing panel, a staff-started
sync whose progress bar moves without a reload, and a bulk top-up with its dry run."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from tests.conftest import screenshot
from tests.factories import PASSWORD, UserFactory
from tests.twofactor import complete_two_factor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fast(settings) -> None:
    settings.BILLING_SETTLE_SECONDS = 0
    settings.BILLING_SYNC_PAGE_SIZE = 3
    settings.BILLING_REFRESH_AFTER_TRANSFER = False


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    complete_two_factor(page, live_server, username)  # staff sign in with a code too
    page.wait_for_selector(".mainnav")


def _tenant(connection, account_id: int, name: str):
    from tenants.models import Tenant

    return Tenant.objects.create(
        company_name=name,
        connection=connection,
        provider_account_id=account_id,
        account_name=f"acct{account_id}",
        account_email=f"acct{account_id}@t.example",
        status="active",
        currency="USD",
    )


def _child(connection) -> int:
    import uuid

    from billing import provider

    tag = uuid.uuid4().hex[:8]
    return (
        provider.client(connection)
        .add_account(account_name=f"br{tag}", account_email=f"{tag}@t.example", account_password="Sandbox-Pass-1!")
        .account_id
    )


def test_a_top_up_from_the_billing_panel(page, live_server, vox_connection) -> None:
    from django.utils import timezone

    from billing import services
    from billing.models import BalanceSnapshot, Transfer

    tenant = _tenant(vox_connection, _child(vox_connection), "Panel Co")
    BalanceSnapshot.objects.create(
        tenant=tenant, balance=Decimal("3"), currency="USD", taken_at=timezone.now() - timezone.timedelta(days=2)
    )
    UserFactory(username="payer", role="reseller_billing")
    log_in(page, live_server, "payer")
    page.goto(f"{live_server.url}/console/billing/tenants/{tenant.uuid}/")
    assert page.locator("[data-testid=billing-panel] svg.balance-chart").count() == 1
    form = page.locator("[data-testid=transfer-form]")
    form.locator("input[name=amount]").fill("12.50")
    form.locator("input[name=reason]").fill("Monthly top-up")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".messages")
    assert "on its way" in page.inner_text(".messages")
    transfer = Transfer.objects.get()
    assert transfer.amount == Decimal("12.50") and transfer.state == "pending"
    services.transfer_execute(transfer_id=transfer.pk)
    page.goto(f"{live_server.url}/console/billing/transfers/{transfer.uuid}/")
    assert page.inner_text("[data-testid=transfer-state]") == "Succeeded"
    screenshot(page, "billing-transfer-succeeded")


def test_a_staff_started_sync_shows_live_progress(page, live_server, vox_connection, sandbox) -> None:
    from billing import services
    from billing.models import SyncRun
    from sandbox.seed import seed_children

    info = seed_children(str(sandbox.db_path), 12, seed=3)
    for aid in range(info["first_account_id"], info["last_account_id"] + 1):
        _tenant(vox_connection, aid, f"Sync Co {aid}")
    sandbox.set_faults([{"method": "GetChildrenAccounts", "kind": "latency", "latency_ms": 300}])
    UserFactory(username="syncer", role="reseller_billing")
    log_in(page, live_server, "syncer")
    page.goto(f"{live_server.url}/console/billing/sync/")
    page.click("[data-testid=start-sync]")
    page.wait_for_selector("[data-job-bar]", state="attached")
    run = SyncRun.objects.get()
    # The worker's part, here in a thread: the page polls the Job and moves its bar.
    worker = threading.Thread(
        target=lambda: (services.sync_execute(sync_run_id=run.pk), __import__("django.db").db.connection.close())
    )
    worker.start()
    # The bar moves off zero and stays there (the run may finish between two polls, so the
    # "running" state itself is not waited for). A selector, not wait_for_function: the
    # page's CSP forbids the eval that polling a function needs.
    page.wait_for_selector("[data-job-bar][style]:not([style*='width: 0%'])", timeout=20000)
    screenshot(page, "billing-sync-progress")
    worker.join(60)
    page.wait_for_selector(
        "[data-job-state-value=succeeded], [data-testid=run-state]:has-text('Succeeded')", timeout=20000
    )
    run.refresh_from_db()
    assert run.state == "succeeded" and run.seen == 12
    screenshot(page, "billing-sync-finished")


def test_bulk_top_up_dry_run_then_run(page, live_server, vox_connection) -> None:
    from billing import services
    from billing.models import Transfer
    from portal.models import Job

    tenants = [_tenant(vox_connection, _child(vox_connection), f"Bulk Co {i}") for i in range(3)]
    UserFactory(username="bulkpayer", role="reseller_billing")
    log_in(page, live_server, "bulkpayer")
    page.goto(f"{live_server.url}/console/billing/bulk/?q=Bulk")
    for t in tenants[:2]:
        page.check(f"input[name=tenants][value='{t.uuid}']")
    page.fill("input[name=amount]", "4")
    page.fill("input[name=reason]", "Bulk credit")
    page.click("button[value=dry_run]")
    page.wait_for_selector("[data-testid=bulk-plan]")
    assert "2 of 2 tenants ready" in page.inner_text("[data-testid=bulk-plan]")
    assert Transfer.objects.count() == 0
    screenshot(page, "billing-bulk-dry-run")
    page.click("button[value=run]")
    page.wait_for_selector("[data-job-bar]", state="attached")
    job = Job.objects.get(kind="billing.bulk_transfer")
    services.bulk_transfer_run(job_id=job.pk)
    page.wait_for_selector("[data-job-state-value=succeeded]", timeout=15000)
    assert page.locator("[data-job-results] tr").count() == 2
    assert Transfer.objects.filter(state="succeeded").count() == 2
    screenshot(page, "billing-bulk-done")
