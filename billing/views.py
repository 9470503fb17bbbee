"""Staff console pages for money: transfers, approvals, unresolved transfers, the tenant
billing panel's actions, statements, bulk transfers, sync runs and drift. Plain function
views; every write goes through billing.services, every read through billing.selectors."""

from __future__ import annotations

import csv
import uuid as uuid_mod
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from billing import conf, selectors, services
from billing.models import DriftItem, SyncRun, Transfer
from billing.money import parse_amount
from billing.resolution import failed_evidence
from billing.transfers import tenant_currency
from portal import schedule
from portal.audit import audit_events
from portal.errors import PortalError
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


def _error(request: HttpRequest, exc: PortalError) -> None:
    field = f"{exc.field}: " if exc.field else ""
    messages.error(request, f"{field}{exc.message}")


# -- transfers ---------------------------------------------------------------------------


@require("console.view")
def transfer_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "").strip()
    tenant = None
    if request.GET.get("tenant"):
        try:
            tenant = _tenant(uuid_mod.UUID(request.GET["tenant"]))
        except ValueError:
            raise Http404("No such tenant") from None
    try:
        page = selectors.transfer_list(tenant=tenant, state=state or None, cursor=request.GET.get("cursor"), limit=50)
    except ValueError:
        page = selectors.TransferPage([], None)
        messages.error(request, "Unknown state filter.")
    context = {
        "page": page,
        "state": state,
        "tenant": tenant,
        "states": Transfer.State.choices,
        "awaiting": selectors.transfer_list(state="awaiting_approval", limit=50).items,
        "unresolved": selectors.unresolved_transfers(limit=100),
        "can_move_money": has_perm(request.user, "billing.move_money"),
    }
    return render(request, "billing/transfer_list.html", context)


@require("console.view")
def transfer_detail(request: HttpRequest, transfer_uuid: uuid_mod.UUID) -> HttpResponse:
    transfer = selectors.transfer_get(uuid=transfer_uuid)
    events = [
        e
        for e in audit_events(tenant_id=transfer.tenant_id, action_prefix="billing.transfer")[:500]
        if e.data.get("transfer") == str(transfer.uuid)
    ]
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
        messages.success(request, "Approved; the transfer is on its way.")
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
        messages.success(request, "Rejected; nothing was sent.")
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
        messages.success(request, "Recorded.")
    except PortalError as exc:
        _error(request, exc)
    return redirect("billing:transfer_detail", transfer.uuid)


# -- the tenant's billing ----------------------------------------------------------------


@require("console.view")
def tenant_billing(request: HttpRequest, tenant_uuid: uuid_mod.UUID) -> HttpResponse:
    """The tenant's billing panel on a page of its own (the tenant page includes the panel)."""
    tenant = _tenant(tenant_uuid)
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
            amount = parse_amount(values["amount"], currency=tenant_currency(tenant))
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
        else:
            if transfer.awaiting_approval:
                messages.info(request, "Recorded. A second staff member must approve it before it is sent.")
            else:
                messages.success(request, "Recorded; the transfer is on its way.")
            nxt = request.POST.get("next", "")
            if nxt.startswith("/console/") and "//" not in nxt:
                return redirect(nxt)
            return redirect("billing:transfer_detail", transfer.uuid)
    status = 400 if errors else 200
    return render(
        request,
        "billing/transfer_form.html",
        {
            "tenant": tenant,
            "values": values,
            "errors": errors,
            "currency": tenant_currency(tenant),
            "directions": Transfer.Direction.choices,
        },
        status=status,
    )


@require("console.view")
@require_POST
def tenant_threshold(request: HttpRequest, tenant_uuid: uuid_mod.UUID) -> HttpResponse:
    tenant = _tenant(tenant_uuid)
    try:
        services.tenant_set_low_balance_threshold(
            actor=request.user, tenant=tenant, threshold=request.POST.get("threshold", ""), request=request
        )
        messages.success(request, "Low-balance threshold saved; the provider is being updated.")
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


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A cell starting with = + - @ is a formula in spreadsheets (CSV injection).
    if text[:1] in ("=", "+", "@", "\t", "\r") or (text[:1] == "-" and not _is_number(text)):
        text = "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except Exception:  # noqa: BLE001
        return False
    return True


def _statement_csv(tenant: Tenant, statement: selectors.Statement) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(
            ["time_utc", "kind", "description", "amount", "balance", "currency", "reference", "transfer"]
        )
        for row in statement.rows:
            yield writer.writerow(
                [
                    _csv_cell(c)
                    for c in (
                        row.at.strftime("%Y-%m-%d %H:%M:%S"),
                        row.kind,
                        row.for_staff,
                        row.amount,
                        row.balance if row.balance is not None else "",
                        row.currency,
                        row.reference,
                        row.transfer_uuid or "",
                    )
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="statement-{tenant.uuid}.csv"'
    return response


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
            "directions": Transfer.Direction.choices,
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
    runs = selectors.sync_run_list(limit=50)
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
    return render(
        request,
        "billing/sync_runs.html",
        {
            "runs": runs,
            "connections": rows,
            "can_sync": has_perm(request.user, "billing.sync"),
            "summary": selectors.parent_summary(),
            "next_sync": schedule.next_run(schedule.NIGHTLY_SYNC),
            "can_schedule": has_perm(request.user, schedule.PERMISSION),
        },
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
        messages.success(request, "Parent balance refreshed.")
    except (PortalError, ProviderError) as exc:
        messages.error(request, f"Could not read the parent balance: {exc}")
    nxt = request.POST.get("next", "")
    return redirect(nxt if nxt.startswith("/console/") and "//" not in nxt else reverse("billing:sync_runs"))


# -- drift ---------------------------------------------------------------------------------


@require("console.view")
def drift_list(request: HttpRequest) -> HttpResponse:
    show_all = request.GET.get("all") == "1"
    return render(
        request,
        "billing/drift_list.html",
        {
            "items": selectors.drift_list(open_only=not show_all, limit=500),
            "show_all": show_all,
            "can_move_money": has_perm(request.user, "billing.move_money"),
            "resolutions": DriftItem.Resolution.choices,
        },
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
        messages.success(request, "Drift resolved.")
    except PortalError as exc:
        _error(request, exc)
    return redirect("billing:drift")
