from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from portal.audit import audit_events
from portal.health import health_report
from portal.roles import CUSTOMER_ROLES, STAFF_ROLES, require, role_of


@login_required
def home(request: HttpRequest) -> HttpResponse:
    role = role_of(request.user)
    if role in STAFF_ROLES:
        return redirect("console:home")
    if role in CUSTOMER_ROLES:
        return redirect("customer:home")
    return render(request, "portal/no_role.html", status=403)


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    report = health_report()
    return JsonResponse(report, status=200 if report["ok"] else 503)


@require("audit.view")
def audit_list(request: HttpRequest) -> HttpResponse:
    action = request.GET.get("action", "").strip()[:100]
    events = audit_events(action_prefix=action)
    page = Paginator(events, 50, allow_empty_first_page=True).get_page(request.GET.get("page"))
    return render(request, "portal/audit_list.html", {"page": page, "action": action})


def error_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "403.html", status=403)


def error_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)


def error_500(request: HttpRequest) -> HttpResponse:
    # No context processors that touch the database: the database may be why we are here.
    from django.template import loader

    return HttpResponse(loader.get_template("500.html").render(), status=500)


@require("console.view")
def job_detail(request: HttpRequest, job_uuid: str) -> HttpResponse:
    """Staff see any job; customers never reach this (their pages embed their own status)."""
    from django.shortcuts import get_object_or_404

    from portal.jobs import job_status
    from portal.models import Job

    job = get_object_or_404(Job, uuid=job_uuid)
    if request.headers.get("Accept", "").startswith("application/json") or request.GET.get("format") == "json":
        return JsonResponse(job_status(job))
    return render(request, "portal/job_detail.html", {"job": job})
