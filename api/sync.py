"""Balance sync runs for staff: list, start, status."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.base import StrictInput
from api.pagination import PAGE_PARAMETERS, keyset_page, page_body, page_serializer
from api.permissions import Perm
from api.tenants import connection_by_uuid
from billing.models import SyncRun
from billing.selectors import sync_run_get
from billing.services import sync_start


class SyncRunOut(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    connection = serializers.UUIDField(source="connection.uuid")
    kind = serializers.CharField()
    state = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    pages = serializers.IntegerField()
    seen = serializers.IntegerField()
    changed = serializers.IntegerField()
    new = serializers.IntegerField()
    missing = serializers.IntegerField()
    errors = serializers.IntegerField()
    total_count = serializers.IntegerField(allow_null=True)
    error_message = serializers.CharField()
    job = serializers.UUIDField(source="job.uuid", allow_null=True, default=None)


class SyncStartIn(StrictInput):
    connection = serializers.UUIDField()


def _runs() -> Any:

    return SyncRun.objects.select_related("connection", "job")


class SyncRunListCreateApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [Perm("billing.sync")()] if self.request.method == "POST" else [Perm("console.view")()]

    @extend_schema(
        operation_id="sync_runs_list", parameters=PAGE_PARAMETERS, responses=page_serializer(SyncRunOut, "SyncRunPage")
    )
    def get(self, request: Request) -> Response:
        rows, cursor = keyset_page(_runs(), request)
        return Response(page_body(request, SyncRunOut(rows, many=True).data, cursor))

    @extend_schema(operation_id="sync_runs_start", request=SyncStartIn, responses={202: SyncRunOut})
    def post(self, request: Request) -> Response:

        data = SyncStartIn(data=request.data)
        data.is_valid(raise_exception=True)
        connection = connection_by_uuid(data.validated_data["connection"])
        run = sync_start(actor=request.user, connection=connection)
        return Response(SyncRunOut(_runs().get(pk=run.pk)).data, status=status.HTTP_202_ACCEPTED)


class SyncRunDetailApi(APIView):
    permission_classes = [Perm("console.view")]

    @extend_schema(operation_id="sync_runs_retrieve", responses=SyncRunOut)
    def get(self, request: Request, sync_run_uuid: str) -> Response:

        return Response(SyncRunOut(sync_run_get(uuid=sync_run_uuid)).data)
