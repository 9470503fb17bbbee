"""Staff console pages for tenants. Plain function views: permission first (roles.require),
then the selector (404 for a missing tenant), then a service for any write."""

from __future__ import annotations

import html
import itertools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods, require_POST

from portal import inputs, money_format
from portal.audit import audit_events
from portal.audit_sentences import sentences
from portal.errors import PortalError
from portal.listing import decimal_text, stream_csv
from portal.models import Job
from portal.roles import has_perm, require
from providers.capabilities import Capability
from tenants import selectors, services
from tenants.connections import capability_matrix
from tenants.forms import (
    CloseForm,
    ImportForm,
    ReasonForm,
    RotateForm,
    TenantCloneForm,
    TenantCreateForm,
    TenantEditForm,
    apply_portal_error,
)
from tenants.models import ProviderConnection, Tenant, TenantOperation
from tenants.selectors import FILTER_NAMES

PAGE_SIZE = 50
# Rows of a "select all that match" dry run shown one by one (the job checks every row).
FILTER_PREVIEW = 50


def _filters_from(request: HttpRequest) -> dict[str, str]:
    return {name: request.GET.get(name, "").strip() for name in FILTER_NAMES if request.GET.get(name, "").strip()}


@require("console.view")
def tenant_list(request: HttpRequest) -> HttpResponse:
    filters = _filters_from(request)
    error = None
    total = None
    try:
        page = selectors.tenant_list(filters=filters, cursor=request.GET.get("cursor") or None, limit=PAGE_SIZE)
        total = selectors.tenant_total(filters=filters)
    except PortalError as exc:
        error, page = exc, selectors.TenantPage([], None)
    connections = selectors.connection_names()
    base = reverse("tenants:list")
    query = urlencode(filters)
    can_freeze = has_perm(request.user, "tenants.freeze")
    context = {
        "page": page,
        "rows": page.rows,
        "rows_html": _rows_html(page.rows, connections, reverse("tenants:list"), selectable=can_freeze),
        "filters": filters,
        "error": error,
        "statuses": Tenant.Status.choices,
        "sorts": selectors.SORTS.items(),
        "connections": connections.values(),
        "next_url": f"{base}?{urlencode({**filters, 'cursor': page.next_cursor})}" if page.next_cursor else "",
        "first_url": f"{base}?{query}" if request.GET.get("cursor") else "",
        "detail_base": base,
        "filtered": bool(filters.keys() - {"sort"}),
        "can_manage": has_perm(request.user, "tenants.manage"),
        "can_freeze": can_freeze,
        "query": query,
        "total": total,
        "sort": filters.get("sort", "-id"),
        # A balance sort compares one currency (selectors.parse_filters): the header offers it
        # only when the list holds one.
        "balance_sortable": bool(filters.get("currency"))
        or not selectors.balance_sort_needs_currency(c.currency for c in connections.values()),
    }
    return render(request, "tenants/list.html", context)


_EXPORT_COLUMNS = (
    "uuid",
    "company_name",
    "account_name",
    "account_email",
    "connection",
    "provider_account_id",
    "status",
    "balance",
    "currency",
    "low_balance",
    "drift",
    "missing_at_provider",
    "created_utc",
)


@require("console.view")
def tenant_export(request: HttpRequest) -> HttpResponseBase:
    """The filtered tenant list as CSV, in the list's order, streamed over a keyset walk (flat
    memory at 530,000 rows); exact balances."""
    filters = _filters_from(request)
    try:
        walk = selectors.tenant_walk(filters=selectors.parse_filters(filters))
    except PortalError as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain; charset=utf-8")
    names = {pk: c.name for pk, c in selectors.connection_names().items()}
    return stream_csv(
        "tenants.csv",
        _EXPORT_COLUMNS,
        walk,
        lambda t: (
            t.uuid,
            t.company_name,
            t.account_name,
            t.account_email,
            names.get(t.connection_id, ""),
            t.provider_account_id if t.provider_account_id is not None else "",
            t.status,
            decimal_text(t.balance),
            t.currency,
            int(t.is_low_balance),
            int(t.has_drift),
            int(t.missing_at_provider),
            t.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        ),
    )


_STATUS_LABELS = dict(Tenant.Status.choices)


