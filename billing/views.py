"""Staff console pages for money: transfers, approvals, unresolved transfers, the tenant
billing panel's actions, statements, bulk transfers, sync runs and drift. Plain function
views; every write goes through billing.services, every read through billing.selectors."""

from __future__ import annotations

import uuid as uuid_mod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.contrib import messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from billing import conf, selectors, services
from billing.models import DriftItem, SyncRun, Transfer
from billing.money import parse_typed_amount
from billing.resolution import failed_evidence
from billing.templatetags.billing_tags import PANEL_FORM_KEY
from billing.transfers import TENANT_FORM_DIRECTIONS, offered_directions, tenant_currency
from portal import inputs, schedule
from portal.audit import audit_events
from portal.audit_sentences import sentences
from portal.errors import PortalError
from portal.listing import decimal_text, keyset_walk, list_total, stream_csv
from portal.live import part_response, render_live, requested_part
from portal.models import Job
from portal.roles import has_perm, require
from portal.twofactor import recent_auth_response, require_recent_auth
from providers.capabilities import Capability
from providers.errors import ProviderError
from tenants.models import ProviderConnection, Tenant


def _tenant(tenant_uuid: uuid_mod.UUID) -> Tenant:
    try:
        return Tenant.objects.select_related("connection").get(uuid=tenant_uuid)
    except Tenant.DoesNotExist:
        raise Http404("No such tenant") from None


def _tenant_filter(request: HttpRequest) -> Tenant | None:
    """The tenant a list is filtered to (``?tenant=<uuid>``), None without one; 404 for a
    uuid that names no tenant."""
    if not request.GET.get("tenant"):
        return None
    try:
        return _tenant(uuid_mod.UUID(request.GET["tenant"]))
    except ValueError:
        raise Http404("No such tenant") from None


def _error(request: HttpRequest, exc: PortalError) -> None:
    field = f"{exc.field}: " if exc.field else ""
    messages.error(request, f"{field}{exc.message}")


# -- transfers ---------------------------------------------------------------------------


@require("console.view")
def transfer_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "").strip()
    tenant = _tenant_filter(request)
    sort = request.GET.get("sort", "-id")
    total = None
    try:
        page = selectors.transfer_list(
            tenant=tenant, state=state or None, cursor=request.GET.get("cursor"), limit=50, sort=sort
        )
        total = selectors.transfer_total(tenant=tenant, state=state or None)
    except ValueError:
        page = selectors.TransferPage([], None)
        messages.error(request, gettext("Unknown state filter."))
    except PortalError as exc:
        page, sort = selectors.TransferPage([], None), "-id"
        _error(request, exc)
    context = {
        "page": page,
        "total": total,
        "sort": sort,
        "state": state,
        "tenant": tenant,
        "states": Transfer.State.choices,
        "awaiting": selectors.transfer_list(state="awaiting_approval", limit=50).items,
        "unresolved": selectors.unresolved_transfers(limit=100),
        "can_move_money": has_perm(request.user, "billing.move_money"),
    }
    # Each table of the page is a live part of its own (billing/_transfer_rows.html).
    tables = {"awaiting": (context["awaiting"], ""), "unresolved": (context["unresolved"], "Nothing unresolved.")}
    tables["transfers"] = (page.items, "")
    part = requested_part(request, *tables)
    if part is not None:
        rows, empty = tables[part]
        return part_response(
            request,
            "billing/_transfer_rows.html",
            {"rows": rows, "table_id": part, "empty": empty, "sortable": part == "transfers", "sort": sort},
        )
    return render(request, "billing/transfer_list.html", context)


_TRANSFER_CSV = (
    "uuid",
    "created_utc",
    "tenant",
    "direction",
    "amount",
    "currency",
    "state",
    "payment_reference",
    "provider_txn_id",
)


@require("console.view")
def transfer_export(request: HttpRequest) -> HttpResponseBase:
    """The filtered transfer list as CSV, streamed (exact amounts, every row of the filter)."""
    tenant = _tenant_filter(request)
    state = request.GET.get("state", "").strip() or None
    try:
        selectors.transfer_queryset(tenant=tenant, state=state)
        rows = selectors.transfer_export(tenant=tenant, state=state, sort=request.GET.get("sort", "-id"))
    except ValueError:
        return HttpResponse("Unknown state filter.", status=400, content_type="text/plain; charset=utf-8")
    except PortalError as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain; charset=utf-8")
    return stream_csv(
        "transfers.csv",
        _TRANSFER_CSV,
        rows,
        lambda t: (
            t.uuid,
            t.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            t.tenant.company_name,
            t.direction,
            decimal_text(t.amount),
            t.currency,
            t.state,
            t.payment_reference,
            t.provider_txn_id or "",
        ),
    )


