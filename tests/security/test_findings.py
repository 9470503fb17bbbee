"""Hostile input found by hand: each case once gave a 500, an HTML page where the API speaks
JSON, the staff schema to a customer, or an invite answer that told one tenant about another
tenant's accounts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.factories import CustomerFactory, TenantFactory, UserFactory, api_token, bearer
from tests.security.logins import sign_in

pytestmark = pytest.mark.django_db


def _client(user: Any = None, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf, raise_request_exception=False)
    return sign_in(client, user) if user is not None else client


# --- digits that are not ASCII digits ------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "١٢", "１２", "৩", "12²"])
def test_unicode_digits_in_the_tenant_search_are_an_ordinary_search(reseller_admin, value) -> None:
    client = _client(reseller_admin)
    api = client.get("/api/v1/tenants", {"q": value})
    assert api.status_code == 200, api.content[:200]
    assert api.json()["results"] == []
    page = client.get("/console/tenants/", {"q": value})
    assert page.status_code == 200


def test_a_unicode_digit_connection_filter_is_refused_on_the_field(reseller_admin) -> None:
    response = _client(reseller_admin).get("/api/v1/tenants", {"connection": "²"})
    assert response.status_code == 400
    assert "connection" in response.json()["error"]["fields"]


def test_unicode_digits_in_import_and_bulk_ids_are_ignored(reseller_admin) -> None:
    client = _client(reseller_admin)
    assert client.get("/console/tenants/import/", {"after": "²"}).status_code == 200
    response = client.post("/console/tenants/bulk/import/", {"ids": ["²", "１"], "unknown": ["³"]})
    assert response.status_code < 500


def test_the_ascii_digit_rule_refuses_what_int_cannot_read() -> None:
    from portal import inputs

    assert inputs.is_ascii_digits("0123")
    for value in ("", "²", "١٢", "１２", "-1", "+1", " 1", "1_000", "1.0", "12²"):
        assert not inputs.is_ascii_digits(value), value
    assert not inputs.is_ascii_digits("1" * 20, max_length=18)


# --- dates at the edges of the calendar ---------------------------------------------------


@pytest.mark.parametrize(
    "since",
    [
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59-23:59",
    ],
)
def test_a_history_since_at_the_edge_of_the_calendar_is_a_clean_answer(customer_owner, reseller_admin, since) -> None:
    tenant = customer_owner.membership.tenant
    for client, url in (
        (_client(customer_owner), "/api/v1/customer/balance/history"),
        (_client(reseller_admin), f"/api/v1/tenants/{tenant.uuid}/balance/history"),
    ):
        response = client.get(url, {"since": since})
        assert response.status_code in (200, 400), (url, response.status_code, response.content[:200])
        if response.status_code == 400:
            assert "since" in response.json()["error"]["fields"]
    token = api_token(customer_owner, tenant=tenant)
    response = Client().get("/api/v1/customer/balance/history", {"since": since}, headers=bearer(token))
    assert response.status_code in (200, 400)


# --- JSON errors under /api/ --------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_an_unknown_api_path_is_a_json_404_for_every_method_even_without_a_csrf_token(customer_owner, method) -> None:
    for client in (_client(csrf=True), _client(customer_owner, csrf=True)):
        kwargs = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
        response = getattr(client, method)("/api/v1/no-such-thing", **kwargs)
        assert response.status_code == 404, response.content[:200]
        assert response.json()["error"]["code"] == "not_found"


def test_a_session_write_without_a_csrf_token_is_a_json_403(customer_owner) -> None:
    client = _client(customer_owner, csrf=True)
    response = client.post("/api/v1/customer/balance", data="{}", content_type="application/json")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "permission_denied"
    assert "CSRF" in response.json()["error"]["message"]


def test_a_csrf_failure_outside_drf_under_api_is_json_and_html_elsewhere(customer_owner) -> None:
    from django.test import RequestFactory

    from api.errors import csrf_failure

    request = RequestFactory().post("/api/v1/tenants")
    response = csrf_failure(request, reason="CSRF cookie not set.")
    assert response.status_code == 403 and response["Content-Type"].startswith("application/json")
    assert json.loads(response.content)["error"]["code"] == "permission_denied"
    page = csrf_failure(RequestFactory().post("/me/team/invite/"), reason="CSRF cookie not set.")
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")
    # The setting points at it, so a form without its token gets the same page.
    response = _client(customer_owner, csrf=True).post("/me/team/invite/", {"email": "x@example.com"})
    assert response.status_code == 403


def test_method_and_media_type_errors_are_json(customer_owner) -> None:
    client = _client()
    headers = bearer(api_token(customer_owner, tenant=customer_owner.membership.tenant))
    response = client.delete("/api/v1/customer/balance", headers=headers)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    response = client.post("/api/v1/me", data="x", content_type="text/plain", headers=headers)
    assert response.status_code in (405, 415) and "error" in response.json()


# --- schemas by audience ------------------------------------------------------------------


def test_a_customer_reads_only_the_customer_schema(customer_owner) -> None:
    client = _client(customer_owner)
    for url in ("/api/schema/", "/api/docs/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"
    schema = client.get("/api/customer/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = set(schema.json()["paths"])
    assert paths and all(p.startswith("/api/v1/customer/") or p == "/api/v1/me" for p in paths), paths
    assert client.get("/api/customer/docs/").status_code == 200
    token = api_token(customer_owner, tenant=customer_owner.membership.tenant)
    assert Client().get("/api/schema/", headers=bearer(token)).status_code == 404
    assert Client().get("/api/customer/schema/", headers=bearer(token)).status_code == 200


def test_staff_read_the_whole_schema_and_anonymous_visitors_read_none(reseller_admin) -> None:
    schema = _client(reseller_admin).get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    assert "/api/v1/tenants" in schema.json()["paths"]
    token = api_token(reseller_admin)
    assert Client().get("/api/schema/", headers=bearer(token)).status_code == 200
    for url in ("/api/schema/", "/api/customer/schema/"):
        assert Client().get(url).status_code == 401


# --- invites that tell nothing about other tenants ----------------------------------------


def _invite(client: Client, email: str) -> tuple[int, str]:
    response = client.post("/me/team/invite/", {"email": email}, follow=True)
    text = response.content.decode()
    text = text.replace(email, "<email>")
    start = text.find("<main")
    return response.status_code, text[start : text.find("</main>")] if start >= 0 else text


@pytest.mark.django_db(transaction=True)  # the invitation goes out on commit, as in production
def test_inviting_an_address_of_another_tenant_or_of_staff_answers_like_any_invite(customer_owner, mailoutbox) -> None:
    from django.contrib.auth.models import User

    elsewhere = CustomerFactory(username="bob", email="bob@other.example", tenant=TenantFactory(company_name="Other"))
    staff = UserFactory(username="staffer", email="staff@reseller.example", role="reseller_support")
    before = {
        u.pk: (u.password, u.is_active, u.email, u.membership.tenant_id if hasattr(u, "membership") else None)
        for u in (elsewhere, staff)
    }
    client = _client(customer_owner)
    fresh = _invite(client, "fresh@new.example")
    assert len(mailoutbox) == 1
    answers = [fresh, _invite(client, "bob@other.example"), _invite(client, "STAFF@reseller.example")]
    assert fresh[0] == 200
    assert "already" not in fresh[1].lower()
    normal = fresh[1].replace("fresh@new.example", "<email>")
    # The flash message reads the same; only the team list below differs (the new member).
    for status, text in answers[1:]:
        assert status == fresh[0]
        assert "already has an account" not in text
        message = text.split("<table")[0]
        assert message == normal.split("<table")[0]
    for user in (elsewhere, staff):
        user = User.objects.get(pk=user.pk)
        assert (
            user.password,
            user.is_active,
            user.email,
            getattr(getattr(user, "membership", None), "tenant_id", None),
        ) == before[user.pk]
    assert len(mailoutbox) == 1  # the other accounts get nothing
    assert not User.objects.filter(email__iexact="bob@other.example").exclude(pk=elsewhere.pk).exists()


def test_the_customer_token_page_links_to_the_customer_docs(customer_owner) -> None:
    page = _client(customer_owner).get("/me/api-tokens/").content.decode()
    assert 'href="/api/customer/docs/"' in page and 'href="/api/docs/"' not in page


@pytest.mark.parametrize("to", ["0001-01-01", "0001-01-01T00:00:00+23:59", "9999-12-31"])
def test_a_statement_ending_at_the_start_of_the_calendar_is_a_page(reseller_admin, customer_owner, to) -> None:
    tenant = customer_owner.membership.tenant
    response = _client(reseller_admin).get(f"/console/billing/tenants/{tenant.uuid}/statement/", {"to": to})
    assert response.status_code == 200


def test_a_two_factor_next_that_is_not_a_path_goes_home(reseller_admin) -> None:
    response = _client(reseller_admin).get("/accounts/two-factor/verify/", {"next": "not-a-path"})
    assert response.status_code == 302 and response["Location"] == "/"
