"""The console home: each app's panel, composed here, at the top of the layers."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from api.console_views import console_panel as api_panel
from billing.console import summary as billing_summary
from portal.roles import require
from tenants.selectors import console_summary as tenants_summary


def console_summary() -> dict[str, Any]:
    """What the console home shows: the panels of the API, billing and tenants, in that order.
    Panel templates from several apps add up instead of replacing each other."""
    context: dict[str, Any] = {}
    for contributed in (api_panel(), billing_summary(), tenants_summary()):
        contributed = dict(contributed)
        panels = [*context.get("console_panels", []), *contributed.pop("console_panels", [])]
        context.update(contributed)
        if panels:
            context["console_panels"] = panels
    return context


@require("console.view")
def console_home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/console_home.html", console_summary())
