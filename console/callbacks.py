"""The provider callbacks page: reseller admins set where the provider posts its account
callbacks (URL and salt on the parent account); staff read the latest callbacks received."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from billing import callbacks
from portal.errors import PortalError
from portal.roles import has_perm, is_staff_role
from portal.twofactor import recent_auth_response
from tenants.models import ProviderConnection


def _row(
    connection: ProviderConnection, failed: str, errors: dict[str, str], submitted: dict[str, str]
) -> dict[str, Any]:
    mine = str(connection.uuid) == failed
    return {
        "connection": connection,
        "default_url": callbacks.webhook_url(connection),
        "url": submitted.get("callback_url", "")
        if mine
        else (connection.callback_url or callbacks.webhook_url(connection)),
        "errors": errors if mine else {},
    }


def callbacks_page(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not is_staff_role(request.user):
        raise Http404  # customers: the console does not exist for them
    can_configure = has_perm(request.user, callbacks.PERMISSION)
    errors: dict[str, str] = {}
    failed, submitted = "", {}
    if request.method == "POST":
        if not can_configure:
            raise PermissionDenied
        # Changing the provider connection: password and code again first (portal/twofactor.py).
        refused = recent_auth_response(request, back=reverse("console:callbacks"))
        if refused is not None:
            return refused
        failed = request.POST.get("connection", "")
        submitted = {"callback_url": request.POST.get("callback_url", "")}
        connection = ProviderConnection.objects.filter(uuid__in=_uuid_or_none(failed), kind="voximplant").first()
        if connection is None:
            raise Http404
        try:
            callbacks.callbacks_configure(
                actor=request.user,
                connection=connection,
                url=submitted["callback_url"],
                salt=request.POST.get("callback_salt", ""),
                request=request,
            )
        except PortalError as exc:
            errors[exc.field or "form"] = exc.message
        else:
            messages.success(request, f"The provider now posts {connection.name}'s callbacks to the portal.")
            return redirect("console:callbacks")
    connections = ProviderConnection.objects.filter(kind="voximplant").order_by("name")
    return render(
        request,
        "console/callbacks.html",
        {
            "rows": [_row(c, failed, errors, submitted) for c in connections],
            "can_configure": can_configure,
            "callbacks": callbacks.latest_callbacks(),
        },
        status=400 if errors else 200,
    )


def _uuid_or_none(text: str) -> list[str]:
    try:
        return [str(uuid.UUID(text))]
    except ValueError:
        return []
