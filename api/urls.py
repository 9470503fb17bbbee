"""Mounted at /api/: the schema, the docs page, and version 1 under /api/v1/."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import IsAuthenticated

from api import audit, customer, misc, sync, tenants, transfers
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
