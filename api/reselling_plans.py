"""Price plans, plan assignments, the charges ledger and the margin report, for staff who
manage plans (reseller admins and billing staff). Customers get 404 on every path here, as for
anything that does not exist. Amounts are decimal strings; sums are per currency."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.base import SafeText, StrictInput, validated_input
from api.errors import refusals_as_conflict
from api.pagination import (
    PAGE_PARAMETERS,
    decode_cursor,
    encode_cursor,
    keyset_page,
    page_body,
    page_serializer,
    parse_limit,
)
from api.permissions import Perm
from api.tenants import StaffOrNotFound, staff_tenant
from portal import inputs
from portal.errors import PortalError
from reselling import margin, plans
from reselling.margin_report import margin_csv, report_filters
from reselling.models import Charge, PlanAssignment, PricePlan

PERMISSIONS = [StaffOrNotFound, Perm(plans.PERMISSION)]


# The plan's numbers as reselling/plans.py reads them: plain digits (no leading zeros, at most 12
# decimals, zeros past the allowed places), spaces around them trimmed, blank or absent as zero;
# or a JSON integer. Percentages keep 4 places, money 2 (a currency such as JPY has fewer: the
# service refuses its cents).
def _fraction(places: int) -> str:
    return rf"\.([0-9]{{1,{places}}}|[0-9]{{{places}}}0{{1,{12 - places}}})"


def _positive_fraction(places: int) -> str:
    """A fraction of at most ``places`` places that is not zero."""
    firsts = "|".join(f"0{{{zeros}}}[1-9][0-9]{{0,{places - zeros - 1}}}" for zeros in range(places))
    return rf"\.({firsts})0{{0,{12 - places}}}"


def _number_schema(number: str, maximum: int, *, positive: bool = False) -> dict[str, Any]:
    text = rf"^\s*({number})\s*$" if positive else rf"^\s*({number})?\s*$"
    return {
        "anyOf": [
            {"type": "string", "pattern": text},
            {"type": "integer", "minimum": 1 if positive else 0, "maximum": maximum},
        ]
    }


PERCENT_BELOW_100 = _number_schema(rf"(0|[1-9][0-9]?)({_fraction(4)})?", 99)
POSITIVE_PERCENT_BELOW_100 = _number_schema(
    rf"[1-9][0-9]?({_fraction(4)})?|0{_positive_fraction(4)}", 99, positive=True
)
MARKUP_PERCENT = _number_schema(rf"(0|[1-9][0-9]{{0,2}})({_fraction(4)})?|1000(\.0{{1,12}})?", int(plans.MAX_MARKUP))
PLAN_MONEY = _number_schema(rf"(0|[1-9][0-9]{{0,9}})({_fraction(2)})?", 9999999999)
POSITIVE_PLAN_MONEY = _number_schema(
    rf"[1-9][0-9]{{0,9}}({_fraction(2)})?|0{_positive_fraction(2)}", 9999999999, positive=True
)
# A plan's currency, as the service reads it: three letters, any case, spaces around trimmed.
CURRENCY_PATTERN = r"^\s*[A-Za-z]{3}\s*$"


class DecimalText(serializers.Field):
    """A decimal as a JSON string (or an integer); never a float. The service checks its range,
    which ``schema`` states."""

    default_error_messages = {"invalid": 'Give the number as a string such as "12.5".'}

    def __init__(self, *, schema: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        extend_schema_field({**schema, "example": "12.5"})(self)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, (str, int)):
            self.fail("invalid")
        return str(data)

    def to_representation(self, value: Any) -> str:
        return str(value)


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": plans.MAX_DAYS},
        "maxItems": 10,
        "uniqueItems": True,
    }
)
class ReminderDays(serializers.ListField):
    """Days past due, each once, in any order: kept in increasing order."""

    def to_internal_value(self, data: Any) -> list[int]:
        return sorted(super().to_internal_value(data))


class PlanOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    currency = serializers.CharField()
    topup_rule = serializers.CharField()
    topup_margin_percent = serializers.DecimalField(max_digits=7, decimal_places=4)
    topup_fee = serializers.DecimalField(max_digits=12, decimal_places=2)
    monthly_fee = serializers.DecimalField(max_digits=12, decimal_places=2)
    usage_markup_percent = serializers.DecimalField(max_digits=7, decimal_places=4)
    payment_terms_days = serializers.IntegerField()
    reminder_days = serializers.ListField(child=serializers.IntegerField())
    freeze_after_days = serializers.IntegerField(allow_null=True)
    topup_on_payment = serializers.BooleanField()
    archived_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


def _currency(*, required: bool) -> serializers.RegexField:
    message = "Enter a three-letter currency code, like USD."
    return serializers.RegexField(CURRENCY_PATTERN, required=required, error_messages={"invalid": message})


class PlanIn(StrictInput):
    """A plan's changes: any of its fields."""

    name = SafeText(max_length=100, required=False)
    currency = _currency(required=False)
    topup_rule = serializers.ChoiceField(choices=PricePlan.TopupRule.values, required=False)
    topup_margin_percent = DecimalText(schema=PERCENT_BELOW_100, required=False)
    topup_fee = DecimalText(schema=PLAN_MONEY, required=False)
    monthly_fee = DecimalText(schema=PLAN_MONEY, required=False)
    usage_markup_percent = DecimalText(schema=MARKUP_PERCENT, required=False)
    payment_terms_days = serializers.IntegerField(required=False, min_value=0, max_value=plans.MAX_DAYS)
    reminder_days = ReminderDays(
        child=serializers.IntegerField(min_value=1, max_value=plans.MAX_DAYS), required=False, max_length=10
    )
    freeze_after_days = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=plans.MAX_DAYS)
    topup_on_payment = serializers.BooleanField(required=False)


