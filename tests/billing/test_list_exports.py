"""The transfer, drift and sync-run lists: id sorts both ways with keyset paging, capped
totals, and the streamed CSV exports with exact amounts."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from billing import selectors
from billing.models import DriftItem, SyncRun
from tests.factories import TenantFactory, TransferFactory

pytestmark = pytest.mark.django_db


def _csv(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def transfers(db):
    tenant = TenantFactory(company_name="Harbor Ltd")
    done = [TransferFactory(tenant=tenant, amount="10.00") for _ in range(4)]
    unknown = [TransferFactory(tenant=tenant, state="unknown", amount="2.50") for _ in range(2)]
    return done + unknown


@pytest.mark.parametrize("sort", ["id", "-id"])
def test_transfer_pages_follow_the_sort_both_ways(transfers, sort):
    seen, cursor = [], None
    while True:
        page = selectors.transfer_list(limit=4, sort=sort, cursor=cursor)
        seen += [t.pk for t in page.items]
        if not (cursor := page.next_cursor):
            break
    assert seen == sorted((t.pk for t in transfers), reverse=sort == "-id")


def test_the_transfer_page_shows_a_total_a_sort_header_and_refuses_a_bad_sort(client, reseller_support, transfers):
    client.force_login(reseller_support)
    html = client.get(reverse("billing:transfers"), {"state": "unknown"}).content.decode()
    assert "2 transfers" in html and 'data-sort="id"' in html
    older_first = client.get(reverse("billing:transfers"), {"sort": "id"}).content.decode()
    assert 'aria-sort="ascending" data-sort="id"' in older_first
    bad = client.get(reverse("billing:transfers"), {"sort": "amount"})
    assert bad.status_code == 200 and "Choose a sort order from the list." in bad.content.decode()


def test_the_transfer_export_streams_the_filtered_rows(client, reseller_billing, transfers):
    client.force_login(reseller_billing)
    response = client.get(reverse("billing:transfers_export"), {"state": "unknown", "sort": "id"})
    assert response["Content-Disposition"] == 'attachment; filename="transfers.csv"'
    rows = _csv(response)
    assert rows[0][:5] == ["uuid", "created_utc", "tenant", "direction", "amount"]
    assert [r[0] for r in rows[1:]] == [str(t.uuid) for t in transfers if t.state == "unknown"]
    assert {r[4] for r in rows[1:]} == {"2.50"} and {r[2] for r in rows[1:]} == {"Harbor Ltd"}
    assert client.get(reverse("billing:transfers_export"), {"state": "nope"}).status_code == 400


def test_drift_list_totals_pages_and_exports(client, reseller_admin):
    tenant = TenantFactory()
    items = [
        DriftItem.objects.create(
            connection=tenant.connection,
            tenant=tenant,
            kind="missing_in_portal",
            fingerprint=f"fp-{i}",
            provider_amount=Decimal("1.2345"),
            currency="USD",
        )
        for i in range(3)
    ]
    DriftItem.objects.filter(pk=items[0].pk).update(resolved_at=timezone.now())
    client.force_login(reseller_admin)
    html = client.get(reverse("billing:drift")).content.decode()
    assert "2 items" in html and 'data-sort="id"' in html
    assert "3 items" in client.get(reverse("billing:drift"), {"all": "1"}).content.decode()
    rows = _csv(client.get(reverse("billing:drift_export"), {"sort": "id"}))
    assert [r[0] for r in rows[1:]] == [str(items[1].uuid), str(items[2].uuid)]
    assert {r[5] for r in rows[1:]} == {"1.2345"}
    assert client.get(reverse("billing:drift_export"), {"sort": "kind"}).status_code == 400


def test_sync_runs_page_shows_a_total_and_pages_by_cursor(client, reseller_support):
    conn = TenantFactory().connection
    now = timezone.now()
    runs = [
        SyncRun.objects.create(connection=conn, state="succeeded", started_at=now - timedelta(hours=i), finished_at=now)
        for i in range(3)
    ]
    client.force_login(reseller_support)
    html = client.get(reverse("billing:sync_runs"), {"sort": "id"}).content.decode()
    assert "3 runs" in html and 'aria-sort="ascending" data-sort="id"' in html
    assert selectors.sync_run_list(sort="id", cursor=runs[0].pk) == runs[1:]
    rows = _csv(client.get(reverse("billing:sync_runs_export"), {"sort": "id"}))
    assert [r[0] for r in rows[1:]] == [str(r.uuid) for r in runs] and rows[1][5] == "succeeded"


@pytest.mark.parametrize("name", ["billing:transfers_export", "billing:drift_export", "billing:sync_runs_export"])
def test_the_exports_are_staff_only(client, customer_owner, name):
    assert client.get(reverse(name)).status_code == 302  # anonymous: log in first
    client.force_login(customer_owner)
    assert client.get(reverse(name)).status_code == 403
