"""{% billing_tenant_panel tenant %}: the tenant page's billing panel (balance, chart, recent
transfers, the top-up/pull form, the statement link)."""

from __future__ import annotations

import uuid
from typing import Any

from django import template

from portal.roles import has_perm

register = template.Library()


@register.inclusion_tag("billing/_tenant_panel.html", takes_context=True)
def billing_tenant_panel(context: Any, tenant: Any) -> dict[str, Any]:
    from billing.selectors import tenant_panel

    request = context.get("request")
    user = getattr(request, "user", None)
    data = tenant_panel(tenant=tenant)
    data.update(
        {
            "request": request,
            "csrf_token": context.get("csrf_token"),
            "can_move_money": has_perm(user, "billing.move_money") if user is not None else False,
            "form_key": uuid.uuid4().hex,
        }
    )
    return data
