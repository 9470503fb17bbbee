"""The balance chart: every recorded point, the current balance, transfer markers, and a value
axis that fits the data instead of always starting at zero."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.charts import axis_bounds, balance_chart_svg
from billing.selectors import balance_chart_data
from tests.factories import TenantFactory, TransferFactory, balance_history

pytestmark = pytest.mark.django_db


def _circles(svg: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r'<circle cx="([0-9.]+)" cy="([0-9.]+)"', svg)]


def test_every_point_is_drawn_even_past_two_hundred() -> None:
    start = timezone.now() - timedelta(days=300)
    points = [(start + timedelta(hours=i), Decimal(100 + i % 7)) for i in range(450)]
    assert len(_circles(balance_chart_svg(points, width=800, height=200))) == 450


def test_the_axis_fits_the_data_not_zero() -> None:
    lo, hi = axis_bounds([Decimal("1000"), Decimal("1010")])
    assert Decimal("990") < lo < Decimal("1000") and Decimal("1010") < hi < Decimal("1020")
    now = timezone.now()
    svg = balance_chart_svg([(now - timedelta(days=1), Decimal("1000")), (now, Decimal("1010"))], height=220)
    ys = sorted(y for _, y in _circles(svg))
    assert ys[1] - ys[0] > 100  # a 1 % move fills most of the plot's 180 px
    assert 'stroke-dasharray="4 3"' not in svg  # no zero line outside the range
    both = balance_chart_svg([(now - timedelta(days=1), Decimal("-5")), (now, Decimal("5"))])
    assert 'stroke-dasharray="4 3"' in both  # the zero line where the balance crosses it
    flat_lo, flat_hi = axis_bounds([Decimal("50")])
    assert flat_lo < Decimal("50") < flat_hi


def test_transfers_are_markers_with_their_amount() -> None:
    now = timezone.now()
    svg = balance_chart_svg(
        [(now - timedelta(days=2), Decimal("10")), (now, Decimal("20"))],
        markers=[(now - timedelta(days=1), "Top-up: +10.00 USD")],
    )
    assert svg.count('class="transfer-marker"') == 1 and "Top-up: +10.00 USD" in svg


def test_a_balance_without_history_shows_its_current_point() -> None:
    tenant = TenantFactory(balance="42.00")
    points, markers = balance_chart_data(tenant=tenant, since=timezone.now() - timedelta(days=90))
    assert points == [(tenant.balance_synced_at, Decimal("42.00"))] and markers == []
    svg = balance_chart_svg(points, currency="USD")
    assert "No balance history" not in svg and len(_circles(svg)) == 1 and "42.00" in svg


def test_chart_data_has_the_history_the_current_balance_and_customer_words() -> None:
    tenant = TenantFactory(balance="70.00")
    balance_history(tenant, ["50", "60"], step=timedelta(hours=2))
    TransferFactory(tenant=tenant, amount="10.00", reason="staff only note", customer_description="")
    TransferFactory(tenant=tenant, state="failed", completed_at=None)
    since = timezone.now() - timedelta(days=90)
    points, markers = balance_chart_data(tenant=tenant, since=since, for_customer=True)
    assert [b for _, b in points] == [Decimal("50"), Decimal("60"), Decimal("70.00")]
    assert len(markers) == 1 and "+10.00 USD" in markers[0][1] and "staff only" not in markers[0][1]
    _, staff_markers = balance_chart_data(tenant=tenant, since=since)
    assert "staff only note" in staff_markers[0][1]


def test_the_customer_home_chart_has_the_balance_and_no_empty_message(client, customer_owner) -> None:
    client.force_login(customer_owner)
    html = client.get("/me/").content.decode()
    assert 'class="balance-chart"' in html and "No balance history" not in html and "<circle" in html
