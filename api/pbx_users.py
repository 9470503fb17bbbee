"""PBX users inside a tenant over the API (docs/pbx_users.md): the list as last read (with each
user's own balance), "read now", create, rename / display name / enable / disable, delete,
and money moved between the company balance and one user.

Staff reach a tenant's users under its URL (``/tenants/{uuid}/users``): everyone on the staff
reads, staff who may move money change. Customers reach their own tenant's users under
``/customer/users``: the owner changes, viewers read; another tenant's user is a 404 like a
missing one. Every write is the service's (``tenants.services.users``,
``billing.transfers.user_transfer_create``); this module parses, asks the services' own
checks first and renders. A user's password is write-only: it goes to the service and is
never echoed or logged. A provider without PBX users (VoiceIt) is a 409 with the reason.

Moving money needs an ``Idempotency-Key``, as for a transfer to a tenant: a retry with the
same key and body replays the first answer and moves nothing again."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.base import MoneyField, SafeText, StrictInput
from api.customer import own_tenant
from api.idempotency import idempotency_parameter, is_first_claim, run_idempotent
from api.pagination import PAGE_PARAMETERS, keyset_page, page_body, page_serializer
from api.permissions import Perm
from api.tenants import StaffOrNotFound, staff_tenant
from billing import services as billing
from billing.models import Transfer
from billing.pbx_user_pages import has_open_user_transfers, pbx_user_get
from billing.selectors import transfer_get, user_transfer_sentence
from portal.errors import Conflict, NotAllowed, PortalError
from portal.roles import has_perm
from providers.capabilities import Capability
from providers.errors import AuthenticationError, ConfigurationError, InsufficientFunds, InvalidArgument, Unsupported
from tenants.connections import effective_matrix
from tenants.models import PbxUser, Tenant
from tenants.services import users as pbx

# The customer's words when their service has no PBX users (the staff reason names the provider).
CUSTOMER_NO_USERS = pbx.CUSTOMER_NO_USERS
# Refusals of the services about the tenant's or the user's state, not the input: 409.
STATE_CODES = frozenset({"unsupported", "no_account", "tenant_state", "user_gone", "no_own_balance"})
# Provider answers that refuse the call for this account: asking again changes nothing.
DEFINITE_PROVIDER_REFUSALS = (AuthenticationError, InvalidArgument, InsufficientFunds, Unsupported, ConfigurationError)
CUSTOMER_PROVIDER_REFUSED = "The telephony service refused this for the company's account; nothing was changed."
CUSTOMER_STATUS: dict[str, str] = {Transfer.State.SUCCEEDED: "done", Transfer.State.FAILED: "not_done"}


class StrictBoolean(serializers.BooleanField):
    """JSON true or false only: not "yes", "no", 1 or 0, which DRF would take."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


# --- shapes ---------------------------------------------------------------------------------


class PbxUserOut(serializers.Serializer):
    id = serializers.IntegerField(source="pk", help_text="The portal's id of the user (used in URLs).")
    user_name = serializers.CharField()
    display_name = serializers.CharField()
    application_name = serializers.CharField()
    own_balance = serializers.BooleanField(
        source="has_own_balance", help_text="False: the user spends the company's balance."
    )
    active = serializers.BooleanField()
    balance = serializers.DecimalField(
        max_digits=18,
        decimal_places=4,
        allow_null=True,
        help_text="The user's own balance as last read from the provider; null when it spends the company's.",
    )
    currency = serializers.CharField()
    synced_at = serializers.DateTimeField(allow_null=True, help_text="When the user was last read from the provider.")
    deleted_at = serializers.DateTimeField(allow_null=True)


class PbxUserCreateIn(StrictInput):
    user_name = serializers.CharField(max_length=50, help_text="3-50 of a-z 0-9 _ -, starting with a letter or digit.")
    display_name = SafeText(max_length=pbx.DISPLAY_NAME_MAX)
    password = serializers.CharField(
        write_only=True,
        trim_whitespace=False,
        max_length=64,
        style={"input_type": "password"},
        help_text="Goes to the provider only: never stored, echoed or logged.",
    )
    own_balance = StrictBoolean(
        default=False, help_text="True: the user gets a balance of its own, funded from the company's."
    )


