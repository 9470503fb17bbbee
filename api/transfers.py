"""Transfers for staff: list, detail, create (Idempotency-Key required), approve.

A transfer is created under its tenant's URL (POST /tenants/{uuid}/transfers), so the body
never names a tenant or a provider account: those come from the tenant the URL names."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.base import MoneyField, SafeText, StrictInput
from api.errors import refusals_as_conflict
from api.idempotency import idempotency_parameter, inline_claim, is_first_claim, run_idempotent
from api.pagination import PAGE_PARAMETERS, page_body, page_serializer, parse_limit, refuse_cursor
from api.permissions import Perm
from api.tenants import staff_tenant
from billing.conf import approval_threshold
from billing.models import Transfer
from billing.selectors import transfer_get, transfer_list
from billing.services import transfer_approve, transfer_create
from portal.errors import PortalError
from portal.inputs import is_ascii_digits
from portal.twofactor import recent_auth_response

# Refusals of billing's transfer_create that are about the tenant's state, not the input:
# closing/closed/frozen, or no provider account yet. The API answers them 409.
TENANT_STATE_CODES = frozenset({"tenant_state", "no_account"})
# Refusals of transfer_approve about the transfer's state: 409 too.
TRANSFER_STATE_CODES = frozenset({"no_approval_needed", "transfer_state"})
STATES = ["pending", "sending", "succeeded", "failed", "unknown", "resend", "needs_review"]


class TransferOut(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    tenant = serializers.UUIDField(source="tenant.uuid")
    direction = serializers.CharField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    reason = serializers.CharField(help_text="Why staff moved the money. Internal: never shown to the customer.")
    customer_description = serializers.CharField(
        help_text='What the customer sees on the statement; empty means "Top-up" or "Adjustment".'
    )
    origin = serializers.CharField()
    state = serializers.CharField()
    payment_reference = serializers.CharField()
    requires_approval = serializers.BooleanField()
    awaiting_approval = serializers.BooleanField()
    approved_at = serializers.DateTimeField(allow_null=True)
    balance_after = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


def transfer_body(transfer: Any, *, reload: bool = True) -> dict[str, Any]:
    """The transfer as the API shows it. ``reload=False``: the instance is what the service
    just wrote (or replayed) and carries its tenant, so it is not read back."""
    fresh = Transfer.objects.select_related("tenant").get(pk=transfer.pk) if reload else transfer
    return dict(TransferOut(fresh).data)


class TransferCreateIn(StrictInput):
    amount = MoneyField()
    direction = serializers.ChoiceField(choices=["to_tenant", "to_parent"], default="to_tenant")
    reason = SafeText(max_length=500, help_text="Internal to staff: the customer never sees it.")
    customer_description = SafeText(
        max_length=200,
        allow_blank=True,
        default="",
        help_text="Optional words for the customer's statement, CSV and API (at most 200 characters). "
        'Without it the customer sees "Top-up" (to_tenant) or "Adjustment" (to_parent).',
    )


class TransferListApi(APIView):
    permission_classes = [Perm("console.view")]

    @extend_schema(
        operation_id="transfers_list",
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("tenant", str, description="Tenant uuid."),
            OpenApiParameter("state", str, enum=STATES),
        ],
        responses=page_serializer(TransferOut, "TransferPage"),
    )
    def get(self, request: Request) -> Response:

        limit = parse_limit(request)
        tenant = None
        tenant_uuid = request.query_params.get("tenant")
        if tenant_uuid:
            try:
                uuid.UUID(tenant_uuid)
            except ValueError:
                raise serializers.ValidationError({"tenant": ["Give a tenant uuid."]}) from None
            try:
                tenant = staff_tenant(tenant_uuid)
            except Http404:  # a well-formed id of no tenant: the filter names nothing that exists
                raise PortalError("No such tenant.", field="tenant", code="not_found", status=404) from None
        state = request.query_params.get("state")
        if state is not None and state not in STATES:  # "" too: the schema lists the states
            raise serializers.ValidationError({"state": [f"One of {', '.join(STATES)}."]})
        raw_cursor = request.query_params.get("cursor") or None
        if raw_cursor is not None and not is_ascii_digits(raw_cursor):
            refuse_cursor(raw_cursor)
        page = transfer_list(tenant=tenant, state=state, cursor=raw_cursor, limit=limit)
        rows, cursor = _page_parts(page)
        return Response(page_body(request, TransferOut(rows, many=True).data, cursor))


def _page_parts(page: Any) -> tuple[list[Any], str | None]:
    if isinstance(page, tuple):
        return list(page[0]), page[1]
    return list(page.items), page.next_cursor


class TenantTransferCreateApi(APIView):
    permission_classes = [Perm("billing.move_money")]

    @extend_schema(
        operation_id="transfers_create",
        request=TransferCreateIn,
        responses={201: TransferOut},
        parameters=[idempotency_parameter(True)],
    )
    def post(self, request: Request, tenant_uuid: str) -> Response:
        tenant = staff_tenant(tenant_uuid)
        refused = _reauth_refusal(request)
        if refused is not None:
            return refused

        def create(key: str | None, fingerprint: str | None) -> Response:

            data = TransferCreateIn(data=request.data)
            data.is_valid(raise_exception=True)
            values = data.validated_data
            client_key = "api:" + hashlib.sha256(f"{request.user.pk}:{key}".encode()).hexdigest()
            # The key is stored with the 201 in the transfer's own transaction (one commit):
            # the body is the row just written. Not read first: a transfer that holds the key
            # already is found by its unique key (key_is_new) and replayed.
            claim = inline_claim(request)
            stored: list[Any] = []

            def store(transfer: Transfer) -> None:
                assert claim is not None  # noqa: S101 - only passed when there is a claim
                stored.append(claim.store(status.HTTP_201_CREATED, transfer_body(transfer, reload=False)))

            with refusals_as_conflict(TENANT_STATE_CODES):  # valid input, not in the tenant's state now
                transfer = transfer_create(
                    actor=request.user,
                    tenant=tenant,
                    amount=values["amount"],
                    direction=values["direction"],
                    reason=values["reason"],
                    customer_description=values["customer_description"],
                    idempotency_key=client_key,
                    request_hash=fingerprint,
                    request=request._request,
                    origin="api",
                    key_is_new=claim is not None or is_first_claim(request),
                    in_transaction=store if claim is not None else None,
                )
            # The created row (or the replayed one, read with its tenant) is the body as it stands.
            body = stored[0] if stored else transfer_body(transfer, reload=False)
            return Response(body, status=status.HTTP_201_CREATED)

        return run_idempotent(request, self, create, required=True, inline=True)


def _reauth_refusal(request: Request) -> Response | None:
    """A browser session (not a token) moving more than the approval threshold: password and
    code again first (portal/twofactor.py), as on the console's form and for approving. Checked
    before the Idempotency-Key is claimed, so nothing is recorded and the same key works after
    re-authenticating. Input that does not validate is left to the normal path (its 400)."""
    if request.auth is not None:
        return None
    data = TransferCreateIn(data=request.data)
    if not data.is_valid() or data.validated_data["amount"] <= approval_threshold():
        return None
    return recent_auth_response(request._request)  # type: ignore[return-value]


class TransferDetailApi(APIView):
    permission_classes = [Perm("console.view")]

    @extend_schema(operation_id="transfers_retrieve", responses=TransferOut)
    def get(self, request: Request, transfer_uuid: str) -> Response:

        # transfer_get reads the row with its tenant: the body needs no second read.
        return Response(transfer_body(transfer_get(uuid=transfer_uuid), reload=False))


class TransferApproveApi(APIView):
    permission_classes = [Perm("billing.move_money")]

    @extend_schema(operation_id="transfers_approve", request=None, responses=TransferOut)
    def post(self, request: Request, transfer_uuid: str) -> Response:

        transfer = transfer_get(uuid=transfer_uuid)
        if request.data:
            raise serializers.ValidationError({"non_field_errors": ["Send an empty body."]})
        if request.auth is None:
            # A browser session, not a token: password and code again first (portal/twofactor.py).
            refused = recent_auth_response(request._request)
            if refused is not None:
                return refused  # type: ignore[return-value]
        with refusals_as_conflict(TRANSFER_STATE_CODES):  # the transfer is not awaiting approval (any more)
            result = transfer_approve(actor=request.user, transfer=transfer, request=request._request)
        return Response(transfer_body(result or transfer))
