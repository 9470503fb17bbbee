"""Template tags of the provider-methods panel (templates/tenants/_capabilities.html): the
stored probe result of a connection and whether the viewer may ask for a new one."""

from __future__ import annotations

from typing import Any

from django import template

from tenants.capability_probe import can_check, capability_rows
from tenants.models import ProviderConnection

register = template.Library()


@register.simple_tag
def connection_capabilities(connection: ProviderConnection) -> dict[str, Any]:
    rows = capability_rows(connection)
    return {"rows": rows, "missing": [row for row in rows if row["state"] == "missing"]}


@register.simple_tag
def can_check_capabilities(user: Any) -> bool:
    return can_check(user)
