"""Test helpers for two-factor sign-in (portal/twofactor.py).

`confirmed_device(user)` gives a user a real confirmed TOTP device, `code_for(device)` computes
the code an authenticator app would show, `verified_login(client, user)` signs a test client in
the way the product does it (password page skipped, as force_login always did; code given), and
`complete_two_factor(page, live_server, username)` finishes a browser sign-in on the code pages.
"""

from __future__ import annotations

import time
from typing import Any

from django.test import Client
from django_otp.oath import TOTP

# Client.force_login as Django ships it; tests/conftest.py wraps it for every test (see there).
PLAIN_FORCE_LOGIN = Client.force_login


def confirmed_device(user: Any) -> Any:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Test authenticator", confirmed=True)
    return device


def code_for(device: Any, *, at: float | None = None) -> str:
    """The code the device's app shows now, or the next one if this one was already used
    (django-otp refuses a code twice; its tolerance accepts the next time step)."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = at if at is not None else time.time()
    if totp.t() <= device.last_t:
        totp.time += device.step * (device.last_t + 1 - totp.t())
    return str(totp.token()).zfill(device.digits)


def code_for_secret(secret: str) -> str:
    """The current code for a base32 secret as the enrolment page shows it."""
    from base64 import b32decode

    raw = secret.replace(" ", "")
    key = b32decode(raw + "=" * (-len(raw) % 8))
    return str(TOTP(key).token()).zfill(6)


def mark_verified(client: Any, user: Any, *, reauth: bool = True) -> Any:
    """Mark the client's session as past the second factor with the user's real device (and,
    unless told otherwise, freshly re-authenticated)."""
    from django_otp import DEVICE_ID_SESSION_KEY

    from portal.twofactor import REAUTH_SESSION_KEY

    device = confirmed_device(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    if reauth:
        session[REAUTH_SESSION_KEY] = time.time()
    session.save()
    return device


def mark_reauthenticated(client: Any) -> None:
    from portal.twofactor import REAUTH_SESSION_KEY

    session = client.session
    session[REAUTH_SESSION_KEY] = time.time()
    session.save()


def verified_login(client: Any, user: Any, *, reauth: bool = False) -> Any:
    """force_login (no password page), then the code through the real verify page."""
    PLAIN_FORCE_LOGIN(client, user)
    device = confirmed_device(user)
    response = client.post("/accounts/two-factor/verify/", {"code": code_for(device)})
    assert response.status_code == 302, response.status_code
    if reauth:
        from portal.twofactor import REAUTH_SESSION_KEY

        session = client.session
        session[REAUTH_SESSION_KEY] = time.time()
        session.save()
    return device


def complete_two_factor(page: Any, live_server: Any, username: str) -> None:
    """After the password page: give the code (enrolling first with the secret the page shows,
    if the user has no authenticator yet)."""
    from django.contrib.auth import get_user_model
    from django_otp.plugins.otp_totp.models import TOTPDevice

    page.wait_for_load_state()
    if page.query_selector("#two-factor-enrol"):
        secret = page.inner_text("#totp-secret")
        page.fill("#id_code", code_for_secret(secret))
        page.click("#two-factor-enrol button.primary")
        page.wait_for_selector("#two-factor-recovery")
        page.click("#two-factor-recovery a.primary")
        page.wait_for_load_state()
    elif page.query_selector("#two-factor-verify"):
        user = get_user_model().objects.get(username=username)
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
        assert device is not None, f"{username} is asked for a code but has no authenticator"
        page.fill("#id_code", code_for(device))
        page.click("#two-factor-verify button.primary")
        page.wait_for_load_state()
