"""Real Chromium, a live server, the sandbox and a real Celery worker: a customer owner creates
a PBX user with a balance of its own, funds it from the company balance, sees the movement
become done without reloading the page, finds it on the statement, and the provider holds
the money where the page says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import Transfer
from tests.billing.conftest import Money
from tests.browser.test_tenants import WAIT, log_in
from tests.conftest import screenshot
from tests.factories import CustomerFactory

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_an_owner_creates_and_funds_a_user_and_sees_it_done(page, live_server, celery_worker, sandbox, vox_connection):
    money = Money(sandbox, vox_connection)
    tenant = money.tenant(balance="30")
    CustomerFactory(username="pbx-owner", tenant=tenant)
    log_in(page, live_server, "pbx-owner")
    page.goto(f"{live_server.url}/me/users/")
    page.wait_for_selector("[data-testid=user-create-form]")

    page.fill("#id_user_name", "alice")
    page.fill("#id_display_name", "Alice")
    page.fill("#id_password", "Browser-User-Pass-1!")
    page.check("input[name=balance][value=own]")
    page.click("button:has-text('Create user')")
    row = page.locator("[data-testid=pbx-user][data-user=alice]")
    row.wait_for()
    assert row.locator("[data-testid=pbx-user-balance]").inner_text() == "0.00 USD"
    assert "Browser-User-Pass-1!" not in page.content()
    screenshot(page, "pbx-users-01-created")

    row.locator("input[name=amount]").fill("7,50")
    row.locator("select[name=direction]").select_option("to_user")
    row.locator("button:has-text('Move money')").click()
    movement = page.locator("[data-testid=user-transfer]").first
    movement.wait_for()
    assert "To alice" in movement.inner_text()
    # Marked after the page the form returned to: still there once the row is done, so the
    # row changed through the live part, not through a reload.
    page.evaluate("window.__before_done = true")
    page.wait_for_selector("[data-testid=user-transfer-state]:has-text('Done')", timeout=WAIT)
    assert page.evaluate("window.__before_done === true")
    assert "7.50 USD" in movement.inner_text()
    screenshot(page, "pbx-users-02-done")

    # The provider: the user holds 7.50 of its own, the company account 22.50, one movement.
    transfer = Transfer.objects.get(tenant=tenant, direction="to_user")
    assert transfer.state == "succeeded", (transfer.state, transfer.last_error)
    (at_provider,) = money.client.get_users(account_id=tenant.provider_account_id, user_id=transfer.provider_user_id)
    assert at_provider.balance == Decimal("7.50")
    assert money.child_balance(tenant.provider_account_id) == Decimal("22.50")
    moved = money.client.find_user_transfers(
        account_id=tenant.provider_account_id,
        user_id=transfer.provider_user_id,
        reference=transfer.payment_reference,
        from_date=datetime.now(UTC) - timedelta(days=2),
        to_date=datetime.now(UTC) + timedelta(days=1),
    )
    assert len(moved) == 1

    page.click(".mainnav >> text=Statement")
    page.wait_for_selector("[data-testid=statement]")
    statement = page.inner_text("[data-testid=statement]")
    assert "Moved from the company balance to Alice (alice)" in statement
    assert "Money moved to user" not in statement  # the staff-side reason stays with staff
    screenshot(page, "pbx-users-03-statement")

    # Back on the users page, which reads the provider again once a transfer ended.
    page.click("nav.filters >> text=Users")
    page.wait_for_selector("[data-testid=pbx-user][data-user=alice]")
    balance = page.locator("[data-testid=pbx-user][data-user=alice] [data-testid=pbx-user-balance]")
    assert balance.inner_text() == "7.50 USD"
    delete_refusal = page.locator("[data-testid=pbx-user][data-user=alice] [data-testid=delete-refusal]")
    assert "still holds 7.50 USD" in delete_refusal.inner_text()
