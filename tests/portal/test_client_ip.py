"""The portal behind a reverse proxy: the client address the lockout, the audit log and the API
throttle use, and HTTPS as the proxy reports it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from api.throttles import PerTokenThrottle
from portal.clientip import client_ip
from portal.models import AuditEvent
from tests.factories import PASSWORD, UserFactory

PROXY = "10.0.0.2"  # the reverse proxy's own address, as the portal sees the connection
CLIENT = "203.0.113.7"
OTHER_CLIENT = "198.51.100.23"
FORGED = "192.0.2.66"  # what a client writes into X-Forwarded-For itself

# What production runs with (DEBUG off): HTTPS redirect, secure cookies, HSTS.
PRODUCTION = {
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SECURE_HSTS_SECONDS": 31536000,
}


def through_proxy(client_address: str, forged: str = "") -> dict[str, str]:
    """Request META of a request the proxy forwarded over HTTPS: it appends the address it
    saw to whatever X-Forwarded-For the client sent."""
    forwarded = f"{forged}, {client_address}" if forged else client_address
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": forwarded, "HTTP_X_FORWARDED_PROTO": "https"}


@pytest.mark.parametrize(
    ("proxies", "remote_addr", "forwarded_for", "expected"),
    [
        # No proxy: the header is never trusted.
        (0, "198.51.100.1", None, "198.51.100.1"),
        (0, "198.51.100.1", "203.0.113.7", "198.51.100.1"),
        # One proxy: the last entry is the address it saw; earlier entries are the client's own.
        (1, PROXY, "203.0.113.7", "203.0.113.7"),
        (1, PROXY, "192.0.2.66, 203.0.113.7", "203.0.113.7"),
        (1, PROXY, " 203.0.113.7 ", "203.0.113.7"),
        (1, PROXY, "2001:db8::7", "2001:db8::7"),
        # Two proxies: the second entry from the right.
        (2, PROXY, "203.0.113.7, 10.0.0.1", "203.0.113.7"),
        (2, PROXY, "192.0.2.66, 203.0.113.7, 10.0.0.1", "203.0.113.7"),
        # A header shorter than the proxy count, or none: the direct peer.
        (2, PROXY, "10.0.0.1", PROXY),
        (1, PROXY, None, PROXY),
        (1, PROXY, "", PROXY),
        # Garbage where the address should be: the direct peer.
        (1, PROXY, "not-an-ip", PROXY),
        (1, PROXY, "203.0.113.7, unknown", PROXY),
        (1, PROXY, "203.0.113.7:4431", PROXY),
        (1, PROXY, "203.0.113.7, 999.1.1.1", PROXY),
        (2, PROXY, "<script>, 10.0.0.1", PROXY),
    ],
)
def test_client_ip_honours_the_proxy_count(
    rf: Any, proxies: int, remote_addr: str, forwarded_for: str | None, expected: str
) -> None:
    meta = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded_for
    with override_settings(PROXY_COUNT=proxies):
        assert client_ip(rf.get("/", **meta)) == expected


def _log_in(client: Client, username: str, password: str, meta: dict[str, str]) -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password}, **meta)


def _lock_out(username: str, metas: list[dict[str, str]]) -> None:
    """Five wrong passwords, one request per META; the last one is answered by the lockout."""
    responses = [_log_in(Client(), username, "wrong-password-123", meta) for meta in metas]
    assert [r.status_code for r in responses[:-1]] == [200] * (len(metas) - 1)
    assert responses[-1].status_code == 429
    assert "locked" in responses[-1].content.decode()


@pytest.mark.django_db
def test_wrong_passwords_lock_out_only_the_client_that_sent_them() -> None:
    UserFactory(username="admin", role="reseller_admin")
    UserFactory(username="direct", role="reseller_admin")

    # Direct (no proxy): a client cannot dodge its lockout by writing X-Forwarded-For.
    with override_settings(PROXY_COUNT=0):
        _lock_out(
            "direct",
            [{"REMOTE_ADDR": "198.51.100.50", "HTTP_X_FORWARDED_FOR": f"192.0.2.{n}"} for n in range(5)],
        )
        dodging = {"REMOTE_ADDR": "198.51.100.50", "HTTP_X_FORWARDED_FOR": "192.0.2.99"}
        assert _log_in(Client(), "direct", PASSWORD, dodging).status_code == 429
        assert _log_in(Client(), "direct", PASSWORD, {"REMOTE_ADDR": "198.51.100.51"}).status_code == 302

    # Through the proxy, production settings: the lockout is per forwarded client, and a
    # client's own X-Forwarded-For entries do not make it someone else.
    with override_settings(PROXY_COUNT=1, **PRODUCTION):
        _lock_out("admin", [through_proxy(CLIENT, forged=f"192.0.2.{n}") for n in range(5)])
        assert _log_in(Client(), "admin", PASSWORD, through_proxy(CLIENT)).status_code == 429
        assert _log_in(Client(), "admin", PASSWORD, through_proxy(CLIENT, forged=FORGED)).status_code == 429
        answer = _log_in(Client(), "admin", PASSWORD, through_proxy(OTHER_CLIENT))
        assert answer.status_code == 302, answer.content.decode()[:500]
        assert answer.cookies["sessionid"]["secure"]


@pytest.mark.django_db
def test_audit_rows_carry_the_forwarded_client_address(customer_owner: Any) -> None:
    browser = Client()
    browser.force_login(customer_owner)

    with override_settings(PROXY_COUNT=0):
        direct = {"REMOTE_ADDR": "198.51.100.60", "HTTP_X_FORWARDED_FOR": FORGED}
        assert browser.post("/me/profile/", {"first_name": "Dana", "last_name": "Direct"}, **direct).status_code == 302
    with override_settings(PROXY_COUNT=1, **PRODUCTION):
        proxied = through_proxy(CLIENT, forged=FORGED)
        assert browser.post("/me/profile/", {"first_name": "Pia", "last_name": "Proxied"}, **proxied).status_code == 302

    rows = AuditEvent.objects.filter(action="customers.profile.updated").order_by("id")
    assert [row.ip for row in rows] == ["198.51.100.60", CLIENT]


def _anonymous_api_request(meta: dict[str, str]) -> Request:
    return Request(APIRequestFactory().get("/api/v1/me", **meta), authenticators=())


def _allowed(meta: dict[str, str]) -> bool:
    return PerTokenThrottle().allow_request(_anonymous_api_request(meta), None)


@pytest.mark.django_db
def test_the_api_throttle_counts_anonymous_callers_per_forwarded_client() -> None:
    """Callers without a token or session are throttled by address (tokens and users have their
    own budgets, tested with the API)."""
    cache.clear()
    with override_settings(API_THROTTLE_RATE="2/min", PROXY_COUNT=0):
        # Direct: a fresh X-Forwarded-For per request is no fresh budget.
        spoofing = [{"REMOTE_ADDR": "198.51.100.70", "HTTP_X_FORWARDED_FOR": f"192.0.2.{n}"} for n in range(3)]
        assert [_allowed(meta) for meta in spoofing] == [True, True, False]
        assert _allowed({"REMOTE_ADDR": "198.51.100.71"})

    cache.clear()
    with override_settings(API_THROTTLE_RATE="2/min", PROXY_COUNT=1, **PRODUCTION):
        # Through the proxy: one budget per forwarded client, whatever it wrote in the header.
        attempts = [through_proxy(CLIENT, forged=f"192.0.2.{n}") for n in range(3)]
        assert [_allowed(meta) for meta in attempts] == [True, True, False]
        assert _allowed(through_proxy(OTHER_CLIENT))
    cache.clear()


@pytest.mark.django_db
@override_settings(**PRODUCTION)
def test_https_as_the_proxy_reports_it_and_plain_http_health_checks() -> None:
    plain = Client()
    # The stack's own health check over plain HTTP gets the report, never a redirect.
    health = plain.get("/healthz", REMOTE_ADDR="127.0.0.1")
    assert health.status_code in (200, 503), health.status_code
    assert set(health.json()["checks"]) >= {"database"}
    # Any other page over plain HTTP goes to HTTPS.
    login = plain.get("/accounts/login/", REMOTE_ADDR="198.51.100.80")
    assert login.status_code == 301
    assert login["Location"] == "https://testserver/accounts/login/"

    # Direct HTTPS and HTTPS ended at the proxy are both secure: no redirect, HSTS, secure cookies.
    with override_settings(PROXY_COUNT=0):
        direct = Client().get("/accounts/login/", REMOTE_ADDR="198.51.100.80", secure=True)
    with override_settings(PROXY_COUNT=1):
        proxied = Client().get("/accounts/login/", **through_proxy(CLIENT))
    for response in (direct, proxied):
        assert response.status_code == 200
        assert response["Strict-Transport-Security"].startswith("max-age=31536000")
        assert response.cookies["csrftoken"]["secure"]


@pytest.mark.django_db
def test_failed_sign_ins_and_the_lockout_are_audited_with_the_forwarded_client() -> None:
    from portal.models import AuditEvent

    UserFactory(username="audited", role="reseller_admin")
    with override_settings(PROXY_COUNT=1):
        _lock_out("audited", [through_proxy("203.0.113.7") for _ in range(5)])
    failed = list(AuditEvent.objects.filter(action="portal.login.failed").order_by("id"))
    locked = list(AuditEvent.objects.filter(action="portal.login.locked_out"))
    assert len(failed) >= 4 and locked, [e.action for e in AuditEvent.objects.all()]
    assert {e.ip for e in failed + locked} == {"203.0.113.7"}
    assert {e.data["username"] for e in failed + locked} == {"audited"}
    assert not any("wrong-password" in str(e.data) for e in failed + locked)
