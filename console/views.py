"""The console home (each app's panel, composed here, at the top of the layers) and the beat
schedule page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from api.console_views import console_panel as api_panel
from billing.console import summary as billing_summary
from console.story import day_story
from portal import schedule
from portal.live import render_live
from portal.roles import require
from tenants.capability_probe import console_panel as capabilities_panel
from tenants.selectors import console_summary as tenants_summary


def console_summary() -> dict[str, Any]:
    """What the console home shows: the day's story (console/story.py), then the panels of the
    API, billing, tenants and the provider methods (tenants.capability_probe), in that order.
    Panel templates from several apps add up instead of replacing each other."""
    context: dict[str, Any] = {}
    for contributed in (day_story(), api_panel(), billing_summary(), tenants_summary(), capabilities_panel()):
        contributed = dict(contributed)
        panels = [*context.get("console_panels", []), *contributed.pop("console_panels", [])]
        context.update(contributed)
        if panels:
            context["console_panels"] = panels
    context["console_panels"] = [*context.get("console_panels", []), "console/_callbacks_link.html"]
    return context


@require("console.view")
def console_home(request: HttpRequest) -> HttpResponse:
    # The panels refresh themselves (?part=panels, console/_home_panels.html; portal/live.py).
    return render_live(
        request, "portal/console_home.html", console_summary(), parts={"panels": "console/_home_panels.html"}
    )


@require(schedule.PERMISSION)
def schedule_page(request: HttpRequest) -> HttpResponse:
    """The beat schedule: every entry with its timing and next run; admins retime them here."""
    errors: dict[str, str] = {}
    failed, submitted = "", {}
    if request.method == "POST":
        failed = request.POST.get("entry", "")
        submitted = request.POST.dict()
        try:
            changed = schedule.change_timing(actor=request.user, name=failed, data=submitted, request=request)
        except ValidationError as exc:
            errors = {field: " ".join(texts) for field, texts in exc.message_dict.items()}
        else:
            messages.success(request, f"{changed.name} now runs {schedule.describe(changed)}.")
            return redirect("console:schedule")
    timed = schedule.rows()
    entries = []
    for name, spec in settings.CELERY_BEAT_SCHEDULE.items():
        row = timed.get(name)
        mine = name == failed
        entries.append(
            {
                "name": name,
                "task": spec["task"],
                "row": row,
                "fixed": row is None,
                "describe": schedule.describe(row) if row else "every 60 s, fixed: readiness counts on it",
                "next_run": schedule.next_run(name) if row else None,
                "values": submitted if mine else {},
                "errors": errors if mine else {},
            }
        )
    return render(
        request,
        "console/schedule.html",
        {"entries": entries, "form_error": errors.get("__all__", "")},
        status=400 if errors else 200,
    )
