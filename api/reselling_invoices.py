"""Invoices over the API. Staff: invoices (list, detail, PDF), credit notes and payments
(record, list). Customers: their own invoices and PDFs under /customer/ (the tenant is the
token's or the login's, never a parameter). Staff-only words (credit-note reasons, payment
references, who recorded what) are only in the staff bodies."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.base import MoneyField, SafeText, StrictInput, validated_input
from api.customer import own_tenant
from api.idempotency import idempotency_parameter, run_idempotent
from api.pagination import PAGE_PARAMETERS, keyset_page, page_body, page_serializer
from api.permissions import Perm
from api.tenants import staff_tenant
from reselling.invoices import credit_note_create, invoice_balance, invoice_get, invoices_for
from reselling.models import Payment
from reselling.payments import payment_record, payments_of
from reselling.views_invoices import download

PDF_RESPONSE = OpenApiResponse(response=OpenApiTypes.BINARY, description="The invoice as a PDF (application/pdf).")


class LineOut(serializers.Serializer):
    kind = serializers.CharField()
    description = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=18, decimal_places=4)
    amount = serializers.DecimalField(max_digits=18, decimal_places=4)


class InvoiceOut(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    number = serializers.CharField()
    kind = serializers.CharField()
    corrects = serializers.CharField(source="corrects.number", allow_null=True, default=None)
    period = serializers.DateField()
    currency = serializers.CharField()
    subtotal = serializers.DecimalField(max_digits=18, decimal_places=4)
    tax_rate_percent = serializers.DecimalField(max_digits=7, decimal_places=4)
    tax = serializers.DecimalField(max_digits=18, decimal_places=4)
    total = serializers.DecimalField(max_digits=18, decimal_places=4)
    issued_at = serializers.DateTimeField()
    due_on = serializers.DateField()
    status = serializers.SerializerMethodField(help_text="unpaid, partly_paid, paid, overdue or credit_note")
    amount_due = serializers.SerializerMethodField()
    lines = serializers.SerializerMethodField()

    def get_status(self, invoice: Any) -> str:
        return invoice_balance(invoice).status

    def get_amount_due(self, invoice: Any) -> str:
        return f"{invoice_balance(invoice).due:f}"

    def get_lines(self, invoice: Any) -> list[dict[str, Any]]:
        return list(LineOut(invoice.lines.order_by("id"), many=True).data)


class StaffInvoiceOut(InvoiceOut):
    tenant = serializers.UUIDField(source="tenant.uuid")


class PaymentOut(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    invoice = serializers.CharField(source="invoice.number")
    amount = serializers.DecimalField(max_digits=18, decimal_places=4)
    method = serializers.CharField()
    received_on = serializers.DateField()
    reference = serializers.CharField(help_text="Internal to staff.")
    recorded_by = serializers.CharField(source="recorded_by.username", allow_null=True, default=None)
    topup = serializers.UUIDField(source="topup.uuid", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class CreditNoteIn(StrictInput):
    amount = MoneyField(required=False, help_text="Tax included; leave out to credit all that is not yet credited.")
    reason = SafeText(max_length=500, help_text="Internal to staff: the customer never sees it.")


class PaymentIn(StrictInput):
    amount = MoneyField()
    method = serializers.ChoiceField(choices=Payment.Method.values)
    received_on = serializers.DateField(input_formats=["%Y-%m-%d"])
    reference = SafeText(max_length=200, allow_blank=True, default="")


def _pdf(invoice: Any) -> HttpResponse:
    return download(invoice, "pdf")


class InvoiceListApi(APIView):
    permission_classes = [Perm("console.view")]

    @extend_schema(
        operation_id="invoices_list",
        parameters=[*PAGE_PARAMETERS, OpenApiParameter("tenant", str, description="Tenant uuid.")],
        responses=page_serializer(StaffInvoiceOut, "InvoicePage"),
    )
    def get(self, request: Request) -> Response:
        tenant_uuid = request.query_params.get("tenant")
        tenant = staff_tenant(tenant_uuid) if tenant_uuid else None
        rows, cursor = keyset_page(invoices_for(tenant=tenant), request)
        return Response(page_body(request, StaffInvoiceOut(rows, many=True).data, cursor))


class InvoiceDetailApi(APIView):
    permission_classes = [Perm("console.view")]

    @extend_schema(operation_id="invoices_retrieve", responses=StaffInvoiceOut)
    def get(self, request: Request, invoice_uuid: str) -> Response:
        return Response(StaffInvoiceOut(invoice_get(invoice_uuid=invoice_uuid)).data)


class InvoicePdfApi(APIView):
    permission_classes = [Perm("console.view")]

    @extend_schema(operation_id="invoices_pdf", responses={200: PDF_RESPONSE})
    def get(self, request: Request, invoice_uuid: str) -> HttpResponse:
        return _pdf(invoice_get(invoice_uuid=invoice_uuid))


class CreditNoteCreateApi(APIView):
    permission_classes = [Perm("billing.move_money")]

    @extend_schema(
        operation_id="credit_notes_create",
        request=CreditNoteIn,
        responses={201: StaffInvoiceOut},
        parameters=[idempotency_parameter(True)],
    )
    def post(self, request: Request, invoice_uuid: str) -> Response:
        invoice = invoice_get(invoice_uuid=invoice_uuid)

        def create(key: str | None, fingerprint: str | None) -> Response:
            values = validated_input(CreditNoteIn, request)
            note = credit_note_create(
                actor=request.user,
                invoice=invoice,
                amount=str(values["amount"]) if "amount" in values else None,
                reason=values["reason"],
                request=request._request,
            )
            return Response(StaffInvoiceOut(note).data, status=status.HTTP_201_CREATED)

        return run_idempotent(request, self, create, required=True)


class InvoicePaymentsApi(APIView):
    permission_classes = [Perm("console.view")]

    def get_permissions(self) -> list[Any]:
        permission = "billing.move_money" if self.request.method == "POST" else "console.view"
        return [Perm(permission)()]

    @extend_schema(operation_id="payments_list", responses=PaymentOut(many=True))
    def get(self, request: Request, invoice_uuid: str) -> Response:
        invoice = invoice_get(invoice_uuid=invoice_uuid)
        return Response(PaymentOut(payments_of(invoice), many=True).data)

    @extend_schema(
        operation_id="payments_create",
        request=PaymentIn,
        responses={201: PaymentOut},
        parameters=[idempotency_parameter(True)],
    )
    def post(self, request: Request, invoice_uuid: str) -> Response:
        invoice = invoice_get(invoice_uuid=invoice_uuid)

        def create(key: str | None, fingerprint: str | None) -> Response:
            values = validated_input(PaymentIn, request)
            payment = payment_record(
                actor=request.user,
                invoice=invoice,
                amount=str(values["amount"]),
                method=values["method"],
                received_on=values["received_on"],
                reference=values["reference"],
                client_key=f"api:{key}" if key else None,
                request=request._request,
            )
            return Response(PaymentOut(payment).data, status=status.HTTP_201_CREATED)

        return run_idempotent(request, self, create, required=True)


class CustomerInvoiceListApi(APIView):
    permission_classes = [Perm("customer.view")]

    @extend_schema(
        operation_id="customer_invoices",
        parameters=PAGE_PARAMETERS,
        responses=page_serializer(InvoiceOut, "CustomerInvoicePage"),
    )
    def get(self, request: Request) -> Response:
        rows, cursor = keyset_page(invoices_for(tenant=own_tenant(request)), request)
        return Response(page_body(request, InvoiceOut(rows, many=True).data, cursor))


class CustomerInvoiceView(APIView):
    """A customer's view of one invoice: another method is a 404 like a foreign id, so nothing
    tells an invoice that exists from one that does not."""

    permission_classes = [Perm("customer.view")]

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise Http404


class CustomerInvoiceDetailApi(CustomerInvoiceView):
    @extend_schema(operation_id="customer_invoice", responses=InvoiceOut)
    def get(self, request: Request, invoice_uuid: str) -> Response:
        return Response(InvoiceOut(invoice_get(invoice_uuid=invoice_uuid, tenant=own_tenant(request))).data)


class CustomerInvoicePdfApi(CustomerInvoiceView):
    @extend_schema(operation_id="customer_invoice_pdf", responses={200: PDF_RESPONSE})
    def get(self, request: Request, invoice_uuid: str) -> HttpResponse:
        return _pdf(invoice_get(invoice_uuid=invoice_uuid, tenant=own_tenant(request)))