@require("console.view")
def transfer_detail(request: HttpRequest, transfer_uuid: uuid_mod.UUID) -> HttpResponse:
    transfer = selectors.transfer_get(uuid=transfer_uuid)
    if requested_part(request, "summary"):  # the live heading and facts; the page reloads once it settles
        return part_response(
            request, "billing/_transfer_summary.html", {"transfer": transfer}, reload=not transfer.is_live
        )
    events = sentences(
        e
        for e in audit_events(tenant_id=transfer.tenant_id, action_prefix="billing.transfer")[:500]
        if e.data.get("transfer") == str(transfer.uuid)
    )
    return render(
        request,
        "billing/transfer_detail.html",
        {
            "transfer": transfer,
            "events": events,
            "can_move_money": has_perm(request.user, "billing.move_money"),
            "can_approve": transfer.awaiting_approval and transfer.created_by_id != request.user.pk,
            "fail_evidence": failed_evidence(transfer)
            if transfer.state in (transfer.State.NEEDS_REVIEW, transfer.State.UNKNOWN)
            else None,
        },
    )


@require("billing.move_money")
@require_POST
@require_recent_auth
def transfer_approve(request: HttpRequest, transfer_uuid: uuid_mod.UUID) -> HttpResponse:
    transfer = selectors.transfer_get(uuid=transfer_uuid)
    try:
        services.transfer_approve(actor=request.user, transfer=transfer, request=request)
        messages.success(request, gettext("Approved; the transfer is on its way."))
    except PortalError as exc:
        _error(request, exc)
    return redirect("billing:transfer_detail", transfer.uuid)


@require("billing.move_money")
@require_POST
def transfer_reject(request: HttpRequest, transfer_uuid: uuid_mod.UUID) -> HttpResponse:
    transfer = selectors.transfer_get(uuid=transfer_uuid)
    try:
        services.transfer_reject(
            actor=request.user, transfer=transfer, reason=request.POST.get("reason", ""), request=request
        )
        messages.success(request, gettext("Rejected; nothing was sent."))
    except PortalError as exc:
        _error(request, exc)
    return redirect("billing:transfer_detail", transfer.uuid)


@require("billing.move_money")
@require_POST
def transfer_resolve(request: HttpRequest, transfer_uuid: uuid_mod.UUID) -> HttpResponse:
    transfer = selectors.transfer_get(uuid=transfer_uuid)
    try:
        services.transfer_resolve(
            actor=request.user,
            transfer=transfer,
            outcome=request.POST.get("outcome", ""),
            note=request.POST.get("note", ""),
            request=request,
        )
        messages.success(request, gettext("Recorded."))
    except PortalError as exc:
        _error(request, exc)
    return redirect("billing:transfer_detail", transfer.uuid)


# -- the tenant's billing ----------------------------------------------------------------


@require("console.view")
def tenant_billing(request: HttpRequest, tenant_uuid: uuid_mod.UUID) -> HttpResponse:
    """The tenant's billing panel on a page of its own (the tenant page includes the panel)."""
    tenant = _tenant(tenant_uuid)
    if requested_part(request, "transfers"):  # the panel's recent transfers, live on the tenant page
        recent = selectors.transfer_list(tenant=tenant, limit=10).items
        return part_response(request, "billing/_tenant_transfers.html", {"tenant": tenant, "recent_transfers": recent})
    return render(request, "billing/tenant_billing.html", {"tenant": tenant})


