"""Roles are Django groups. A user has at most one; staff roles and customer roles never mix."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.translation import gettext_lazy as _

from portal.errors import NotAllowed

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


class Role(enum.StrEnum):
    RESELLER_ADMIN = "reseller_admin"
    RESELLER_BILLING = "reseller_billing"
    RESELLER_SUPPORT = "reseller_support"
    CUSTOMER_OWNER = "customer_owner"
    CUSTOMER_VIEWER = "customer_viewer"

    @property
    def label(self) -> str:
        return str(ROLE_LABELS[self.value])


# The roles as people read them, in the active language.
ROLE_LABELS = {
    "reseller_admin": _("Reseller admin"),
    "reseller_billing": _("Reseller billing"),
    "reseller_support": _("Reseller support"),
    "customer_owner": _("Customer owner"),
    "customer_viewer": _("Customer viewer"),
}


# Who does something: a signed-in user, an anonymous visitor, or None for the system (a task,
# the sweeper, a command).
Actor: TypeAlias = "User | AnonymousUser | None"

STAFF_ROLES = frozenset({Role.RESELLER_ADMIN, Role.RESELLER_BILLING, Role.RESELLER_SUPPORT})
CUSTOMER_ROLES = frozenset({Role.CUSTOMER_OWNER, Role.CUSTOMER_VIEWER})

# What each staff role may do; pages and actions ask for a permission, not a role name.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "console.view": frozenset(STAFF_ROLES),
    "tenants.manage": frozenset({Role.RESELLER_ADMIN}),
    "tenants.freeze": frozenset({Role.RESELLER_ADMIN, Role.RESELLER_SUPPORT}),
    "billing.move_money": frozenset({Role.RESELLER_ADMIN, Role.RESELLER_BILLING}),
    "billing.sync": frozenset({Role.RESELLER_ADMIN, Role.RESELLER_BILLING}),
    "audit.view": frozenset({Role.RESELLER_ADMIN}),
    "customer.view": frozenset(CUSTOMER_ROLES),
    "customer.manage": frozenset({Role.CUSTOMER_OWNER}),
}


def role_of(user: Any) -> Role | None:
    """The user's role, read once per user object (a request's user keeps it)."""
    if not getattr(user, "is_authenticated", False):
        return None
    cached = getattr(user, "_portal_role", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return,return-value]
    return remember_role(user, user.groups.values_list("name", flat=True))


def remember_role(user: Any, group_names: Iterable[str | None]) -> Role | None:
    """Set the role ``role_of`` answers for ``user`` from its group names, already read
    (e.g. with the row that brought the user, see ``role_group_subquery``)."""
    names = set(group_names)
    role = next((r for r in Role if r.value in names), None)
    if role is None and user.is_superuser:
        role = Role.RESELLER_ADMIN
    user._portal_role = role
    return role


def role_group_subquery(user_ref: str) -> Any:
    """The name of the role group of the user ``user_ref`` (a field path of the outer query)
    names, for one query to bring the user and its role: the first role in ``Role``'s order
    when a user is in several groups, as ``role_of`` takes it. None: no role group."""
    from django.contrib.auth.models import Group
    from django.db.models import Case, IntegerField, OuterRef, Subquery, Value, When

    rank = Case(
        *(When(name=r.value, then=Value(i)) for i, r in enumerate(Role)),
        output_field=IntegerField(),
    )
    groups = Group.objects.filter(user=OuterRef(user_ref), name__in=[r.value for r in Role])
    return Subquery(groups.order_by(rank).values("name")[:1])


def has_perm(user: Any, permission: str) -> bool:
    role = role_of(user)
    return role is not None and role in PERMISSIONS[permission]


def check_permission(actor: Any, permission: str, *, doing: str) -> None:
    """The guard every state-changing service runs first, whoever calls it (a view, the API, the
    admin, a command): NotAllowed (403) unless the actor's role has the permission."""
    if permission not in PERMISSIONS:
        raise KeyError(permission)
    if not has_perm(actor, permission):
        raise NotAllowed(f"You may not {doing}.", code="forbidden")


def is_staff_role(user: Any) -> bool:
    return role_of(user) in STAFF_ROLES


F = TypeVar("F", bound=Callable[..., HttpResponseBase])


def require(permission: str) -> Callable[[F], F]:
    """View decorator: anonymous users go to the login page, others without the permission get 403."""
    if permission not in PERMISSIONS:
        raise KeyError(permission)

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_perm(request.user, permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def group_for(role: Role | str) -> Any:
    """The group of a role. Created on demand: a migration makes them, but a flushed test
    database (transactional tests) has none."""
    from django.contrib.auth.models import Group

    return Group.objects.get_or_create(name=Role(role).value)[0]


def assign_role(user: Any, role: Role | str) -> None:
    """Give a user exactly one role."""
    user.groups.remove(*user.groups.filter(name__in=[r.value for r in Role]))
    user.groups.add(group_for(role))
    user.__dict__.pop("_portal_role", None)
