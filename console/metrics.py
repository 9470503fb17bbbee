"""The money and sync gauges of /metrics, read from the database at scrape time.

Registered with the portal's registry by ``ConsoleConfig.ready()``: the portal owns /metrics
but may not import billing, so the collector lives here, on top of every app. Each query is
an aggregate over an indexed column, bounded whatever the number of tenants:

- open transfers by state: a range of the (state, next_attempt_at) index per open state;
- transfers created in the last 24 hours by state: a range of the created_at index;
- the oldest unresolved transfer: the same state index, over the few unresolved rows;
- the last successful balance sync per provider connection: one row per connection and night.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.db import DatabaseError
from django.db.models import Count, Max, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from billing.models import SyncRun, Transfer
from tenants.models import ProviderConnection

logger = logging.getLogger(__name__)

RECENT = timedelta(hours=24)


class BusinessCollector:
    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("portal_business_metrics_up", "1 when the money and sync gauges could be read.")
        try:
            families = list(self._families())
        except DatabaseError:
            logger.warning("the money and sync gauges could not be read", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterable[Metric]:
        now = timezone.now()

        open_by_state = GaugeMetricFamily(
            "portal_transfers_open", "Transfers not yet succeeded or failed, by state.", labels=["state"]
        )
        counts = dict(
            Transfer.objects.filter(state__in=Transfer.OPEN)
            .order_by()
            .values_list("state")
            .annotate(n=Count("state"))  # answered from the index alone
            .values_list("state", "n")
        )
        for state in Transfer.State:
            if state in Transfer.OPEN:
                open_by_state.add_metric([state.value], counts.get(state.value, 0))
        yield open_by_state

        recent = GaugeMetricFamily(
            "portal_transfers_created_24h",
            "Transfers created in the last 24 hours, by their state now.",
            labels=["state"],
        )
        counts = dict(
            Transfer.objects.filter(created_at__gte=now - RECENT)
            .order_by()
            .values_list("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        )
        for state in Transfer.State:
            recent.add_metric([state.value], counts.get(state.value, 0))
        yield recent

        oldest = Transfer.objects.filter(state__in=Transfer.UNRESOLVED).aggregate(at=Min("created_at"))["at"]
        yield GaugeMetricFamily(
            "portal_transfer_oldest_unresolved_age_seconds",
            "Age of the oldest transfer whose outcome is unknown, to resend or under review (0 when none).",
            value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )

        sync_age = GaugeMetricFamily(
            "portal_balance_sync_last_success_age_seconds",
            "Seconds since the last successful balance sync of each provider connection finished.",
            labels=["connection"],
        )
        last = dict(
            SyncRun.objects.filter(kind=SyncRun.Kind.BALANCES, state=SyncRun.State.SUCCEEDED)
            .order_by()
            .values_list("connection_id")
            .annotate(at=Max("finished_at"))
            .values_list("connection_id", "at")
        )
        names = dict(ProviderConnection.objects.filter(pk__in=last).values_list("pk", "name"))
        for connection_id, at in sorted(last.items()):
            if at is not None and connection_id in names:
                sync_age.add_metric([names[connection_id]], max(0.0, (now - at).total_seconds()))
        yield sync_age