def _rows_html(
    rows: list[Tenant], connections: dict[int, ProviderConnection], base: str, *, selectable: bool
) -> SafeString:
    """The list's rows as HTML. Built here rather than in a template loop because the Django
    template engine spends ~10 ms on 50 rows, most of the page's budget at 530,000 tenants
    (bench/tenant_list.py). Every value goes through html.escape (what Django's escape uses)."""
    parts = []
    for t in rows:
        conn = connections.get(t.connection_id)
        flags = "".join(
            (
                '<span class="badge flag">low</span> ' if t.is_low_balance else "",
                '<span class="badge flag">drift</span> ' if t.has_drift else "",
                '<span class="badge failed">missing</span>' if t.missing_at_provider else "",
                '<span class="badge failed">documents required</span>' if t.verification_status == "REQUIRED" else "",
            )
        )
        disagrees = _provider_disagrees(t)
        balance = (
            f'<span title="{_e(money_format.exact(t.balance, t.currency))}">{_e(money_format.money(t.balance, t.currency))}</span>'
            if t.balance is not None
            else '<span class="muted">—</span>'
        )
        company = _e(t.company_name)
        check = (
            f'<td><input type="checkbox" name="tenants" value="{t.uuid}" aria-label="Select {company}"></td>'
            if selectable
            else ""
        )
        parts.append(
            f'<tr>{check}<td><a href="{base}{t.uuid}/">{company}</a></td>'
            f'<td>{_e(t.account_name)}<br><span class="muted">{_e(t.account_email)}</span></td>'
            f'<td>{_e(conn.name if conn else "")}<br><span class="muted">{_e(t.provider_account_ref or "—")}</span></td>'
            f'<td><span class="badge {_e(t.status)}">{_e(_STATUS_LABELS.get(t.status, t.status))}</span></td>'
            f'<td class="num">{balance}</td><td>{flags}</td>'
            f"<td>{_DISAGREE_MARK if disagrees else ''}</td></tr>\n"
        )
    return SafeString("".join(parts))


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _capabilities(connection: ProviderConnection) -> list[dict[str, Any]]:
    matrix = capability_matrix(connection)
    return [
        {"name": cap.value.replace("_", " ").capitalize(), "supported": reason is None, "reason": reason}
        for cap, reason in matrix.items()
    ]