class PlanCreateIn(PlanIn):
    """A new plan: a name and a currency at least. A margin plan needs its margin above zero and
    a fee plan its fee (the schema's anyOf, by top-up rule)."""

    name = SafeText(max_length=100)
    currency = _currency(required=True)


# The top-up rule's own field, by rule: what plans.clean_plan refuses a new plan without.
PLAN_CREATE_RULES = {
    "anyOf": [
        {"properties": {"topup_rule": {"enum": [PricePlan.TopupRule.NONE.value]}}},
        {
            "required": ["topup_rule", "topup_margin_percent"],
            "properties": {
                "topup_rule": {"enum": [PricePlan.TopupRule.MARGIN.value]},
                "topup_margin_percent": POSITIVE_PERCENT_BELOW_100,
            },
        },
        {
            "required": ["topup_rule", "topup_fee"],
            "properties": {"topup_rule": {"enum": [PricePlan.TopupRule.FEE.value]}, "topup_fee": POSITIVE_PLAN_MONEY},
        },
    ]
}


def _plan(plan_id: int) -> PricePlan:
    plan = PricePlan.objects.filter(pk=plan_id).first()
    if plan is None:
        raise Http404("No such plan")
    return plan


class PlanListCreateApi(APIView):
    permission_classes = PERMISSIONS

    @extend_schema(
        operation_id="plans_list",
        parameters=[*PAGE_PARAMETERS, OpenApiParameter("archived", bool, description="Include archived plans.")],
        responses=page_serializer(PlanOut, "PlanPage"),
    )
    def get(self, request: Request) -> Response:
        rows = PricePlan.objects.all()
        if request.query_params.get("archived") not in ("true", "1"):
            rows = rows.filter(archived_at__isnull=True)
        page, cursor = keyset_page(rows, request)
        return Response(page_body(request, PlanOut(page, many=True).data, cursor))

    @extend_schema(operation_id="plans_create", request=PlanCreateIn, responses={201: PlanOut})
    def post(self, request: Request) -> Response:
        data = validated_input(PlanCreateIn, request)
        plan = plans.plan_create(actor=request.user, data=data, request=request)
        return Response(PlanOut(plan).data, status=status.HTTP_201_CREATED)


class PlanDetailApi(APIView):
    permission_classes = PERMISSIONS

    @extend_schema(operation_id="plans_retrieve", responses=PlanOut)
    def get(self, request: Request, plan_id: int) -> Response:
        return Response(PlanOut(_plan(plan_id)).data)

    @extend_schema(
        operation_id="plans_update",
        request=PlanIn,
        responses=PlanOut,
        description="Terms (currency, top-up rule, margin, fee, monthly fee, usage markup) change only while "
        "no charge uses the plan (409 plan_in_use): create a new plan and assign it from a date instead.",
    )
    def patch(self, request: Request, plan_id: int) -> Response:
        plan = _plan(plan_id)
        data = validated_input(PlanIn, request)
        plan = plans.plan_update(actor=request.user, plan=plan, data=data, request=request)
        return Response(PlanOut(plan).data)


