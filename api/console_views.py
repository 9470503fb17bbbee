"""Console pages where staff create and revoke their API tokens (admins: everyone's)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache

from api.tokens import (
    api_token_create,
    api_token_get,
    api_token_revoke,
    api_tokens_visible_to,
    staff_roles_grantable_by,
)
from portal import inputs
from portal.errors import PortalError
from portal.roles import require
from portal.twofactor import recent_auth_response


@never_cache
@require("console.view")
def token_list(request: HttpRequest) -> HttpResponse:
    created = None
    form: dict[str, Any] = {"name": "", "role": "", "expires_in_days": ""}
    if request.method == "POST":
        refused = recent_auth_response(request, back=request.path)  # a new token: password and code again first
        if refused is not None:
            return refused
        form = {key: request.POST.get(key, "")[:200] for key in form}
        raw_days = form["expires_in_days"].strip()
        try:
            if raw_days and not inputs.is_ascii_digits(raw_days, max_length=4):
                raise PortalError("Enter a number of days, or leave it empty for no expiry.", field="expires_in_days")
            _token, created = api_token_create(
                actor=request.user,
                name=form["name"],
                role=form["role"],
                expires_in_days=int(raw_days) if raw_days else None,
                request=request,
            )
            form = {"name": "", "role": "", "expires_in_days": ""}
        except PortalError as exc:
            messages.error(request, exc.message)
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    tokens = api_tokens_visible_to(user=request.user)[:500]
    return render(
        request,
        "portal/api_tokens.html",
        {
            "tokens": tokens,
            "roles": staff_roles_grantable_by(request.user),
            "created": created,
            "form": form,
        },
    )


@require("console.view")
def token_revoke(request: HttpRequest, token_uuid: Any) -> HttpResponse:
    # Fetch first: a token the user may not see is 404 whatever the method.
    token = api_token_get(user=request.user, uuid=token_uuid)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    api_token_revoke(actor=request.user, token=token, request=request)
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("api_tokens:list")


def console_panel() -> dict[str, Any]:
    """The console home's link to the API tokens and docs (composed by console/views.py)."""
    return {"console_panels": ["portal/_api_panel.html"]}


app_name = "api_tokens"
urlpatterns = [
    path("", token_list, name="list"),
    path("<uuid:token_uuid>/revoke/", token_revoke, name="revoke"),
]
