"""The customer owner's pages for the company's read-only API tokens, under /me/api-tokens/."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import path

from api.tokens import api_token_create, api_token_get, api_tokens_visible_to
from api.tokens import api_token_revoke as revoke
from customers.views import customer_page
from portal.errors import PortalError
from portal.roles import Role
from portal.twofactor import recent_auth_response


@customer_page(manage=True)
def token_list(request: HttpRequest, tenant: Any) -> HttpResponse:
    created = None
    if request.method == "POST":
        refused = recent_auth_response(request, back=request.path)  # a new token: password (and code) again first
        if refused is not None:
            return refused
        try:
            _token, created = api_token_create(
                actor=request.user,
                name=request.POST.get("name", ""),
                role=Role.CUSTOMER_VIEWER,
                tenant=tenant,
                request=request,
            )
        except PortalError as exc:
            messages.error(request, exc.message)
    return render(
        request,
        "customers/api_tokens.html",
        {
            "tenant": tenant,
            "tokens": api_tokens_visible_to(user=request.user),
            "created": created,
        },
    )


@customer_page(manage=True)
def token_revoke(request: HttpRequest, tenant: Any, token_uuid: Any) -> HttpResponse:
    token = api_token_get(user=request.user, uuid=token_uuid)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    revoke(actor=request.user, token=token, request=request)
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("customer_tokens:list")


app_name = "customer_tokens"
urlpatterns = [
    path("", token_list, name="list"),
    path("<uuid:token_uuid>/revoke/", token_revoke, name="revoke"),
]