class PlanArchiveApi(APIView):
    permission_classes = PERMISSIONS

    @extend_schema(operation_id="plans_archive", request=None, responses=PlanOut)
    def post(self, request: Request, plan_id: int) -> Response:
        plan = plans.plan_archive(actor=request.user, plan=_plan(plan_id), request=request)
        return Response(PlanOut(plan).data)


class AssignmentOut(serializers.Serializer):
    id = serializers.IntegerField()
    tenant = serializers.UUIDField(source="tenant.uuid")
    plan = serializers.IntegerField(source="plan_id")
    plan_name = serializers.CharField(source="plan.name")
    effective_from = serializers.DateField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class AssignmentIn(StrictInput):
    plan = serializers.IntegerField(min_value=1)
    effective_from = serializers.DateField(required=False, allow_null=True, help_text="Today or later; default today.")


# Refusals for what the plan is now (archived, or in another currency than the account), which
# no schema can say: a 409, as for any state that does not allow the request.
PLAN_STATE_REFUSALS = frozenset({"plan_archived", "currency_mismatch"})


class AssignmentPage(serializers.Serializer):
    current_plan = serializers.IntegerField(allow_null=True)
    results = AssignmentOut(many=True)


class TenantAssignmentsApi(APIView):
    permission_classes = PERMISSIONS

    @extend_schema(operation_id="plan_assignments_list", responses=AssignmentPage)
    def get(self, request: Request, tenant_uuid: str) -> Response:
        from django.utils import timezone

        tenant = staff_tenant(tenant_uuid)
        current = plans.plan_on(tenant, timezone.now().date())
        rows = plans.assignments_of(tenant)
        return Response(
            {"current_plan": current.pk if current else None, "results": AssignmentOut(rows, many=True).data}
        )

    @extend_schema(operation_id="plan_assignments_create", request=AssignmentIn, responses={201: AssignmentOut})
    def post(self, request: Request, tenant_uuid: str) -> Response:
        tenant = staff_tenant(tenant_uuid)
        data = validated_input(AssignmentIn, request)
        plan = PricePlan.objects.filter(pk=data["plan"]).first()
        if plan is None:
            raise PortalError("No such plan.", field="plan", code="not_found", status=404)
        with refusals_as_conflict(PLAN_STATE_REFUSALS):
            done = plans.plan_assign(
                actor=request.user, tenant=tenant, plan=plan, effective_from=data.get("effective_from"), request=request
            )
        row = PlanAssignment.objects.select_related("tenant", "plan", "created_by").get(pk=done.assignment.pk)
        return Response(
            AssignmentOut(row).data, status=status.HTTP_200_OK if done.replayed else status.HTTP_201_CREATED
        )


class ChargeOut(serializers.Serializer):
    id = serializers.IntegerField()
    tenant = serializers.UUIDField(source="tenant.uuid")
    plan = serializers.IntegerField(source="plan_id", allow_null=True)
    kind = serializers.CharField()
    period = serializers.DateField()
    occurred_at = serializers.DateTimeField()
    currency = serializers.CharField()
    revenue = serializers.DecimalField(max_digits=18, decimal_places=4)
    cost = serializers.DecimalField(max_digits=18, decimal_places=4)
    margin = serializers.DecimalField(max_digits=18, decimal_places=4)
    quantity = serializers.DecimalField(max_digits=18, decimal_places=4)
    description = serializers.CharField()
    source_key = serializers.CharField()
    transfer = serializers.UUIDField(source="transfer.uuid", allow_null=True, default=None)


