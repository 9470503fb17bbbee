"""Two-factor sign-in: staff must enrol and give a code, customers may, owners can require it;
wrong codes count toward the lockout; sensitive actions need a fresh password and code."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.core import mail
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing.models import Transfer
from portal.models import ApiToken, AuditEvent
from tests.factories import PASSWORD, UserFactory, api_token, bearer
from tests.twofactor import code_for, code_for_secret, confirmed_device, verified_login

pytestmark = [pytest.mark.django_db, pytest.mark.real_login]

VERIFY = "/accounts/two-factor/verify/"
ENROL = "/accounts/two-factor/enrol/"
REAUTH = "/accounts/two-factor/reauth/"


def sign_in(client: Client, username: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"username": username, "password": password})


def wrong(code: str) -> str:
    return str((int(code) + 500_000) % 1_000_000).zfill(6)


def enrol_through_the_page(client: Client) -> tuple[str, list[str]]:
    page = client.get(ENROL).content.decode()
    assert "<svg" in page  # the QR code, drawn on the server
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1)
    done = client.post(ENROL, {"code": code_for_secret(secret)})
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", done.content.decode())
    return secret.replace(" ", ""), codes


def all_audit_text() -> str:
    return json.dumps([e.data for e in AuditEvent.objects.all()])


# --- staff must enrol -----------------------------------------------------------------------


def test_staff_without_a_device_reach_nothing_but_the_enrolment_until_they_enrol(client) -> None:
    user = UserFactory(username="newstaff", role="reseller_admin")
    assert sign_in(client, "newstaff").status_code == 302
    for url in ("/console/", "/console/tenants/", "/console/billing/", "/console/audit/", "/console/api-tokens/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(ENROL), url
    api = client.get("/api/v1/tenants")
    assert api.status_code == 401 and api.json()["error"]["code"] == "two_factor_required"
    assert client.post("/api/v1/tenants", {}, content_type="application/json").status_code == 401
    assert client.get("/healthz/live").status_code == 200
    # The page does not offer the navigation yet.
    assert b'class="mainnav"' not in client.get(ENROL).content
    # A token is its own authentication: unaffected by the session's missing second factor.
    raw = api_token(user)
    assert Client().get("/api/v1/tenants", headers=bearer(raw)).status_code == 200


def test_enrolment_confirms_with_the_right_code_only_and_shows_ten_recovery_codes_once(client) -> None:
    UserFactory(username="enroller", role="reseller_billing")
    sign_in(client, "enroller")
    page = client.get(ENROL).content.decode()
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1)
    refused = client.post(ENROL, {"code": wrong(code_for_secret(secret))})
    assert refused.status_code == 400 and b"did not match" in refused.content
    assert not TOTPDevice.objects.filter(user__username="enroller", confirmed=True).exists()
    assert client.get("/console/").status_code == 302

    done = client.post(ENROL, {"code": code_for_secret(secret)})
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", done.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert TOTPDevice.objects.filter(user__username="enroller", confirmed=True).count() == 1
    assert client.get("/console/").status_code == 200
    # Shown once: the page now only says it is on.
    again = client.get(ENROL).content.decode()
    assert "is on" in again and not any(code in again for code in codes)
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "portal.two_factor.enrolled" in actions and "portal.two_factor.enrol_failed" in actions
    text = all_audit_text()
    assert secret.replace(" ", "") not in text and not any(code in text for code in codes)


def test_staff_with_a_device_give_a_code_after_the_password(client) -> None:
    user = UserFactory(username="coder", role="reseller_support")
    device = confirmed_device(user)
    sign_in(client, "coder")
    response = client.get("/console/")
    assert response.status_code == 302 and response["Location"].startswith(VERIFY)
    assert client.post(VERIFY, {"code": wrong(code_for(device))}).status_code == 400
    assert client.get("/console/").status_code == 302
    done = client.post(VERIFY, {"code": code_for(device), "next": "/console/tenants/"})
    assert done.status_code == 302 and done["Location"] == "/console/tenants/"
    assert client.get("/console/").status_code == 200
    # A foreign next is never followed.
    client.logout()
    sign_in(client, "coder")
    done = client.post(VERIFY, {"code": code_for(device), "next": "https://evil.example/"})
    assert done["Location"] == "/"


def test_recovery_codes_sign_in_once_each(client) -> None:
    UserFactory(username="recoverer", role="reseller_admin")
    sign_in(client, "recoverer")
    secret, codes = enrol_through_the_page(client)
    client.logout()

    sign_in(client, "recoverer")
    assert client.post(VERIFY, {"code": codes[0]}).status_code == 302
    assert client.get("/console/").status_code == 200
    client.logout()

    sign_in(client, "recoverer")
    assert client.post(VERIFY, {"code": codes[0]}).status_code == 400  # used up
    assert client.get("/console/").status_code == 302
    assert client.post(VERIFY, {"code": codes[1]}).status_code == 302
    assert StaticToken.objects.filter(device__user__username="recoverer").count() == 8
    used = AuditEvent.objects.filter(action="portal.two_factor.recovery_used")
    assert used.count() == 2 and used.order_by("id").last().data == {"left": 8}
    text = all_audit_text()
    assert secret not in text and not any(code in text for code in codes)


def test_wrong_codes_count_toward_the_lockout_and_then_even_the_right_code_is_refused(client, settings) -> None:
    user = UserFactory(username="guessed", role="reseller_admin")
    device = confirmed_device(user)
    other = Client()  # a second session that got past the password before the lockout
    sign_in(other, "guessed")
    sign_in(client, "guessed")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post(VERIFY, {"code": "000000" if code_for(device) != "000000" else "111111"}).status_code == 400
    locked = client.post(VERIFY, {"code": wrong(code_for(device))})
    assert b"Too many failed logins" in locked.content
    assert client.get("/console/").status_code == 302  # signed out
    refused = other.post(VERIFY, {"code": code_for(device)})
    assert b"Too many failed logins" in refused.content
    assert other.get("/console/").status_code == 302
    # The password alone is refused too now.
    third = Client()
    sign_in(third, "guessed")
    assert third.get("/console/").status_code == 302 and "/accounts/login/" in third.get("/console/")["Location"]
    assert AuditEvent.objects.filter(action="portal.two_factor.failed").count() == settings.AXES_FAILURE_LIMIT
    assert AuditEvent.objects.filter(action="portal.login.locked_out").exists()


def test_the_right_password_does_not_reset_the_count_of_wrong_codes(client, settings) -> None:
    user = UserFactory(username="persistent", role="reseller_billing")
    device = confirmed_device(user)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        fresh = Client()
        sign_in(fresh, "persistent")
        assert fresh.post(VERIFY, {"code": wrong(code_for(device))}).status_code == 400
    last = Client()
    sign_in(last, "persistent")
    assert b"Too many failed logins" in last.post(VERIFY, {"code": wrong(code_for(device))}).content


def test_a_password_reset_neither_signs_in_nor_skips_the_code(client) -> None:
    user = UserFactory(username="resetter", role="reseller_admin", email="resetter@reseller.example")
    device = confirmed_device(user)
    client.post("/accounts/password/reset/", {"email": "resetter@reseller.example"})
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[-1].body).group(1)
    form = client.get(link, follow=True)
    new_password = "a-brand-new-long-password-42"
    done = client.post(form.redirect_chain[-1][0], {"new_password1": new_password, "new_password2": new_password})
    assert done.status_code == 302
    assert "/accounts/login/" in client.get("/console/")["Location"]  # not signed in by the reset
    sign_in(client, "resetter", new_password)
    response = client.get("/console/")
    assert response.status_code == 302 and response["Location"].startswith(VERIFY)
    assert client.post(VERIFY, {"code": code_for(device)}).status_code == 302
    assert client.get("/console/").status_code == 200


# --- customers ------------------------------------------------------------------------------


def test_customers_sign_in_without_a_code_unless_they_enrolled(client, customer_owner) -> None:
    sign_in(client, customer_owner.username)
    assert client.get("/me/").status_code == 200
    assert b"security-two-factor" in client.get("/me/profile/").content
    secret, codes = enrol_through_the_page(client)
    assert len(codes) == 10
    client.logout()
    sign_in(client, customer_owner.username)
    response = client.get("/me/")
    assert response.status_code == 302 and response["Location"].startswith(VERIFY)
    device = TOTPDevice.objects.get(user=customer_owner)
    assert client.post(VERIFY, {"code": code_for(device)}).status_code == 302
    assert client.get("/me/").status_code == 200


def test_an_owner_requires_it_for_the_team_and_members_must_enrol(client, customer_owner, customer_viewer) -> None:
    sign_in(client, customer_owner.username)
    assert client.post("/me/team/two-factor/", {"require_two_factor": "on"}).status_code == 302
    customer_owner.membership.tenant.refresh_from_db()
    assert customer_owner.membership.tenant.require_two_factor
    event = AuditEvent.objects.get(action="customers.team.two_factor_required")
    assert event.tenant_id == customer_owner.membership.tenant_id and event.actor_id == customer_owner.pk
    # The owner, signed in already, must set it up too before going on.
    assert client.get("/me/").status_code == 302

    viewer = Client()
    sign_in(viewer, customer_viewer.username)
    response = viewer.get("/me/")
    assert response.status_code == 302 and response["Location"].startswith(ENROL)
    assert b"needs a second factor" in viewer.get(ENROL).content
    # A viewer cannot change the team's choice.
    enrol_through_the_page(viewer)
    assert viewer.post("/me/team/two-factor/", {}).status_code == 403


# --- re-authentication ----------------------------------------------------------------------


def reauth(client: Client, user, *, code: str | None = None, next: str = "/"):
    data = {"password": PASSWORD, "next": next}
    if code is not None:
        data["code"] = code
    return client.post(REAUTH, data)


def test_the_reauth_page_wants_both_and_returns_to_a_safe_page_only(client) -> None:
    user = UserFactory(username="reauther", role="reseller_admin")
    device = verified_login(client, user)
    assert reauth(client, user, code=None, next="/console/tenants/").status_code == 400
    bad = client.post(REAUTH, {"password": "not-it-at-all", "code": code_for(device), "next": "/console/"})
    assert bad.status_code == 400
    ok = reauth(client, user, code=code_for(device), next="https://evil.example/x")
    assert ok.status_code == 302 and ok["Location"] == "/"
    assert AuditEvent.objects.filter(action="portal.two_factor.reauthenticated", actor=user).count() == 1


def test_a_staff_token_needs_a_recent_reauth(client) -> None:
    user = UserFactory(username="tokener", role="reseller_admin")
    device = verified_login(client, user)
    form = {"name": "ci", "role": "reseller_support", "expires_in_days": ""}
    refused = client.post("/console/api-tokens/", form)
    assert refused.status_code == 302 and refused["Location"].startswith(REAUTH)
    assert not ApiToken.objects.exists()
    back = reauth(client, user, code=code_for(device), next="/console/api-tokens/")
    assert back["Location"] == "/console/api-tokens/"
    assert client.post("/console/api-tokens/", form).status_code == 200
    assert ApiToken.objects.filter(name="ci").count() == 1


def test_a_customer_token_needs_a_recent_reauth(client, customer_owner) -> None:
    sign_in(client, customer_owner.username)  # no authenticator: the password alone re-authenticates
    refused = client.post("/me/api-tokens/", {"name": "books"})
    assert refused.status_code == 302 and refused["Location"].startswith(REAUTH)
    assert not ApiToken.objects.exists()
    assert b'name="code"' not in client.get(REAUTH).content
    assert reauth(client, customer_owner).status_code == 302
    assert client.post("/me/api-tokens/", {"name": "books"}).status_code == 200
    assert ApiToken.objects.filter(name="books").count() == 1


def test_changing_a_role_or_the_provider_connection_in_the_admin_needs_a_recent_reauth(client) -> None:
    admin = UserFactory(username="superadmin", role="reseller_admin", is_staff=True, is_superuser=True)
    target = UserFactory(username="someone", role="reseller_support")
    device = verified_login(client, admin)
    for url in (f"/admin/auth/user/{target.pk}/change/", "/admin/tenants/providerconnection/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(REAUTH), url
    refused = client.post(f"/admin/auth/user/{target.pk}/change/", {"username": "someone", "groups": []})
    assert refused.status_code == 302 and refused["Location"].startswith(REAUTH)
    reauth(client, admin, code=code_for(device))
    assert client.get(f"/admin/auth/user/{target.pk}/change/").status_code == 200
    assert client.get("/admin/tenants/providerconnection/").status_code == 200


def test_a_reseller_admin_resets_a_staff_members_second_factor_after_reauth(client) -> None:
    admin = UserFactory(username="resetadmin", role="reseller_admin")
    target = UserFactory(username="lostphone", role="reseller_billing")
    confirmed_device(target)
    device = verified_login(client, admin)
    listing = client.get("/console/two-factor/")
    assert listing.status_code == 200 and b"lostphone" in listing.content
    refused = client.post(f"/console/two-factor/{target.pk}/reset/")
    assert refused.status_code == 302 and refused["Location"].startswith(REAUTH)
    assert TOTPDevice.objects.filter(user=target).exists()
    reauth(client, admin, code=code_for(device))
    assert client.post(f"/console/two-factor/{target.pk}/reset/").status_code == 302
    assert not TOTPDevice.objects.filter(user=target).exists()
    event = AuditEvent.objects.get(action="portal.two_factor.reset")
    assert event.actor_id == admin.pk and event.data["user"] == "lostphone"
    # They set up a new authenticator at their next sign-in.
    theirs = Client()
    sign_in(theirs, "lostphone")
    assert theirs.get("/console/")["Location"].startswith(ENROL)
    # Only reseller admins may.
    support = Client()
    verified_login(support, UserFactory(username="supporter", role="reseller_support"), reauth=True)
    assert support.get("/console/two-factor/").status_code == 403
    assert support.post(f"/console/two-factor/{admin.pk}/reset/").status_code == 403


@pytest.fixture
def money(sandbox, vox_connection, settings):
    from tests.billing.conftest import Money

    settings.BILLING_SETTLE_SECONDS = 0
    settings.BILLING_PENDING_GRACE_SECONDS = 0
    settings.BILLING_REFRESH_AFTER_TRANSFER = False
    settings.BILLING_APPROVAL_THRESHOLD = "10"
    yield Money(sandbox, vox_connection)
    from billing import provider

    provider.forget_clients()


def test_a_transfer_above_the_approval_threshold_and_approving_one_need_a_recent_reauth(client, money) -> None:
    tenant = money.tenant()
    maker = UserFactory(username="maker", role="reseller_billing")
    device = verified_login(client, maker)
    url = f"/console/billing/tenants/{tenant.uuid}/transfer/"
    form = {"amount": "25", "direction": "to_tenant", "reason": "big", "key": "k1"}
    refused = client.post(url, form)
    assert refused.status_code == 302 and refused["Location"].startswith(REAUTH)
    assert quote(url, safe="") in refused["Location"]  # back to the form afterwards
    assert not Transfer.objects.exists()
    reauth(client, maker, code=code_for(device))
    client.post(url, form)
    transfer = Transfer.objects.get()
    assert transfer.awaiting_approval and transfer.amount == Decimal("25")

    checker_user = UserFactory(username="checker", role="reseller_admin")
    checker = Client()
    checker_device = verified_login(checker, checker_user)
    approve = f"/console/billing/transfers/{transfer.uuid}/approve/"
    refused = checker.post(approve)
    assert refused.status_code == 302 and refused["Location"].startswith(REAUTH)
    api = checker.post(f"/api/v1/transfers/{transfer.uuid}/approve", {}, content_type="application/json")
    assert api.status_code == 403 and api.json()["error"]["code"] == "reauthentication_required"
    assert Transfer.objects.get().approved_at is None
    reauth(checker, checker_user, code=code_for(checker_device))
    checker.post(approve)
    assert Transfer.objects.get().approved_at is not None


def test_a_transfer_below_the_threshold_needs_no_reauth(client, money) -> None:
    tenant = money.tenant()
    verified_login(client, UserFactory(username="smallpayer", role="reseller_billing"))
    response = client.post(
        f"/console/billing/tenants/{tenant.uuid}/transfer/",
        {"amount": "5", "direction": "to_tenant", "reason": "small", "key": "k2"},
    )
    assert not response.get("Location", "").startswith(REAUTH)
    assert Transfer.objects.filter(reason="small").exists()


def test_changing_the_provider_callbacks_needs_a_recent_reauth(client, vox_connection) -> None:
    admin = UserFactory(username="callbackadmin", role="reseller_admin")
    device = verified_login(client, admin)
    form = {"connection": str(vox_connection.uuid), "callback_url": "not a url", "callback_salt": ""}
    refused = client.post("/console/callbacks/", form)
    assert refused.status_code == 302 and refused["Location"].startswith(REAUTH)
    reauth(client, admin, code=code_for(device))
    answered = client.post("/console/callbacks/", form)
    assert not answered.get("Location", "").startswith(REAUTH)
    assert answered.status_code in (200, 302, 400)
