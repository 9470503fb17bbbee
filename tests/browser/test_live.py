"""Live parts in real Chromium, under the portal's Content-Security-Policy: a transfer row turns
from Sending to Succeeded and a job bar reaches 100 % without a reload, nothing is polled while
the tab is hidden (and the parts refresh at once when it shows again), a form sent while a job
finishes is not cut short by the job's reload, and no policy violation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.test_csp import Watch, log_in
from tests.factories import TenantFactory, TransferFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HIDE = """(hidden) => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => hidden ? "hidden" : "visible"});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


@pytest.fixture
def staff(db: None) -> str:
    UserFactory(username="live-staff", role="reseller_billing")
    return "live-staff"


def test_a_sending_transfer_turns_succeeded_without_reload(page, live_server, staff) -> None:
    watch = Watch(page)
    tenant = TenantFactory(company_name="Live Co")
    transfer = TransferFactory(tenant=tenant, state="sending", completed_at=None, reason="Live top-up")
    log_in(page, live_server, staff)
    watch.collect()
    watch.visit(f"{live_server.url}/console/billing/", "[data-testid=transfers] tr[data-state=sending]")
    page.evaluate("window.__notReloaded = true")
    transfer.state, transfer.completed_at = "succeeded", timezone.now()
    transfer.save()
    page.wait_for_selector("[data-testid=transfers] tr[data-state=succeeded]", timeout=10000)
    assert page.evaluate("window.__notReloaded === true")  # the same document: swapped, not reloaded
    assert "Succeeded" in page.inner_text("[data-testid=transfers]")
    watch.assert_clean()

    # The tenant page's recent transfers, the same way (its policy check is test_csp.py's).
    second = TransferFactory(tenant=tenant, state="sending", completed_at=None, reason="Second")
    page.goto(f"{live_server.url}/console/tenants/{tenant.uuid}/")
    page.wait_for_selector("[data-testid=tenant-transfers]")
    assert "Sending" in page.inner_text("[data-testid=tenant-transfers]")
    page.evaluate("window.__notReloaded = true")
    second.state, second.completed_at = "succeeded", timezone.now()
    second.save()
    page.wait_for_selector("[data-testid=tenant-transfers]:not(:has-text('Sending'))", timeout=10000)
    assert page.evaluate("window.__notReloaded === true")


def test_a_job_bar_reaches_100_percent_live(page, live_server, staff) -> None:
    from portal.jobs import job_advance, job_create, job_finish, job_start

    watch = Watch(page)
    job = job_create(kind="billing.sync", title="Sync balances", total=4)
    job_start(job_id=job.pk)
    job_advance(job_id=job.pk, by=1, message="1 of 4 read")
    log_in(page, live_server, staff)
    watch.collect()
    watch.visit(f"{live_server.url}/console/jobs/{job.uuid}/", "[data-job-bar][style='width: 25%;']")
    assert page.get_attribute("[role=progressbar]", "aria-valuenow") == "25"
    page.evaluate("window.__notReloaded = true")
    job_advance(job_id=job.pk, by=2, message="3 of 4 read")
    page.wait_for_selector("[data-job-bar][style='width: 75%;']", timeout=10000)
    job_advance(job_id=job.pk, by=1, message="4 of 4 read")
    job_finish(job_id=job.pk, ok=True)
    page.wait_for_selector(
        "[role=progressbar][aria-valuenow='100'] [data-job-bar][style='width: 100%;']", timeout=10000
    )
    assert page.evaluate("window.__notReloaded === true")
    assert page.get_attribute(".job", "data-job-state-value") == "succeeded"
    assert page.locator("[data-live]").count() == 0  # finished: nothing polls any more
    watch.assert_clean()


