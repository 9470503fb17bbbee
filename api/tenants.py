"""Tenants for staff: the console's list (same search and filters), create, clone, freeze,
unfreeze, close, import; balance and balance history. Every write is a tenants service."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import tenants.services as services
from api.base import SafeText, StrictInput, ThresholdField
from api.errors import refusals_as_conflict
from api.idempotency import idempotency_parameter, run_idempotent
from api.misc import JobOut
from api.pagination import PAGE_PARAMETERS, page_body, page_serializer, parse_limit, refuse_cursor
from api.permissions import Perm
from customers.selectors import balance_points
from portal import inputs
from portal.errors import PortalError
from portal.jobs import job_status
from portal.roles import has_perm
from tenants.models import ProviderConnection, Tenant
from tenants.selectors import FILTER_NAMES, connection_names, tenant_get, tenant_list
from tenants.services import tenant_clone, tenant_create, tenant_import


def operation_key(request: Request, key: str | None) -> str | None:
    """The tenants service's operation key for an API Idempotency-Key: per user, bounded length."""
    if not key:
        return None
    return "api:" + hashlib.sha256(f"{request.user.pk}:{key}".encode()).hexdigest()


def strict_list_filters(request: Request) -> None:
    """The list's yes/no filters are "true" or "false" and its choices one of their list, as
    the schema says; the HTML list is more lenient (a checkbox sends "1", an empty select "")."""
    errors = {}
    for parameter in LIST_FILTERS:
        raw = request.query_params.get(parameter.name)
        if raw is None:
            continue
        if parameter.type is bool and raw not in ("true", "false"):
            errors[parameter.name] = ['Use "true" or "false".']
        elif parameter.enum and raw not in parameter.enum:
            errors[parameter.name] = [f"One of {', '.join(parameter.enum)}."]
    if errors:
        raise serializers.ValidationError(errors)


# The connection filter: a connection's uuid (with or without hyphens) or its numeric id.
CONNECTION_RE = re.compile(
    r"[0-9]{1,18}|[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII
)
BALANCE_RE = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,4})?")  # the balance filters, as the schema has them


def empty_balance_range(filters: dict[str, Any]) -> bool:
    """Both balance bounds well formed and the lowest above the highest."""
    low, high = filters.get("balance_min"), filters.get("balance_max")
    if not (isinstance(low, str) and isinstance(high, str)):
        return False
    if not (BALANCE_RE.fullmatch(low) and BALANCE_RE.fullmatch(high)):
        return False
    return Decimal(low) > Decimal(high)


def connection_by_uuid(value: Any) -> Any:

    connection = ProviderConnection.objects.filter(uuid=value, is_active=True).first()
    if connection is None:  # a well-formed id (the serializer checked) of nothing there: 404
        raise PortalError("No such active provider connection.", field="connection", code="not_found", status=404)
    return connection


class TenantListOut(serializers.Serializer):
    """Only the columns tenants.selectors.LIST_FIELDS loads (no per-row queries)."""

    id = serializers.UUIDField(source="uuid")
    company_name = serializers.CharField()
    account_name = serializers.CharField()
    account_email = serializers.CharField()
    provider_account_id = serializers.IntegerField(allow_null=True)
    connection = serializers.SerializerMethodField()
    status = serializers.CharField()
    balance = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True, coerce_to_string=True)
    currency = serializers.CharField()
    is_low_balance = serializers.BooleanField()
    has_drift = serializers.BooleanField()
    missing_at_provider = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    def get_connection(self, tenant: Any) -> str | None:
        connections = self.context.get("connections") or {}
        connection = connections.get(tenant.connection_id)
        return str(connection.uuid) if connection else None


class TenantOut(TenantListOut):
    contact_name = serializers.CharField()
    contact_email = serializers.CharField()
    plan = serializers.CharField()
    notes = serializers.CharField()
    status_reason = serializers.CharField()
    credit_limit = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)
    low_balance_threshold = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)
    balance_synced_at = serializers.DateTimeField(allow_null=True)
    provider_active = serializers.BooleanField(allow_null=True)
    provider_frozen = serializers.BooleanField(allow_null=True)
    provider_threshold = serializers.DecimalField(
        max_digits=18,
        decimal_places=4,
        allow_null=True,
        help_text="The provider's own low-balance threshold as last read or pushed.",
    )

    def get_connection(self, tenant: Any) -> str | None:
        return str(tenant.connection.uuid)


