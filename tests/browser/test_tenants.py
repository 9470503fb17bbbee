"""Real Chromium against a live server and a real Celery worker: a reseller admin walks a
tenant through create → clone → (bulk) freeze → unfreeze → close; support cannot create and
billing cannot freeze. Screenshots of each page land in var/test-output/screenshots."""

from __future__ import annotations

import pytest

from tests.conftest import screenshot
from tests.factories import PASSWORD, TenantFactory, UserFactory
from tests.twofactor import complete_two_factor

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WAIT = 60_000  # ms: a real worker on the filesystem broker polls about once a second


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    complete_two_factor(page, live_server, username)  # staff sign in with a code too
    page.wait_for_selector(".mainnav")


def wait_status(page, status: str) -> None:
    # The page reloads itself when the job behind it finishes (portal/_job.html).
    page.wait_for_selector(f"h1 [data-status={status}]", timeout=WAIT)


def test_a_reseller_admin_runs_the_whole_lifecycle(page, live_server, celery_worker, sandbox, vox_connection):
    UserFactory(username="boss", role="reseller_admin")
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, live_server, "boss")
    page.click(".mainnav >> text=Tenants")
    page.wait_for_selector("text=No tenants yet")
    screenshot(page, "tenants-01-list-empty")

    # Create, with a mistake first: the error shows on its field, nothing is sent.
    page.click("text=New tenant")
    page.fill("#id_company_name", "Browser One Ltd")
    page.fill("#id_account_name", "Browser One")
    page.fill("#id_account_email", "browser-one@example.com")
    page.fill("#id_invite_owner_email", "owner@browser-one.example")
    page.click("button:has-text('Create tenant')")
    page.wait_for_selector("[data-field=account_name].has-error")
    assert "must start with a lowercase latin letter" in page.inner_text("[data-field=account_name]")
    screenshot(page, "tenants-02-create-field-error")
    page.fill("#id_account_name", "browser-one")
    page.click("button:has-text('Create tenant')")
    # The progress card may come and go faster than a poll: wait for the outcome instead.
    wait_status(page, "active")
    assert page.inner_text("[data-testid=provider-account]").isdigit()
    assert "owner@browser-one.example" in page.inner_text("#h-users + :is(table, .table-scroll)")
    screenshot(page, "tenants-04-detail-active")
    assert sandbox.store().child_by_name("browser-one") is not None
    assert "tenants.run_operation" in celery_worker.log()

    # Clone it.
    page.click("a:has-text('Clone')")
    page.fill("#id_company_name", "Browser Two Ltd")
    page.fill("#id_account_name", "browser-two")
    page.fill("#id_account_email", "browser-two@example.com")
    screenshot(page, "tenants-05-clone-form")
    page.click("button:has-text('Clone tenant')")
    wait_status(page, "active")
    clone_url = page.url
    screenshot(page, "tenants-06-clone-active")

    # Bulk freeze both: a dry run first, then the run with live per-row results.
    page.goto(f"{live_server.url}/console/tenants/")
    screenshot(page, "tenants-07a-list")
    for box in page.query_selector_all("input[name=tenants]"):
        box.check()
    page.fill("input[name=reason]", "Quarterly compliance check")
    page.click("button:has-text('Preview (dry run)')")
    page.wait_for_selector("[data-testid=dry-run]")
    assert page.inner_text("[data-testid=dry-run]").count("Will run") == 2
    screenshot(page, "tenants-07-bulk-dry-run")
    page.click("button:has-text('Freeze 2 rows')")
    page.wait_for_selector("[data-job-state-value=succeeded]", timeout=WAIT)
    results = page.inner_text("[data-job-results]")
    assert results.count("OK") == 2, results
    screenshot(page, "tenants-08-bulk-results")

    # Unfreeze the clone on its own page.
    page.goto(clone_url)
    wait_status(page, "frozen")
    screenshot(page, "tenants-09-detail-frozen")
    page.fill("input[aria-label='Reason for unfreezing']", "Check passed")
    page.click("button:has-text('Unfreeze')")
    wait_status(page, "active")

    # Close it: a confirmation page explains each stage and wants the account name typed.
    page.click("text=Close tenant…")
    page.wait_for_selector("text=Leave the account disabled at the provider")
    page.fill("#id_reason", "Customer moved away")
    page.fill("#id_confirm", "browser-two")
    screenshot(page, "tenants-10-close-confirm")
    page.click("button:has-text('Close this tenant')")
    wait_status(page, "closed")
    assert "Left disabled at the provider" in page.inner_text("#h-ops + :is(table, .table-scroll)")
    screenshot(page, "tenants-11-detail-closed")
    child = sandbox.store().child_by_name("browser-two")
    assert not child["active"]

    # Import: scan the provider for accounts the portal does not know, then adopt two in bulk.
    from sandbox.seed import seed_children

    sandbox.admin("PUT", "options", {"children_require_filter": False})  # the scan lists every child
    seed_children(str(sandbox.db_path), 3, seed=5)
    page.click("text=← Tenants")
    page.click("text=Import from provider")
    page.click("button:has-text('Scan Voximplant (sandbox)')")
    page.wait_for_selector("[data-testid=unknown-accounts] input[name=unknown]", timeout=WAIT)
    screenshot(page, "tenants-12-import-candidates")
    boxes = page.query_selector_all("input[name=unknown]")
    assert len(boxes) == 3
    boxes[0].check()
    boxes[1].check()
    page.click("button:has-text('Preview import')")
    page.click("button:has-text('Import 2 rows')")
    page.wait_for_selector("[data-job-state-value=succeeded]", timeout=WAIT)
    assert page.inner_text("[data-job-results]").count("Imported.") == 2
    screenshot(page, "tenants-13-import-results")


def _post_status(page, url: str) -> int:
    """POST like a hand-made form would (CSRF token taken from the page's logout form)."""
    return page.evaluate(
        """async (url) => {
            const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
            const body = new URLSearchParams({csrfmiddlewaretoken: token, reason: "try"});
            const r = await fetch(url, {method: "POST", body, credentials: "same-origin"});
            return r.status;
        }""",
        url,
    )


@pytest.mark.parametrize("role", ["reseller_support", "reseller_billing"])
def test_support_cannot_create_and_billing_cannot_freeze(page, live_server, role):
    tenant = TenantFactory(company_name="Guarded Co")
    UserFactory(username=f"user-{role}", role=role)
    log_in(page, live_server, f"user-{role}")
    page.goto(f"{live_server.url}/console/tenants/")
    page.wait_for_selector("text=Guarded Co")
    assert page.query_selector("text=New tenant") is None
    response = page.goto(f"{live_server.url}/console/tenants/new/")
    assert response.status == 403
    screenshot(page, f"tenants-14-{role}-create-403")
    page.goto(f"{live_server.url}/console/tenants/{tenant.uuid}/")
    freeze_button = page.query_selector("button:has-text('Freeze')")
    status = _post_status(page, f"{live_server.url}/console/tenants/{tenant.uuid}/freeze/")
    screenshot(page, f"tenants-15-{role}-detail")
    if role == "reseller_support":
        assert freeze_button is not None and status == 200  # followed the redirect back to the page
    else:
        assert freeze_button is None and status == 403