@require("console.view")
def tenant_detail(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    open_op = selectors.tenant_open_operation(tenant=tenant)
    actions = {kind: services.freeze_refusal(tenant, kind) for kind in ("freeze", "unfreeze", "close")}
    if open_op is not None:
        actions = {kind: "Another operation is still running on this tenant." for kind in actions}
    secrets_stored = sorted(services.tenant_secrets(tenant=tenant)) if tenant.secrets_encrypted else []
    context = {
        "tenant": tenant,
        "open_op": open_op,
        "operations": selectors.tenant_operations(tenant=tenant),
        "members": selectors.tenant_members(tenant=tenant),
        "events": sentences(audit_events(tenant_id=tenant.pk)[:30]),
        "capabilities": _capabilities(tenant.connection),
        "actions": actions,
        "secrets_stored": secrets_stored,
        "reason_form": ReasonForm(),
        "can_manage": has_perm(request.user, "tenants.manage"),
        "can_freeze": has_perm(request.user, "tenants.freeze"),
        "clone_refusal": _clone_refusal(tenant),
        "clone_note": _clone_note(tenant),
        **_provider_truth(tenant, open_op),
        **_plans_panel(request.user, tenant),
    }
    return render(request, "tenants/detail.html", context)


def _plans_panel(actor: Any, tenant: Tenant) -> dict[str, Any]:
    # Imported here: tenants.plan_views builds on this module's _staff_only.
    from tenants.plan_views import plans_panel

    return plans_panel(actor, tenant)


def _clone_note(tenant: Tenant) -> str | None:
    """What a clone cannot copy at this provider (None where CloneAccount exists)."""

    return capability_matrix(tenant.connection).reason(Capability.CLONE)


def _clone_refusal(tenant: Tenant) -> str | None:

    matrix = capability_matrix(tenant.connection)
    if not matrix.supports(Capability.CLONE) and not matrix.supports(Capability.CREATE):
        return f"Unavailable: {matrix.reason(Capability.CLONE)}"
    if tenant.status not in (Tenant.Status.ACTIVE, Tenant.Status.FROZEN) or tenant.provider_account is None:
        return "Only an active or frozen tenant with a provider account can be cloned."
    return None


def _prefill_from_failed(request: HttpRequest) -> tuple[dict[str, Any], PortalError | None]:
    """'Try again' from a failed create: the old inputs and the provider's error on its field."""
    source = request.GET.get("from")
    if not source:
        return {}, None
    tenant = selectors.tenant_get(uuid=source)
    if tenant.status != Tenant.Status.FAILED:
        return {}, None
    op = tenant.operations.filter(kind__in=("create", "clone")).first()
    initial = {
        name: getattr(tenant, name)
        for name in (
            "company_name",
            "account_name",
            "account_email",
            "contact_name",
            "contact_email",
            "plan",
            "notes",
            "voiceit_type",
        )
    }
    initial["connection"] = tenant.connection.uuid
    initial["low_balance_threshold"] = tenant.low_balance_threshold or ""
    error = PortalError(tenant.status_reason, field=(op.error_field if op else "") or None)
    return initial, error


def _every_error(form: TenantCreateForm) -> None:
    """The form refused some fields itself (required, too long, a threshold): run the
    service's own rules on what was typed too, so every wrong field shows on this one answer
    instead of one after another. Nothing is written: validation only."""
    typed: dict[str, Any] = {name: form.cleaned_data.get(name, form.data.get(name, "")) for name in form.fields}
    typed["low_balance_threshold"] = form.cleaned_data.get("low_balance_threshold")
    try:
        services.validate_account_input(
            **{
                name: typed[name]
                for name in (
                    "connection",
                    "company_name",
                    "account_name",
                    "account_email",
                    "contact_name",
                    "contact_email",
                    "password",
                    "voiceit_type",
                    "notes",
                    "plan",
                    "low_balance_threshold",
                    "invite_owner_email",
                )
            }
        )
    except PortalError as exc:
        apply_portal_error(form, exc)


@require("tenants.manage")
@require_http_methods(["GET", "POST"])
def tenant_create(request: HttpRequest) -> HttpResponse:
    form = TenantCreateForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                tenant = services.tenant_create(
                    actor=request.user,
                    connection=data["connection"],
                    company_name=data["company_name"],
                    account_name=data["account_name"],
                    account_email=data["account_email"],
                    contact_name=data["contact_name"],
                    contact_email=data["contact_email"],
                    password=data["password"] or None,
                    voiceit_type=data["voiceit_type"],
                    notes=data["notes"],
                    plan=data["plan"],
                    low_balance_threshold=data["low_balance_threshold"],
                    invite_owner_email=data["invite_owner_email"],
                    operation_key=data["operation_key"] or None,
                    request=request,
                )
            except PortalError as exc:
                apply_portal_error(form, exc)
            else:
                messages.success(
                    request, gettext("%(company)s is being created at the provider.") % {"company": tenant.company_name}
                )
                return redirect("tenants:detail", tenant_uuid=tenant.uuid)
        else:
            _every_error(form)
    prefill_error = None
    if request.method != "POST":
        initial, prefill_error = _prefill_from_failed(request)
        form = TenantCreateForm(initial=initial)
    voiceit = [
        str(c.uuid)
        for c in form.fields["connection"].queryset  # type: ignore[attr-defined]
        if c.kind == ProviderConnection.Kind.VOICEIT
    ]
    return render(
        request,
        "tenants/form.html",
        {
            "form": form,
            "title": "New tenant",
            "submit": "Create tenant",
            "voiceit_connections": voiceit,
            "prefill_error": prefill_error,
        },
    )


@require("tenants.manage")
@require_http_methods(["GET", "POST"])
def tenant_clone(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    source = selectors.tenant_get(uuid=tenant_uuid)
    refusal = _clone_refusal(source)
    if request.method == "POST":
        form = TenantCloneForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                tenant = services.tenant_clone(
                    actor=request.user,
                    source=source,
                    company_name=data["company_name"],
                    account_name=data["account_name"],
                    account_email=data["account_email"],
                    password=data["password"] or None,
                    operation_key=data["operation_key"] or None,
                    request=request,
                )
            except PortalError as exc:
                apply_portal_error(form, exc)
            else:
                messages.success(
                    request,
                    gettext("%(company)s is being cloned from %(source)s.")
                    % {"company": tenant.company_name, "source": source.company_name},
                )
                return redirect("tenants:detail", tenant_uuid=tenant.uuid)
    else:
        form = TenantCloneForm(initial={"company_name": f"{source.company_name} (copy)"})
    return render(
        request,
        "tenants/form.html",
        {
            "form": form,
            "title": f"Clone {source.company_name}",
            "submit": "Clone tenant",
            "source": source,
            "refusal": refusal,
            "clone_note": _clone_note(source),
        },
    )


def tenant_action(
    request: HttpRequest, tenant: Tenant, done: str, service: Callable[..., object], /, **params: Any
) -> HttpResponse:
    """Run one staff action on ``tenant`` (``service`` with the actor, the request and
    ``params``): its refusal becomes the error message, else ``done`` the success message;
    back to the tenant page either way."""
    try:
        service(actor=request.user, request=request, **params)
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("tenants:detail", tenant_uuid=tenant.uuid)


def _lifecycle(request: HttpRequest, tenant_uuid: Any, service: Any, done: str) -> HttpResponse:
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(
            request, gettext("Give a reason: ") + " ".join(str(e) for errs in form.errors.values() for e in errs)
        )
        return redirect("tenants:detail", tenant_uuid=tenant.uuid)
    return tenant_action(request, tenant, done, service, tenant=tenant, reason=form.cleaned_data["reason"])


@require("tenants.freeze")
@require_POST
def tenant_freeze(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    return _lifecycle(request, tenant_uuid, services.tenant_freeze, gettext("Freezing at the provider…"))


@require("tenants.freeze")
@require_POST
def tenant_unfreeze(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    return _lifecycle(request, tenant_uuid, services.tenant_unfreeze, gettext("Unfreezing at the provider…"))


@require("tenants.manage")
@require_http_methods(["GET", "POST"])
def tenant_close(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    refusal = services.freeze_refusal(tenant, "close")
    if request.method == "POST":
        form = CloseForm(request.POST, tenant=tenant)
        if form.is_valid():
            try:
                services.tenant_close(
                    actor=request.user, tenant=tenant, reason=form.cleaned_data["reason"], request=request
                )
            except PortalError as exc:
                apply_portal_error(form, exc)
            else:
                messages.success(request, gettext("Closing %(company)s…") % {"company": tenant.company_name})
                return redirect("tenants:detail", tenant_uuid=tenant.uuid)
    else:
        form = CloseForm(tenant=tenant)

    matrix = capability_matrix(tenant.connection)
    return render(
        request,
        "tenants/close.html",
        {
            "tenant": tenant,
            "form": form,
            "refusal": refusal,
            "can_delete": matrix.supports(Capability.CLOSE_DELETE),
            "delete_reason": matrix.reason(Capability.CLOSE_DELETE),
            "can_pull": matrix.supports(Capability.TRANSFER_MONEY),
            "pull_reason": matrix.reason(Capability.TRANSFER_MONEY),
            "can_freeze_provider": matrix.supports(Capability.FREEZE),
            "freeze_reason": matrix.reason(Capability.FREEZE),
        },
    )


def _operation_action(
    request: HttpRequest, tenant_uuid: Any, operation_uuid: Any, service: Any, done: str
) -> HttpResponse:
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    op = selectors.operation_get(tenant=tenant, uuid=operation_uuid)
    permission = (
        "tenants.freeze"
        if op.kind in (TenantOperation.Kind.FREEZE, TenantOperation.Kind.UNFREEZE)
        else "tenants.manage"
    )
    if not has_perm(request.user, permission):
        raise PermissionDenied
    return tenant_action(request, tenant, done, service, operation=op)


@require("tenants.freeze")
@require_POST
def operation_retry(request: HttpRequest, tenant_uuid: Any, operation_uuid: Any) -> HttpResponse:
    return _operation_action(request, tenant_uuid, operation_uuid, services.operation_retry, gettext("Retrying…"))


@require("tenants.freeze")
@require_POST
def operation_give_up(request: HttpRequest, tenant_uuid: Any, operation_uuid: Any) -> HttpResponse:
    return _operation_action(
        request, tenant_uuid, operation_uuid, services.operation_give_up, gettext("The operation was abandoned.")
    )


# --- bulk --------------------------------------------------------------------------------------


@require("tenants.freeze")
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """Step 1 (dry run): what the action would do per row. Step 2 (run=1): start the job."""
    action = request.POST.get("action", "")
    if action == "import" or action not in ("freeze", "unfreeze"):
        if action == "import":
            return bulk_import(request)
        messages.error(request, gettext("Choose freeze or unfreeze."))
        return redirect("tenants:list")
    scope = request.POST.get("scope", "selection")
    filters = {k: str(v) for k, v in request.POST.items() if k in FILTER_NAMES and k != "sort" and v}
    if request.POST.get("run") == "1":
        run_ids = [int(i) for i in request.POST.getlist("ids") if inputs.is_ascii_digits(i)]
        try:
            job = services.bulk_start(
                actor=request.user,
                action=action,
                ids=None if scope == "filter" else run_ids,
                filters=filters if scope == "filter" else None,
                reason=request.POST.get("reason", ""),
                request=request,
            )
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect("tenants:list")
        return redirect("tenants:bulk_job", job_uuid=job.uuid)
    error = None
    ids: list[int] = []
    matching = None
    if scope == "filter":
        # Every tenant matching the filter: the dry run shows the first rows and how many
        # match; the job walks the filter itself (services.bulk_start(filters=...)).
        try:
            parsed = selectors.parse_filters({**filters, "sort": "id"})
            matching = selectors.tenant_total(filters=parsed)
            ids = [
                t.pk
                for t in itertools.islice(selectors.tenant_walk(filters=parsed, batch=FILTER_PREVIEW), FILTER_PREVIEW)
            ]
        except PortalError as exc:
            error = exc.message
    else:
        uuids = request.POST.getlist("tenants")[: services.BULK_LIMIT + 1]
        ids = list(Tenant.objects.filter(uuid__in=[u for u in uuids if _is_uuid(u)]).values_list("id", flat=True))
    truncated = scope != "filter" and len(ids) > services.BULK_LIMIT
    rows = services.bulk_preview(action=action, tenant_ids=ids[: services.BULK_LIMIT]) if not error else []
    return render(
        request,
        "tenants/bulk_preview.html",
        {
            "action": action,
            "label": services.BULK_ACTIONS[action],
            "rows": rows,
            "error": error,
            "runnable": [r for r in rows if r["ok"]],
            "truncated": truncated,
            "limit": services.BULK_LIMIT,
            "reason": request.POST.get("reason", ""),
            "scope": scope,
            "matching": matching,
            "filters": filters,
            "preview_limit": FILTER_PREVIEW,
        },
    )


def _is_uuid(value: str) -> bool:
    import uuid as uuid_module

    try:
        uuid_module.UUID(value)
    except ValueError:
        return False
    return True


@require("tenants.manage")
def bulk_import(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return redirect("tenants:import")
    ids = [int(i) for i in request.POST.getlist("unknown") + request.POST.getlist("ids") if inputs.is_ascii_digits(i)]
    if request.POST.get("run") == "1":
        try:
            job = services.bulk_start(actor=request.user, action="import", ids=ids, request=request)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect("tenants:import")
        return redirect("tenants:bulk_job", job_uuid=job.uuid)
    rows = services.bulk_preview(action="import", unknown_ids=ids)
    return render(
        request,
        "tenants/bulk_preview.html",
        {
            "action": "import",
            "label": "Import",
            "rows": rows,
            "runnable": [r for r in rows if r["ok"]],
            "truncated": False,
            "limit": services.BULK_LIMIT,
            "reason": "",
        },
    )


@require("console.view")
def bulk_job(request: HttpRequest, job_uuid: Any) -> HttpResponse:

    job = get_object_or_404(Job, uuid=job_uuid, kind__startswith="tenants.")
    return render(request, "tenants/bulk_job.html", {"job": job})


# --- import --------------------------------------------------------------------------------------


@require("tenants.manage")
def import_list(request: HttpRequest) -> HttpResponse:
    connection_id = None
    conn_param = request.GET.get("connection", "")
    connections = selectors.connections_for_forms()
    for c in connections:
        if str(c.uuid) == conn_param:
            connection_id = c.pk
    cursor = request.GET.get("after", "")
    rows, next_cursor = selectors.unknown_accounts(
        connection_id=connection_id, cursor=int(cursor) if inputs.is_ascii_digits(cursor) else None
    )
    scannable = []

    for c in connections:
        matrix = capability_matrix(c)
        ok = matrix.supports(Capability.LIST_ACCOUNTS)
        scannable.append(
            {
                "connection": c,
                "ok": ok,
                "reason": matrix.reason(Capability.LIST_ACCOUNTS),
                "refused": ok and services.listing_refused(c),
            }
        )
    next_url = ""
    if next_cursor:
        next_url = reverse("tenants:import") + "?" + urlencode({"connection": conn_param, "after": next_cursor})
    return render(
        request,
        "tenants/import.html",
        {
            "rows": rows,
            "next_url": next_url,
            "connections": connections,
            "connection": conn_param,
            "scannable": scannable,
            "form": ImportForm(),
            "scan_jobs": _recent_scans(),
            "listing_refused": services.LISTING_REFUSED,
            "lookup_fields": list(services.LOOKUP_FIELDS.items()),
        },
    )


def _recent_scans() -> list[Any]:

    return list(Job.objects.filter(kind="tenants.scan").order_by("-id")[:3])


@require("tenants.manage")
@require_POST
def import_one(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST)
    company = form.data.get("company_name", "")
    try:
        connection = (
            ProviderConnection.objects.filter(uuid=request.POST.get("connection", "")).first()
            if _is_uuid(request.POST.get("connection", ""))
            else None
        )
        account_id: int | str = request.POST.get("provider_account_id", "")
        if "lookup" in request.POST:
            account_id = _lookup_one(request, connection)
        tenant = services.tenant_import(
            actor=request.user,
            connection=connection,
            provider_account_id=account_id,
            company_name=company or None,
            low_balance_threshold=request.POST.get("low_balance_threshold", "") or None,
            request=request,
        )
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("tenants:import")
    messages.success(request, gettext("Imported %(company)s.") % {"company": tenant.company_name})
    return HttpResponseRedirect(reverse("tenants:detail", kwargs={"tenant_uuid": tenant.uuid}))


def _lookup_one(request: HttpRequest, connection: ProviderConnection | None) -> int:
    """Import by id, name or email: ask the provider for that one account first."""
    found = services.unknown_account_lookup(
        actor=request.user,
        connection=connection,
        by=request.POST.get("lookup_by", ""),
        value=request.POST.get("lookup", ""),
    )
    if len(found) > 1:
        raise PortalError(
            f"{len(found)} accounts match; import one of them by its provider id: "
            + ", ".join(str(i) for i in found[:20]),
            field="lookup",
        )
    return found[0]


@require("tenants.manage")
@require_POST
def import_scan(request: HttpRequest) -> HttpResponse:
    conn = request.POST.get("connection", "")
    connection = ProviderConnection.objects.filter(uuid=conn).first() if _is_uuid(conn) else None
    try:
        services.unknown_accounts_scan(actor=request.user, connection=connection, request=request)
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, gettext("Scanning the provider; candidates appear below as they are found."))
    return redirect("tenants:import")


# --- provider truth, edit, enable, rotate ----------------------------------------------------

_DISAGREE_MARK = (
    '<span class="badge flag" data-testid="provider-disagrees" '
    'title="The provider disagrees with the portal; see the tenant page">≠ provider</span>'
)


def _provider_disagrees(t: Tenant) -> bool:
    """The provider's own flags (as the sync or the last operation stored them) contradict the
    portal: enabled or disabled against the status, frozen by the provider, another threshold.
    Reads loaded columns only (tenants.selectors.LIST_FIELDS)."""
    if t.status == Tenant.Status.ACTIVE and (t.provider_active is False or t.provider_frozen is True):
        return True
    if t.status == Tenant.Status.FROZEN and t.provider_active is True and t.provider_frozen is not True:
        return True
    return (
        t.low_balance_threshold is not None
        and t.provider_threshold is not None
        and t.low_balance_threshold != t.provider_threshold
    )


def _provider_truth(tenant: Tenant, open_op: TenantOperation | None) -> dict[str, Any]:
    activate_refusal = services.activate_refusal(tenant)
    busy = "Another operation is still running on this tenant." if open_op is not None else None
    return {
        "provider_disagrees": _provider_disagrees(tenant),
        "threshold_local": services.threshold_local_reason(tenant),
        "disabled_at_provider": tenant.provider_active is False
        and tenant.status not in (Tenant.Status.CLOSING, Tenant.Status.CLOSED, Tenant.Status.FAILED),
        "activate_refusal": busy or activate_refusal,
        "rotate_refusal": busy or services.rotate_refusal(tenant),
        "rotate_possible": capability_matrix(tenant.connection).supports(Capability.ROTATE_CREDENTIALS),
    }


def _staff_only(permission: str) -> Any:
    """Like roles.require, but a customer gets 404 (the page does not exist for them, whichever
    tenant the id names); staff without ``permission`` get 403."""

    def decorator(view: Any) -> Any:
        @require(permission)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return view(request, *args, **kwargs)

        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.user.is_authenticated and not has_perm(request.user, "console.view"):
                raise Http404("No such page")
            return checked(request, *args, **kwargs)

        wrapper.__name__ = view.__name__
        wrapper.__doc__ = view.__doc__
        return wrapper

    return decorator


@_staff_only("tenants.manage")
@require_http_methods(["GET", "POST"])
def tenant_edit(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    not_editable = services.editable_provider_fields(tenant)
    initial = {
        name: getattr(tenant, name)
        for name in ("company_name", "contact_name", "contact_email", "plan", "notes", "account_name", "account_email")
    }
    initial["low_balance_threshold"] = tenant.low_balance_threshold if tenant.low_balance_threshold is not None else ""
    form = TenantEditForm(
        request.POST if request.method == "POST" else None,
        initial=initial,
        tenant=tenant,
        not_editable=not_editable,
    )
    if request.method == "POST" and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k not in form.not_editable}
        if not data.get("password"):
            data.pop("password", None)
        try:
            op = services.tenant_edit(actor=request.user, tenant=tenant, request=request, **data)
        except PortalError as exc:
            apply_portal_error(form, exc)
        else:
            messages.success(
                request,
                gettext("Saved; the provider is being updated.") if op is not None else gettext("Saved."),
            )
            return redirect("tenants:detail", tenant_uuid=tenant.uuid)
    return render(
        request,
        "tenants/edit.html",
        {"tenant": tenant, "form": form, "threshold_local": services.threshold_local_reason(tenant)},
    )


@_staff_only("tenants.manage")
@require_POST
def tenant_activate(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    return tenant_action(request, tenant, gettext("Enabling at the provider…"), services.tenant_activate, tenant=tenant)


@_staff_only("tenants.manage")
@require_http_methods(["GET", "POST"])
def tenant_rotate(request: HttpRequest, tenant_uuid: Any) -> HttpResponse:
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    refusal = services.rotate_refusal(tenant)
    form = RotateForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and not refusal:
        try:
            op = services.tenant_rotate(
                actor=request.user, tenant=tenant, delivery=form.cleaned_data["delivery"], request=request
            )
        except PortalError as exc:
            apply_portal_error(form, exc)
        else:
            return redirect("tenants:rotation", tenant_uuid=tenant.uuid, operation_uuid=op.uuid)
    return render(request, "tenants/rotate.html", {"tenant": tenant, "form": form, "refusal": refusal})


@_staff_only("tenants.manage")
@require_http_methods(["GET"])
def tenant_rotation(request: HttpRequest, tenant_uuid: Any, operation_uuid: Any) -> HttpResponse:
    """The rotation's progress, then the new credentials exactly once (never cached)."""
    tenant = selectors.tenant_get(uuid=tenant_uuid)
    op = selectors.operation_get(tenant=tenant, uuid=operation_uuid)
    if op.kind != TenantOperation.Kind.ROTATE:
        raise Http404("No such rotation")
    credentials = services.rotation_reveal(actor=request.user, tenant=tenant, operation=op)
    response = render(
        request,
        "tenants/rotation.html",
        {"tenant": tenant, "op": op, "credentials": credentials, "already_shown": op.params.get("reveal") == "shown"},
    )
    response["Cache-Control"] = "no-store"
    return response
