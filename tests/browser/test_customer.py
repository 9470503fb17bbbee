"""Real Chromium: a customer owner sees the balance and chart, exports the statement and
invites a viewer; the viewer sees the balance but cannot change alerts; a customer of another
tenant sees none of it."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.conftest import screenshot
from tests.factories import PASSWORD, CustomerFactory, TenantFactory, TransferFactory, UserFactory, balance_history
from tests.twofactor import complete_two_factor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWER_PASSWORD = "viewer-password-long-enough"


def log_in(page, live_server, username: str, password: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    complete_two_factor(page, live_server, username)  # staff (the docs reader) sign in with a code too
    page.wait_for_selector(".mainnav")


@pytest.fixture
def tenants(transactional_db):
    acme = TenantFactory(company_name="Acme Telecom", balance="42.50", low_balance_threshold=Decimal("10"))
    balance_history(acme, ["12.00", "30.00", "25.00", "42.50"])
    now = datetime.now(UTC)
    for days, amount, words in ((8, "30.00", "March top-up"), (2, "12.50", "Extra minutes")):
        TransferFactory(
            tenant=acme,
            amount=amount,
            reason=f"internal note {days}",
            customer_description=words,
            completed_at=now - timedelta(days=days),
        )
    globex = TenantFactory(company_name="Globex Calls", balance="7.00")
    return (
        acme,
        globex,
        CustomerFactory(username="acme-owner", tenant=acme),
        CustomerFactory(username="globex-owner", tenant=globex),
    )


def test_owner_viewer_and_outsider(page, live_server, tenants, mailoutbox) -> None:
    acme, globex, _owner, _outsider = tenants
    # The owner: balance, chart, statement export, invitation.
    log_in(page, live_server, "acme-owner", PASSWORD)
    assert page.url.endswith("/me/")
    assert page.inner_text("[data-testid=balance]") == "42.50 USD"
    assert "Last synced" in page.inner_text("[data-testid=synced]")
    chart = page.locator("[data-testid=chart] svg")
    assert chart.is_visible() and chart.bounding_box()["width"] > 300
    assert page.locator("[data-testid=alert-form]").is_visible()
    screenshot(page, "customer-owner-home")

    page.click(".mainnav >> text=Statement")
    page.wait_for_selector("[data-testid=statement]")
    statement = page.inner_text("[data-testid=statement]")
    assert "Extra minutes" in statement
    assert "internal note" not in statement
    screenshot(page, "customer-owner-statement")
    with page.expect_download() as download_info:
        page.click("[data-testid=export]")
    csv_text = open(download_info.value.path(), encoding="utf-8").read()
    assert csv_text.startswith("date,type,description,reference,amount,currency,balance")
    assert "March top-up" in csv_text and "42.50" in csv_text

    page.click(".mainnav >> text=Team")
    page.fill("#id_email", "viewer@acme.example")
    page.click("text=Send invitation")
    page.wait_for_selector("text=Invitation sent to viewer@acme.example")
    assert "Invited" in page.inner_text("[data-testid=members]")
    screenshot(page, "customer-owner-team")
    link = re.search(r"https?://\S+/accounts/reset/\S+", mailoutbox[-1].body).group(0)

    # The viewer chooses a password through the emailed link, then logs in.
    page.context.clear_cookies()
    page.goto(live_server.url + "/" + link.split("/", 3)[3])
    page.fill("#id_new_password1", VIEWER_PASSWORD)
    page.fill("#id_new_password2", VIEWER_PASSWORD)
    page.click("button[type=submit]")
    log_in(page, live_server, "viewer@acme.example", VIEWER_PASSWORD)
    assert page.inner_text("[data-testid=balance]") == "42.50 USD"
    assert page.locator("[data-testid=alert-readonly]").is_visible()
    assert page.locator("[data-testid=alert-form]").count() == 0
    assert [a.inner_text() for a in page.query_selector_all(".mainnav a")] == ["My company", "Statement", "Invoices"]
    screenshot(page, "customer-viewer-home")
    # Even a hand-made request cannot change the alert.
    token = page.evaluate("document.querySelector('input[name=csrfmiddlewaretoken]').value")
    denied = page.request.post(
        f"{live_server.url}/me/alerts/",
        form={"threshold": "1", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{live_server.url}/me/"},
    )
    assert denied.status == 403
    acme.refresh_from_db()
    assert acme.low_balance_threshold == Decimal("10")

    # Another tenant's owner sees only Globex.
    log_in(page, live_server, "globex-owner", PASSWORD)
    assert page.inner_text("[data-testid=balance]") == "7.00 USD"
    for path in ("/me/", "/me/statement/", "/me/team/"):
        page.goto(live_server.url + path)
        text = page.content()
        assert "Acme" not in text and "42.50" not in text and "viewer@acme.example" not in text, path
    member_id = acme.memberships.order_by("pk").first().pk
    response = page.goto(f"{live_server.url}/me/team/{member_id}/remove/")
    assert response.status == 404
    screenshot(page, "customer-outsider-404")


def test_the_api_docs_render_with_no_network_but_ours(page, live_server, transactional_db) -> None:
    """Swagger UI comes from the drf-spectacular-sidecar package, not a CDN: with every other
    host blocked, the docs page still renders the operations from /api/schema/."""
    UserFactory(username="docs-reader", role="reseller_support")
    blocked = []

    def only_ours(route) -> None:
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_ours)
    log_in(page, live_server, "docs-reader", PASSWORD)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15000)
    assert page.locator(".swagger-ui .opblock").count() >= 20
    assert not blocked, blocked
    screenshot(page, "api-docs-offline")
