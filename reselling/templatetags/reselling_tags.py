"""{% reselling_plan_panel tenant %}: the tenant page's plan panel (the plan in force, the
history of assignments, assigning a plan from a date, a top-up for a customer's payment,
recent charges). Shown to staff who manage plans only."""

from __future__ import annotations

import uuid
from typing import Any

from django import template
from django.utils import timezone

from portal.roles import has_perm

register = template.Library()


@register.inclusion_tag("reselling/plan_tenant_panel.html", takes_context=True)
def reselling_plan_panel(context: Any, tenant: Any) -> dict[str, Any]:
    from reselling.models import Charge, PricePlan
    from reselling.plans import PERMISSION, assignments_of, plan_on

    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not has_perm(user, PERMISSION):
        return {"visible": False}
    today = timezone.now().date()
    return {
        "visible": True,
        "tenant": tenant,
        "csrf_token": context.get("csrf_token"),
        "current": plan_on(tenant, today),
        "history": assignments_of(tenant)[:20],
        "today": today,
        "assignable": list(PricePlan.objects.filter(archived_at__isnull=True).order_by("name")),
        "charges": list(Charge.objects.filter(tenant_id=tenant.pk).order_by("-id")[:10]),
        "form_key": uuid.uuid4().hex,
    }