@require("billing.move_money")
def tenant_transfer(request: HttpRequest, tenant_uuid: uuid_mod.UUID) -> HttpResponse:
    """Top up or pull back one tenant. The form carries a one-time key, so a double-click or
    a resubmitted page records one transfer."""
    tenant = _tenant(tenant_uuid)
    errors: dict[str, str] = {}
    values = {
        "amount": "",
        "direction": Transfer.Direction.TO_TENANT,
        "reason": "",
        "customer_description": "",
        "key": uuid_mod.uuid4().hex,
    }
    if request.method == "POST":
        values = {k: request.POST.get(k, values[k]) for k in values}
        try:
            amount = parse_typed_amount(values["amount"], currency=tenant_currency(tenant))
            if amount > conf.approval_threshold():
                # Above the approval threshold: password and code again first (portal/twofactor.py).
                refused = recent_auth_response(request, back=request.get_full_path())
                if refused is not None:
                    return refused
            transfer = services.transfer_create(
                actor=request.user,
                tenant=tenant,
                amount=amount,
                direction=values["direction"],
                reason=values["reason"],
                customer_description=values["customer_description"],
                idempotency_key=f"form:{values['key']}",
                request=request,
            )
        except PortalError as exc:
            errors[exc.field or "form"] = exc.message
            back = _panel_back(request)
            if back:
                # From the tenant page: back to it, the error on its field and the typed values kept.
                request.session[PANEL_FORM_KEY] = {"tenant": str(tenant.uuid), "errors": errors, "values": values}
                return redirect(back)
        else:
            if transfer.awaiting_approval:
                messages.info(request, gettext("Recorded. A second staff member must approve it before it is sent."))
            else:
                messages.success(request, gettext("Recorded; the transfer is on its way."))
            return redirect(_panel_back(request) or reverse("billing:transfer_detail", args=[transfer.uuid]))
    status = 400 if errors else 200
    offered = offered_directions(request.user, tenant)
    return render(
        request,
        "billing/transfer_form.html",
        {
            "tenant": tenant,
            "values": values,
            "errors": errors,
            "currency": tenant_currency(tenant),
            # Only what the POST accepts (may_move_money's answer); the others with the reason.
            "directions": [d for d in offered if d[2]],
            "refused_directions": [d for d in offered if not d[2]],
        },
        status=status,
    )


def _panel_back(request: HttpRequest) -> str:
    """The console page the tenant panel's form came from, or "" (never another site)."""
    nxt = request.POST.get("next", "")
    return nxt if nxt.startswith("/console/") and "//" not in nxt else ""


@require("console.view")
@require_POST
def tenant_threshold(request: HttpRequest, tenant_uuid: uuid_mod.UUID) -> HttpResponse:
    tenant = _tenant(tenant_uuid)
    try:
        services.tenant_set_low_balance_threshold(
            actor=request.user,
            tenant=tenant,
            threshold=inputs.typed_threshold(request.POST.get("threshold", ""), field="threshold"),
            request=request,
        )
        messages.success(request, gettext("Low-balance threshold saved; the provider is being updated."))
    except PortalError as exc:
        _error(request, exc)
    return redirect("billing:tenant", tenant.uuid)