class ChargeListApi(APIView):
    permission_classes = PERMISSIONS

    @extend_schema(
        operation_id="charges_list",
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("tenant", str, description="Tenant uuid."),
            OpenApiParameter("month", str, pattern=inputs.MONTH_PATTERN, description="YYYY-MM."),
            OpenApiParameter("kind", str, enum=Charge.Kind.values),
        ],
        responses=page_serializer(ChargeOut, "ChargePage"),
    )
    def get(self, request: Request) -> Response:
        rows = Charge.objects.select_related("tenant", "transfer")
        raw_tenant = request.query_params.get("tenant")
        if raw_tenant:
            try:
                uuid.UUID(raw_tenant)
            except ValueError:
                raise serializers.ValidationError({"tenant": ["Give a tenant uuid."]}) from None
            try:
                rows = rows.filter(tenant=staff_tenant(raw_tenant))
            except Http404:
                raise PortalError("No such tenant.", field="tenant", code="not_found", status=404) from None
        if request.query_params.get("month"):
            rows = rows.filter(period=report_filters({"month": request.query_params["month"]})["period"])
        kind = request.query_params.get("kind")
        if kind is not None:
            if kind not in Charge.Kind.values:
                raise serializers.ValidationError({"kind": [f"One of {', '.join(Charge.Kind.values)}."]})
            rows = rows.filter(kind=kind)
        page, cursor = keyset_page(rows, request)
        return Response(page_body(request, ChargeOut(page, many=True).data, cursor))


class MarginRowOut(serializers.Serializer):
    tenant = serializers.UUIDField(source="tenant.uuid", allow_null=True, default=None)
    company_name = serializers.CharField(source="tenant.company_name", default="")
    currency = serializers.CharField()
    revenue = serializers.DecimalField(max_digits=18, decimal_places=4)
    cost = serializers.DecimalField(max_digits=18, decimal_places=4)
    margin = serializers.DecimalField(max_digits=18, decimal_places=4)
    charges = serializers.IntegerField()


class MarginTotalOut(serializers.Serializer):
    currency = serializers.CharField()
    revenue = serializers.DecimalField(max_digits=18, decimal_places=4)
    cost = serializers.DecimalField(max_digits=18, decimal_places=4)
    margin = serializers.DecimalField(max_digits=18, decimal_places=4)
    charges = serializers.IntegerField()


class MarginOut(serializers.Serializer):
    month = serializers.CharField()
    totals = MarginTotalOut(many=True)
    results = MarginRowOut(many=True)
    next = serializers.URLField(allow_null=True)


MARGIN_PARAMETERS = [
    OpenApiParameter("month", str, pattern=inputs.MONTH_PATTERN, description="YYYY-MM; default the current month."),
    OpenApiParameter(
        "connection", str, pattern=r"^([0-9]{1,18})?$", description="Provider connection id; empty: every connection."
    ),
    OpenApiParameter("currency", str, description="Three-letter currency code."),
]


def _filters(request: Request) -> dict[str, Any]:
    params = {k: request.query_params.get(k, "") for k in ("month", "connection", "currency")}
    return report_filters(params)


class MarginApi(APIView):
    permission_classes = PERMISSIONS

    @extend_schema(
        operation_id="margin_report",
        parameters=[*MARGIN_PARAMETERS, *PAGE_PARAMETERS],
        responses=MarginOut,
        description="Revenue, cost and margin per tenant for one month (a row per tenant and currency), "
        "and the month's totals per currency. Pages by tenant.",
    )
    def get(self, request: Request) -> Response:
        f = _filters(request)
        limit = parse_limit(request)
        raw = request.query_params.get("cursor")
        after = decode_cursor(raw) if raw else 0
        rows, cursor = margin.margin_rows(
            period=f["period"],
            connection_id=f["connection_id"],
            currency=f["currency"],
            after_tenant=after,
            limit=limit,
        )
        totals = margin.month_totals(period=f["period"], connection_id=f["connection_id"], currency=f["currency"])
        body = page_body(request, MarginRowOut(rows, many=True).data, encode_cursor(cursor) if cursor else None)
        body.update({"month": f["period"].strftime("%Y-%m"), "totals": MarginTotalOut(totals, many=True).data})
        return Response(body)


class MarginCsvApi(APIView):
    permission_classes = PERMISSIONS

    @extend_schema(
        operation_id="margin_report_csv",
        parameters=MARGIN_PARAMETERS,
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The month's rows as CSV.")},
    )
    def get(self, request: Request) -> HttpResponseBase:
        f = _filters(request)
        return margin_csv(period=f["period"], connection_id=f["connection_id"], currency=f["currency"])
