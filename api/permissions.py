"""Permissions ask for a portal permission (portal.roles.PERMISSIONS), never a role name.

For a token the role is the token's (set by the authentication class), so a billing-scoped
token of an admin can move money but not freeze tenants."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from portal.roles import PERMISSIONS, has_perm


def Perm(permission: str) -> type[BasePermission]:  # noqa: N802 - reads like a class in views
    if permission not in PERMISSIONS:
        raise KeyError(permission)

    class _Perm(BasePermission):
        message = "Your role does not include this."

        def has_permission(self, request: Request, view: Any) -> bool:
            return bool(request.user and request.user.is_authenticated and has_perm(request.user, permission))

    _Perm.__name__ = f"Perm_{permission.replace('.', '_')}"
    return _Perm
