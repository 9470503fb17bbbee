"""Mounted at /api/: the schema, the docs page, and version 1 under /api/v1/."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import IsAuthenticated

from api import audit, customer, misc, reselling_invoices, sync, tenants, transfers
from api import pbx_users as pbx_users_api
from api import plans as account_plans_api
from api import reselling_plans as plans_api
from api.schema import StaffOnly
from portal.errors import error_response


class SchemaView(SpectacularAPIView):
    # Every operation, staff ones included: staff only (customers get a 404, see api/schema.py).
    permission_classes = [StaffOnly]


class DocsView(SpectacularSwaggerSplitView):  # its start-up script a file: the CSP allows no inline script
    permission_classes = [StaffOnly]


class CustomerSchemaView(SpectacularAPIView):
    # The operations a customer may call, for any login or token.
    permission_classes = [IsAuthenticated]
    custom_settings = {
        "TITLE": "Reseller portal API for customers",
        "PREPROCESSING_HOOKS": ["api.schema.customer_endpoints"],
    }


class CustomerDocsView(SpectacularSwaggerSplitView):
    permission_classes = [IsAuthenticated]


@csrf_exempt  # it changes nothing: a write to an unknown path is a 404, not a CSRF refusal
def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    return error_response(404)


v1 = [
    path("me", misc.MeApi.as_view(), name="me"),
    path("jobs/<uuid:job_uuid>", misc.JobDetailApi.as_view(), name="job"),
    path("tenants", tenants.TenantListCreateApi.as_view(), name="tenants"),
    path("tenants/import", tenants.TenantImportApi.as_view(), name="tenant_import"),
    path("tenants/<uuid:tenant_uuid>", tenants.TenantDetailApi.as_view(), name="tenant"),
    path("tenants/<uuid:tenant_uuid>/clone", tenants.TenantCloneApi.as_view(), name="tenant_clone"),
    path("tenants/<uuid:tenant_uuid>/freeze", tenants.TenantFreezeApi.as_view(), name="tenant_freeze"),
    path("tenants/<uuid:tenant_uuid>/unfreeze", tenants.TenantUnfreezeApi.as_view(), name="tenant_unfreeze"),
    path("tenants/<uuid:tenant_uuid>/close", tenants.TenantCloseApi.as_view(), name="tenant_close"),
    path("tenants/<uuid:tenant_uuid>/balance", tenants.TenantBalanceApi.as_view(), name="tenant_balance"),
    path(
        "tenants/<uuid:tenant_uuid>/balance/history",
        tenants.TenantBalanceHistoryApi.as_view(),
        name="tenant_balance_history",
    ),
    path("tenants/<uuid:tenant_uuid>/transfers", transfers.TenantTransferCreateApi.as_view(), name="tenant_transfers"),
    path("transfers", transfers.TransferListApi.as_view(), name="transfers"),
    path("transfers/<uuid:transfer_uuid>", transfers.TransferDetailApi.as_view(), name="transfer"),
    path("transfers/<uuid:transfer_uuid>/approve", transfers.TransferApproveApi.as_view(), name="transfer_approve"),
    path("sync-runs", sync.SyncRunListCreateApi.as_view(), name="sync_runs"),
    path("sync-runs/<uuid:sync_run_uuid>", sync.SyncRunDetailApi.as_view(), name="sync_run"),
    path("audit-events", audit.AuditEventListApi.as_view(), name="audit_events"),
    path("customer/balance", customer.CustomerBalanceApi.as_view(), name="customer_balance"),
    path("customer/balance/history", customer.CustomerBalanceHistoryApi.as_view(), name="customer_balance_history"),
    path("customer/statement", customer.CustomerStatementApi.as_view(), name="customer_statement"),
    path("invoices", reselling_invoices.InvoiceListApi.as_view(), name="invoices"),
    path("invoices/<uuid:invoice_uuid>", reselling_invoices.InvoiceDetailApi.as_view(), name="invoice"),
    path("invoices/<uuid:invoice_uuid>/pdf", reselling_invoices.InvoicePdfApi.as_view(), name="invoice_pdf"),
    path(
        "invoices/<uuid:invoice_uuid>/credit-notes",
        reselling_invoices.CreditNoteCreateApi.as_view(),
        name="invoice_credit_notes",
    ),
    path(
        "invoices/<uuid:invoice_uuid>/payments",
        reselling_invoices.InvoicePaymentsApi.as_view(),
        name="invoice_payments",
    ),
    path("customer/invoices", reselling_invoices.CustomerInvoiceListApi.as_view(), name="customer_invoices"),
    path(
        "customer/invoices/<uuid:invoice_uuid>",
        reselling_invoices.CustomerInvoiceDetailApi.as_view(),
        name="customer_invoice",
    ),
    path(
        "customer/invoices/<uuid:invoice_uuid>/pdf",
        reselling_invoices.CustomerInvoicePdfApi.as_view(),
        name="customer_invoice_pdf",
    ),
    path("plans", plans_api.PlanListCreateApi.as_view(), name="plans"),
    path("plans/<int:plan_id>", plans_api.PlanDetailApi.as_view(), name="plan"),
    path("plans/<int:plan_id>/archive", plans_api.PlanArchiveApi.as_view(), name="plan_archive"),
    path(
        "tenants/<uuid:tenant_uuid>/plan-assignments",
        plans_api.TenantAssignmentsApi.as_view(),
        name="tenant_plan_assignments",
    ),
    path("charges", plans_api.ChargeListApi.as_view(), name="charges"),
    path("margin", plans_api.MarginApi.as_view(), name="margin"),
    path("margin/csv", plans_api.MarginCsvApi.as_view(), name="margin_csv"),
    # The provider's plans and document verification of a tenant (docs/plans.md).
    path(
        "tenants/<uuid:tenant_uuid>/account-plans",
        account_plans_api.TenantAccountPlansApi.as_view(),
        name="tenant_account_plans",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/account-plans/available",
        account_plans_api.TenantAvailablePlansApi.as_view(),
        name="tenant_account_plans_available",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/account-plans/refresh",
        account_plans_api.TenantAccountPlansRefreshApi.as_view(),
        name="tenant_account_plans_refresh",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/account-plans/change",
        account_plans_api.TenantPlanChangeApi.as_view(),
        name="tenant_account_plan_change",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/verification",
        account_plans_api.TenantVerificationApi.as_view(),
        name="tenant_verification",
    ),
    path("customer/account-plans", account_plans_api.CustomerAccountPlansApi.as_view(), name="customer_account_plans"),
    path("customer/verification", account_plans_api.CustomerVerificationApi.as_view(), name="customer_verification"),
    # PBX users inside a tenant and money moved to and from them (docs/pbx_users.md).
    path("tenants/<uuid:tenant_uuid>/users", pbx_users_api.TenantPbxUsersApi.as_view(), name="tenant_pbx_users"),
    path(
        "tenants/<uuid:tenant_uuid>/users/refresh",
        pbx_users_api.TenantPbxUsersRefreshApi.as_view(),
        name="tenant_pbx_users_refresh",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/users/<int:pbx_user_id>",
        pbx_users_api.TenantPbxUserApi.as_view(),
        name="tenant_pbx_user",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/users/<int:pbx_user_id>/transfers",
        pbx_users_api.TenantPbxUserTransfersApi.as_view(),
        name="tenant_pbx_user_transfers",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/user-transfers",
        pbx_users_api.TenantUserTransfersApi.as_view(),
        name="tenant_user_transfers",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/user-transfers/<uuid:transfer_uuid>",
        pbx_users_api.TenantUserTransferApi.as_view(),
        name="tenant_user_transfer",
    ),
    path("customer/users", pbx_users_api.CustomerPbxUsersApi.as_view(), name="customer_pbx_users"),
    path(
        "customer/users/refresh", pbx_users_api.CustomerPbxUsersRefreshApi.as_view(), name="customer_pbx_users_refresh"
    ),
    path("customer/users/<int:pbx_user_id>", pbx_users_api.CustomerPbxUserApi.as_view(), name="customer_pbx_user"),
    path(
        "customer/users/<int:pbx_user_id>/transfers",
        pbx_users_api.CustomerPbxUserTransfersApi.as_view(),
        name="customer_pbx_user_transfers",
    ),
    path("customer/user-transfers", pbx_users_api.CustomerUserTransfersApi.as_view(), name="customer_user_transfers"),
    path(
        "customer/user-transfers/<uuid:transfer_uuid>",
        pbx_users_api.CustomerUserTransferApi.as_view(),
        name="customer_user_transfer",
    ),
]

app_name = "api"
urlpatterns = [
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", login_required(DocsView.as_view(url_name="api:schema")), name="docs"),
    path("customer/schema/", CustomerSchemaView.as_view(), name="customer_schema"),
    path(
        "customer/docs/", login_required(CustomerDocsView.as_view(url_name="api:customer_schema")), name="customer_docs"
    ),
    path("v1/", include(v1)),
    # Anything else under /api/ is a JSON 404, not the HTML page.
    re_path(r"^(?P<rest>.*)$", api_not_found, name="not_found"),
]
