from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from portal.roles import has_perm, role_of

# (label, url name, permission). Apps add their pages here; a page a role may not use is not shown.
NAVIGATION = [
    (_("Console"), "console:home", "console.view"),
    (_("Tenants"), "tenants:list", "console.view"),
    (_("Transfers"), "billing:transfers", "console.view"),
    (_("Sync"), "billing:sync_runs", "console.view"),
    (_("Plans"), "reselling:plans", "billing.move_money"),
    (_("Margin"), "reselling:margin", "billing.move_money"),
    (_("Invoices"), "reselling:invoices", "console.view"),
    (_("Audit log"), "audit", "audit.view"),
    (_("My company"), "customer:home", "customer.view"),
    (_("Statement"), "customer:statement", "customer.view"),
    (_("Invoices"), "customer:invoices", "customer.view"),
    (_("Team"), "customer:team", "customer.manage"),
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": [], "user_role": None}
    from portal.twofactor import is_verified, needs_two_factor

    if needs_two_factor(user) and not is_verified(request):
        # Signed in with the password only: no page but the code's is open yet.
        return {"nav_items": [], "user_role": role_of(user), "two_factor_pending": True}
    items = []
    for label, name, permission in NAVIGATION:
        if not has_perm(user, permission):
            continue
        items.append({"label": label, "url": reverse(name)})
    return {"nav_items": items, "user_role": role_of(user)}