def tenant_body(tenant: Any) -> dict[str, Any]:

    fresh = Tenant.objects.select_related("connection").get(pk=tenant.pk)
    return dict(TenantOut(fresh).data)


LIST_FILTERS = [
    OpenApiParameter("q", str, description="Search: company or email prefix, account name, provider id."),
    OpenApiParameter("anywhere", bool, description="Search substrings (3+ characters) instead of prefixes."),
    OpenApiParameter("status", str, enum=["provisioning", "active", "frozen", "closing", "closed", "failed"]),
    OpenApiParameter("connection", str, description="Provider connection uuid."),
    OpenApiParameter("currency", str, description="ISO 4217 code."),
    OpenApiParameter("balance_min", str),
    OpenApiParameter("balance_max", str),
    OpenApiParameter("low_balance", bool),
    OpenApiParameter("drift", bool),
    OpenApiParameter("sort", str, enum=["-id", "id", "company", "-company", "balance", "-balance"]),
]


class TenantCreateIn(StrictInput):
    connection = serializers.UUIDField()
    company_name = SafeText(max_length=200)
    account_name = SafeText(max_length=100, trim_whitespace=False)
    account_email = serializers.EmailField(max_length=254)
    contact_name = SafeText(max_length=200, required=False, allow_blank=True, default="")
    contact_email = serializers.EmailField(max_length=254, required=False, allow_blank=True, default="")
    password = serializers.CharField(
        max_length=4096,
        required=False,
        write_only=True,
        trim_whitespace=False,
        help_text="The provider account's password; generated when omitted.",
    )
    voiceit_type = serializers.ChoiceField(choices=["", "managed", "unmanaged"], required=False, default="")
    notes = SafeText(max_length=5000, required=False, allow_blank=True, default="", multiline=True)
    plan = SafeText(max_length=100, required=False, allow_blank=True, default="")
    low_balance_threshold = ThresholdField(required=False, default=None)
    invite_owner_email = serializers.EmailField(max_length=254, required=False, allow_blank=True, default="")


class TenantListCreateApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [Perm("tenants.manage")()] if self.request.method == "POST" else [Perm("console.view")()]

    @extend_schema(
        operation_id="tenants_list",
        parameters=[*PAGE_PARAMETERS, *LIST_FILTERS],
        responses=page_serializer(TenantListOut, "TenantPage"),
    )
    def get(self, request: Request) -> Response:

        limit = parse_limit(request)
        strict_list_filters(request)
        filters = {name: request.query_params.get(name) for name in FILTER_NAMES if request.query_params.get(name)}
        cursor = request.query_params.get("cursor") or None
        if empty_balance_range(filters):
            return Response(page_body(request, [], None))  # lowest above highest: no tenant is in it
        try:
            page = tenant_list(filters=filters, cursor=cursor, limit=limit)
        except PortalError as exc:
            if exc.field == "cursor" and cursor is not None:
                refuse_cursor(cursor)
            if exc.field == "connection" and CONNECTION_RE.fullmatch(filters.get("connection") or ""):
                # The documented shape (a uuid or an id), but no such connection.
                raise PortalError(exc.message, field="connection", code="not_found", status=404) from None
            raise
        rows = TenantListOut(page.rows, many=True, context={"connections": connection_names()}).data
        return Response(page_body(request, rows, page.next_cursor))

    @extend_schema(
        operation_id="tenants_create",
        request=TenantCreateIn,
        responses={201: TenantOut},
        parameters=[idempotency_parameter(False)],
    )
    def post(self, request: Request) -> Response:
        def create(key: str | None, _fingerprint: str | None) -> Response:

            data = TenantCreateIn(data=request.data)
            data.is_valid(raise_exception=True)
            values = dict(data.validated_data)
            connection = connection_by_uuid(values.pop("connection"))
            tenant = tenant_create(
                actor=request.user,
                connection=connection,
                request=request._request,
                operation_key=operation_key(request, key),
                **values,
            )
            return Response(tenant_body(tenant), status=status.HTTP_201_CREATED)

        return run_idempotent(request, self, create, required=False)


def staff_tenant(tenant_uuid: Any) -> Any:

    return tenant_get(uuid=tenant_uuid)


