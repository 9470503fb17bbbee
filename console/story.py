"""The day's story at the top of the console home: how the tenants stand, what needs a
human, how fresh each provider connection's data is and how its calls fare, and the parent
balance over time.

Every figure is bounded whatever the number of tenants: counts go through
portal.listing.list_total (an indexed count capped at 10,000, or the database's estimate), the
per-connection facts read the newest row of an index range, and the chart reads at most
CHART_POINTS snapshots. It refreshes with the other panels (console/_home_panels.html).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Max
from django.utils import timezone

from billing.charts import balance_chart_svg
from billing.models import ParentBalanceSnapshot, SyncRun, Transfer
from billing.selectors import transfer_total
from portal.listing import list_total
from tenants.capability_probe import MISSING, capability_rows
from tenants.models import ProviderConnection, Tenant

CHART_DAYS = 30
CHART_POINTS = 500
RECENT = timedelta(hours=24)


def _tenant_counts() -> dict[str, Any]:
    # Flags as "__in=[True]": an index seek on SQLite too (tenants.selectors._filtered).
    statuses = [
        {"value": value, "label": label, "total": list_total(Tenant.objects.filter(status=value), filtered=True)}
        for value, label in Tenant.Status.choices
    ]
    return {
        "statuses": statuses,
        "low_balance": list_total(Tenant.objects.filter(is_low_balance__in=[True]), filtered=True),
        "drift": list_total(Tenant.objects.filter(has_drift__in=[True]), filtered=True),
        "unresolved": transfer_total(state="unresolved"),
    }


def _connection_facts(connection: ProviderConnection, now: Any) -> dict[str, Any]:
    last_sync = (
        SyncRun.objects.filter(connection=connection, kind=SyncRun.Kind.BALANCES)
        .exclude(state=SyncRun.State.RUNNING)
        .order_by("-id")
        .first()
    )
    running = SyncRun.objects.filter(connection=connection, state=SyncRun.State.RUNNING).exists()
    done = Transfer.objects.filter(
        connection=connection,
        state__in=(Transfer.State.SUCCEEDED, Transfer.State.FAILED),
        completed_at__gte=now - RECENT,
    )
    succeeded = list_total(done.filter(state=Transfer.State.SUCCEEDED), filtered=True)
    failed = list_total(done.filter(state=Transfer.State.FAILED), filtered=True)
    # The last answer the provider gave: a finished sync, a transfer it confirmed, a parent
    # balance it reported.
    answers = [
        SyncRun.objects.filter(connection=connection, state=SyncRun.State.SUCCEEDED).aggregate(at=Max("finished_at"))[
            "at"
        ],
        Transfer.objects.filter(connection=connection, state=Transfer.State.SUCCEEDED).aggregate(
            at=Max("completed_at")
        )["at"],
        ParentBalanceSnapshot.objects.filter(connection=connection).aggregate(at=Max("taken_at"))["at"],
    ]
    known = [a for a in answers if a is not None]
    rows = capability_rows(connection)
    attempts = succeeded.value + failed.value
    return {
        "connection": connection,
        "last_sync": last_sync,
        "last_sync_age": (now - last_sync.finished_at) if last_sync and last_sync.finished_at else None,
        "sync_running": running,
        "last_success_at": max(known) if known else None,
        "methods_missing": sum(1 for r in rows if r["state"] == MISSING),
        "methods_total": len(rows),
        "transfers_ok": succeeded,
        "transfers_failed": failed,
        # Exact only when both counts are: a rate of capped counts would be invented.
        "failure_percent": round(100 * failed.value / attempts)
        if attempts and succeeded.exact and failed.exact
        else None,
    }


def _parent_charts(connections: list[ProviderConnection], now: Any) -> list[dict[str, Any]]:
    charts = []
    for connection in connections:
        snapshots = list(
            ParentBalanceSnapshot.objects.filter(connection=connection, taken_at__gte=now - timedelta(days=CHART_DAYS))
            .order_by("-taken_at")
            .values_list("taken_at", "balance", "currency")[:CHART_POINTS]
        )
        if not snapshots:
            continue
        currency = snapshots[0][2] or connection.currency
        charts.append(
            {
                "connection": connection,
                "currency": currency,
                "latest": snapshots[0][1],
                "points": len(snapshots),
                "svg": balance_chart_svg([(t, b) for t, b, _ in snapshots], currency=currency),
            }
        )
    return charts


def day_story() -> dict[str, Any]:
    """The console home's first panel (console/views.py composes it)."""
    now = timezone.now()
    connections = list(ProviderConnection.objects.filter(is_active=True).order_by("name"))
    return {
        "story": {
            **_tenant_counts(),
            "connections": [_connection_facts(c, now) for c in connections],
            "parent_charts": _parent_charts(connections, now),
            "chart_days": CHART_DAYS,
        },
        "console_panels": ["console/_story.html"],
    }
