"""Low-balance thresholds and alerts.

A sync that sees a balance cross below the tenant's threshold records one LowBalanceAlert
(billing.sync); this module sends it: one email to the tenant's owners, one to staff. Each
email is claimed with a conditional UPDATE before sending, so a duplicated task cannot send
it twice. The alert re-arms only when a sync sees the balance back at or above the threshold.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from billing import provider as prov
from billing.models import LowBalanceAlert
from portal.audit import audit_log
from portal.errors import NotAllowed, PortalError
from portal.roles import Role, has_perm
from providers.capabilities import Capability
from providers.errors import InvalidArgument, ProviderError
from tenants.models import Tenant

logger = logging.getLogger("billing.alerts")


def parse_threshold(value: object) -> Decimal | None:
    """'' or None clears the threshold; otherwise a non-negative decimal with ≤ 4 places."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise PortalError("Enter the threshold as a decimal number.", field="threshold")
    try:
        threshold = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise PortalError("Enter the threshold as a decimal number.", field="threshold") from None
    if isinstance(value, str) and not value.isascii():
        raise PortalError("Enter the threshold with ASCII digits.", field="threshold")
    if not threshold.is_finite() or threshold < 0 or threshold > Decimal("99999999"):
        raise PortalError("Enter a threshold between 0 and 99999999.", field="threshold")
    if threshold != threshold.quantize(Decimal("0.0001")):
        raise PortalError("At most 4 decimal places.", field="threshold")
    return threshold.quantize(Decimal("0.0001"))


def tenant_set_low_balance_threshold(
    *, actor: Any, tenant: Any, threshold: Decimal | None, request: Any = None
) -> None:
    """Set the tenant's low-balance threshold and push it to the provider's
    min_balance_to_notify (a task, after commit). None clears it (0 at the provider)."""
    if not (has_perm(actor, "billing.move_money") or has_perm(actor, "tenants.manage")):
        raise NotAllowed("You may not change the low-balance threshold.", code="forbidden")
    threshold = parse_threshold(threshold)
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(low_balance_threshold=threshold, updated_at=timezone.now())
        audit_log(
            actor=actor,
            action="billing.threshold.set",
            tenant_id=tenant.pk,
            request=request,
            data={
                "threshold": str(threshold) if threshold is not None else None,
                "previous": str(tenant.low_balance_threshold) if tenant.low_balance_threshold is not None else None,
            },
        )
        tenant_id = tenant.pk

        def push() -> None:
            from billing.tasks import threshold_push_task

            try:
                threshold_push_task.delay(tenant_id)
            except Exception:  # noqa: BLE001 - the next change or a staff retry pushes it
                logger.warning("could not publish the threshold push for tenant %s", tenant_id, exc_info=True)

        transaction.on_commit(push)
    tenant.low_balance_threshold = threshold


def threshold_push(*, tenant_id: int) -> bool:
    """Send the tenant's current threshold to the provider. Reads the value at run time, so
    pushes that arrive out of order still leave the latest value in place. Idempotent."""
    tenant = Tenant.objects.select_related("connection").get(pk=tenant_id)
    if (
        tenant.provider_account_id is None
        or not prov.supports(tenant.connection, Capability.UPDATE_PROFILE)
        or tenant.connection.kind != "voximplant"
    ):
        return False
    value = tenant.low_balance_threshold if tenant.low_balance_threshold is not None else Decimal(0)
    prov.set_low_balance_threshold(tenant.connection, int(tenant.provider_account_id), value)
    return True


def _owner_emails(tenant_id: int) -> list[str]:
    from django.contrib.auth import get_user_model

    users = (
        get_user_model()
        .objects.filter(membership__tenant_id=tenant_id, groups__name=Role.CUSTOMER_OWNER, is_active=True)
        .exclude(email="")
    )
    return sorted({u.email for u in users})


def low_balance_alerts_send(*, limit: int = 500) -> int:
    """Send every alert not yet sent. Returns the number of emails sent."""
    sent = 0
    pending = LowBalanceAlert.objects.filter(owners_sent_at__isnull=True) | LowBalanceAlert.objects.filter(
        staff_sent_at__isnull=True
    )
    for alert in pending.select_related("tenant").order_by("id")[:limit]:
        tenant = alert.tenant
        subject = f"Low balance: {tenant.company_name} has {alert.balance.normalize():f} {alert.currency}"
        body = (
            f"The balance of {tenant.company_name} is {alert.balance} {alert.currency}, below the alert "
            f"threshold of {alert.threshold} {alert.currency}.\n\nTop up the account to keep calls running.\n"
        )
        for column, recipients in (
            ("owners_sent_at", _owner_emails(tenant.pk)),
            ("staff_sent_at", list(settings.STAFF_ALERT_EMAILS)),
        ):
            if getattr(alert, column) is not None:
                continue
            # Claim first: a duplicate run finds the column set and sends nothing.
            if not LowBalanceAlert.objects.filter(pk=alert.pk, **{f"{column}__isnull": True}).update(
                **{column: timezone.now()}
            ):
                continue
            if not recipients:
                continue
            try:
                EmailMessage(subject=subject, body=body, to=recipients).send()
                sent += 1
            except Exception:  # noqa: BLE001 - un-claim so the next run retries
                logger.warning("low-balance email for tenant %s failed", tenant.pk, exc_info=True)
                LowBalanceAlert.objects.filter(pk=alert.pk).update(**{column: None})
                continue
            audit_log(
                actor=None,
                action="billing.alert.low_balance",
                tenant_id=tenant.pk,
                data={
                    "to": "owners" if column == "owners_sent_at" else "staff",
                    "recipients": len(recipients),
                    "balance": str(alert.balance),
                    "threshold": str(alert.threshold),
                },
            )
    return sent


RETRYABLE = (ProviderError,)
NOT_RETRYABLE = (InvalidArgument,)
