"""A tenant's provider plans and document verification over the API (docs/plans.md).

Staff: the plans as last read (and when), the plans the account may move to, "read now", the
reseller admin's plan change (a tracked CHANGE_PLAN operation, answered 202 with its job, read
later at ``/api/v1/jobs/<id>``) and the verification as last read. Customers: their own
tenant's plans and verification, read-only, without the provider's prices. A tenant whose
provider has neither (VoiceIt) is a 409 with the reason, never an empty answer that looks
like "no plans"."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import tenants.services as services
from api.base import StrictInput
from api.customer import own_tenant
from api.idempotency import idempotency_parameter, run_idempotent
from api.misc import JobOut
from api.permissions import Perm
from api.tenants import StaffOrNotFound, staff_tenant
from portal.errors import Conflict, NotAllowed, PortalError
from portal.jobs import job_status
from providers.errors import NotSent, OutcomeUnknown, RateLimited
from providers.plans import PLAN_TYPES
from tenants.models import Tenant

# The customer's words when their service has no plans or no document check (the staff
# reason names the provider and its billing, which stay in the console).
CUSTOMER_NO_PLANS = "Your telephony service has no subscription plans to show."
CUSTOMER_NO_VERIFICATION = "Your telephony service has no document check."


# --- shapes ---------------------------------------------------------------------------------


def _amount(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True, **kwargs)


class PackageOut(serializers.Serializer):
    name = serializers.CharField()
    price = _amount()
    amount = serializers.IntegerField(allow_null=True, help_text="Units included each month.")
    remaining_amount = serializers.IntegerField(allow_null=True, help_text="Units left this month.")
    unit = serializers.CharField(allow_null=True)


class AccountPlanOut(serializers.Serializer):
    plan_type = serializers.ChoiceField(choices=PLAN_TYPES)
    plan_id = serializers.IntegerField()
    name = serializers.CharField()
    price = _amount(help_text="The provider's monthly fee.")
    currency = serializers.CharField(allow_null=True)
    next_charge = serializers.DateField(allow_null=True, help_text="When the next monthly fee is charged.")
    packages = PackageOut(many=True)


class AccountPlansOut(serializers.Serializer):
    plans = AccountPlanOut(many=True, help_text="The account's plans as last read from the provider.")
    checked_at = serializers.DateTimeField(allow_null=True, help_text="When they were read; null: never.")


class AvailablePlanOut(serializers.Serializer):
    plan_type = serializers.ChoiceField(choices=PLAN_TYPES)
    plan_id = serializers.IntegerField()
    name = serializers.CharField()
    price = _amount(help_text="The provider's monthly fee.")
    currency = serializers.CharField(allow_null=True)


class AvailablePlansOut(serializers.Serializer):
    plans = AvailablePlanOut(many=True, help_text="The plans the account may move to, read from the provider now.")
    notice = serializers.CharField(help_text="What a change costs at once.")


class PlanChangeIn(StrictInput):
    plan_type = serializers.ChoiceField(choices=PLAN_TYPES)
    plan_id = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="One of the plans GET .../account-plans/available lists."
    )


class PlanChangeOut(JobOut):
    operation = serializers.UUIDField(help_text="The tenant operation; its job (id) is read at /api/v1/jobs/{id}.")


VERIFICATION_STATES = [value for value in Tenant.Verification.values if value]


class VerificationOut(serializers.Serializer):
    status = serializers.SerializerMethodField(help_text="Null until the provider was read.")
    hold_until = serializers.DateTimeField(
        source="unverified_hold_until",
        allow_null=True,
        help_text="After this date an unverified account may be held by the provider.",
    )
    checked_at = serializers.DateTimeField(source="verification_checked_at", allow_null=True)

    @extend_schema_field({"type": "string", "enum": VERIFICATION_STATES, "nullable": True})
    def get_status(self, tenant: Tenant) -> str | None:
        return tenant.verification_status or None


class CustomerPackageOut(serializers.Serializer):
    name = serializers.CharField()
    amount = serializers.IntegerField(allow_null=True, help_text="Units included each month.")
    remaining_amount = serializers.IntegerField(allow_null=True, help_text="Units left this month.")
    unit = serializers.CharField(allow_null=True)


class CustomerPlanOut(serializers.Serializer):
    plan_type = serializers.ChoiceField(choices=PLAN_TYPES)
    plan_id = serializers.IntegerField()
    name = serializers.CharField()
    next_charge = serializers.DateField(allow_null=True)
    packages = CustomerPackageOut(many=True)


class CustomerPlansOut(serializers.Serializer):
    plans = CustomerPlanOut(many=True)
    checked_at = serializers.DateTimeField(allow_null=True)


# --- the refusals, from the service's own checks ----------------------------------------------


def _refuse(refusal: str | None, tenant: Tenant, *, message: str | None = None) -> None:
    """A refusal of tenants.services as a 409: ``unsupported`` (the provider has no such thing)
    or ``no_account`` (the tenant has no provider account yet)."""
    if refusal:
        code = "no_account" if tenant.provider_account is None else "unsupported"
        raise Conflict(message or refusal, code=code)


@contextmanager
def provider_trouble() -> Iterator[None]:
    """The service's provider_error: an unanswered call is a 503 (try again); a definite
    refusal by the provider is a 409 with its words: these calls send nothing of the client's
    but the tenant, so the refusal is about the account's state at the provider."""
    try:
        yield
    except PortalError as exc:
        if isinstance(exc.__cause__, (NotSent, OutcomeUnknown, RateLimited)):
            raise PortalError(exc.message, code="provider_unavailable", status=503) from exc
        if exc.code == "provider_error":
            raise Conflict(exc.message, code=exc.code) from exc
        raise


