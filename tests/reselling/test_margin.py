"""The margin report (page, CSV, API) reconciles exactly with the charges ledger, per currency;
and the plans API for staff, with its roles and the customers' 404."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.http import StreamingHttpResponse
from django.utils import timezone

from reselling import margin
from reselling.models import Charge, PlanAssignment, PricePlan
from tests.factories import ProviderConnectionFactory, TenantFactory, api_token, bearer

pytestmark = pytest.mark.django_db

D = Decimal
MONTH = date(2026, 3, 1)


@pytest.fixture(autouse=True)
def _cold_cache() -> None:
    cache.clear()


_keys = itertools.count(1)


def charge(tenant: Any, revenue: str, cost: str, *, currency: str = "USD", period: date = MONTH) -> Charge:
    return Charge.objects.create(
        tenant=tenant,
        kind="usage",
        period=period,
        occurred_at=timezone.now(),
        currency=currency,
        revenue=D(revenue),
        cost=D(cost),
        description="call",
        source_key=f"test:{next(_keys)}",
    )


@pytest.fixture
def ledger() -> dict[str, Any]:
    usd = ProviderConnectionFactory(name="US", currency="USD")
    kzt = ProviderConnectionFactory(name="KZ", currency="KZT")
    a, b, c = (TenantFactory(connection=usd, company_name=f"Co {x}") for x in "abc")
    k = TenantFactory(connection=kzt, currency="KZT", company_name="=cmd|evil")
    # Amounts whose float sums drift: 0.1 + 0.2 is not 0.3 in binary.
    charge(a, "0.1", "0.0333")
    charge(a, "0.2", "0.0667")
    charge(b, "10.0001", "9.9999")
    charge(b, "1.10", "0", currency="EUR")  # one tenant, two currencies: two rows
    charge(c, "5", "4", period=date(2026, 2, 1))
    charge(k, "1000.5", "900.25", currency="KZT")
    return {"usd": usd, "kzt": kzt, "tenants": (a, b, c, k)}


def ledger_sums(period: date) -> dict[str, tuple[Decimal, Decimal]]:
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for row in Charge.objects.filter(period=period):
        rev, cost = out.get(row.currency, (D(0), D(0)))
        out[row.currency] = (rev + row.revenue, cost + row.cost)
    return out


def test_rows_and_totals_reconcile_exactly_with_the_ledger_per_currency(ledger: dict[str, Any]) -> None:
    a, b, c, k = ledger["tenants"]
    rows, cursor = margin.margin_rows(period=MONTH)
    assert cursor is None
    got = {(r.tenant_id, r.currency): (r.revenue, r.cost, r.margin, r.charges) for r in rows}
    assert got == {
        (a.pk, "USD"): (D("0.3"), D("0.1"), D("0.2"), 2),
        (b.pk, "USD"): (D("10.0001"), D("9.9999"), D("0.0002"), 1),
        (b.pk, "EUR"): (D("1.1"), D("0"), D("1.1"), 1),
        (k.pk, "KZT"): (D("1000.5"), D("900.25"), D("100.25"), 1),
    }
    totals = {t.currency: (t.revenue, t.cost) for t in margin.month_totals(period=MONTH)}
    assert totals == ledger_sums(MONTH) == margin.exact_totals(period=MONTH)
    per_row: dict[str, Decimal] = {}
    for r in rows:
        per_row[r.currency] = per_row.get(r.currency, D(0)) + r.revenue
    assert per_row == {cur: rev for cur, (rev, _) in totals.items()}
    by_connection = {t.currency for t in margin.month_totals(period=MONTH, connection_id=ledger["kzt"].pk)}
    assert by_connection == {"KZT"}


def test_cached_totals_follow_new_charges_exactly(ledger: dict[str, Any]) -> None:
    a = ledger["tenants"][0]
    before = {t.currency: t.revenue for t in margin.month_totals(period=MONTH)}
    # Fold everything so far into the cache (as if minutes had passed), then add more.
    later = timezone.now() + margin.SETTLED + timedelta(seconds=1)
    from unittest import mock

    with mock.patch("reselling.margin.timezone.now", return_value=later):
        margin.month_totals(period=MONTH)
    charge(a, "0.7", "0.1")
    after = {t.currency: t.revenue for t in margin.month_totals(period=MONTH)}
    assert after["USD"] == before["USD"] + D("0.7")
    assert {t.currency: (t.revenue, t.cost) for t in margin.month_totals(period=MONTH)} == ledger_sums(MONTH)


def test_the_beat_folds_settled_charges_so_a_page_sums_none_of_them(
    ledger: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    from unittest import mock

    from reselling.tasks import margin_totals

    later = timezone.now() + margin.SETTLED + timedelta(seconds=1)
    with mock.patch("reselling.margin.timezone.now", return_value=later):
        assert margin_totals() == 1 + 2  # all connections, then each of the two
        # The cache now reaches the newest charge, for all connections and each one.
        for connection_id in (None, ledger["usd"].pk, ledger["kzt"].pk):
            rows = Charge.objects.all()
            if connection_id is not None:
                rows = rows.filter(tenant__connection_id=connection_id)
            newest = rows.order_by("-id").values_list("id", flat=True).first()
            assert cache.get(margin._cache_key(connection_id))["upto"] == newest
        # A read folds nothing and sums nothing: the mark, the settled probe, the empty tail.
        with django_assert_max_num_queries(3):
            totals = margin.month_totals(period=MONTH)
    assert {t.currency: (t.revenue, t.cost) for t in totals} == ledger_sums(MONTH)
    by_connection = {
        t.currency: (t.revenue, t.cost) for t in margin.month_totals(period=MONTH, connection_id=ledger["kzt"].pk)
    }
    assert by_connection == {"KZT": ledger_sums(MONTH)["KZT"]}


def test_pages_by_tenant_cover_every_row_once() -> None:
    tenants = [TenantFactory() for _ in range(7)]
    for i, t in enumerate(tenants):
        charge(t, f"{i}.01", "0.01")
        if i % 3 == 0:
            charge(t, "2", "1", currency="EUR")
    seen: list[tuple[int, str]] = []
    after = 0
    while True:
        rows, cursor = margin.margin_rows(period=MONTH, after_tenant=after, limit=3)
        seen += [(r.tenant_id, r.currency) for r in rows]
        if cursor is None:
            break
        after = cursor
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 7 + 3
    assert list(margin.iter_margin_rows(period=MONTH, batch=2)) == margin.margin_rows(period=MONTH, limit=100)[0]


def test_the_page_shows_totals_rows_and_chart_and_streams_a_safe_csv(
    client: Any, reseller_billing: Any, ledger: dict[str, Any]
) -> None:
    client.force_login(reseller_billing)
    page = client.get("/console/reselling/margin/?month=2026-03")
    body = page.content.decode()
    assert page.status_code == 200
    assert "Co a" in body and "margin-chart" in body and "Revenue and cost per month in KZT" in body
    assert "1000.5 KZT" in body and "100.25 KZT" in body
    response = client.get("/console/reselling/margin/?month=2026-03&format=csv")
    assert isinstance(response, StreamingHttpResponse)
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert lines[0] == ["month", "tenant", "company", "currency", "revenue", "cost", "margin", "charges"]
    assert len(lines) == 1 + 4
    assert any(row[2] == "'=cmd|evil" for row in lines[1:])  # a formula is defused
    sums: dict[str, Decimal] = {}
    for row in lines[1:]:
        sums[row[3]] = sums.get(row[3], D(0)) + D(row[4])
    assert sums == {cur: rev for cur, (rev, _) in ledger_sums(MONTH).items()}
    filtered = client.get(f"/console/reselling/margin/?month=2026-03&connection={ledger['kzt'].pk}")
    assert "Co a" not in filtered.content.decode()


@pytest.mark.parametrize("query", ["month=2026-3", "month=2026-13", "connection=x", "currency=US", "after=-1"])
def test_bad_filters_are_told_not_a_500(client: Any, reseller_billing: Any, query: str) -> None:
    client.force_login(reseller_billing)
    response = client.get(f"/console/reselling/margin/?{query}", follow=True)
    assert response.status_code == 200
    assert 'class="msg-error"' in response.content.decode() or "msg-error" in response.content.decode()


def test_support_staff_and_customers_do_not_see_margins(
    client: Any, reseller_support: Any, customer_owner: Any, ledger: dict[str, Any]
) -> None:
    for user in (reseller_support, customer_owner):
        client.force_login(user)
        assert client.get("/console/reselling/margin/").status_code == 403
        assert client.get("/console/reselling/margin/?format=csv").status_code == 403


# -- the API --------------------------------------------------------------------------------------


def test_staff_manage_plans_and_assignments_through_the_api(client: Any, reseller_billing: Any) -> None:
    headers = bearer(api_token(reseller_billing))
    created = client.post(
        "/api/v1/plans",
        {"name": "API plan", "currency": "USD", "topup_rule": "fee", "topup_fee": "1.50", "monthly_fee": "9"},
        content_type="application/json",
        headers=headers,
    )
    assert created.status_code == 201, created.content
    plan = created.json()
    assert (plan["topup_fee"], plan["monthly_fee"]) == ("1.50", "9.00")
    float_fee = client.patch(
        f"/api/v1/plans/{plan['id']}", {"topup_fee": 1.5}, content_type="application/json", headers=headers
    )
    assert float_fee.status_code == 400 and "topup_fee" in float_fee.json()["error"]["fields"]
    tenant = TenantFactory()
    day = (timezone.now().date() + timedelta(days=1)).isoformat()
    assigned = client.post(
        f"/api/v1/tenants/{tenant.uuid}/plan-assignments",
        {"plan": plan["id"], "effective_from": day},
        content_type="application/json",
        headers=headers,
    )
    assert assigned.status_code == 201 and assigned.json()["effective_from"] == day
    listed = client.get(f"/api/v1/tenants/{tenant.uuid}/plan-assignments", headers=headers).json()
    assert listed["current_plan"] is None and [r["effective_from"] for r in listed["results"]] == [day]
    past = client.post(
        f"/api/v1/tenants/{tenant.uuid}/plan-assignments",
        {"plan": plan["id"], "effective_from": "2020-01-01"},
        content_type="application/json",
        headers=headers,
    )
    assert past.status_code == 400 and past.json()["error"]["code"] == "date_in_past"
    sneaky = client.post(
        f"/api/v1/tenants/{tenant.uuid}/plan-assignments",
        {"plan": plan["id"], "tenant": str(tenant.uuid)},
        content_type="application/json",
        headers=headers,
    )
    assert sneaky.status_code == 400
    Charge.objects.create(
        tenant=tenant,
        plan_id=plan["id"],
        kind="monthly_fee",
        period=MONTH,
        occurred_at=timezone.now(),
        currency="USD",
        revenue=D("9"),
        cost=D("0"),
        description="fee",
        source_key="test:api-fee",
    )
    locked = client.patch(
        f"/api/v1/plans/{plan['id']}", {"monthly_fee": "10"}, content_type="application/json", headers=headers
    )
    assert locked.status_code == 409 and locked.json()["error"]["code"] == "plan_in_use"
    assert client.post(f"/api/v1/plans/{plan['id']}/archive", headers=headers).json()["archived_at"]
    assert client.get("/api/v1/plans/987654", headers=headers).status_code == 404
    assert PlanAssignment.objects.filter(tenant=tenant).count() == 1


def test_charges_and_margin_through_the_api_match_the_ledger(
    client: Any, reseller_admin: Any, ledger: dict[str, Any]
) -> None:
    headers = bearer(api_token(reseller_admin))
    a = ledger["tenants"][0]
    charges = client.get(f"/api/v1/charges?tenant={a.uuid}&month=2026-03&limit=1", headers=headers).json()
    assert len(charges["results"]) == 1 and charges["next"]
    rest = client.get(charges["next"], headers=headers).json()
    assert {D(r["revenue"]) for r in charges["results"] + rest["results"]} == {D("0.1"), D("0.2")}
    report = client.get("/api/v1/margin?month=2026-03&limit=2", headers=headers).json()
    assert report["month"] == "2026-03"
    assert {t["currency"]: (D(t["revenue"]), D(t["cost"])) for t in report["totals"]} == ledger_sums(MONTH)
    rows = report["results"]
    page = report
    while page["next"]:
        page = client.get(page["next"], headers=headers).json()
        rows += page["results"]
    assert len(rows) == 4
    csv_response = client.get("/api/v1/margin/csv?month=2026-03", headers=headers)
    assert csv_response.status_code == 200 and csv_response["Content-Type"].startswith("text/csv")
    assert len(b"".join(csv_response.streaming_content).decode().strip().splitlines()) == 5
    bad = client.get("/api/v1/margin?month=March", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["fields"]["month"]
    assert client.get("/api/v1/charges?kind=nope", headers=headers).status_code == 400


def test_customers_get_404_and_support_403_on_the_plans_api(
    client: Any, customer_owner: Any, customer_tenant: Any, reseller_support: Any
) -> None:
    plan = PricePlan.objects.create(name="Hidden", currency="USD")
    tenant = customer_tenant
    customer = bearer(api_token(customer_owner, tenant=tenant))
    paths = [
        "/api/v1/plans",
        f"/api/v1/plans/{plan.pk}",
        f"/api/v1/tenants/{tenant.uuid}/plan-assignments",
        "/api/v1/charges",
        "/api/v1/margin",
        "/api/v1/margin/csv",
    ]
    for path in paths:
        assert client.get(path, headers=customer).status_code == 404, path
    assert client.post("/api/v1/plans", {}, content_type="application/json", headers=customer).status_code == 404
    support = bearer(api_token(reseller_support))
    for path in paths:
        assert client.get(path, headers=support).status_code == 403, path


def test_the_schema_documents_the_plans_api(client: Any, reseller_admin: Any) -> None:
    client.force_login(reseller_admin)
    schema = client.get("/api/schema/?format=json").json()
    for path in ("/api/v1/plans", "/api/v1/plans/{plan_id}", "/api/v1/charges", "/api/v1/margin", "/api/v1/margin/csv"):
        assert path in schema["paths"], path
    assert "404" in schema["paths"]["/api/v1/margin"]["get"]["responses"]
