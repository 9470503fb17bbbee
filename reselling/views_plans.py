"""Staff pages for price plans, plan assignments, top-ups for a payment and the margin report.
Plain function views: parse, call a service in reselling.plans / reselling.charges, render."""

from __future__ import annotations

import uuid as uuid_mod
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from portal import inputs
from portal.errors import PortalError
from portal.roles import require
from reselling import charges, margin, plans
from reselling.margin_chart import margin_chart_svg
from reselling.margin_report import margin_csv, page_cursor, report_filters
from reselling.models import Charge, PricePlan
from tenants.models import ProviderConnection, Tenant

PERMISSION = plans.PERMISSION


def _tenant(tenant_uuid: uuid_mod.UUID) -> Tenant:
    try:
        return Tenant.objects.select_related("connection").get(uuid=tenant_uuid)
    except Tenant.DoesNotExist:
        raise Http404("No such tenant") from None


def _plan(plan_id: int) -> PricePlan:
    try:
        return PricePlan.objects.get(pk=plan_id)
    except PricePlan.DoesNotExist:
        raise Http404("No such plan") from None


def _back_to_tenant(request: HttpRequest, tenant: Tenant) -> HttpResponse:
    return redirect(reverse("tenants:detail", args=[tenant.uuid]) + "#plan-panel")


def _error(request: HttpRequest, exc: PortalError) -> None:
    field = f"{exc.field.replace('_', ' ')}: " if exc.field else ""
    messages.error(request, f"{field}{exc.message}")


# -- plans -----------------------------------------------------------------------------------


@require(PERMISSION)
def plan_list(request: HttpRequest) -> HttpResponse:
    show_archived = request.GET.get("archived") == "1"
    rows = PricePlan.objects.order_by("name")
    if not show_archived:
        rows = rows.filter(archived_at__isnull=True)
    connections = list(ProviderConnection.objects.order_by("name"))
    defaults = {c.pk: plans.default_plan(c) for c in connections}
    return render(
        request,
        "reselling/plan_list.html",
        {
            "plans": list(rows),
            "show_archived": show_archived,
            "connections": [(c, defaults[c.pk]) for c in connections],
            "assignable": list(PricePlan.objects.filter(archived_at__isnull=True).order_by("name")),
        },
    )


def _form_page(request: HttpRequest, plan: PricePlan | None, values: dict[str, Any], error: PortalError | None) -> Any:
    return render(
        request,
        "reselling/plan_form.html",
        {
            "plan": plan,
            "values": values,
            "error": error,
            "rules": PricePlan.TopupRule.choices,
            "in_use": plan is not None and plans.plan_in_use(plan),
            "term_fields": plans.TERM_FIELDS,
        },
        status=400 if error else 200,
    )


def _values(plan: PricePlan | None) -> dict[str, Any]:
    if plan is None:
        return {"currency": "USD", "topup_rule": "none", "payment_terms_days": 14}
    values = {name: getattr(plan, name) for name in plans.FIELDS}
    values["reminder_days"] = ", ".join(str(d) for d in plan.reminder_days)
    return values


def _posted(request: HttpRequest) -> dict[str, Any]:
    data: dict[str, Any] = {name: request.POST.get(name, "") for name in plans.FIELDS}
    data["topup_on_payment"] = request.POST.get("topup_on_payment") == "on"
    return data


