"""``{% load portal_roles %}``: ``{% if request.user|may:"billing.sync" %}`` asks
portal.roles.PERMISSIONS, the table every view's ``require`` and every service's
``check_permission`` read, so a page offers a button exactly when the POST behind it would be
allowed. Templates never name roles."""

from __future__ import annotations

from typing import Any

from django import template

from portal.roles import has_perm

register = template.Library()


@register.filter(name="may")
def may(user: Any, permission: str) -> bool:
    return has_perm(user, permission)
