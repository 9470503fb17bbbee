"""The margin report's filters (from a query string) and its CSV export: one definition for
the staff page (reselling.views_plans) and the API (api.reselling_plans)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone

from portal import inputs
from portal.errors import PortalError
from portal.listing import stream_csv
from reselling import margin


def _month(raw: str | None) -> date:
    if not raw:
        return timezone.now().date().replace(day=1)
    day = inputs.iso_month(raw, field="month")
    assert day is not None
    return day


def report_filters(params: Any) -> dict[str, Any]:
    """The report's filters from a query string: month (YYYY-MM), connection (id), currency,
    cursor (a tenant id). PortalError for anything malformed."""
    period = _month(params.get("month", ""))
    connection_id = None
    raw = params.get("connection", "")
    if raw:
        if not inputs.is_ascii_digits(raw):
            raise PortalError("Choose a connection.", field="connection", code="invalid")
        connection_id = int(raw)
    currency = (params.get("currency", "") or "").strip().upper() or None
    if currency is not None and not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        raise PortalError("Enter a three-letter currency code.", field="currency", code="invalid")
    return {
        "period": period,
        "connection_id": connection_id,
        "currency": currency,
        "after": page_cursor(params, "after") or 0,
    }


def page_cursor(params: Any, name: str) -> int | None:
    """A keyset page link's id (``after`` or ``before``): None when absent, PortalError when
    it is not a whole number."""
    raw = params.get(name, "")
    if not raw:
        return None
    if not inputs.is_ascii_digits(raw):
        raise PortalError("This page link is not valid; start from the first page.", field=name)
    return int(raw)


MARGIN_CSV_HEADER = ["month", "tenant", "company", "currency", "revenue", "cost", "margin", "charges"]


def margin_csv(*, period: date, connection_id: int | None, currency: str | None) -> StreamingHttpResponse:
    """Every row of the month, streamed page by page: memory stays flat whatever the size."""
    month = period.strftime("%Y-%m")
    rows = margin.iter_margin_rows(period=period, connection_id=connection_id, currency=currency)
    return stream_csv(
        f"margin-{month}.csv",
        MARGIN_CSV_HEADER,
        rows,
        lambda row: (
            month,
            row.tenant.uuid if row.tenant else row.tenant_id,
            row.tenant.company_name if row.tenant else "",
            row.currency,
            row.revenue,
            row.cost,
            row.margin,
            row.charges,
        ),
    )