@require(PERMISSION)
def plan_create(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _form_page(request, None, _values(None), None)
    data = _posted(request)
    try:
        plan = plans.plan_create(actor=request.user, data=data, request=request)
    except PortalError as exc:
        return _form_page(request, None, data, exc)
    messages.success(request, gettext("Plan %(name)s created.") % {"name": plan.name})
    return redirect("reselling:plans")


@require(PERMISSION)
def plan_edit(request: HttpRequest, plan_id: int) -> HttpResponse:
    plan = _plan(plan_id)
    if request.method != "POST":
        return _form_page(request, plan, _values(plan), None)
    data = _posted(request)
    try:
        plan = plans.plan_update(actor=request.user, plan=plan, data=data, request=request)
    except PortalError as exc:
        return _form_page(request, plan, data, exc)
    messages.success(request, gettext("Plan %(name)s saved.") % {"name": plan.name})
    return redirect("reselling:plans")


@require(PERMISSION)
@require_POST
def plan_archive(request: HttpRequest, plan_id: int) -> HttpResponse:
    plan = plans.plan_archive(actor=request.user, plan=_plan(plan_id), request=request)
    messages.success(request, gettext("Plan %(name)s archived: it can no longer be assigned.") % {"name": plan.name})
    return redirect("reselling:plans")


@require(PERMISSION)
@require_POST
def connection_default(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = ProviderConnection.objects.filter(pk=connection_id).first()
    if connection is None:
        raise Http404("No such connection")
    raw = request.POST.get("plan", "")
    plan = None
    if raw:
        if not inputs.is_ascii_digits(raw):
            messages.error(request, gettext("plan: Choose a plan."))
            return redirect("reselling:plans")
        plan = _plan(int(raw))
    try:
        plans.connection_default_set(actor=request.user, connection=connection, plan=plan, request=request)
    except PortalError as exc:
        _error(request, exc)
    else:
        messages.success(request, gettext("Default plan of %(connection)s saved.") % {"connection": connection.name})
    return redirect("reselling:plans")


# -- a tenant's plan and top-ups for a payment ----------------------------------------------


@require(PERMISSION)
@require_POST
def tenant_assign(request: HttpRequest, tenant_uuid: uuid_mod.UUID) -> HttpResponse:
    tenant = _tenant(tenant_uuid)
    raw = request.POST.get("plan", "")
    if not inputs.is_ascii_digits(raw):
        messages.error(request, gettext("plan: Choose a plan."))
        return _back_to_tenant(request, tenant)
    try:
        day = inputs.iso_date(request.POST.get("effective_from", ""), field="effective_from", label="start date")
        plan = PricePlan.objects.filter(pk=int(raw)).first()
        if plan is None:
            raise PortalError(gettext("Choose a plan."), field="plan")
        done = plans.plan_assign(actor=request.user, tenant=tenant, plan=plan, effective_from=day, request=request)
    except PortalError as exc:
        _error(request, exc)
    else:
        when = done.assignment.effective_from.isoformat()
        messages.success(
            request,
            gettext("%(company)s is on %(plan)s from %(when)s.")
            % {"company": tenant.company_name, "plan": plan.name, "when": when},
        )
    return _back_to_tenant(request, tenant)


@require(PERMISSION)
@require_POST
def tenant_topup(request: HttpRequest, tenant_uuid: uuid_mod.UUID) -> HttpResponse:
    tenant = _tenant(tenant_uuid)
    key = request.POST.get("key") or None
    try:
        transfer, credited = charges.topup_for_payment(
            actor=request.user,
            tenant=tenant,
            paid=request.POST.get("paid", "").strip(),
            reason=request.POST.get("reason", ""),
            idempotency_key=f"reselling-topup:{key}" if key else None,
            request=request,
        )
    except PortalError as exc:
        _error(request, exc)
        return _back_to_tenant(request, tenant)
    messages.success(
        request,
        gettext("Top-up recorded: %(credited)s %(currency)s will be credited (%(state)s).")
        % {"credited": credited, "currency": transfer.currency, "state": transfer.get_state_display()},
    )
    return redirect("billing:transfer_detail", transfer_uuid=transfer.uuid)


# -- the margin report ----------------------------------------------------------------------


@require(PERMISSION)
def margin_report(request: HttpRequest) -> HttpResponseBase:
    try:
        f = report_filters(request.GET)
    except PortalError as exc:
        _error(request, exc)
        return redirect("reselling:margin")
    if request.GET.get("format") == "csv":
        return margin_csv(period=f["period"], connection_id=f["connection_id"], currency=f["currency"])
    rows, cursor = margin.margin_rows(
        period=f["period"], connection_id=f["connection_id"], currency=f["currency"], after_tenant=f["after"]
    )
    history = margin.monthly_totals(connection_id=f["connection_id"])
    if f["currency"]:
        history = [t for t in history if t.currency == f["currency"]]
    totals = [t for t in history if t.period == f["period"]]
    query = request.GET.copy()
    query.pop("after", None)
    return render(
        request,
        "reselling/margin.html",
        {
            "rows": rows,
            "totals": totals,
            "chart": margin_chart_svg(history[-36:]),
            "month": f["period"].strftime("%Y-%m"),
            "connection_id": f["connection_id"],
            "currency": f["currency"] or "",
            "connections": list(ProviderConnection.objects.order_by("name").values("pk", "name")),
            "next_query": f"{query.urlencode()}&after={cursor}" if cursor else "",
            "first_query": query.urlencode() if f["after"] else "",
            "csv_query": f"{query.urlencode()}&format=csv",
        },
    )


# -- the charges ledger ---------------------------------------------------------------------

CHARGES_PAGE = 50


def charge_filters(params: Any) -> dict[str, Any]:
    """The charges list's filters: tenant (uuid; an unknown one is a 404), kind, month
    (YYYY-MM, none for every month) and the keyset cursor ``before`` (a charge id)."""
    tenant = None
    raw_tenant = (params.get("tenant", "") or "").strip()
    if raw_tenant:
        try:
            tenant = _tenant(uuid_mod.UUID(raw_tenant))
        except ValueError:
            raise PortalError("This tenant link is not valid.", field="tenant") from None
    kind = (params.get("kind", "") or "").strip()
    if kind and kind not in Charge.Kind.values:
        raise PortalError("Choose a kind of charge from the list.", field="kind")
    raw_month = (params.get("month", "") or "").strip()
    period = report_filters({"month": raw_month})["period"] if raw_month else None
    return {"tenant": tenant, "kind": kind, "period": period, "before": page_cursor(params, "before")}


def charge_page(f: dict[str, Any], limit: int = CHARGES_PAGE) -> tuple[list[Charge], int | None]:
    """Newest first, ``limit`` charges before the cursor, and the next cursor (or None)."""
    rows = Charge.objects.select_related("tenant", "plan", "transfer").order_by("-id")
    if f["tenant"] is not None:
        rows = rows.filter(tenant=f["tenant"])
    if f["kind"]:
        rows = rows.filter(kind=f["kind"])
    if f["period"] is not None:
        rows = rows.filter(period=f["period"])
    if f["before"] is not None:
        rows = rows.filter(id__lt=f["before"])
    page = list(rows[: limit + 1])
    return page[:limit], (page[limit - 1].pk if len(page) > limit else None)


@require(PERMISSION)
def charge_list(request: HttpRequest) -> HttpResponse:
    try:
        f = charge_filters(request.GET)
    except PortalError as exc:
        _error(request, exc)
        return redirect("reselling:charges")
    rows, cursor = charge_page(f)
    query = request.GET.copy()
    query.pop("before", None)
    return render(
        request,
        "reselling/charge_list.html",
        {
            "rows": rows,
            "tenant": f["tenant"],
            "kind": f["kind"],
            "kinds": Charge.Kind.choices,
            "month": f["period"].strftime("%Y-%m") if f["period"] else "",
            "next_query": f"{query.urlencode()}&before={cursor}" if cursor else "",
            "first_query": query.urlencode() if f["before"] is not None else "",
        },
    )
