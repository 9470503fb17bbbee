"""{% billing_tenant_panel tenant %}: the tenant page's billing panel (balance, chart, recent
transfers, the top-up/pull form, the statement link)."""

from __future__ import annotations

import uuid
from typing import Any

from django import template

from portal.roles import has_perm

register = template.Library()

#: The session key that carries a refused panel form (errors, typed values) back to the page.
PANEL_FORM_KEY = "billing_panel_form"


def _refused_form(request: Any, tenant: Any) -> dict[str, Any]:
    session = getattr(request, "session", None)
    if session is None or PANEL_FORM_KEY not in session:
        return {}
    state = session.get(PANEL_FORM_KEY) or {}
    if state.get("tenant") != str(tenant.uuid):
        return {}
    del session[PANEL_FORM_KEY]
    return state  # type: ignore[no-any-return]


@register.inclusion_tag("billing/_tenant_panel.html", takes_context=True)
def billing_tenant_panel(context: Any, tenant: Any) -> dict[str, Any]:
    from billing.alerts import threshold_refusal
    from billing.selectors import tenant_panel
    from billing.transfers import offered_directions

    request = context.get("request")
    user = getattr(request, "user", None)
    data = tenant_panel(tenant=tenant)
    refused = _refused_form(request, tenant)
    data.update(
        {
            "form_errors": refused.get("errors", {}),
            "form_values": refused.get("values", {}),
            "request": request,
            "csrf_token": context.get("csrf_token"),
            "can_move_money": has_perm(user, "billing.move_money") if user is not None else False,
            # The directions transfer_create would accept, and why not where it would refuse.
            "directions": offered_directions(user, tenant),
            "threshold_refusal": threshold_refusal(user, tenant),
            "form_key": refused.get("values", {}).get("key") or uuid.uuid4().hex,
        }
    )
    return data
