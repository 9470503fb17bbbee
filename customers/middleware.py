from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _

from customers.selectors import membership_tenant
from portal.errors import error_response


class ClosedTenantMiddleware:
    """Ends the session of a customer whose tenant was closed after they logged in.

    The login backend stops new logins; this catches the sessions that already exist, on
    their next request. One query per authenticated request, whose answer (the customer's
    tenant) the customer pages reuse."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        tenant = membership_tenant(user=user) if user is not None and user.is_authenticated else None
        if tenant is not None and tenant.status == tenant.Status.CLOSED:
            logout(request)
            if request.path.startswith("/api/"):
                return error_response(401, "not_authenticated", "Your company's account is closed.")
            messages.error(request, _("Your company's account is closed. Contact your reseller for help."))
            return redirect("login")
        return self.get_response(request)
