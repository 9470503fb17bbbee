"""The OpenAPI 3 schema and the docs page, which must work with no network but ours."""

import re

import pytest

from tests.factories import api_token

pytestmark = pytest.mark.django_db


def test_the_schema_is_openapi_3_for_authenticated_callers_only(client, reseller_admin) -> None:
    assert client.get("/api/schema/").status_code == 401
    response = client.get("/api/schema/?format=json", headers={"Authorization": f"Bearer {api_token(reseller_admin)}"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for expected in (
        "/api/v1/tenants",
        "/api/v1/tenants/{tenant_uuid}/transfers",
        "/api/v1/transfers/{transfer_uuid}/approve",
        "/api/v1/sync-runs",
        "/api/v1/audit-events",
        "/api/v1/customer/statement",
    ):
        assert expected in paths
    create = schema["paths"]["/api/v1/tenants/{tenant_uuid}/transfers"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in create["parameters"])
    assert "apiToken" in schema["components"]["securitySchemes"]


def test_the_docs_page_uses_only_local_assets(client, reseller_support) -> None:
    assert client.get("/api/docs/").status_code == 302
    client.force_login(reseller_support)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: \"([^\"]+)\"", html)
    assert urls and all(u.startswith("/") for u in urls), urls
    assert "cdn" not in html.lower() and "https://" not in html
    for asset in [u for u in urls if u.startswith("/static/")]:
        response = client.get(asset)
        assert response.status_code == 200, asset
        b"".join(response.streaming_content) if response.streaming else response.content
