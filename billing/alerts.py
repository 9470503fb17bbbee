"""Low-balance thresholds and alerts.

A sync that sees a balance cross below the tenant's threshold records one LowBalanceAlert
(billing.sync); this module sends it: one email to the tenant's owners, one to staff. Each
email is claimed with a conditional UPDATE before sending, so a duplicated task cannot send
it twice. The alert re-arms only when a sync sees the balance back at or above the threshold.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from billing.models import LowBalanceAlert
from billing.transitions import Actor
from portal import inputs
from portal.audit import audit_log
from portal.errors import Conflict, NotAllowed
from providers.errors import InvalidArgument, ProviderError
from tenants.models import Tenant
from tenants.selectors import owner_emails
from tenants.services import may_set_threshold, tenant_push_threshold

logger = logging.getLogger("billing.alerts")


def parse_threshold(value: object) -> Decimal | None:
    """The one threshold rule (portal.inputs.threshold), named for the billing panel's field."""
    return inputs.threshold(value, field="threshold")


def tenant_set_low_balance_threshold(
    *, actor: Actor, tenant: Tenant, threshold: Decimal | str | None, request: HttpRequest | None = None
) -> None:
    """The one service that changes a tenant's low-balance threshold, for staff and for the
    tenant's owner alike: set it and push it to the provider's min_balance_to_notify through a
    tracked operation (tenants.services.tenant_push_threshold). None or "" clears it (0 at the
    provider). While another operation runs on the tenant, the push follows when it succeeds."""
    if not may_set_threshold(actor, tenant):
        raise NotAllowed("You may not change the low-balance threshold.", code="forbidden")
    value = parse_threshold(threshold)
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().select_related("connection").get(pk=tenant.pk)
        previous = locked.low_balance_threshold
        Tenant.objects.filter(pk=tenant.pk).update(low_balance_threshold=value, updated_at=timezone.now())
        audit_log(
            actor=actor,
            action="billing.threshold.set",
            tenant_id=tenant.pk,
            request=request,
            data={
                "threshold": str(value) if value is not None else None,
                "previous": str(previous) if previous is not None else None,
            },
        )
        locked.low_balance_threshold = value
        if locked.provider_account is not None and locked.is_open:
            try:
                with transaction.atomic():  # a savepoint: a refused push keeps the new value
                    tenant_push_threshold(actor=actor, tenant=locked, threshold=value, request=request)
            except Conflict:
                # Another operation is running; its success starts the push (tenants follow-ups).
                logger.info("threshold push of tenant %s deferred behind a running operation", tenant.pk)
    tenant.low_balance_threshold = value


def _alert_email(alert: LowBalanceAlert, *, to_staff: bool, recipients: list[str]) -> EmailMultiAlternatives:
    """The low-balance email, text and HTML, from templates/emails/low_balance_{owner,staff}."""
    tenant = alert.tenant
    site = str(settings.SITE_URL).rstrip("/")
    context = {
        "company": tenant.company_name,
        "balance": f"{alert.balance.normalize():f}",
        "threshold": f"{alert.threshold.normalize():f}",
        "currency": alert.currency,
        "link": site + (reverse("tenants:detail", args=[tenant.uuid]) if to_staff else reverse("customer:home")),
        "owners": len(owner_emails(tenant.pk)),
    }
    name = "low_balance_staff" if to_staff else "low_balance_owner"
    message = EmailMultiAlternatives(
        subject=f"Low balance: {tenant.company_name} has {context['balance']} {alert.currency}",
        body=render_to_string(f"emails/{name}.txt", context),
        to=recipients,
    )
    message.attach_alternative(render_to_string(f"emails/{name}.html", context), "text/html")
    return message


def low_balance_alerts_send(*, limit: int = 500) -> int:
    """Send every alert not yet sent. Returns the number of emails sent."""
    sent = 0
    pending = LowBalanceAlert.objects.filter(owners_sent_at__isnull=True) | LowBalanceAlert.objects.filter(
        staff_sent_at__isnull=True
    )
    for alert in pending.select_related("tenant").order_by("id")[:limit]:
        tenant = alert.tenant
        for column, recipients in (
            ("owners_sent_at", owner_emails(tenant.pk)),
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
                _alert_email(alert, to_staff=column == "staff_sent_at", recipients=recipients).send()
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
