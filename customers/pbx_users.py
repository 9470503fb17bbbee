"""The customer's PBX users page: the owner creates, renames, disables and deletes users and
moves money between the company balance and a user; viewers see the list. The tenant is the
signed-in customer's; the page's logic is billing's (billing/pbx_user_pages.py), shared with
the staff console."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse

from billing import pbx_user_pages as pages
from customers.views import customer_page
from portal.roles import has_perm


@customer_page()
def users(request: HttpRequest, tenant: Any) -> HttpResponse:
    part = pages.transfers_part(request, tenant, staff=False)
    if part is not None:
        return part
    context = pages.users_context(request, tenant, base=reverse("customer:users"), staff=False)
    context["is_owner"] = has_perm(request.user, "customer.manage")
    return render(request, "customers/pbx_users.html", context)


@customer_page(manage=True)
def users_action(request: HttpRequest, tenant: Any, action: str, user_id: int | None = None) -> HttpResponse:
    """Every action of the page (``action`` comes from the route). Another tenant's user is a
    404 whatever the method."""
    if user_id is not None:
        pages.pbx_user_get(tenant=tenant, user_id=user_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    pages.handle_action(request, tenant, action, user_id)
    return redirect("customer:users")
