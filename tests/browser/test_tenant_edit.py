"""Real Chromium, a live server and a real Celery worker: a reseller admin edits a tenant
(a field error first, then a new email and threshold the sandbox applies), and sees what the
provider holds on the tenant page."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tenants.connections import client_for
from tests.browser.test_tenants import WAIT, log_in, wait_status
from tests.conftest import screenshot
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_reseller_admin_edits_a_tenant_and_the_provider_follows(
    page, live_server, celery_worker, sandbox, vox_connection
):
    UserFactory(username="boss", role="reseller_admin")
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, live_server, "boss")
    page.goto(f"{live_server.url}/console/tenants/new/")
    page.fill("#id_company_name", "Edit Me Ltd")
    page.fill("#id_account_name", "edit-me")
    page.fill("#id_account_email", "edit-me@example.com")
    page.fill("#id_low_balance_threshold", "12.50")
    page.click("button:has-text('Create tenant')")
    wait_status(page, "active")
    page.wait_for_selector("[data-testid=provider-truth]:has-text('threshold 12.5')", timeout=WAIT)
    account_id = int(page.inner_text("[data-testid=provider-account]"))

    page.click("[data-testid=edit-tenant]")
    assert page.is_disabled("#id_account_name")
    page.fill("#id_account_email", "not-an-email")
    page.click("button:has-text('Save changes')")
    page.wait_for_selector("[data-field=account_email].has-error")
    screenshot(page, "tenant-edit-01-field-error")
    page.fill("#id_account_email", "edited@example.com")
    page.fill("#id_low_balance_threshold", "30")
    page.fill("#id_notes", "Edited in the browser")
    page.click("button:has-text('Save changes')")
    page.wait_for_selector("text=Edited in the browser")
    page.wait_for_selector("[data-testid=provider-truth]:has-text('threshold 30')", timeout=WAIT)
    page.reload()
    page.wait_for_selector("dd:has-text('edited@example.com')", timeout=WAIT)
    screenshot(page, "tenant-edit-02-detail-after-edit")

    with client_for(vox_connection) as client:
        child = client.get_children_accounts(child_account_id=[account_id]).accounts[0]
    assert child.account_email == "edited@example.com"
    assert child.min_balance_to_notify == Decimal("30")
