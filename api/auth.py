"""How an API request says who it is: a bearer token (automation) or the browser session
(the docs page, with CSRF enforced as for any session write)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from api.tokens import api_token_authenticate
from portal.models import ApiToken
from portal.roles import Role, role_of


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = api_token_authenticate(raw.strip())
        if token is None:
            raise exceptions.AuthenticationFailed("The token is not valid, expired or revoked.")
        user = token.user
        # The token's role, not the user's, decides what the request may do.
        user.__dict__["_portal_role"] = Role(token.role)  # read by portal.roles.role_of
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication (CSRF enforced), for logged-in users of the docs page."""


def api_role(request: Request) -> Role | None:
    return role_of(request.user)


def api_token_tenant_id(request: Request) -> int | None:
    auth = getattr(request, "auth", None)
    return auth.tenant_id if isinstance(auth, ApiToken) else None


class ApiTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "api.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "rp_<prefix>_<secret>, from the console"}


class SessionScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "api.auth.SessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
