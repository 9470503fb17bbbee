"""Real Chromium: every demo role logs in and sees its own navigation; five wrong passwords lock."""

import pytest

from tests.conftest import screenshot
from tests.factories import PASSWORD, UserFactory
from tests.twofactor import complete_two_factor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EXPECTED_NAV = {
    "reseller_admin": ["Console", "Tenants", "Transfers", "Sync", "Plans", "Margin", "Invoices", "Audit log"],
    "reseller_billing": ["Console", "Tenants", "Transfers", "Sync", "Plans", "Margin", "Invoices"],
    "reseller_support": ["Console", "Tenants", "Transfers", "Sync", "Invoices"],
    "customer_owner": ["My company", "Statement", "Invoices", "Team"],
    "customer_viewer": ["My company", "Statement", "Invoices"],
}


def log_in(page, live_server, username: str, password: str) -> None:
    """The login form, then, when the portal asks for it, the second factor: a code computed from
    the user's authenticator secret (enrolling first with the secret the page shows)."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    complete_two_factor(page, live_server, username)


@pytest.mark.parametrize("role", list(EXPECTED_NAV))
def test_each_role_sees_its_own_navigation(page, live_server, role: str, customer_tenants) -> None:
    user = UserFactory(username=f"user-{role}", role=role)
    if role.startswith("customer"):
        from tenants.models import Membership

        Membership.objects.create(user=user, tenant=customer_tenants[0])
    log_in(page, live_server, user.username, PASSWORD)
    page.wait_for_selector(".mainnav")
    labels = [a.inner_text().strip() for a in page.query_selector_all(".mainnav a")]
    assert labels == EXPECTED_NAV[role]
    assert page.inner_text(".who").startswith(user.username)
    screenshot(page, f"login-{role}")
    # Every link the navigation shows opens for this role.
    for href in [a.get_attribute("href") for a in page.query_selector_all(".mainnav a")]:
        response = page.goto(f"{live_server.url}{href}")
        assert response.status == 200, href


def test_five_wrong_passwords_lock_the_login(page, live_server) -> None:
    UserFactory(username="victim", role="reseller_admin")
    for _ in range(5):
        log_in(page, live_server, "victim", "not-the-password-at-all")
        assert page.url.endswith("/accounts/login/") or "locked" in page.content().lower()
    # Even the right password is refused now.
    log_in(page, live_server, "victim", PASSWORD)
    page.wait_for_selector("#locked-out")
    screenshot(page, "login-locked-out")
    assert "Too many failed logins" in page.inner_text("h1")


def test_logging_in_rotates_the_session_and_logout_ends_it(page, live_server) -> None:
    UserFactory(username="rotator", role="reseller_support")
    page.goto(f"{live_server.url}/accounts/login/")
    before = {c["name"]: c["value"] for c in page.context.cookies()}.get("sessionid")
    log_in(page, live_server, "rotator", PASSWORD)
    page.wait_for_selector(".mainnav")
    after = {c["name"]: c["value"] for c in page.context.cookies()}.get("sessionid")
    assert after and after != before
    page.click("text=Log out")
    page.wait_for_url("**/accounts/login/")
    response = page.goto(f"{live_server.url}/console/")
    assert page.url.startswith(f"{live_server.url}/accounts/login/"), response.status
