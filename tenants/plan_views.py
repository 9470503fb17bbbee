"""Staff pages for a tenant's provider plans: the panel on the tenant page, "Read now" and
the reseller admin's "Change plan" form (a tracked CHANGE_PLAN operation)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods, require_POST

from portal.errors import PortalError
from portal.roles import Actor
from tenants import selectors, services
from tenants.models import Tenant
from tenants.views import _staff_only, tenant_action


def plans_panel(actor: Actor, tenant: Tenant) -> dict[str, Any]:
    """What the tenant page shows about plans and verification."""
    return {
        "plans": tenant.account_plans,
        "plans_checked_at": tenant.account_plans_checked_at,
        "plans_refusal": services.plans_refusal(tenant),
        "verification_refusal": services.verification_refusal(tenant),
        "change_plan_refusal": services.change_plan_refusal(actor, tenant),
        "may_change_plan": services.may_change_plan(actor),
    }


@_staff_only("console.view")
@require_POST
def tenant_plans_refresh(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    return tenant_action(
        request, tenant, gettext("Plans read from the provider."), services.plans_refresh, tenant=tenant
    )


@_staff_only("tenants.manage")
@require_http_methods(["GET", "POST"])
def tenant_change_plan(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    refusal = services.change_plan_refusal(request.user, tenant)
    error = None
    available: list[Any] = []
    if refusal is None:
        if request.method == "POST":
            plan_type, _, plan_id = request.POST.get("plan", "").partition(":")
            if request.POST.get("confirm") != "yes":
                error = "Confirm that next month's fee is reserved now."
            else:
                try:
                    services.tenant_change_plan(
                        actor=request.user, tenant=tenant, plan_type=plan_type, plan_id=plan_id, request=request
                    )
                except PortalError as exc:
                    error = exc.message
                else:
                    messages.success(request, "Changing the plan at the provider…")
                    return redirect("tenants:detail", tenant_uuid=tenant.uuid)
        try:
            available = services.available_plans(actor=request.user, tenant=tenant)
        except PortalError as exc:
            error = error or exc.message
    status = 409 if refusal else 400 if error and request.method == "POST" else 200
    return render(
        request,
        "tenants/change_plan.html",
        {
            "tenant": tenant,
            "refusal": refusal,
            "error": error,
            "available": available,
            "notice": services.FEE_RESERVED_NOTICE,
        },
        status=status,
    )
