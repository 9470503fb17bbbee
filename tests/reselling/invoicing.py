"""Test data for invoices: charges written directly (they are the input of the run)."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

PERIOD = date(2026, 1, 1)
_keys = itertools.count(1)


def plan(**values: Any) -> Any:
    from reselling.models import PricePlan

    defaults: dict[str, Any] = {"name": f"Plan {next(_keys)}", "currency": "USD", "payment_terms_days": 14}
    return PricePlan.objects.create(**(defaults | values))


def charge(tenant: Any, revenue: str, *, period: date = PERIOD, kind: str = "usage", **values: Any) -> Any:
    from reselling.models import Charge

    return Charge.objects.create(
        tenant=tenant,
        kind=kind,
        period=period,
        occurred_at=values.pop("occurred_at", timezone.make_aware(datetime(period.year, period.month, 10))),
        currency=values.pop("currency", "USD"),
        revenue=Decimal(revenue),
        cost=Decimal(values.pop("cost", "0")),
        description=values.pop("description", f"{kind} charge"),
        source_key=f"test:{next(_keys)}",
        **values,
    )


def run(period: date = PERIOD, **kwargs: Any) -> Any:
    """The run of ``period``, started by the system and worked to its end in-process."""
    from reselling.invoices import invoice_run_execute, invoice_run_start

    started = invoice_run_start(actor=None, period=period, enqueue=False)
    return invoice_run_execute(run_id=started.pk, **kwargs)


def invoice_of(tenant: Any, period: date = PERIOD) -> Any:
    from reselling.models import Invoice

    return Invoice.objects.get(tenant=tenant, period=period, kind="invoice")