class StaffOrNotFound(BasePermission):
    """A customer is told the tenant does not exist (404), whichever id they send."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user and user.is_authenticated and not has_perm(user, "console.view"):
            raise NotFound()
        return True


class TenantEditIn(StrictInput):
    company_name = SafeText(max_length=200, required=False)
    contact_name = SafeText(max_length=200, required=False, allow_blank=True)
    contact_email = serializers.CharField(max_length=254, required=False, allow_blank=True)
    plan = SafeText(max_length=100, required=False, allow_blank=True)
    notes = SafeText(max_length=5000, required=False, allow_blank=True, multiline=True)
    account_name = SafeText(
        max_length=100,
        required=False,
        trim_whitespace=False,
        help_text="Refused when it differs: the provider cannot rename an account.",
    )
    account_email = serializers.CharField(
        max_length=254, required=False, help_text="Changed at the provider by a tracked operation."
    )
    password = serializers.CharField(
        max_length=4096,
        required=False,
        write_only=True,
        trim_whitespace=False,
        help_text="A new provider password, by the same rules as at creation.",
    )
    low_balance_threshold = ThresholdField(required=False)


class TenantEditOut(TenantOut):
    job = serializers.SerializerMethodField(help_text="The provider operation this edit started, if any.")

    @extend_schema_field(JobOut(allow_null=True))
    def get_job(self, tenant: Any) -> dict[str, Any] | None:
        job = self.context.get("job")
        return dict(JobOut(job_status(job)).data) if job is not None else None


class TenantDetailApi(APIView):
    def get_permissions(self) -> list[Any]:
        if self.request.method == "PATCH":
            return [StaffOrNotFound(), Perm("tenants.manage")()]
        return [Perm("console.view")()]

    @extend_schema(operation_id="tenants_retrieve", responses=TenantOut)
    def get(self, request: Request, tenant_uuid: str) -> Response:
        return Response(TenantOut(staff_tenant(tenant_uuid)).data)

    @extend_schema(
        operation_id="tenants_partial_update",
        request=TenantEditIn,
        responses={200: TenantEditOut},
        description=(
            "Edit a tenant. Company, contact, plan and notes change at once; the account email and "
            "password change at the provider through a tracked operation (see `job`); the low-balance "
            "threshold is also pushed to the provider where it has one. The account name cannot be changed."
        ),
    )
    def patch(self, request: Request, tenant_uuid: str) -> Response:
        tenant = staff_tenant(tenant_uuid)
        data = TenantEditIn(data=request.data)
        data.is_valid(raise_exception=True)
        with refusals_as_conflict({"not_editable"}):  # this provider cannot change that field of an account
            op = services.tenant_edit(
                actor=request.user, tenant=tenant, request=request._request, **data.validated_data
            )
        fresh = Tenant.objects.select_related("connection").get(pk=tenant.pk)
        return Response(TenantEditOut(fresh, context={"job": op.job if op is not None else None}).data)


class TenantCloneIn(StrictInput):
    company_name = SafeText(max_length=200)
    account_name = SafeText(max_length=100, trim_whitespace=False)
    account_email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=4096, required=False, write_only=True, trim_whitespace=False)


class TenantCloneApi(APIView):
    permission_classes = [Perm("tenants.manage")]

    @extend_schema(
        operation_id="tenants_clone",
        request=TenantCloneIn,
        responses={201: TenantOut},
        parameters=[idempotency_parameter(False)],
    )
    def post(self, request: Request, tenant_uuid: str) -> Response:
        source = staff_tenant(tenant_uuid)

        def clone(key: str | None, _fingerprint: str | None) -> Response:

            data = TenantCloneIn(data=request.data)
            data.is_valid(raise_exception=True)
            tenant = tenant_clone(
                actor=request.user,
                source=source,
                request=request._request,
                operation_key=operation_key(request, key),
                **data.validated_data,
            )
            return Response(tenant_body(tenant), status=status.HTTP_201_CREATED)

        return run_idempotent(request, self, clone, required=False)


class ReasonIn(StrictInput):
    reason = SafeText(max_length=500)


def _lifecycle(view: APIView, request: Request, tenant_uuid: str, service_name: str) -> Response:

    tenant = staff_tenant(tenant_uuid)

    def act(_key: str | None, _fingerprint: str | None) -> Response:
        data = ReasonIn(data=request.data)
        data.is_valid(raise_exception=True)
        job = getattr(services, service_name)(
            actor=request.user, tenant=tenant, reason=data.validated_data["reason"], request=request._request
        )
        return Response(JobOut(job_status(job)).data, status=status.HTTP_202_ACCEPTED)

    return run_idempotent(request, view, act, required=False)


class TenantFreezeApi(APIView):
    permission_classes = [Perm("tenants.freeze")]

    @extend_schema(
        operation_id="tenants_freeze",
        request=ReasonIn,
        responses={202: JobOut},
        parameters=[idempotency_parameter(False)],
    )
    def post(self, request: Request, tenant_uuid: str) -> Response:
        return _lifecycle(self, request, tenant_uuid, "tenant_freeze")


class TenantUnfreezeApi(APIView):
    permission_classes = [Perm("tenants.freeze")]

    @extend_schema(
        operation_id="tenants_unfreeze",
        request=ReasonIn,
        responses={202: JobOut},
        parameters=[idempotency_parameter(False)],
    )
    def post(self, request: Request, tenant_uuid: str) -> Response:
        return _lifecycle(self, request, tenant_uuid, "tenant_unfreeze")


class TenantCloseApi(APIView):
    permission_classes = [Perm("tenants.manage")]

    @extend_schema(
        operation_id="tenants_close",
        request=ReasonIn,
        responses={202: JobOut},
        parameters=[idempotency_parameter(False)],
    )
    def post(self, request: Request, tenant_uuid: str) -> Response:
        return _lifecycle(self, request, tenant_uuid, "tenant_close")


class TenantImportIn(StrictInput):
    connection = serializers.UUIDField()
    provider_account_id = serializers.IntegerField(
        min_value=1, max_value=2**62, help_text="The provider's account id (Voximplant child id)."
    )
    company_name = SafeText(max_length=200, required=False, allow_null=True, default=None)


class TenantImportApi(APIView):
    permission_classes = [Perm("tenants.manage")]

    @extend_schema(
        operation_id="tenants_import",
        request=TenantImportIn,
        responses={201: TenantOut},
        parameters=[idempotency_parameter(False)],
    )
    def post(self, request: Request) -> Response:
        def adopt(_key: str | None, _fingerprint: str | None) -> Response:

            data = TenantImportIn(data=request.data)
            data.is_valid(raise_exception=True)
            values = data.validated_data
            connection = connection_by_uuid(values["connection"])
            tenant = tenant_import(
                actor=request.user,
                connection=connection,
                provider_account_id=values["provider_account_id"],
                company_name=values["company_name"],
                request=request._request,
            )
            return Response(tenant_body(tenant), status=status.HTTP_201_CREATED)

        return run_idempotent(request, self, adopt, required=False)


class BalanceOut(serializers.Serializer):
    balance = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)
    currency = serializers.CharField()
    synced_at = serializers.DateTimeField(source="balance_synced_at", allow_null=True)
    credit_limit = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)
    low_balance_threshold = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)
    is_low_balance = serializers.BooleanField()


class HistoryPointOut(serializers.Serializer):
    at = serializers.DateTimeField()
    balance = serializers.DecimalField(max_digits=18, decimal_places=4)


class HistoryOut(serializers.Serializer):
    currency = serializers.CharField()
    points = HistoryPointOut(many=True)


SINCE_PARAMETER = OpenApiParameter("since", str, description="ISO 8601 date-time; default: 90 days ago.")


def parse_since(request: Request) -> datetime | None:
    try:
        return inputs.aware_datetime(request.query_params.get("since"), field="since")
    except PortalError as exc:
        raise serializers.ValidationError({"since": [exc.message]}) from None


def history_body(tenant: Any, since: datetime | None) -> dict[str, Any]:

    return dict(HistoryOut({"currency": tenant.currency, "points": balance_points(tenant=tenant, since=since)}).data)


class TenantBalanceApi(APIView):
    permission_classes = [Perm("console.view")]

    @extend_schema(operation_id="tenants_balance", responses=BalanceOut)
    def get(self, request: Request, tenant_uuid: str) -> Response:
        return Response(BalanceOut(staff_tenant(tenant_uuid)).data)


class TenantBalanceHistoryApi(APIView):
    permission_classes = [Perm("console.view")]

    @extend_schema(operation_id="tenants_balance_history", parameters=[SINCE_PARAMETER], responses=HistoryOut)
    def get(self, request: Request, tenant_uuid: str) -> Response:
        tenant = staff_tenant(tenant_uuid)
        return Response(history_body(tenant, parse_since(request)))
