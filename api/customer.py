"""The customer API: their own balance, history and statement. No parameter names a tenant:
it is the token's tenant (checked against the owner's membership on every request) or, for a
session, the logged-in user's."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.auth import api_token_tenant_id
from api.pagination import PAGE_PARAMETERS, decode_cursor, encode_cursor, page_body, page_serializer, parse_limit
from api.permissions import Perm
from api.tenants import SINCE_PARAMETER, BalanceOut, HistoryOut, history_body, parse_since
from customers.selectors import customer_tenant, statement, statement_row


def own_tenant(request: Request) -> Any:

    tenant = customer_tenant(user=request.user)
    token_tenant = api_token_tenant_id(request)
    if token_tenant is not None and token_tenant != tenant.pk:
        raise Http404  # the owner moved tenants since the token was made: it opens nothing
    return tenant


class CustomerBalanceApi(APIView):
    permission_classes = [Perm("customer.view")]

    @extend_schema(operation_id="customer_balance", responses=BalanceOut)
    def get(self, request: Request) -> Response:
        return Response(BalanceOut(own_tenant(request)).data)


class CustomerBalanceHistoryApi(APIView):
    permission_classes = [Perm("customer.view")]

    @extend_schema(operation_id="customer_balance_history", parameters=[SINCE_PARAMETER], responses=HistoryOut)
    def get(self, request: Request) -> Response:
        return Response(history_body(own_tenant(request), parse_since(request)))


class StatementRowOut(serializers.Serializer):
    at = serializers.DateTimeField(allow_null=True)
    kind = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    reference = serializers.CharField(allow_blank=True)
    amount = serializers.DecimalField(max_digits=18, decimal_places=4)
    currency = serializers.CharField(allow_blank=True)
    balance = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)


class CustomerStatementApi(APIView):
    permission_classes = [Perm("customer.view")]

    @extend_schema(
        operation_id="customer_statement",
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("date_from", str, description="YYYY-MM-DD"),
            OpenApiParameter("date_to", str, description="YYYY-MM-DD"),
        ],
        responses=page_serializer(StatementRowOut, "StatementPage"),
    )
    def get(self, request: Request) -> Response:

        tenant = own_tenant(request)
        dates = {}
        for name in ("date_from", "date_to"):
            raw = request.query_params.get(name)
            if raw:
                field = serializers.DateField(input_formats=["%Y-%m-%d"])
                try:
                    dates[name] = field.run_validation(raw)
                except serializers.ValidationError as exc:
                    raise serializers.ValidationError({name: exc.detail}) from None
        limit = parse_limit(request)
        # Newest first, each with its running balance; the cursor is a position in that
        # list (the running balance needs the whole period anyway, and the period is bounded).
        rows = [statement_row(row) for row in reversed(list(statement(tenant=tenant, **dates)))]
        start = decode_cursor(request.query_params["cursor"]) if request.query_params.get("cursor") else 0
        page = rows[start : start + limit]
        cursor = encode_cursor(start + limit) if start + limit < len(rows) else None
        return Response(page_body(request, StatementRowOut(page, many=True).data, cursor))