# The 409 of a read: the provider has no such thing, the tenant no provider account yet, or the
# provider refused for the account's state.
STATE_CONFLICT = OpenApiResponse(description="The provider or the tenant's account does not allow it now.")


def _no_body(request: Request) -> None:
    if request.data:
        raise serializers.ValidationError({"non_field_errors": ["Send an empty body."]})


def plans_body(tenant: Tenant) -> dict[str, Any]:
    return dict(AccountPlansOut({"plans": tenant.account_plans, "checked_at": tenant.account_plans_checked_at}).data)


def _change_refusal(request: Request, tenant: Tenant) -> None:
    """Before the Idempotency-Key is claimed: a role that may not change plans is a 403, a
    tenant whose plan cannot change now a 409 (nothing recorded under the key)."""
    refusal = services.change_plan_refusal(request.user, tenant)
    if refusal is None:
        return
    if not services.may_change_plan(request.user):
        raise NotAllowed(refusal, code="forbidden")
    _refuse(services.plans_refusal(tenant), tenant)
    raise Conflict(refusal, code="not_allowed_now")


def _offered(available: list[Any], plan_type: str, plan_id: int) -> None:
    """The new plan must be one the provider lists for the account now (GetAvailablePlans: the
    dearer ones), so an unknown id or a downgrade is a 400 here, not an operation that fails."""
    if any(p.plan_type == plan_type and p.plan_id == plan_id for p in available):
        return
    choices = ", ".join(f"{p.plan_type} {p.plan_id} ({p.name})" for p in available) or "none"
    raise PortalError(
        f"Not a plan this account can move to. Available now: {choices}. "
        "Moves to a cheaper plan are made by the provider's support.",
        field="plan_id",
        code="unknown_plan",
    )


# --- staff ------------------------------------------------------------------------------------

STAFF = [StaffOrNotFound, Perm("console.view")]


class TenantAccountPlansApi(APIView):
    permission_classes = STAFF

    @extend_schema(operation_id="tenants_account_plans", responses={200: AccountPlansOut, 409: STATE_CONFLICT})
    def get(self, request: Request, tenant_uuid: str) -> Response:
        tenant = staff_tenant(tenant_uuid)
        _refuse(services.plans_refusal(tenant), tenant)
        return Response(plans_body(tenant))


