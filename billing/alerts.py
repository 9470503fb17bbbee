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
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from billing.models import LowBalanceAlert
from billing.transitions import Actor
from portal import inputs, money_format
from portal.audit import audit_log
from portal.errors import Conflict, NotAllowed
from portal.mail import site_link, staff_message, templated_email
from providers.errors import InvalidArgument, ProviderError
from tenants.mail import owner_messages
from tenants.models import Tenant
from tenants.selectors import owner_emails
from tenants.services import may_set_threshold, tenant_push_threshold

logger = logging.getLogger("billing.alerts")


def parse_threshold(value: object) -> Decimal | None:
    """The one threshold rule (portal.inputs.threshold), named for the billing panel's field."""
    return inputs.threshold(value, field="threshold")


def threshold_refusal(actor: Actor, tenant: Tenant) -> str | None:
    """Why this actor may not change this tenant's low-balance threshold now, or None: the
    check :func:`tenant_set_low_balance_threshold` runs, asked first by the pages that offer
    the form."""
    if not may_set_threshold(actor, tenant):
        return "You may not change the low-balance threshold."
    if not tenant.is_open:
        return f"A {tenant.get_status_display().lower()} tenant has no low-balance alert to change."
    return None


def tenant_set_low_balance_threshold(
    *, actor: Actor, tenant: Tenant, threshold: Decimal | str | None, request: HttpRequest | None = None
) -> None:
    """The one service that changes a tenant's low-balance threshold, for staff and for the
    tenant's owner alike: set it and push it to the provider's min_balance_to_notify through a
    tracked operation (tenants.services.tenant_push_threshold). None or "" clears it (0 at the
    provider). While another operation runs on the tenant, the push follows when it succeeds."""
    if not may_set_threshold(actor, tenant):
        raise NotAllowed("You may not change the low-balance threshold.", code="forbidden")
    refusal = threshold_refusal(actor, tenant)
    if refusal is not None:
        raise Conflict(refusal, field="threshold", code="tenant_state")
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
    """The low-balance email, text and HTML, from templates/emails/low_balance_{owner,staff}, in
    the active language (the owners' through tenants.mail.owner_messages)."""
    tenant = alert.tenant
    context = {
        "company": tenant.company_name,
        # The templates add the currency after each amount (portal/money_format.py).
        "balance": money_format.number(alert.balance, alert.currency),
        "threshold": money_format.number(alert.threshold, alert.currency),
        "currency": alert.currency,
        "link": site_link(reverse("tenants:detail", args=[tenant.uuid]) if to_staff else reverse("customer:home")),
        "owners": len(owner_emails(tenant.pk)),
    }
    return templated_email(
        "emails/low_balance_staff" if to_staff else "emails/low_balance_owner",
        context,
        subject=gettext("Low balance: %(company)s has %(balance)s %(currency)s")
        % {"company": tenant.company_name, "balance": context["balance"], "currency": alert.currency},
        to=recipients,
    )


def _alert_emails(alert: LowBalanceAlert, *, to_staff: bool, recipients: list[str]) -> list[EmailMultiAlternatives]:
    """Staff read the default language; each owner the language of their membership."""
    if to_staff:
        return [staff_message(lambda to: _alert_email(alert, to_staff=True, recipients=to), recipients)]
    return owner_messages(alert.tenant_id, lambda to: _alert_email(alert, to_staff=False, recipients=to))


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
                for message in _alert_emails(alert, to_staff=column == "staff_sent_at", recipients=recipients):
                    message.send()
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