def _date(value: str | None, *, end: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        day = datetime.strptime(value.strip()[:10], "%Y-%m-%d").date()
    except ValueError:
        return None
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


@require("console.view")
def tenant_statement(request: HttpRequest, tenant_uuid: uuid_mod.UUID) -> HttpResponseBase:
    tenant = _tenant(tenant_uuid)
    date_from = _date(request.GET.get("from"))
    date_to = _date(request.GET.get("to"), end=True)
    statement = selectors.statement_rows(tenant=tenant, date_from=date_from, date_to=date_to)
    if request.GET.get("format") == "csv":
        # A streamed download; portal.roles.require types the views it wraps as HttpResponse.
        return _statement_csv(tenant, statement)
    now = timezone.now()
    return render(
        request,
        "billing/statement.html",
        {
            "tenant": tenant,
            "statement": statement,
            "date_from": (date_from or now - timedelta(days=30)).date(),
            "date_to": (date_to or now).date(),
        },
    )


def _statement_csv(tenant: Tenant, statement: selectors.Statement) -> StreamingHttpResponse:
    return stream_csv(
        f"statement-{tenant.uuid}.csv",
        ["time_utc", "kind", "description", "amount", "balance", "currency", "reference", "transfer"],
        statement.rows,
        lambda row: (
            row.at.strftime("%Y-%m-%d %H:%M:%S"),
            row.kind,
            row.for_staff,
            row.amount,
            row.balance if row.balance is not None else "",
            row.currency,
            row.reference,
            row.transfer_uuid or "",
        ),
    )


# -- bulk --------------------------------------------------------------------------------


@require("billing.move_money")
def bulk(request: HttpRequest) -> HttpResponse:
    """Select tenants (here, or from the tenant list's checkboxes), dry run, then run."""
    data = request.POST if request.method == "POST" else request.GET
    selected = [t for t in data.getlist("tenants") if t][:1000]
    values = {
        "amount": data.get("amount", ""),
        "direction": data.get("direction", Transfer.Direction.TO_TENANT),
        "reason": data.get("reason", ""),
        "customer_description": data.get("customer_description", ""),
    }
    query = request.GET.get("q", "").strip()[:100]
    low_only = request.GET.get("low_balance") == "1"
    candidates = Tenant.objects.select_related("connection").filter(
        status__in=["active", "frozen"], provider_account_id__isnull=False
    )
    if query:
        candidates = candidates.filter(company_name__icontains=query)
    if low_only:
        candidates = candidates.filter(is_low_balance=True)
    shown = list(candidates.order_by("company_name", "pk")[:200])
    plan = None
    error = None
    if request.method == "POST":
        action = request.POST.get("action", "dry_run")
        try:
            if action == "run":
                job = services.bulk_transfer_start(actor=request.user, tenant_uuids=selected, **values)
                return redirect("billing:bulk_job", job.uuid)
            plan = services.bulk_transfer_plan(actor=request.user, tenant_uuids=selected, **values)
        except PortalError as exc:
            error = exc
    return render(
        request,
        "billing/bulk.html",
        {
            "candidates": shown,
            "selected": set(selected),
            "selected_list": selected,
            "values": values,
            "plan": plan,
            "error": error,
            "query": query,
            "low_only": low_only,
            # Tenant-level money only: the PBX-user directions live on the user's page.
            "directions": [(d.value, d.label) for d in TENANT_FORM_DIRECTIONS],
        },
        status=400 if error else 200,
    )


@require("console.view")
def bulk_job(request: HttpRequest, job_uuid: uuid_mod.UUID) -> HttpResponse:

    try:
        job = Job.objects.get(uuid=job_uuid, kind="billing.bulk_transfer")
    except Job.DoesNotExist:
        raise Http404("No such job") from None
    return render(request, "billing/bulk_job.html", {"job": job})


# -- sync runs -----------------------------------------------------------------------------


@require("console.view")
def sync_runs(request: HttpRequest) -> HttpResponse:
    sort = request.GET.get("sort", "-id")
    cursor = request.GET.get("cursor", "")
    try:
        runs = selectors.sync_run_list(
            limit=50, sort=sort, cursor=int(cursor) if inputs.is_ascii_digits(cursor) else None
        )
    except PortalError as exc:
        _error(request, exc)
        sort, runs = "-id", selectors.sync_run_list(limit=50)
    connections = list(selectors.billing_connections())
    running = {(r.connection_id, r.kind): r for r in SyncRun.objects.filter(state=SyncRun.State.RUNNING)}
    rows = []
    from billing import provider as prov

    for c in connections:
        rows.append(
            {
                "connection": c,
                "can_sync": prov.supports(c, Capability.LIST_BALANCES),
                "can_reconcile": prov.supports(c, Capability.TRANSACTION_HISTORY),
                "sync_running": running.get((c.pk, SyncRun.Kind.BALANCES)),
                "reconcile_running": running.get((c.pk, SyncRun.Kind.RECONCILE)),
                "reason": prov.unsupported_reason(c, Capability.LIST_BALANCES),
            }
        )
    return render_live(
        request,
        "billing/sync_runs.html",
        {
            "runs": runs,
            "runs_total": list_total(selectors.sync_run_queryset(), filtered=False),
            "runs_next": runs[-1].pk if len(runs) == 50 else None,
            "sort": sort,
            "connections": rows,
            "can_sync": has_perm(request.user, "billing.sync"),
            "summary": selectors.parent_summary(),
            "next_sync": schedule.next_run(schedule.NIGHTLY_SYNC),
            "can_schedule": has_perm(request.user, schedule.PERMISSION),
        },
        parts={"runs": "billing/_sync_runs_live.html"},
    )


def _id_sorted_csv(
    request: HttpRequest,
    filename: str,
    columns: Sequence[str],
    rows: QuerySet[Any],
    row: Callable[[Any], Sequence[Any]],
) -> HttpResponseBase:
    """``rows`` as a streamed CSV in the page's id order (``?sort=``); a bad sort is a 400."""
    try:
        sort = selectors.parse_id_sort(request.GET.get("sort"))
    except PortalError as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain; charset=utf-8")
    return stream_csv(filename, columns, keyset_walk(rows, descending=sort == "-id"), row)


@require("console.view")
def sync_runs_export(request: HttpRequest) -> HttpResponseBase:
    """Every sync run as CSV, streamed, in the page's order."""
    return _id_sorted_csv(
        request,
        "sync-runs.csv",
        (
            "uuid",
            "started_utc",
            "finished_utc",
            "connection",
            "kind",
            "state",
            "seen",
            "changed",
            "new",
            "missing",
            "errors",
        ),
        selectors.sync_run_queryset().select_related("connection"),
        lambda r: (
            r.uuid,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.finished_at.strftime("%Y-%m-%d %H:%M:%S") if r.finished_at else "",
            r.connection.name,
            r.kind,
            r.state,
            r.seen,
            r.changed,
            r.new,
            r.missing,
            r.errors,
        ),
    )


@require("billing.sync")
@require_POST
def sync_start(request: HttpRequest) -> HttpResponse:
    try:
        connection = ProviderConnection.objects.get(uuid=uuid_mod.UUID(request.POST.get("connection", "")))
    except (ValueError, ProviderConnection.DoesNotExist):
        raise Http404("No such connection") from None
    kind = request.POST.get("kind", SyncRun.Kind.BALANCES)
    try:
        if kind == SyncRun.Kind.RECONCILE:
            run = services.reconcile_start(actor=request.user, connection=connection)
        else:
            run = services.sync_start(actor=request.user, connection=connection)
    except PortalError as exc:
        _error(request, exc)
        return redirect("billing:sync_runs")
    return redirect("billing:sync_run", run.uuid)


@require("console.view")
def sync_run(request: HttpRequest, run_uuid: uuid_mod.UUID) -> HttpResponse:
    run = selectors.sync_run_get(uuid=run_uuid)
    if requested_part(request, "facts"):  # the live counts; once the run ends the page reloads (drift, job)
        return part_response(request, "billing/_sync_run_facts.html", {"run": run}, reload=not run.is_live)
    # Reconciliation finds money drift; a balance sync finds threshold and status drift.
    drift = DriftItem.objects.filter(sync_run=run).select_related("tenant")[:200]
    return render(request, "billing/sync_run.html", {"run": run, "drift": drift})


@require("billing.sync")
@require_POST
def parent_refresh(request: HttpRequest) -> HttpResponse:
    try:
        connection = ProviderConnection.objects.get(uuid=uuid_mod.UUID(request.POST.get("connection", "")))
    except (ValueError, ProviderConnection.DoesNotExist):
        raise Http404("No such connection") from None

    try:
        services.budget_refresh(connection=connection)
        messages.success(request, gettext("Parent balance refreshed."))
    except (PortalError, ProviderError) as exc:
        messages.error(request, gettext("Could not read the parent balance: %(error)s") % {"error": exc})
    nxt = request.POST.get("next", "")
    return redirect(nxt if nxt.startswith("/console/") and "//" not in nxt else reverse("billing:sync_runs"))


# -- drift ---------------------------------------------------------------------------------

DRIFT_PAGE = 200


@require("console.view")
def drift_list(request: HttpRequest) -> HttpResponse:
    show_all = request.GET.get("all") == "1"
    sort = request.GET.get("sort", "-id")
    cursor = request.GET.get("cursor", "")
    try:
        items = selectors.drift_list(
            open_only=not show_all,
            limit=DRIFT_PAGE,
            sort=sort,
            cursor=int(cursor) if inputs.is_ascii_digits(cursor) else None,
        )
    except PortalError as exc:
        _error(request, exc)
        sort, items = "-id", selectors.drift_list(open_only=not show_all, limit=DRIFT_PAGE)
    return render(
        request,
        "billing/drift_list.html",
        {
            "items": items,
            "total": list_total(selectors.drift_queryset(open_only=not show_all), filtered=not show_all),
            "next_cursor": items[-1].pk if len(items) == DRIFT_PAGE else None,
            "sort": sort,
            "show_all": show_all,
            "can_move_money": has_perm(request.user, "billing.move_money"),
            "resolutions": DriftItem.Resolution.choices,
        },
    )


@require("console.view")
def drift_export(request: HttpRequest) -> HttpResponseBase:
    """The drift list (open items, or all with ``all=1``) as CSV, streamed."""
    rows = selectors.drift_queryset(open_only=request.GET.get("all") != "1").select_related("tenant")
    return _id_sorted_csv(
        request,
        "drift.csv",
        (
            "uuid",
            "detected_utc",
            "tenant",
            "kind",
            "portal_amount",
            "provider_amount",
            "currency",
            "payment_reference",
            "resolution",
        ),
        rows,
        lambda d: (
            d.uuid,
            d.detected_at.strftime("%Y-%m-%d %H:%M:%S"),
            d.tenant.company_name if d.tenant else "",
            d.kind,
            decimal_text(d.portal_amount),
            decimal_text(d.provider_amount),
            d.currency,
            d.payment_reference,
            d.resolution or "",
        ),
    )


@require("billing.move_money")
@require_POST
def drift_resolve(request: HttpRequest, drift_uuid: uuid_mod.UUID) -> HttpResponse:
    item = selectors.drift_get(uuid=drift_uuid)
    try:
        services.drift_resolve(
            actor=request.user,
            item=item,
            resolution=request.POST.get("resolution", ""),
            note=request.POST.get("note", ""),
            request=request,
        )
        messages.success(request, gettext("Drift resolved."))
    except PortalError as exc:
        _error(request, exc)
    return redirect("billing:drift")
