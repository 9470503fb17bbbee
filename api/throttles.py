from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from portal.clientip import client_ip
from portal.models import ApiToken


class PerTokenThrottle(SimpleRateThrottle):
    """One budget per token (so one runaway script cannot starve its owner's other tokens or
    the console); session users get one per user, anonymous callers one per address."""

    scope = "api"

    def get_rate(self) -> str:
        return str(getattr(settings, "API_THROTTLE_RATE", "1200/min"))

    def get_ident(self, request: Request) -> str:
        # The portal's one client address (PROXY_COUNT), not REST framework's own reading of
        # X-Forwarded-For, which trusts the header whole when no proxy count is set.
        return client_ip(request)

    def get_cache_key(self, request: Request, view: Any) -> str:
        auth = getattr(request, "auth", None)
        if isinstance(auth, ApiToken):
            ident = f"token:{auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return f"throttle_{self.scope}_{ident}"
