"""The staff banner that says a provider connection does not answer. It lives at the top of the
layers because it reads the tenants app's connections."""

import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.core.cache import cache
from django.http import HttpRequest

from portal.roles import is_staff_role
from tenants.models import ProviderConnection

# Provider reachability for the staff banner: the active connections and one TCP connect per
# provider address, at most once a minute, shared through the cache by every page view (and, on
# Redis, by every process). Between checks a page view costs one cache read: no query, no connect.
REACHABILITY_KEY = "console:provider-reachability"
REACHABILITY_SECONDS = 60
CONNECT_TIMEOUT = 1.0


def _address(base_url: str) -> str | None:
    parts = urlsplit(base_url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return f"{parts.hostname}:{port}" if parts.hostname else None


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def _reachability() -> dict[str, Any]:
    state = cache.get(REACHABILITY_KEY) or {}
    now = time.time()
    if now - state.get("checked_at", 0) < REACHABILITY_SECONDS:
        return state
    connections = [
        (name, address)
        for name, base_url in ProviderConnection.objects.filter(is_active=True)
        .order_by("name")
        .values_list("name", "base_url")
        if (address := _address(base_url)) is not None
    ]
    before: dict[str, float] = state.get("down", {})
    # Down since the first check that found it down; an address that answers starts afresh.
    down = {
        address: before.get(address, now)
        for address in sorted({address for _, address in connections})
        if not _answers(address)
    }
    state = {"checked_at": now, "connections": connections, "down": down}
    cache.set(REACHABILITY_KEY, state, None)
    return state


def provider_alerts() -> list[dict[str, Any]]:
    """The active provider connections whose provider did not answer the last check."""
    state = _reachability()
    return [
        {"name": name, "address": address, "since": datetime.fromtimestamp(state["down"][address], UTC)}
        for name, address in state["connections"]
        if address in state["down"]
    ]


def provider_banner(request: HttpRequest) -> dict[str, Any]:
    """For staff pages: ``provider_alerts``, looked up only when a page shows the banner (the
    template calls it), once per request. Customers never get it."""
    user = getattr(request, "user", None)
    if user is None or not is_staff_role(user):
        return {}
    found: list[list[dict[str, Any]]] = []

    def alerts() -> list[dict[str, Any]]:
        if not found:
            found.append(provider_alerts())
        return found[0]

    return {"provider_alerts": alerts}
