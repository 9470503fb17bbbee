"""The console home's story of the day: counts against seeded data, each connection's last
sync and provider answers, the parent balance chart, and the refresh through the live part."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import ParentBalanceSnapshot, SyncRun
from tests.factories import ProviderConnectionFactory, TenantFactory, TransferFactory

pytestmark = pytest.mark.django_db


def _stat(html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}">.*?<div class="value">(.*?)</div>', html, re.S)
    assert match, testid
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


@pytest.fixture
def seeded(db):
    conn = ProviderConnectionFactory(name="Vox main", currency="USD")
    for _ in range(4):
        TenantFactory(connection=conn)
    TenantFactory(connection=conn, status="frozen", is_low_balance=True)
    TenantFactory(connection=conn, is_low_balance=True, has_drift=True)
    TransferFactory(tenant=TenantFactory(connection=conn, status="closed"), state="unknown")
    paying = TenantFactory(connection=conn)
    TransferFactory(tenant=paying, state="failed", completed_at=timezone.now())
    TransferFactory(tenant=paying, completed_at=timezone.now() - timedelta(hours=30))  # outside the 24 h
    TransferFactory(tenant=paying)
    now = timezone.now()
    SyncRun.objects.create(
        connection=conn,
        state="failed",
        errors=3,
        started_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=1),
    )
    for days, amount in ((3, "900.00"), (2, "850.00"), (1, "800.0000")):
        ParentBalanceSnapshot.objects.create(
            connection=conn, balance=Decimal(amount), currency="USD", taken_at=now - timedelta(days=days)
        )
    return conn


def test_the_home_counts_match_the_seeded_tenants_and_transfers(client, reseller_billing, seeded):
    client.force_login(reseller_billing)
    html = client.get(reverse("console:home")).content.decode()
    assert _stat(html, "status-active") == "6"
    assert _stat(html, "status-frozen") == "1" and _stat(html, "status-closed") == "1"
    assert 'data-testid="status-closing"' not in html  # an empty state is left out
    assert _stat(html, "low-balance") == "2" and _stat(html, "with-drift") == "1"
    assert _stat(html, "unresolved") == "1"


def test_each_connection_shows_its_last_sync_and_provider_answers(client, reseller_support, seeded):
    client.force_login(reseller_support)
    html = client.get(reverse("console:home")).content.decode()
    row = re.search(rf'<tr data-connection="{seeded.uuid}">(.*?)</tr>', html, re.S).group(1)
    assert "Failed" in row and "3 errors" in row
    assert "ago" in row  # the parent balance snapshots are answers from the provider
    assert "1 done, 1 failed (50% failed)" in row


def test_the_parent_balance_is_drawn_over_time_with_the_money_filter(client, reseller_admin, seeded):
    client.force_login(reseller_admin)
    html = client.get(reverse("console:home")).content.decode()
    chart = re.search(r'data-testid="parent-chart">(.*?)</figure>', html, re.S).group(1)
    assert "<svg" in chart and "Vox main" in chart and "3 readings" in chart
    assert "800.00 USD" in chart


def test_the_story_refreshes_in_place_through_the_live_part(client, reseller_admin, seeded):
    client.force_login(reseller_admin)
    page = client.get(reverse("console:home")).content.decode()
    assert 'hx-get="/console/?part=panels"' in page
    TenantFactory(connection=seeded, has_drift=True)
    part = client.get(reverse("console:home"), {"part": "panels"})
    body = part.content.decode()
    assert part.status_code == 200 and "<h1>" not in body and _stat(body, "with-drift") == "2"


@pytest.mark.parametrize("persona", ["customer_owner", "no_role_user"])
def test_customers_and_users_without_a_role_do_not_get_the_story(client, request, persona, seeded):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("console:home"), {"part": "panels"}).status_code == 403
