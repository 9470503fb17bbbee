"""Real Chromium: a new staff member enrols by the secret the page shows and reaches the console;
on the next sign-in a code computed from the stored secret lets them in, a wrong one does not."""

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import screenshot
from tests.factories import PASSWORD, UserFactory
from tests.twofactor import code_for, code_for_secret

pytestmark = [pytest.mark.browser, pytest.mark.real_login, pytest.mark.django_db(transaction=True)]


def password_step(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def test_staff_enrol_then_sign_in_with_a_code_and_reach_the_console(page, live_server) -> None:
    UserFactory(username="browserstaff", role="reseller_admin")
    password_step(page, live_server, "browserstaff")
    page.wait_for_selector("#two-factor-enrol")
    assert page.query_selector(".qr svg") is not None  # drawn on the server, no script
    assert page.query_selector(".mainnav") is None
    screenshot(page, "two-factor-enrol")
    # The console stays closed until the code is confirmed.
    page.goto(f"{live_server.url}/console/")
    page.wait_for_selector("#two-factor-enrol")
    page.fill("#id_code", code_for_secret(page.inner_text("#totp-secret")))
    page.click("#two-factor-enrol button.primary")
    page.wait_for_selector("#two-factor-recovery")
    assert len(page.query_selector_all(".recovery-codes li")) == 10
    page.click("#two-factor-recovery a.primary")
    page.wait_for_selector(".mainnav")
    assert page.url.startswith(f"{live_server.url}/console/")

    page.click("text=Log out")
    page.wait_for_url("**/accounts/login/")
    password_step(page, live_server, "browserstaff")
    page.wait_for_selector("#two-factor-verify")
    device = TOTPDevice.objects.get(user__username="browserstaff", confirmed=True)
    right = code_for(device)
    page.fill("#id_code", str((int(right) + 500_000) % 1_000_000).zfill(6))
    page.click("#two-factor-verify button.primary")
    page.wait_for_selector("#two-factor-verify [role=alert]")
    page.fill("#id_code", code_for(device))
    page.click("#two-factor-verify button.primary")
    page.wait_for_selector(".mainnav")
    assert page.url.startswith(f"{live_server.url}/console/")
    assert "Console" in [a.inner_text().strip() for a in page.query_selector_all(".mainnav a")]
    screenshot(page, "two-factor-console")
