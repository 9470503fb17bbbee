"""The customer's invoices and credit notes: the list, one invoice, its PDF and CSV. The tenant
is the logged-in user's (customer_page); an invoice of another tenant is a 404 like a missing
one. Staff notes (credit-note reasons, payment references) are not shown here."""

from __future__ import annotations

import uuid as uuid_mod
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from customers.views import _is_owner, customer_page
from reselling.invoices import invoice_balance, invoice_get, invoices_for
from reselling.views_invoices import download, invoice_context

PAGE = 100


@customer_page()
def invoice_list(request: HttpRequest, tenant: Any) -> HttpResponse:
    rows = list(invoices_for(tenant=tenant)[:PAGE])
    return render(
        request,
        "customers/invoice_list.html",
        {"tenant": tenant, "rows": [(row, invoice_balance(row)) for row in rows], "is_owner": _is_owner(request)},
    )


@customer_page()
def invoice_detail(request: HttpRequest, tenant: Any, invoice_uuid: uuid_mod.UUID) -> HttpResponse:
    invoice = invoice_get(invoice_uuid=invoice_uuid, tenant=tenant)
    return render(
        request,
        "customers/invoice_detail.html",
        invoice_context(invoice) | {"tenant": tenant, "is_owner": _is_owner(request)},
    )


@customer_page()
def invoice_download(request: HttpRequest, tenant: Any, invoice_uuid: uuid_mod.UUID, fmt: str) -> HttpResponse:
    invoice = invoice_get(invoice_uuid=invoice_uuid, tenant=tenant)
    if fmt not in ("pdf", "csv"):
        raise Http404("No such format")
    return download(invoice, fmt)
