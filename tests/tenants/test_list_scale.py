"""The tenant list at scale: column sorts that keyset paging follows page after page, totals
that are capped instead of counted, "select all that match" through the dry run, and the
streamed CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.urls import reverse

from portal.listing import COUNT_CAP, Total, list_total
from portal.models import Job
from tenants import selectors
from tenants.models import Tenant
from tests.factories import ProviderConnectionFactory, TenantFactory
from tests.tenants.conftest import create_vox, drain

pytestmark = pytest.mark.django_db


def _walk_pages(filters: dict[str, str], limit: int) -> list[int]:
    seen, cursor = [], None
    for _ in range(100):
        page = selectors.tenant_list(filters=filters, cursor=cursor, limit=limit)
        seen += [t.pk for t in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the pages never ended")


@pytest.fixture
def mixed(db):
    conn = ProviderConnectionFactory(currency="USD")
    names = ["beta", "Alpha", "gamma", "alpha", "Beta", "delta", "alpha"]
    balances = ["5.00", None, "1.50", "5.00", "-2.00", None, "7.25"]
    return [TenantFactory(connection=conn, company_name=n, balance=b) for n, b in zip(names, balances, strict=True)]


@pytest.mark.parametrize("sort", sorted(selectors.SORTS))
def test_every_sort_pages_through_every_row_once_in_order(mixed, sort):
    got = _walk_pages({"sort": sort}, limit=2)
    rows = {t.pk: t for t in mixed}
    desc = sort.startswith("-")
    if sort in ("id", "-id"):
        expected = sorted(rows, reverse=desc)
    elif sort in ("company", "-company"):
        expected = sorted(rows, key=lambda pk: (rows[pk].company_name, pk), reverse=desc)
    else:
        known = sorted((pk for pk in rows if rows[pk].balance is not None), key=lambda pk: (rows[pk].balance, pk))
        expected = (known[::-1] if desc else known) + sorted(pk for pk in rows if rows[pk].balance is None)
    assert got == expected


def test_the_headers_sort_by_indexed_columns_only_and_toggle(client, reseller_admin, mixed):
    client.force_login(reseller_admin)
    html = client.get(reverse("tenants:list")).content.decode()
    sortable = {key for key in ("company", "balance", "status", "account") if f'data-sort="{key}"' in html}
    assert sortable == {"company", "balance"}
    assert 'href="?sort=company"' in html
    ascending = client.get(reverse("tenants:list"), {"sort": "company", "status": "active"}).content.decode()
    assert 'aria-sort="ascending" data-sort="company"' in ascending
    assert "sort=-company" in ascending and "status=active" in ascending  # the filter is kept


def test_a_balance_header_is_not_offered_across_currencies(client, reseller_admin, mixed):
    ProviderConnectionFactory(currency="EUR")
    client.force_login(reseller_admin)
    html = client.get(reverse("tenants:list")).content.decode()
    assert 'data-sort="balance"' not in html and 'data-sort="company"' in html
    assert 'data-sort="balance"' in client.get(reverse("tenants:list"), {"currency": "USD"}).content.decode()


def test_totals_are_exact_below_the_cap_and_capped_above_it(mixed):
    assert list_total(Tenant.objects.all(), filtered=False) == Total(7)
    # At its cap the count stops; PostgreSQL then gives the planner's estimate instead.
    capped = list_total(Tenant.objects.all(), filtered=True, cap=5)
    assert (str(capped) == "more than 5") if connection.vendor == "sqlite" else str(capped).startswith("about ")
    assert selectors.tenant_total(filters={"q": "alpha"}) == Total(3)
    assert str(Total(530_000, "estimate")) == "about 530,000"


def _bulk_tenants(n: int, conn) -> None:
    Tenant.objects.bulk_create(
        Tenant(
            uuid=uuid.uuid4(),
            connection=conn,
            company_name=f"=Bulk {i:05d}" if i == 0 else f"Bulk {i:05d}",
            account_name=f"bulk-{i}",
            account_email=f"bulk{i}@example.com",
            provider_account_id=500_000 + i,
            status="active",
            balance=Decimal("12.3456"),
            currency="USD",
        )
        for i in range(n)
    )


def test_a_10k_row_export_streams_every_row_with_exact_amounts(client, reseller_billing):
    conn = ProviderConnectionFactory(name="Vox export")
    _bulk_tenants(COUNT_CAP + 1, conn)
    client.force_login(reseller_billing)
    page = client.get(reverse("tenants:list")).content.decode()
    assert "more than 10,000 tenants" in page  # SQLite has no statistics: a capped count
    response = client.get(reverse("tenants:export"), {"sort": "company"})
    assert isinstance(response, StreamingHttpResponse) and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="tenants.csv"'
    assert response["Cache-Control"] == "no-store"
    chunks = list(response.streaming_content)
    assert len(chunks) > 10  # sent while the rows are read, not built whole first
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert rows[0][:3] == ["uuid", "company_name", "account_name"]
    body = rows[1:]
    assert len(body) == COUNT_CAP + 1
    companies = [r[1] for r in body]
    assert companies == sorted(companies)  # the list's own order
    assert companies[0] == "'=Bulk 00000"  # a formula is defused
    assert {r[7] for r in body} == {"12.3456"} and {r[4] for r in body} == {"Vox export"}


def test_an_export_follows_the_filter_and_refuses_a_bad_one(client, reseller_support, mixed):
    client.force_login(reseller_support)
    response = client.get(reverse("tenants:export"), {"q": "alpha"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))[1:]
    assert sorted(r[1] for r in rows) == ["Alpha", "alpha", "alpha"]
    bad = client.get(reverse("tenants:export"), {"sort": "notes"})
    assert bad.status_code == 400 and "sort order" in bad.content.decode()


@pytest.mark.parametrize("persona,status", [("customer_owner", 403), ("no_role_user", 403)])
def test_the_export_is_staff_only(client, request, persona, status, mixed):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("tenants:export")).status_code == status


def test_the_export_asks_an_anonymous_visitor_to_log_in(client):
    response = client.get(reverse("tenants:export"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_select_all_that_match_goes_through_the_dry_run_and_freezes_exactly_the_filter(
    client, vox_connection, reseller_admin, sandbox, django_capture_on_commit_callbacks, celery_eager
):
    matching = [
        create_vox(vox_connection, reseller_admin, name=n, company_name=f"Harbor {n}")
        for n in ("harbor-one", "harbor-two", "harbor-six")
    ]
    other = create_vox(vox_connection, reseller_admin, name="quay-one", company_name="Quay One")
    drain()
    client.force_login(reseller_admin)
    dry = client.post(
        reverse("tenants:bulk"),
        {"action": "freeze", "scope": "filter", "reason": "audit", "q": "harbor", "status": "active"},
    )
    html = dry.content.decode()
    assert dry.status_code == 200 and "dry run" in html
    assert "3 tenants match the filter" in html and 'name="ids"' not in html
    assert not Job.objects.filter(kind="tenants.bulk_freeze").exists()  # nothing ran yet
    with django_capture_on_commit_callbacks(execute=True):
        run = client.post(
            reverse("tenants:bulk"),
            {"action": "freeze", "scope": "filter", "run": "1", "reason": "audit", "q": "harbor", "status": "active"},
        )
    assert run.status_code == 302
    job = Job.objects.get(kind="tenants.bulk_freeze")
    assert job.state == "succeeded" and job.total == 3 and job.done == 3
    assert sorted(r["id"] for r in job.results) == sorted(t.pk for t in matching)
    statuses = dict(Tenant.objects.values_list("pk", "status"))
    assert all(statuses[t.pk] == "frozen" for t in matching) and statuses[other.pk] == "active"
    assert sandbox.store().child_by_name("quay-one") is not None


def test_select_all_refuses_a_bad_filter_on_its_field(client, reseller_support):
    client.force_login(reseller_support)
    response = client.post(
        reverse("tenants:bulk"), {"action": "freeze", "scope": "filter", "reason": "x", "status": "sleeping"}
    )
    assert response.status_code == 200 and "Choose a status from the list." in response.content.decode()


def test_a_filter_that_matches_nothing_starts_no_job(client, reseller_support, mixed):
    client.force_login(reseller_support)
    response = client.post(
        reverse("tenants:bulk"),
        {"action": "freeze", "scope": "filter", "run": "1", "reason": "audit", "q": "nobody-here"},
        follow=True,
    )
    assert "No tenant matches the filter." in response.content.decode()
    assert not Job.objects.exists()
