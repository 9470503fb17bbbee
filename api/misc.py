"""Small endpoints: who am I (for scripts checking their token) and job status."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.permissions import Perm
from portal.jobs import job_status
from portal.models import ApiToken, Job
from portal.roles import role_of
from tenants.selectors import tenant_for_user


class MeOut(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.CharField(allow_null=True)
    token = serializers.CharField(allow_null=True, help_text="The token's name, when a token is used.")
    tenant = serializers.UUIDField(allow_null=True, help_text="Customers: their tenant.")


class MeApi(APIView):
    @extend_schema(operation_id="me", responses=MeOut)
    def get(self, request: Request) -> Response:

        role = role_of(request.user)
        tenant = tenant_for_user(user=request.user)
        token = request.auth if isinstance(request.auth, ApiToken) else None
        return Response(
            MeOut(
                {
                    "username": request.user.get_username(),
                    "role": role.value if role else None,
                    "token": token.name if token else None,
                    "tenant": tenant.uuid if tenant else None,
                }
            ).data
        )


class JobOut(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    title = serializers.CharField()
    state = serializers.CharField()
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    percent = serializers.IntegerField()
    message = serializers.CharField()
    finished = serializers.BooleanField()
    results = serializers.ListField(child=serializers.DictField())


class JobDetailApi(APIView):
    """Progress of long work a staff call started (freeze, close, bulk work)."""

    permission_classes = [Perm("console.view")]

    @extend_schema(operation_id="jobs_retrieve", responses=JobOut)
    def get(self, request: Request, job_uuid: str) -> Response:
        job = Job.objects.filter(uuid=job_uuid).first()
        if job is None:
            raise Http404
        return Response(JobOut(job_status(job)).data)