class TenantAccountPlansRefreshApi(APIView):
    permission_classes = STAFF

    @extend_schema(
        operation_id="tenants_account_plans_refresh",
        request=None,
        responses=AccountPlansOut,
        parameters=[idempotency_parameter(False)],
        description="Read the account's plans from the provider now and keep them.",
    )
    def post(self, request: Request, tenant_uuid: str) -> Response:
        tenant = staff_tenant(tenant_uuid)
        _no_body(request)
        _refuse(services.plans_refusal(tenant), tenant)

        def refresh(_key: str | None, _fingerprint: str | None) -> Response:
            with provider_trouble():
                services.plans_refresh(actor=request.user, tenant=tenant, request=request._request)
            return Response(plans_body(tenant))

        return run_idempotent(request, self, refresh, required=False)


class TenantAvailablePlansApi(APIView):
    permission_classes = STAFF

    @extend_schema(
        operation_id="tenants_account_plans_available",
        responses={200: AvailablePlansOut, 409: STATE_CONFLICT},
        description="The plans the account may move to, read from the provider now (reseller admins).",
    )
    def get(self, request: Request, tenant_uuid: str) -> Response:
        tenant = staff_tenant(tenant_uuid)
        _refuse(services.plans_refusal(tenant), tenant)
        with provider_trouble():
            available = services.available_plans(actor=request.user, tenant=tenant)
        return Response(AvailablePlansOut({"plans": available, "notice": services.FEE_RESERVED_NOTICE}).data)


class TenantPlanChangeApi(APIView):
    permission_classes = STAFF

    @extend_schema(
        operation_id="tenants_account_plan_change",
        request=PlanChangeIn,
        responses={202: PlanChangeOut},
        parameters=[idempotency_parameter(True)],
        description=(
            "Move the account to a dearer plan (reseller admins). "
            + services.FEE_RESERVED_NOTICE
            + " The change is a tracked operation: follow its job at /api/v1/jobs/{id}. Every accepted "
            "change reserves another fee, so the Idempotency-Key is required: a retry with the same key "
            "replays the first answer and starts nothing."
        ),
    )
    def post(self, request: Request, tenant_uuid: str) -> Response:
        tenant = staff_tenant(tenant_uuid)
        _change_refusal(request, tenant)

        def change(_key: str | None, _fingerprint: str | None) -> Response:
            data = PlanChangeIn(data=request.data)
            data.is_valid(raise_exception=True)
            plan_type, plan_id = data.validated_data["plan_type"], data.validated_data["plan_id"]
            with provider_trouble():
                available = services.available_plans(actor=request.user, tenant=tenant)
            _offered(available, plan_type, plan_id)
            op = services.tenant_change_plan(
                actor=request.user, tenant=tenant, plan_type=plan_type, plan_id=plan_id, request=request._request
            )
            assert op.job is not None
            body = dict(PlanChangeOut({**job_status(op.job), "operation": op.uuid}).data)
            return Response(body, status=status.HTTP_202_ACCEPTED)

        return run_idempotent(request, self, change, required=True)


class TenantVerificationApi(APIView):
    permission_classes = STAFF

    @extend_schema(
        operation_id="tenants_verification",
        responses={200: VerificationOut, 409: STATE_CONFLICT},
        description="The provider's check of the account's documents, as last read (nightly).",
    )
    def get(self, request: Request, tenant_uuid: str) -> Response:
        tenant = staff_tenant(tenant_uuid)
        _refuse(services.verification_refusal(tenant), tenant)
        return Response(VerificationOut(tenant).data)


# --- customers --------------------------------------------------------------------------------


class CustomerAccountPlansApi(APIView):
    permission_classes = [Perm("customer.view")]

    @extend_schema(operation_id="customer_account_plans", responses={200: CustomerPlansOut, 409: STATE_CONFLICT})
    def get(self, request: Request) -> Response:
        tenant = own_tenant(request)
        _refuse(services.plans_refusal(tenant), tenant, message=CUSTOMER_NO_PLANS)
        return Response(
            CustomerPlansOut({"plans": tenant.account_plans, "checked_at": tenant.account_plans_checked_at}).data
        )


class CustomerVerificationApi(APIView):
    permission_classes = [Perm("customer.view")]

    @extend_schema(operation_id="customer_verification", responses={200: VerificationOut, 409: STATE_CONFLICT})
    def get(self, request: Request) -> Response:
        tenant = own_tenant(request)
        _refuse(services.verification_refusal(tenant), tenant, message=CUSTOMER_NO_VERIFICATION)
        return Response(VerificationOut(tenant).data)
