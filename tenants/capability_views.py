"""Staff's "Check now" on the provider-methods panel (templates/tenants/_capabilities.html)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme

from portal.errors import NotAllowed
from portal.roles import has_perm
from tenants.capability_probe import connection_check_now
from tenants.models import ProviderConnection


def capabilities_check(request: HttpRequest, connection_uuid: Any) -> HttpResponse:
    """POST: probe the connection's provider now and come back to the page that asked."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    # Connections are the reseller's: anyone who is not staff sees no such page at all.
    if not has_perm(request.user, "console.view"):
        raise Http404
    connection = ProviderConnection.objects.filter(uuid=connection_uuid).first()
    if connection is None:
        raise Http404
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        outcome = connection_check_now(actor=request.user, connection=connection, request=request)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    if outcome.answered:
        missing = sorted(m for m, s in outcome.capabilities.items() if s == "missing")
        messages.success(
            request,
            f"Checked {connection.name}: "
            + (f"the provider no longer answers {', '.join(missing)}." if missing else "every method answers."),
        )
    else:
        messages.error(request, f"{connection.name}'s provider gave no answer; the result of the last check is kept.")
    nxt = request.POST.get("next", "")
    if nxt and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}) and nxt.startswith("/"):
        return redirect(nxt)
    return redirect("console:home")
