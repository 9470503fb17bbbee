"""The customer API: own balance, history and statement, nothing else."""

import pytest

from tests.factories import TenantFactory, TransferFactory, api_token, balance_history, bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def headers(customer_owner, customer_tenant):
    return bearer(api_token(customer_owner, tenant=customer_tenant))


def test_balance_and_history_are_the_tokens_tenants(client, customer_tenant, headers, reseller_admin) -> None:
    other = TenantFactory(company_name="Other", balance="7.00")
    balance_history(other, ["1", "2"])
    balance = client.get("/api/v1/customer/balance", headers=headers).json()
    assert balance["balance"] == "42.5000" and balance["currency"] == "USD" and balance["synced_at"]
    history = client.get("/api/v1/customer/balance/history", headers=headers).json()
    assert [p["balance"] for p in history["points"]] == ["10.0000", "20.0000", "42.5000"]
    staff = {"Authorization": f"Bearer {api_token(reseller_admin)}"}
    staff_view = client.get(f"/api/v1/tenants/{customer_tenant.uuid}/balance/history", headers=staff).json()
    assert staff_view == history
    # Staff have no company of their own: the customer endpoints are not theirs.
    assert client.get("/api/v1/customer/balance", headers=staff).status_code in (403, 404)


@pytest.mark.parametrize("since", ["yesterday", "2026-01-01", "2026-01-01T00:00:00", "9" * 50])
def test_history_refuses_bad_or_naive_dates(client, headers, since) -> None:
    response = client.get("/api/v1/customer/balance/history", {"since": since}, headers=headers)
    assert response.status_code == 400 and "since" in response.json()["error"]["fields"]


def test_history_since_filters(client, headers) -> None:
    from django.utils import timezone

    since = (timezone.now() - timezone.timedelta(days=2, hours=12)).isoformat()
    points = client.get("/api/v1/customer/balance/history", {"since": since}, headers=headers).json()["points"]
    assert [p["balance"] for p in points] == ["20.0000", "42.5000"]


def test_statement_pages_with_a_cursor_and_validates_dates(client, customer_tenant, headers) -> None:
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    for i in range(5):
        TransferFactory(
            tenant=customer_tenant, amount="1.00", reason=f"r{i}", completed_at=now - timedelta(hours=10 - i)
        )
    page = client.get("/api/v1/customer/statement?limit=2", headers=headers).json()
    seen = [r["balance"] for r in page["results"]]
    while page["next"]:
        page = client.get(page["next"], headers=headers).json()
        seen += [r["balance"] for r in page["results"]]
    assert seen == ["5.0000", "4.0000", "3.0000", "2.0000", "1.0000"]
    bad = client.get("/api/v1/customer/statement?date_from=31/12/2026", headers=headers)
    assert bad.status_code == 400 and "date_from" in bad.json()["error"]["fields"]
    for param in ("tenant", "tenant_id", "child_account_id"):
        # Query parameters that name another tenant change nothing.
        other = client.get(f"/api/v1/customer/balance?{param}=1", headers=headers).json()
        assert other["balance"] == "42.5000"
