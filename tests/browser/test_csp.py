"""Real Chromium under the portal's Content-Security-Policy: the main pages of staff and of a
customer run without a single policy violation (none reported by the page, none logged to the
console, no report sent to /csp-report/), and the behaviours that used inline code before
work from the static files: the confirm dialogs, the tenant form's switch, the job bar."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import screenshot
from tests.factories import PASSWORD, CustomerFactory, TenantFactory, TransferFactory, UserFactory, balance_history
from tests.twofactor import complete_two_factor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPORT_PATH = "/csp-report/"
# Records every violation the page sees, from the first script on.
LISTENER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push({directive: e.effectiveDirective, blocked: e.blockedURI, line: e.lineNumber,
                     source: e.sourceFile, page: location.pathname});
});
"""
POLICY_WORDS = ("content security policy", "content-security-policy", "permissions-policy", "refused to")


class Watch:
    """What the browser says about the policies while the test walks."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[str] = []
        self.reports: list[str] = []
        self.violations: list[dict[str, Any]] = []
        page.add_init_script(LISTENER)
        page.on("console", self._console)
        page.on("request", self._request)

    def _console(self, message: Any) -> None:
        text = message.text
        if any(word in text.lower() for word in POLICY_WORDS):
            self.console.append(f"{message.type}: {text[:300]}")

    def _request(self, request: Any) -> None:
        if REPORT_PATH in request.url:
            self.reports.append(f"{request.method} {request.url} {(request.post_data or '')[:300]}")

    def visit(self, url: str, ready: str = "main") -> None:
        response = self.page.goto(url)
        assert response is not None and response.status == 200, (url, response and response.status)
        assert response.headers.get("content-security-policy"), url
        self.page.wait_for_selector(ready)
        self.collect()

    def collect(self) -> None:
        self.violations += self.page.evaluate("window.__csp || []")
        self.page.evaluate("window.__csp = []")

    def assert_clean(self) -> None:
        self.page.wait_for_load_state("networkidle")  # a report the browser queued has gone out by now
        self.collect()
        problems = [str(v) for v in self.violations] + self.console + self.reports
        assert not problems, "policy violations:\n" + "\n".join(problems)


def log_in(page: Any, live_server: Any, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    complete_two_factor(page, live_server, username)  # staff enrol (the QR code page) and give a code
    page.wait_for_selector(".mainnav")


@pytest.fixture
def staff_world(vox_connection: Any) -> dict[str, Any]:
    from portal.jobs import job_advance, job_create, job_start
    from tenants.models import TenantOperation

    stuck = TenantFactory(company_name="Stuck Ltd", connection=vox_connection, status="active")
    job = job_create(kind="tenants.freeze", title="Freeze Stuck Ltd", tenant_id=stuck.pk, total=1)
    operation = TenantOperation.objects.create(
        tenant=stuck, kind="freeze", state="needs_attention", job=job, last_error="The provider did not answer."
    )
    quiet = TenantFactory(company_name="Quiet Co", connection=vox_connection, status="active")
    balance_history(quiet, ["100", "80", "120"])
    running = job_create(kind="billing.sync", title="Sync balances", total=5)
    job_start(job_id=running.pk)
    job_advance(job_id=running.pk, by=2, message="2 of 5 read")
    UserFactory(username="csp-admin", role="reseller_admin")
    return {"stuck": stuck, "operation": operation, "quiet": quiet, "running": running}


def test_staff_pages_run_without_a_policy_violation(page, live_server, staff_world) -> None:
    from tenants.models import TenantOperation

    watch = Watch(page)
    base = live_server.url
    log_in(page, live_server, "csp-admin")
    watch.collect()
    watch.visit(f"{base}/console/")
    watch.visit(f"{base}/console/tenants/", "[data-testid=tenant-table]")
    watch.visit(f"{base}/console/tenants/new/", "[data-testid=tenant-form]")
    watch.visit(f"{base}/console/billing/tenants/{staff_world['quiet'].uuid}/transfer/")
    watch.visit(f"{base}/console/billing/tenants/{staff_world['quiet'].uuid}/")

    # The job page: live.js gives the bar its width through the DOM (no style attribute allowed).
    watch.visit(f"{base}/console/jobs/{staff_world['running'].uuid}/", "[data-job-bar]")
    # A selector, not wait_for_function: polling a function needs eval, which the policy forbids.
    page.wait_for_selector("[data-job-bar][style='width: 40%;']")
    assert page.evaluate("document.querySelector('[data-job-bar]').style.width") == "40%"

    # A tenant whose operation needs attention: Retry and Abandon, Abandon asks first.
    stuck, operation = staff_world["stuck"], staff_world["operation"]
    watch.visit(f"{base}/console/tenants/{stuck.uuid}/", "[data-testid=open-operation]")
    screenshot(page, "csp-tenant-needs-attention")
    asked: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.click("button:has-text('Abandon')")
    assert asked == ["Abandon this operation? Only do this after checking the provider."]
    page.wait_for_selector("button:has-text('Abandon')")  # Cancel: still here, nothing sent
    operation.refresh_from_db()
    assert operation.state == "needs_attention"
    page.once("dialog", lambda d: answer(d, True))
    page.click("button:has-text('Abandon')")
    page.wait_for_selector("text=The operation was abandoned.")  # the answer's page, not the old one
    operation.refresh_from_db()
    assert operation.state == "failed" and len(asked) == 2
    watch.collect()

    # The freeze form asks with the tenant's name; Cancel sends nothing.
    quiet = staff_world["quiet"]
    watch.visit(f"{base}/console/tenants/{quiet.uuid}/", "text=Lifecycle")
    page.fill("input[name=reason][aria-label='Reason for freezing']", "unpaid invoice")
    page.once("dialog", lambda d: answer(d, False))
    page.click("button:has-text('Freeze')")
    assert asked[-1] == "Freeze Quiet Co? Their services stop until unfrozen."
    assert not TenantOperation.objects.filter(tenant=quiet, kind="freeze").exists()
    assert page.url.rstrip("/").endswith(str(quiet.uuid))

    watch.visit(f"{base}/api/docs/", "#swagger-ui .information-container")
    watch.assert_clean()


def test_the_tenant_form_switch_works_from_its_file(page, live_server, voiceit_connection, vox_connection) -> None:
    UserFactory(username="csp-maker", role="reseller_admin")
    watch = Watch(page)
    log_in(page, live_server, "csp-maker")
    watch.visit(f"{live_server.url}/console/tenants/new/", "[data-testid=tenant-form]")
    page.select_option("#id_connection", str(vox_connection.uuid))
    assert not page.is_visible("#voiceit-type-field")
    page.select_option("#id_connection", str(voiceit_connection.uuid))
    assert page.is_visible("#voiceit-type-field")
    watch.assert_clean()


def test_customer_pages_run_without_a_policy_violation(page, live_server, db) -> None:
    tenant = TenantFactory(company_name="Acme Telecom", balance="42.50")
    balance_history(tenant, ["12.00", "30.00", "42.50"])
    TransferFactory(tenant=tenant, amount="30.00", reason="internal", customer_description="March top-up")
    CustomerFactory(username="csp-owner", tenant=tenant)
    watch = Watch(page)
    base = live_server.url
    log_in(page, live_server, "csp-owner")
    watch.visit(f"{base}/me/", "[data-testid=chart] svg")
    watch.visit(f"{base}/me/statement/")
    watch.visit(f"{base}/me/team/")
    watch.visit(f"{base}/me/profile/")
    screenshot(page, "csp-customer-profile")
    watch.assert_clean()


def test_a_violation_is_seen_blocked_and_reported(page, live_server, db) -> None:
    """The watch of the tests above is not blind: an injected inline script is blocked, the
    page sees the violation, the browser reports it and the endpoint answers 204."""
    CustomerFactory(username="csp-probe", tenant=TenantFactory())
    watch = Watch(page)
    log_in(page, live_server, "csp-probe")
    watch.visit(f"{live_server.url}/me/")
    with page.expect_response(lambda r: REPORT_PATH in r.url) as reported:
        page.evaluate(
            "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
            " document.body.appendChild(s); }"
        )
    assert reported.value.status == 204
    assert page.evaluate("window.__ran") is None
    watch.collect()
    assert [v["directive"] for v in watch.violations] == ["script-src-elem"]
    assert watch.reports and "script-src-elem" in watch.reports[0]
