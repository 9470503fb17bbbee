from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from portal.health import health_report, readiness_report
from portal.live import part_response, requested_part
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


@never_cache
def healthz_live(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no database, broker or provider."""
    return JsonResponse({"ok": True})


@never_cache
def healthz_ready(request: HttpRequest) -> JsonResponse:
    """Readiness: database and broker up, worker and beat heartbeats fresh (provider reported)."""
    report = readiness_report()
    return JsonResponse(report, status=200 if report["ok"] else 503)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for a scraper holding METRICS_TOKEN as a bearer token."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from portal.metrics import render_metrics, token_matches

    allowed = token_matches(request)
    if allowed is None:
        raise Http404("metrics are not enabled")
    if not allowed:
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)


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
    if requested_part(request, "job"):  # the live card of any page that includes portal/_job.html
        flags = {"show_results": bool(request.GET.get("results")), "reload_on_finish": bool(request.GET.get("reload"))}
        return part_response(
            request, "portal/_job.html", {"job": job, **flags}, reload=flags["reload_on_finish"] and not job.is_live
        )
    return render(request, "portal/job_detail.html", {"job": job})
