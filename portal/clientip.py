"""The one answer to "which address is this client?", used by the login lockout, the audit
log and the API throttle.

`PROXY_COUNT` says how many reverse proxies stand in front of the portal. Each proxy appends
the address it received the connection from to `X-Forwarded-For`, so with N trusted proxies
the N-th entry from the right is the address the outermost one saw: the client. Anything to
the left of it was written by the client itself and proves nothing. With no proxies the
header is never read, since anyone can send it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Protocol

from django.conf import settings


class _HasMeta(Protocol):
    """A Django request, or a REST framework request wrapping one."""

    @property
    def META(self) -> Mapping[str, Any]: ...  # noqa: N802 (Django's name)


def _ip_or_none(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: _HasMeta) -> str:
    """The client's address: REMOTE_ADDR with no proxies; otherwise the PROXY_COUNT-th entry
    from the right of X-Forwarded-For, or REMOTE_ADDR when the header is missing, shorter
    than that, or holds no valid IP address there."""
    remote_addr = str(request.META.get("REMOTE_ADDR") or "")
    proxies = int(getattr(settings, "PROXY_COUNT", 0) or 0)
    if proxies <= 0:
        return remote_addr
    entries = str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
    if len(entries) < proxies:
        return remote_addr
    return _ip_or_none(entries[-proxies]) or remote_addr
