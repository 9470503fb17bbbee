"""The webhook the provider posts its account callbacks to: /hooks/voximplant/<connection uuid>/.

Public by design (no login, no CSRF token: the provider cannot have either); every callback
is authenticated by its hash instead (billing.callbacks). Answers JSON, never an HTML page.
"""

from __future__ import annotations

from uuid import UUID

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from billing import callbacks

app_name = "hooks"


@csrf_exempt
def voximplant_callbacks(request: HttpRequest, connection_uuid: UUID) -> JsonResponse:
    if request.method != "POST":
        response = JsonResponse({"error": "POST the callbacks here"}, status=405)
        response["Allow"] = "POST"
        return response
    try:
        raw = request.body
    except RequestDataTooBig:
        return JsonResponse({"error": "body too large"}, status=413)
    reply = callbacks.callbacks_receive(connection_uuid=connection_uuid, raw=raw)
    return JsonResponse(reply.body, status=reply.status)


urlpatterns = [
    path("voximplant/<uuid:connection_uuid>/", voximplant_callbacks, name="voximplant"),
]
