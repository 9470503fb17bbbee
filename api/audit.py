"""Audit events, read-only, for roles with audit.view."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.pagination import PAGE_PARAMETERS, keyset_page, page_body, page_serializer
from api.permissions import Perm
from portal.audit import audit_events


class AuditEventOut(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_label")
    action = serializers.CharField()
    tenant_id = serializers.IntegerField(allow_null=True)
    data = serializers.JSONField()
    ip = serializers.IPAddressField(allow_null=True)
    request_id = serializers.CharField()


class AuditEventListApi(APIView):
    permission_classes = [Perm("audit.view")]

    @extend_schema(
        operation_id="audit_events_list",
        parameters=[*PAGE_PARAMETERS, OpenApiParameter("action", str, description="Action prefix, e.g. billing.")],
        responses=page_serializer(AuditEventOut, "AuditEventPage"),
    )
    def get(self, request: Request) -> Response:
        action = request.query_params.get("action", "").strip()[:100]
        if "\x00" in action:
            raise serializers.ValidationError({"action": ["Control characters are not allowed."]})
        rows, cursor = keyset_page(audit_events(action_prefix=action), request)
        return Response(page_body(request, AuditEventOut(rows, many=True).data, cursor))