class PbxUserUpdateIn(StrictInput):
    user_name = serializers.CharField(max_length=50, required=False)
    display_name = SafeText(max_length=pbx.DISPLAY_NAME_MAX, required=False)
    active = StrictBoolean(required=False, help_text="false disables the user, true enables it.")


class UserTransferIn(StrictInput):
    amount = MoneyField()
    direction = serializers.ChoiceField(
        choices=[Transfer.Direction.TO_USER.value, Transfer.Direction.FROM_USER.value],
        help_text="to_user: from the company balance to the user; from_user: back to the company balance.",
    )


class UserTransferOut(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    tenant = serializers.UUIDField(source="tenant.uuid")
    user = serializers.IntegerField(source="pbx_user_id")
    user_name = serializers.CharField(source="pbx_user.user_name")
    direction = serializers.CharField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    origin = serializers.CharField()
    state = serializers.CharField()
    payment_reference = serializers.CharField()
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class CustomerUserTransferOut(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    user = serializers.IntegerField(source="pbx_user_id")
    user_name = serializers.CharField(source="pbx_user.user_name")
    direction = serializers.CharField()
    description = serializers.SerializerMethodField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    status = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)

    def get_description(self, transfer: Transfer) -> str:
        return user_transfer_sentence(transfer)

    @extend_schema_field({"type": "string", "enum": ["in_progress", "done", "not_done"]})
    def get_status(self, transfer: Transfer) -> str:
        return CUSTOMER_STATUS.get(transfer.state, "in_progress")


# --- the checks, from the services' own rules -------------------------------------------------


def _refuse(tenant: Tenant, *, customer: bool, writing: bool) -> None:
    """A tenant whose provider has no PBX users: 409 ``unsupported`` (reads too). For a write
    also no provider account yet (``no_account``) or a state that allows no change."""
    matrix = effective_matrix(tenant.connection)
    if not matrix.supports(Capability.PBX_USERS):
        reason = CUSTOMER_NO_USERS if customer else pbx.pbx_users_refusal(tenant)
        raise Conflict(reason or CUSTOMER_NO_USERS, code="unsupported")
    if not writing:
        return
    refusal = pbx.pbx_users_refusal(tenant)
    if refusal is not None:
        raise Conflict(refusal, code="no_account" if tenant.provider_account_id is None else "tenant_state")


def _may_change(request: Request, tenant: Tenant, *, customer: bool) -> None:
    """Before any input is read or a key claimed: a role that may only read is a 403."""
    allowed = has_perm(request.user, "customer.manage") if customer else True
    if not (allowed and pbx.may_manage_pbx_users(request.user, tenant)):
        raise NotAllowed("Your role may read this company's users but not change them.", code="forbidden")


@contextmanager
def _state_refusals(tenant: Tenant, *, customer: bool) -> Iterator[None]:
    """A service's refusal about the tenant's or the user's state is a 409, not a 400; so is
    a definite refusal by the provider (the account refused, not a provider that did not
    answer, which stays a 503). A customer reads a capability's reason in plain words."""
    try:
        yield
    except PortalError as exc:
        if exc.code in STATE_CODES and exc.status == 400:
            words = pbx.customer_refusal(tenant, exc.message) if customer else exc.message
            raise Conflict(words or exc.message, code=exc.code) from None
        cause = exc.__cause__
        if exc.status == 503 and isinstance(cause, DEFINITE_PROVIDER_REFUSALS):
            words = CUSTOMER_PROVIDER_REFUSED if customer else f"{CUSTOMER_PROVIDER_REFUSED} ({cause})"
            raise Conflict(words, code="provider_refused") from exc
        raise


def _no_body(request: Request) -> None:
    if request.data:
        raise serializers.ValidationError({"non_field_errors": ["Send an empty body."]})


def _valid(serializer: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    data = serializer(data=request.data)
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


def _user_transfers(tenant: Tenant, user: PbxUser | None = None) -> Any:
    rows = Transfer.objects.filter(tenant=tenant, direction__in=Transfer.USER_DIRECTIONS)
    if user is not None:
        rows = rows.filter(pbx_user=user)
    return rows.select_related("tenant", "pbx_user")


def _user_transfer(tenant: Tenant, transfer_uuid: Any) -> Transfer:
    transfer = transfer_get(uuid=transfer_uuid, tenant=tenant)
    if transfer.direction not in Transfer.USER_DIRECTIONS:
        raise Http404("No such transfer")
    return transfer


# --- the handlers, shared by the staff and the customer views ---------------------------------


class _Users:
    """The operations on one tenant's users; ``customer`` says whose words and shapes."""

    customer = False
    transfer_out: type[serializers.Serializer] = UserTransferOut

    def tenant(self, request: Request, **kwargs: Any) -> Tenant:
        if self.customer:
            return own_tenant(request)  # type: ignore[no-any-return]
        return staff_tenant(kwargs["tenant_uuid"])  # type: ignore[no-any-return]

    def list_users(self, request: Request, tenant: Tenant) -> Response:
        _refuse(tenant, customer=self.customer, writing=False)
        rows, cursor = keyset_page(PbxUser.objects.filter(tenant=tenant, deleted_at__isnull=True), request)
        return Response(page_body(request, PbxUserOut(rows, many=True).data, cursor))

    def refresh(self, request: Request, tenant: Tenant) -> Response:
        _no_body(request)
        _refuse(tenant, customer=self.customer, writing=True)
        with _state_refusals(tenant, customer=self.customer):
            pbx.pbx_users_read(actor=request.user, tenant=tenant, request=request._request)
        return self.list_users(request, tenant)

    def create(self, request: Request, tenant: Tenant, view: APIView) -> Response:
        _may_change(request, tenant, customer=self.customer)
        _refuse(tenant, customer=self.customer, writing=True)

        def run(_key: str | None, _fingerprint: str | None) -> Response:
            values = _valid(PbxUserCreateIn, request)
            with _state_refusals(tenant, customer=self.customer):
                made = pbx.pbx_user_create(
                    actor=request.user,
                    tenant=tenant,
                    user_name=values["user_name"],
                    display_name=values["display_name"],
                    password=values["password"],
                    own_balance=values["own_balance"],
                    request=request._request,
                )
            return Response(PbxUserOut(made).data, status=status.HTTP_201_CREATED)

        return run_idempotent(request, view, run, required=False)

    def update(self, request: Request, tenant: Tenant, user: PbxUser) -> Response:
        _may_change(request, tenant, customer=self.customer)
        _refuse(tenant, customer=self.customer, writing=True)
        values = _valid(PbxUserUpdateIn, request)
        if not values:
            raise serializers.ValidationError({"non_field_errors": ["Give user_name, display_name or active."]})
        with _state_refusals(tenant, customer=self.customer):
            changed = pbx.pbx_user_update(
                actor=request.user,
                tenant=tenant,
                pbx_user=user,
                user_name=values.get("user_name"),
                display_name=values.get("display_name"),
                active=values.get("active"),
                request=request._request,
            )
        return Response(PbxUserOut(changed).data)

    def delete(self, request: Request, tenant: Tenant, user: PbxUser) -> Response:
        _may_change(request, tenant, customer=self.customer)
        _refuse(tenant, customer=self.customer, writing=True)
        _no_body(request)
        with _state_refusals(tenant, customer=self.customer):
            pbx.pbx_user_delete(
                actor=request.user,
                tenant=tenant,
                pbx_user=user,
                open_transfers=has_open_user_transfers(user),
                request=request._request,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)

    def list_transfers(self, request: Request, tenant: Tenant, user: PbxUser | None = None) -> Response:
        rows, cursor = keyset_page(_user_transfers(tenant, user), request)
        return Response(page_body(request, self.transfer_out(rows, many=True).data, cursor))

    def create_transfer(self, request: Request, tenant: Tenant, user: PbxUser, view: APIView) -> Response:
        _may_change(request, tenant, customer=self.customer)

        def run(key: str | None, fingerprint: str | None) -> Response:
            values = _valid(UserTransferIn, request)
            client_key = "api:" + hashlib.sha256(f"{request.user.pk}:{key}".encode()).hexdigest()
            with _state_refusals(tenant, customer=self.customer):
                transfer = billing.user_transfer_create(
                    actor=request.user,
                    tenant=tenant,
                    pbx_user=user,
                    amount=values["amount"],
                    direction=values["direction"],
                    idempotency_key=client_key,
                    request_hash=fingerprint,
                    request=request._request,
                    origin=Transfer.Origin.API,
                    key_is_new=is_first_claim(request),
                )
            fresh = _user_transfers(tenant).get(pk=transfer.pk)
            return Response(self.transfer_out(fresh).data, status=status.HTTP_201_CREATED)

        return run_idempotent(request, view, run, required=True)

    def transfer_detail(self, request: Request, tenant: Tenant, transfer_uuid: Any) -> Response:
        transfer = _user_transfer(tenant, transfer_uuid)
        return Response(self.transfer_out(_user_transfers(tenant).get(pk=transfer.pk)).data)


class _CustomerUsers(_Users):
    customer = True
    transfer_out = CustomerUserTransferOut


STAFF_OPS = _Users()
CUSTOMER_OPS = _CustomerUsers()
STAFF = [StaffOrNotFound, Perm("console.view")]
CUSTOMER = [Perm("customer.view")]
WRITE_STATUSES_NOTE = " Support staff and customer viewers read only (403)."


# --- staff ------------------------------------------------------------------------------------


class TenantPbxUsersApi(APIView):
    permission_classes = STAFF

    @extend_schema(
        operation_id="tenants_pbx_users_list",
        parameters=PAGE_PARAMETERS,
        responses=page_serializer(PbxUserOut, "PbxUserPage"),
        description="The tenant's PBX users as last read from the provider, with their own balances.",
    )
    def get(self, request: Request, tenant_uuid: str) -> Response:
        return STAFF_OPS.list_users(request, staff_tenant(tenant_uuid))

    @extend_schema(
        operation_id="tenants_pbx_users_create",
        request=PbxUserCreateIn,
        responses={201: PbxUserOut},
        parameters=[idempotency_parameter(False)],
        description="Create a user at the provider." + WRITE_STATUSES_NOTE,
    )
    def post(self, request: Request, tenant_uuid: str) -> Response:
        return STAFF_OPS.create(request, staff_tenant(tenant_uuid), self)


class TenantPbxUsersRefreshApi(APIView):
    permission_classes = STAFF

    @extend_schema(
        operation_id="tenants_pbx_users_refresh",
        request=None,
        responses=page_serializer(PbxUserOut, "PbxUserPage"),
        description="Read the tenant's users and their balances from the provider now.",
    )
    def post(self, request: Request, tenant_uuid: str) -> Response:
        return STAFF_OPS.refresh(request, staff_tenant(tenant_uuid))


class TenantPbxUserApi(APIView):
    permission_classes = STAFF

    def _user(self, tenant_uuid: str, pbx_user_id: int) -> tuple[Tenant, PbxUser]:
        tenant = staff_tenant(tenant_uuid)
        return tenant, pbx_user_get(tenant=tenant, user_id=pbx_user_id)

    @extend_schema(operation_id="tenants_pbx_users_retrieve", responses=PbxUserOut)
    def get(self, request: Request, tenant_uuid: str, pbx_user_id: int) -> Response:
        _tenant, user = self._user(tenant_uuid, pbx_user_id)
        return Response(PbxUserOut(user).data)

    @extend_schema(
        operation_id="tenants_pbx_users_update",
        request=PbxUserUpdateIn,
        responses=PbxUserOut,
        description="Rename, change the display name, enable or disable a user." + WRITE_STATUSES_NOTE,
    )
    def patch(self, request: Request, tenant_uuid: str, pbx_user_id: int) -> Response:
        return STAFF_OPS.update(request, *self._user(tenant_uuid, pbx_user_id))

    @extend_schema(
        operation_id="tenants_pbx_users_delete",
        request=None,
        responses={204: None},
        description="Delete a user at the provider; refused (409) while its own balance is not zero "
        "or money is on its way to or from it." + WRITE_STATUSES_NOTE,
    )
    def delete(self, request: Request, tenant_uuid: str, pbx_user_id: int) -> Response:
        return STAFF_OPS.delete(request, *self._user(tenant_uuid, pbx_user_id))


class TenantPbxUserTransfersApi(APIView):
    permission_classes = STAFF

    @extend_schema(
        operation_id="tenants_pbx_user_transfers_list",
        parameters=PAGE_PARAMETERS,
        responses=page_serializer(UserTransferOut, "UserTransferPage"),
    )
    def get(self, request: Request, tenant_uuid: str, pbx_user_id: int) -> Response:
        tenant = staff_tenant(tenant_uuid)
        return STAFF_OPS.list_transfers(request, tenant, pbx_user_get(tenant=tenant, user_id=pbx_user_id))

    @extend_schema(
        operation_id="tenants_pbx_user_transfers_create",
        request=UserTransferIn,
        responses={201: UserTransferOut},
        parameters=[idempotency_parameter(True)],
        description="Move money between the company balance and the user's own balance, through the "
        "transfer state machine (read its state later)." + WRITE_STATUSES_NOTE,
    )
    def post(self, request: Request, tenant_uuid: str, pbx_user_id: int) -> Response:
        tenant = staff_tenant(tenant_uuid)
        return STAFF_OPS.create_transfer(request, tenant, pbx_user_get(tenant=tenant, user_id=pbx_user_id), self)


class TenantUserTransfersApi(APIView):
    permission_classes = STAFF

    @extend_schema(
        operation_id="tenants_user_transfers_list",
        parameters=PAGE_PARAMETERS,
        responses=page_serializer(UserTransferOut, "UserTransferPage"),
        description="Money moved to and from the tenant's users, newest first.",
    )
    def get(self, request: Request, tenant_uuid: str) -> Response:
        return STAFF_OPS.list_transfers(request, staff_tenant(tenant_uuid))


class TenantUserTransferApi(APIView):
    permission_classes = STAFF

    @extend_schema(operation_id="tenants_user_transfers_retrieve", responses=UserTransferOut)
    def get(self, request: Request, tenant_uuid: str, transfer_uuid: str) -> Response:
        return STAFF_OPS.transfer_detail(request, staff_tenant(tenant_uuid), transfer_uuid)


# --- customers --------------------------------------------------------------------------------


class _CustomerObjectView(APIView):
    """A customer's view of one of their users or transfers: another method is a 405 only for
    their own object, so a foreign id answers every method as a missing one does (404)."""

    permission_classes = CUSTOMER

    def lookup(self, request: Request, **kwargs: Any) -> Any:
        tenant = own_tenant(request)
        if "transfer_uuid" in kwargs:
            return _user_transfer(tenant, kwargs["transfer_uuid"])
        return pbx_user_get(tenant=tenant, user_id=kwargs["pbx_user_id"])

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.lookup(request, **kwargs)
        return super().http_method_not_allowed(request, *args, **kwargs)  # type: ignore[no-any-return]


class CustomerPbxUsersApi(APIView):
    permission_classes = CUSTOMER

    @extend_schema(
        operation_id="customer_pbx_users_list",
        parameters=PAGE_PARAMETERS,
        responses=page_serializer(PbxUserOut, "PbxUserPage"),
        description="Your company's users as last read, with their own balances.",
    )
    def get(self, request: Request) -> Response:
        return CUSTOMER_OPS.list_users(request, own_tenant(request))

    @extend_schema(
        operation_id="customer_pbx_users_create",
        request=PbxUserCreateIn,
        responses={201: PbxUserOut},
        parameters=[idempotency_parameter(False)],
        description="Create a user (the company's owner; viewers read only).",
    )
    def post(self, request: Request) -> Response:
        return CUSTOMER_OPS.create(request, own_tenant(request), self)


class CustomerPbxUsersRefreshApi(APIView):
    permission_classes = CUSTOMER

    @extend_schema(
        operation_id="customer_pbx_users_refresh",
        request=None,
        responses=page_serializer(PbxUserOut, "PbxUserPage"),
        description="Read your company's users and their balances now.",
    )
    def post(self, request: Request) -> Response:
        return CUSTOMER_OPS.refresh(request, own_tenant(request))


class CustomerPbxUserApi(_CustomerObjectView):
    def _user(self, request: Request, pbx_user_id: int) -> tuple[Tenant, PbxUser]:
        tenant = own_tenant(request)
        return tenant, pbx_user_get(tenant=tenant, user_id=pbx_user_id)

    @extend_schema(operation_id="customer_pbx_users_retrieve", responses=PbxUserOut)
    def get(self, request: Request, pbx_user_id: int) -> Response:
        _tenant, user = self._user(request, pbx_user_id)
        return Response(PbxUserOut(user).data)

    @extend_schema(
        operation_id="customer_pbx_users_update",
        request=PbxUserUpdateIn,
        responses=PbxUserOut,
        description="Rename, change the display name, enable or disable a user (the owner).",
    )
    def patch(self, request: Request, pbx_user_id: int) -> Response:
        return CUSTOMER_OPS.update(request, *self._user(request, pbx_user_id))

    @extend_schema(
        operation_id="customer_pbx_users_delete",
        request=None,
        responses={204: None},
        description="Delete a user (the owner); refused (409) while it holds money of its own or money "
        "is on its way to or from it.",
    )
    def delete(self, request: Request, pbx_user_id: int) -> Response:
        return CUSTOMER_OPS.delete(request, *self._user(request, pbx_user_id))


class CustomerPbxUserTransfersApi(_CustomerObjectView):
    @extend_schema(
        operation_id="customer_pbx_user_transfers_list",
        parameters=PAGE_PARAMETERS,
        responses=page_serializer(CustomerUserTransferOut, "CustomerUserTransferPage"),
    )
    def get(self, request: Request, pbx_user_id: int) -> Response:
        tenant = own_tenant(request)
        return CUSTOMER_OPS.list_transfers(request, tenant, pbx_user_get(tenant=tenant, user_id=pbx_user_id))

    @extend_schema(
        operation_id="customer_pbx_user_transfers_create",
        request=UserTransferIn,
        responses={201: CustomerUserTransferOut},
        parameters=[idempotency_parameter(True)],
        description="Move money between the company balance and the user's own balance (the owner).",
    )
    def post(self, request: Request, pbx_user_id: int) -> Response:
        tenant = own_tenant(request)
        return CUSTOMER_OPS.create_transfer(request, tenant, pbx_user_get(tenant=tenant, user_id=pbx_user_id), self)


class CustomerUserTransfersApi(APIView):
    permission_classes = CUSTOMER

    @extend_schema(
        operation_id="customer_user_transfers_list",
        parameters=PAGE_PARAMETERS,
        responses=page_serializer(CustomerUserTransferOut, "CustomerUserTransferPage"),
    )
    def get(self, request: Request) -> Response:
        return CUSTOMER_OPS.list_transfers(request, own_tenant(request))


class CustomerUserTransferApi(_CustomerObjectView):
    @extend_schema(operation_id="customer_user_transfers_retrieve", responses=CustomerUserTransferOut)
    def get(self, request: Request, transfer_uuid: str) -> Response:
        return CUSTOMER_OPS.transfer_detail(request, own_tenant(request), transfer_uuid)