def test_nothing_is_polled_while_the_tab_is_hidden(page, live_server, staff) -> None:
    from portal.jobs import job_advance, job_create, job_start

    job = job_create(kind="billing.sync", title="Sync balances", total=10)
    job_start(job_id=job.pk)
    polls: list[float] = []
    page.on("request", lambda request: polls.append(time.monotonic()) if "part=job" in request.url else None)
    log_in(page, live_server, staff)
    page.goto(f"{live_server.url}/console/jobs/{job.uuid}/")
    deadline = time.monotonic() + 10
    while len(polls) < 2 and time.monotonic() < deadline:  # it polls (every second) while visible
        page.wait_for_timeout(200)
    assert len(polls) >= 2
    page.evaluate(HIDE, True)
    page.wait_for_timeout(300)  # a request already on its way may still land
    hidden_from = len(polls)
    job_advance(job_id=job.pk, by=5, message="5 of 10 read")
    page.wait_for_timeout(3500)
    assert len(polls) == hidden_from, "polled while the tab was hidden"
    assert page.get_attribute("[role=progressbar]", "aria-valuenow") == "0"
    shown = time.monotonic()
    page.evaluate(HIDE, False)
    page.wait_for_selector("[role=progressbar][aria-valuenow='50']", timeout=5000)
    assert polls[-1] - shown < 1.0  # refreshed on becoming visible, not at the next tick only


def test_a_form_sent_while_its_job_finishes_lands_without_a_reload_cutting_it_short(
    page, live_server, vox_connection
) -> None:
    """Abandon finishes the operation's job at once; the tenant page polls that job every second
    and reloads the page when it finishes. While the answer to the form is on its way (held here
    for 3 s, long enough for three polls), no poll may go out: a reload would cancel the
    navigation and the user would never see what their click did."""
    from portal.jobs import job_create
    from tenants.models import TenantOperation

    tenant = TenantFactory(company_name="Held Ltd", connection=vox_connection, status="active")
    job = job_create(kind="tenants.freeze", title="Freeze Held Ltd", tenant_id=tenant.pk, total=1)
    operation = TenantOperation.objects.create(
        tenant=tenant, kind="freeze", state="needs_attention", job=job, last_error="The provider did not answer."
    )
    UserFactory(username="live-admin", role="reseller_admin")
    log_in(page, live_server, "live-admin")
    polls: list[float] = []
    page.on("request", lambda request: polls.append(time.monotonic()) if "part=job" in request.url else None)
    page.goto(f"{live_server.url}/console/tenants/{tenant.uuid}/")
    page.wait_for_selector("[data-testid=open-operation] [data-live]")
    deadline = time.monotonic() + 10
    while not polls and time.monotonic() < deadline:  # the job part polls while the job is open
        page.wait_for_timeout(200)
    assert polls

    held: list[Any] = []
    page.route("**/operations/**", lambda route: held.append((route, route.fetch(max_redirects=0))))
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Abandon')", no_wait_after=True)
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert held, "the form was not sent"
    route, answer = held[0]
    assert answer.status == 302
    operation.refresh_from_db()
    assert operation.state == "failed"  # abandoned at the server: the job's next poll would say finished
    sent_at = time.monotonic()
    page.wait_for_timeout(3000)
    assert [t for t in polls if t > sent_at] == [], "a live part polled while the page was being left"
    route.fulfill(response=answer)
    page.wait_for_selector("text=The operation was abandoned.", timeout=10000)
    assert page.url.rstrip("/").endswith(str(tenant.uuid))
    assert page.locator("[data-testid=open-operation]").count() == 0


def test_customer_balance_refreshes_on_the_customer_home(page, live_server) -> None:
    from tests.factories import PASSWORD, CustomerFactory

    watch = Watch(page)
    tenant = TenantFactory(company_name="Home Co", balance="10.00")
    CustomerFactory(username="live-owner", tenant=tenant)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "live-owner")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    watch.visit(f"{live_server.url}/me/", "[data-testid=balance]")
    assert "10.00" in page.inner_text("[data-testid=balance]")
    type(tenant).objects.filter(pk=tenant.pk).update(balance="25.50", balance_synced_at=timezone.now())
    page.evaluate(HIDE, True)
    page.evaluate(HIDE, False)  # back to visible: refreshes at once instead of in 15 s
    page.wait_for_selector("[data-testid=balance]:has-text('25.50')", timeout=5000)
    watch.assert_clean()
