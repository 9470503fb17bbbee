"""Console pages of invoices: the list, one invoice (lines, credit notes, payments, what is
due), downloads, credit notes, payments, the monthly run ("Run now" for a past month, with its
live progress) and the company details printed on invoices."""

from __future__ import annotations

import uuid as uuid_mod
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from portal import inputs
from portal.audit import audit_events
from portal.errors import PortalError
from portal.roles import has_perm, require
from reselling import invoices as svc
from reselling.models import Invoice, InvoiceRun, Payment
from reselling.payments import payment_record, payments_of
from reselling.pdf import filename, invoice_csv, invoice_pdf

PAGE = 100


def download(invoice: Invoice, fmt: str) -> HttpResponse:
    """The PDF or CSV of one invoice, for staff and customers alike (the caller scoped it)."""
    places = svc.places_for(svc.reseller_profile(), invoice.currency)
    if fmt == "csv":
        response = HttpResponse(invoice_csv(invoice, places=places), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(invoice_pdf(invoice, places=places), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename(invoice, fmt)}"'
    return response


def invoice_context(invoice: Invoice) -> dict[str, Any]:
    """What both the staff and the customer page show of an invoice."""
    return {
        "invoice": invoice,
        "lines": list(svc.lines_of(invoice)),
        "balance": svc.invoice_balance(invoice),
        "credit_notes": list(invoice.credit_notes.order_by("id")),
        "places": svc.places_for(svc.reseller_profile(), invoice.currency),
    }


@require("console.view")
def invoice_list(request: HttpRequest) -> HttpResponse:
    qs = svc.invoices_for()
    before = request.GET.get("before", "")
    if inputs.is_ascii_digits(before):
        qs = qs.filter(pk__lt=int(before))
    query = request.GET.get("q", "").strip()[:100]
    if query:
        qs = qs.filter(number__startswith=query) | qs.filter(tenant__company_name__icontains=query)
    rows = list(qs.order_by("-id")[: PAGE + 1])
    return render(
        request,
        "reselling/invoice_list.html",
        {
            "rows": [(row, svc.invoice_balance(row)) for row in rows[:PAGE]],
            "next_before": rows[PAGE - 1].pk if len(rows) > PAGE else None,
            "q": query,
            "may_run": has_perm(request.user, "billing.move_money"),
            "may_edit_profile": has_perm(request.user, "tenants.manage"),
        },
    )


def _staff_invoice(invoice_uuid: uuid_mod.UUID) -> Invoice:
    return svc.invoice_get(invoice_uuid=invoice_uuid)


def _render_detail(
    request: HttpRequest,
    invoice: Invoice,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    events = audit_events(tenant_id=invoice.tenant_id, action_prefix="reselling.")
    reasons = [e for e in events[:200] if (e.data or {}).get("invoice") == invoice.number]
    context = invoice_context(invoice) | {
        "payments": list(payments_of(invoice)),
        "events": reasons,
        "may_move_money": has_perm(request.user, "billing.move_money"),
        "methods": Payment.Method.choices,
        "today": timezone.localdate(),
        "errors": errors or {},
        "form": form or {},
        "client_key": uuid_mod.uuid4().hex,
    }
    return render(request, "reselling/invoice_detail.html", context, status=status)


@require("console.view")
def invoice_detail(request: HttpRequest, invoice_uuid: uuid_mod.UUID) -> HttpResponse:
    return _render_detail(request, _staff_invoice(invoice_uuid))


@require("console.view")
def invoice_download(request: HttpRequest, invoice_uuid: uuid_mod.UUID, fmt: str) -> HttpResponse:
    if fmt not in ("pdf", "csv"):
        raise Http404("No such format")
    return download(_staff_invoice(invoice_uuid), fmt)


def _refused(request: HttpRequest, invoice: Invoice, exc: PortalError, form: str) -> HttpResponse:
    errors = {f"{form}_{exc.field or 'form'}": exc.message}
    status = exc.status if 400 <= exc.status < 500 else 400
    return _render_detail(
        request, invoice, errors=errors, form={k: str(v) for k, v in request.POST.items()}, status=status
    )


@require("billing.move_money")
@require_POST
def credit_note_create(request: HttpRequest, invoice_uuid: uuid_mod.UUID) -> HttpResponse:
    invoice = _staff_invoice(invoice_uuid)
    try:
        note = svc.credit_note_create(
            actor=request.user,
            invoice=invoice,
            amount=request.POST.get("amount", "").strip(),
            reason=request.POST.get("reason", ""),
            request=request,
        )
    except PortalError as exc:
        return _refused(request, invoice, exc, "credit")
    messages.success(request, gettext("Credit note %(number)s issued.") % {"number": note.number})
    return redirect("reselling:invoice", invoice.uuid)


@require("billing.move_money")
@require_POST
def payment_create(request: HttpRequest, invoice_uuid: uuid_mod.UUID) -> HttpResponse:
    invoice = _staff_invoice(invoice_uuid)
    try:
        payment = payment_record(
            actor=request.user,
            invoice=invoice,
            amount=request.POST.get("amount", "").strip(),
            method=request.POST.get("method", ""),
            received_on=request.POST.get("received_on", ""),
            reference=request.POST.get("reference", ""),
            client_key=request.POST.get("client_key") or None,
            request=request,
        )
    except PortalError as exc:
        return _refused(request, invoice, exc, "payment")
    if getattr(payment, "replayed", False):
        messages.info(request, gettext("This payment was recorded already."))
    else:
        messages.success(
            request,
            gettext("Payment of %(amount)s %(currency)s recorded.")
            % {"amount": f"{payment.amount.normalize():f}", "currency": invoice.currency},
        )
    return redirect("reselling:invoice", invoice.uuid)


@require("console.view")
def invoice_runs(request: HttpRequest) -> HttpResponse:
    default = svc.previous_month(timezone.localdate())
    return render(
        request,
        "reselling/invoice_runs.html",
        {
            "runs": InvoiceRun.objects.select_related("job").order_by("-period")[:36],
            "default_period": default.strftime("%Y-%m"),
            "may_run": has_perm(request.user, "billing.move_money"),
            "error": "",
        },
    )


@require("billing.move_money")
@require_POST
def invoice_run_now(request: HttpRequest) -> HttpResponse:
    try:
        period = svc.parse_period(request.POST.get("period", ""))
        run = svc.invoice_run_start(actor=request.user, period=period, request=request)
    except PortalError as exc:
        return render(
            request,
            "reselling/invoice_runs.html",
            {
                "runs": InvoiceRun.objects.select_related("job").order_by("-period")[:36],
                "default_period": request.POST.get("period", "")[:7],
                "may_run": True,
                "error": exc.message,
            },
            status=400,
        )
    if run.state == InvoiceRun.State.SUCCEEDED:
        messages.info(
            request, gettext("The invoices of %(period)s were issued already.") % {"period": f"{period:%B %Y}"}
        )
    return redirect("reselling:invoice_run", run.pk)


@require("console.view")
def invoice_run(request: HttpRequest, run_id: int) -> HttpResponse:
    run = InvoiceRun.objects.select_related("job").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run")
    return render(request, "reselling/invoice_run.html", {"run": run})


@require("tenants.manage")
def invoice_profile(request: HttpRequest) -> HttpResponse:
    profile = svc.reseller_profile()
    error, field, status = "", "", 200
    if request.method == "POST":
        values: dict[str, Any] = {name: request.POST.get(name, "") for name in svc.PROFILE_TEXT_FIELDS}
        values["tax_rate_percent"] = request.POST.get("tax_rate_percent", "").strip()
        try:
            values["rounding"] = _rounding(request.POST.get("rounding", ""))
            svc.reseller_profile_update(actor=request.user, values=values, request=request)
        except PortalError as exc:
            error, field, status = exc.message, exc.field or "", 400
        else:
            messages.success(request, gettext("Company details saved; new invoices print them."))
            return redirect("reselling:invoice_profile")
    rounding = ", ".join(f"{k}={v}" for k, v in sorted((profile.rounding or {}).items()))
    return render(
        request,
        "reselling/invoice_profile.html",
        {"profile": profile, "rounding": request.POST.get("rounding", rounding), "error": error, "field": field},
        status=status,
    )


def _rounding(raw: str) -> dict[str, int]:
    """``USD=2, KZT=0`` into {"USD": 2, "KZT": 0}."""
    result: dict[str, int] = {}
    for part in raw.replace(";", ",").split(","):
        if not part.strip():
            continue
        code, _, places = part.partition("=")
        if not inputs.is_ascii_digits(places.strip(), max_length=1):
            raise PortalError("Write rounding as currency=decimals, like USD=2, KZT=0.", field="rounding")
        result[code.strip().upper()] = int(places.strip())
    return result
