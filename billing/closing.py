"""Billing's side of the staged tenant close (tenants/services/balance.py states what it needs):
pull the remaining balance back to the parent, and say how that transfer stands."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User

from billing.models import Transfer
from billing.services import transfer_withdraw_balance
from tenants.models import Tenant


class BillingBalanceReturn:
    def transfer_state(self, ref: str) -> str | None:
        return Transfer.objects.filter(pk=ref).values_list("state", flat=True).first()

    def pull_back_started(self, *, tenant: Tenant, since: datetime) -> str | None:
        transfer = (
            Transfer.objects.filter(tenant_id=tenant.pk, direction=Transfer.Direction.TO_PARENT, created_at__gte=since)
            .exclude(state=Transfer.State.FAILED)
            .order_by("-id")
            .first()
        )
        return str(transfer.pk) if transfer is not None else None

    def pull_back(self, *, actor: User | None, tenant: Tenant, reason: str) -> str | None:
        transfer = transfer_withdraw_balance(actor=actor, tenant=tenant, reason=reason)
        return str(transfer.pk) if transfer is not None else None
