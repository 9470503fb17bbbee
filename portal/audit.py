"""The audit service every write calls."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest

from portal.clientip import client_ip
from portal.logs import request_id_var
from portal.models import AuditEvent


def _client_ip(request: HttpRequest | None) -> str | None:
    """The client's address as the lockout sees it (behind proxies, the forwarded one)."""
    if request is None:
        return None
    return client_ip(request) or None


def audit_log(
    *,
    actor: Any,
    action: str,
    tenant_id: int | None = None,
    data: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> AuditEvent:
    if action.count(".") < 2:
        raise ValueError(f"audit actions are dotted names like 'tenants.tenant.frozen', not {action!r}")
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent.objects.create(
        actor=actor if authenticated else None,
        actor_label=(actor.get_username() if authenticated else str(actor or "system"))[:200],
        tenant_id=tenant_id,
        action=action,
        data=data or {},
        ip=_client_ip(request),
        request_id=request_id_var.get(),
    )


def audit_events(*, tenant_id: int | None = None, action_prefix: str = "") -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.select_related("actor")
    if tenant_id is not None:
        events = events.filter(tenant_id=tenant_id)
    if action_prefix:
        events = events.filter(action__startswith=action_prefix)
    return events.order_by("-id")
