"""The console home's billing panel (composed by console/views.py)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone


def summary() -> dict[str, Any]:
    from billing.models import Transfer
    from billing.selectors import parent_summary

    unresolved = Transfer.objects.filter(
        Q(state__in=Transfer.UNRESOLVED) | Q(state=Transfer.State.SENDING, lease_until__lt=timezone.now())
    ).count()
    awaiting = Transfer.objects.filter(
        state=Transfer.State.PENDING, requires_approval=True, approved_at__isnull=True
    ).count()
    return {
        "billing_parent_summary": parent_summary(),
        "billing_unresolved_count": unresolved,
        "billing_awaiting_count": awaiting,
        "console_panels": ["billing/_console_panel.html"],
    }
