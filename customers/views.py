"""Customer pages. No URL carries a tenant id: the tenant is the logged-in user's, and every
object opened from here (a team member, a token) is fetched through a selector scoped to it."""

from __future__ import annotations

import csv
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from customers import selectors, services
from portal import inputs
from portal.errors import PortalError
from portal.live import part_response, requested_part
from portal.roles import Role, has_perm, role_of

View = Callable[..., HttpResponse]


def customer_page(*, manage: bool = False) -> Callable[[View], View]:
    """Login first (anonymous → login page, whatever the method), then the role (staff → 403,
    viewer on an owner page → 403), then the user's own tenant (none → 404)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_perm(request.user, "customer.manage" if manage else "customer.view"):
                raise PermissionDenied
            tenant = selectors.customer_tenant(user=request.user)
            return view(request, tenant, *args, **kwargs)

        return never_cache(wrapper)

    return decorator


def _actor(request: HttpRequest) -> User:
    """The signed-in customer; customer_page lets no one else through."""
    user = request.user
    assert isinstance(user, User)
    return user


def _is_owner(request: HttpRequest) -> bool:
    return role_of(request.user) == Role.CUSTOMER_OWNER


@customer_page()
def home(request: HttpRequest, tenant: Any) -> HttpResponse:
    if requested_part(request, "balance"):  # the live balance (customers/_balance.html)
        return part_response(
            request, "customers/_balance.html", {"tenant": tenant, "synced_at": selectors.last_synced(tenant=tenant)}
        )
    return render(
        request,
        "customers/home.html",
        {
            "tenant": tenant,
            "synced_at": selectors.last_synced(tenant=tenant),
            "is_owner": _is_owner(request),
            "chart": selectors.balance_chart(tenant=tenant),
            "refresh_wait": services.refresh_allowed_in(tenant=tenant),
        },
    )


@customer_page()
@require_POST
def refresh(request: HttpRequest, tenant: Any) -> HttpResponse:
    try:
        services.customer_refresh_balance(actor=_actor(request), tenant=tenant, request=request)
        messages.success(request, _("The balance was refreshed from the provider."))
    except PortalError as exc:
        messages.error(request, exc.message)
    return redirect("customer:home")


@customer_page(manage=True)
@require_POST
def alerts(request: HttpRequest, tenant: Any) -> HttpResponse:
    try:
        threshold = inputs.typed_threshold(request.POST.get("threshold", ""), field="threshold")
        services.customer_set_alert(actor=_actor(request), tenant=tenant, threshold=threshold, request=request)
        messages.success(
            request, _("Low-balance alert saved.") if threshold is not None else _("Low-balance alert off.")
        )
    except PortalError as exc:
        messages.error(request, exc.message)
    return redirect("customer:home")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """CSV cells a spreadsheet would run as a formula get a leading quote (CSV injection)."""
    text = "" if value is None else str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_START):
        return "'" + text
    return text


@customer_page()
def statement(request: HttpRequest, tenant: Any) -> HttpResponse:
    period = services.statement_period(
        raw_from=request.GET.get("from"), raw_to=request.GET.get("to"), today=timezone.now().date()
    )
    if period.errors:  # shown on the form; the provider is not asked about a period that makes no sense
        return render(
            request,
            "customers/statement.html",
            {
                "tenant": tenant,
                "rows": [],
                "errors": period.errors,
                "raw_from": request.GET.get("from", "")[:40],
                "raw_to": request.GET.get("to", "")[:40],
                "is_owner": _is_owner(request),
            },
            status=400,
        )
    date_from, date_to = period.date_from, period.date_to
    result = selectors.statement(tenant=tenant, date_from=date_from, date_to=date_to)
    rows = list(result)
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d")
        response["Content-Disposition"] = f'attachment; filename="statement-{stamp}.csv"'
        writer = csv.writer(response)
        writer.writerow(["date", "type", "description", "reference", "amount", "currency", "balance"])
        for row in rows:
            r = selectors.statement_row(row)
            writer.writerow(
                [
                    _cell(r["at"].isoformat() if r["at"] else ""),
                    _cell(r["kind"]),
                    _cell(r["description"]),
                    _cell(r["reference"]),
                    _cell(r["amount_display"]),
                    _cell(r["currency"] or tenant.currency),
                    _cell(r["balance_display"]),
                ]
            )
        return response
    return render(
        request,
        "customers/statement.html",
        {
            "tenant": tenant,
            "rows": [selectors.statement_row(row) for row in reversed(rows)],  # newest first on screen
            "note": getattr(result, "note", ""),
            "truncated": getattr(result, "truncated", False),
            "date_from": date_from,
            "date_to": date_to,
            "is_owner": _is_owner(request),
        },
    )


@customer_page(manage=True)
def team(request: HttpRequest, tenant: Any) -> HttpResponse:
    return render(
        request,
        "customers/team.html",
        {
            "tenant": tenant,
            "members": selectors.team_members(tenant=tenant),
            "email": "",
        },
    )


@customer_page(manage=True)
@require_POST
def team_two_factor(request: HttpRequest, tenant: Any) -> HttpResponse:
    required = request.POST.get("require_two_factor", "") == "on"
    services.customer_set_two_factor(actor=_actor(request), tenant=tenant, required=required, request=request)
    if required:
        messages.success(request, _("Every member now signs in with a code; members without one set it up next time."))
    else:
        messages.success(request, _("A second factor is now each member's own choice."))
    return redirect("customer:team")


@customer_page(manage=True)
@require_POST
def team_invite(request: HttpRequest, tenant: Any) -> HttpResponse:
    email = request.POST.get("email", "")
    try:
        membership = services.customer_invite(actor=_actor(request), tenant=tenant, email=email, request=request)
    except PortalError as exc:
        return render(
            request,
            "customers/team.html",
            {
                "tenant": tenant,
                "members": selectors.team_members(tenant=tenant),
                "email": email[:254],
                "error": exc.message,
            },
            status=400,
        )
    if membership is None:
        # The address has an account elsewhere: the answer of an invite that went out, so the
        # page tells nothing about other tenants (customers/services.py customer_invite).
        messages.success(request, _("Invitation sent to %(email)s.") % {"email": services.normalize_email(email)})
    else:
        _delivery_message(request, membership)
    return redirect("customer:team")


def _delivery_message(request: HttpRequest, membership: Any) -> None:
    email = membership.user.email
    if membership.invite_delivery == membership.InviteDelivery.SENT:
        messages.success(request, _("Invitation sent to %(email)s.") % {"email": email})
    elif membership.invite_delivery == membership.InviteDelivery.FAILED:
        messages.warning(
            request,
            _(
                "The invitation to %(email)s was not delivered: the mail server did not accept it. "
                "It is kept and will be retried; you can also resend it below."
            )
            % {"email": email},
        )
    else:
        messages.info(request, _("The invitation to %(email)s is being sent.") % {"email": email})


@customer_page(manage=True)
def team_resend(request: HttpRequest, tenant: Any, member_id: int) -> HttpResponse:
    # Fetch before the method check: another tenant's member is 404 whatever the method.
    membership = selectors.member_get(tenant=tenant, member_id=member_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        membership = services.customer_invite_resend(
            actor=_actor(request), tenant=tenant, membership=membership, request=request
        )
        _delivery_message(request, membership)
    except PortalError as exc:
        messages.error(request, exc.message)
    return redirect("customer:team")


@customer_page(manage=True)
def team_remove(request: HttpRequest, tenant: Any, member_id: int) -> HttpResponse:
    # Fetch before the method check: another tenant's member is 404 whatever the method.
    membership = selectors.member_get(tenant=tenant, member_id=member_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        services.customer_remove(actor=_actor(request), tenant=tenant, membership=membership, request=request)
        messages.success(
            request, _("%(member)s was removed.") % {"member": membership.user.email or membership.user.get_username()}
        )
    except PortalError as exc:
        messages.error(request, exc.message)
    return redirect("customer:team")


@customer_page()
def profile(request: HttpRequest, tenant: Any) -> HttpResponse:
    if request.method == "POST":
        try:
            services.customer_profile_update(
                actor=_actor(request),
                first_name=request.POST.get("first_name", ""),
                last_name=request.POST.get("last_name", ""),
                request=request,
            )
            messages.success(request, _("Profile saved."))
            return redirect("customer:profile")
        except PortalError as exc:
            messages.error(request, exc.message)
    return render(request, "customers/profile.html", {"tenant": tenant, "is_owner": _is_owner(request)})
