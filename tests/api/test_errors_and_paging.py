"""One error shape for every error, cursor pagination, per-token throttling."""

import pytest
from django.test import override_settings

from portal.audit import audit_log
from tests.factories import TenantFactory, api_token

pytestmark = pytest.mark.django_db


def assert_error_shape(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) <= {"code", "message", "fields"}
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
def admin_headers(reseller_admin) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token(reseller_admin)}"}


def test_unknown_api_urls_are_json_404(client, admin_headers) -> None:
    assert_error_shape(client.get("/api/v1/nope", headers=admin_headers), 404, "not_found")
    assert_error_shape(client.get("/api/v2/tenants"), 404, "not_found")
    assert_error_shape(
        client.get("/api/v1/tenants/00000000-0000-0000-0000-000000000000", headers=admin_headers), 404, "not_found"
    )


def test_405_403_401_and_validation_share_the_shape(client, admin_headers, reseller_support) -> None:
    assert_error_shape(client.delete("/api/v1/tenants", headers=admin_headers), 405, "method_not_allowed")
    assert_error_shape(client.get("/api/v1/tenants"), 401, "not_authenticated")
    support = {"Authorization": f"Bearer {api_token(reseller_support)}"}
    assert_error_shape(client.post("/api/v1/tenants", {}, content_type="application/json", headers=support), 403)
    error = assert_error_shape(
        client.post("/api/v1/tenants", {"company_name": ""}, content_type="application/json", headers=admin_headers),
        400,
        "invalid",
    )
    assert "connection" in error["fields"] and "company_name" in error["fields"]


def test_malformed_json_and_other_media_types_are_refused_in_the_shape(client, admin_headers) -> None:
    assert_error_shape(
        client.post("/api/v1/tenants", "{nope", content_type="application/json", headers=admin_headers), 400
    )
    assert_error_shape(
        client.post("/api/v1/tenants", "a=b", content_type="application/x-www-form-urlencoded", headers=admin_headers),
        415,
    )
    nested = "[" * 5000 + "]" * 5000
    assert_error_shape(
        client.post("/api/v1/tenants", nested, content_type="application/json", headers=admin_headers), 400
    )


def test_a_body_over_the_upload_limit_is_413(client, admin_headers) -> None:
    big = '{"notes": "' + "x" * (3 * 1024 * 1024) + '"}'
    assert_error_shape(client.post("/api/v1/tenants", big, content_type="application/json", headers=admin_headers), 413)


def test_writes_that_name_a_tenant_provider_id_or_role_are_refused(client, admin_headers) -> None:
    connection = TenantFactory().connection
    body = {
        "connection": str(connection.uuid),
        "company_name": "Acme",
        "account_name": "acme-01",
        "account_email": "acme@example.com",
        "child_account_id": 5,
        "role": "reseller_admin",
        "tenant": 1,
    }
    error = assert_error_shape(
        client.post("/api/v1/tenants", body, content_type="application/json", headers=admin_headers), 400
    )
    assert set(error["fields"]) == {"child_account_id", "role", "tenant"}


def test_an_unexpected_exception_is_a_shaped_500_without_internals(client, admin_headers, monkeypatch) -> None:
    import api.tenants

    def explode(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.tenants, "tenant_list", explode)
    client.raise_request_exception = False
    response = client.get("/api/v1/tenants", headers=admin_headers)
    error = assert_error_shape(response, 500, "server_error")
    assert "secret" not in response.content.decode()
    assert error["message"]


def test_cursor_pagination_walks_every_row_once(client, admin_headers) -> None:
    for i in range(7):
        audit_log(actor=None, action=f"portal.test.e{i}")
    seen, url, pages = [], "/api/v1/audit-events?limit=3&action=portal.test", 0
    while url:
        body = client.get(url, headers=admin_headers).json()
        seen += [row["action"] for row in body["results"]]
        url, pages = body["next"], pages + 1
    assert sorted(seen) == sorted(f"portal.test.e{i}" for i in range(7)) and pages == 3


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "limit=1000000000",
        "limit=201",
        "cursor=%%%",
        "cursor=" + "A" * 100,
        "limit=１０",
    ],
)
def test_bad_paging_values_are_400(client, admin_headers, query) -> None:
    assert_error_shape(client.get(f"/api/v1/audit-events?{query}", headers=admin_headers), 400, "invalid")
    assert_error_shape(client.get(f"/api/v1/tenants?{query}", headers=admin_headers), 400, "invalid")


@override_settings(API_THROTTLE_RATE="3/min")
def test_throttling_is_per_token(client, reseller_admin) -> None:
    first = {"Authorization": f"Bearer {api_token(reseller_admin)}"}
    second = {"Authorization": f"Bearer {api_token(reseller_admin)}"}
    for _ in range(3):
        assert client.get("/api/v1/me", headers=first).status_code == 200
    throttled = client.get("/api/v1/me", headers=first)
    assert_error_shape(throttled, 429, "throttled")
    assert int(throttled["Retry-After"]) > 0
    assert client.get("/api/v1/me", headers=second).status_code == 200


def test_a_session_write_without_csrf_is_refused(reseller_admin) -> None:
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(reseller_admin)
    assert browser.get("/api/v1/me").status_code == 200  # reads need no token
    response = browser.post(
        "/api/v1/sync-runs", {"connection": str(TenantFactory().connection.uuid)}, content_type="application/json"
    )
    error = assert_error_shape(response, 403, "permission_denied")
    assert error["message"]
