"""API tokens: services (create, revoke), selectors, and the check that a token may still act.

A token is ``rp_<prefix>_<secret>``. The prefix (10 hex chars) is stored and indexed for the
lookup; the secret (32 random bytes) is stored only as its sha256, compared in constant time.
Plain sha256 is enough here, unlike passwords: the secret has 256 bits of entropy, so there is
nothing to brute-force, and a slow hash would put a KDF on every API request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone

from customers.selectors import membership_tenant
from portal import inputs
from portal.audit import audit_log
from portal.errors import PortalError
from portal.models import ApiToken
from portal.roles import CUSTOMER_ROLES, STAFF_ROLES, Role, remember_role, role_group_subquery, role_of
from tenants.selectors import tenant_for_user

TOKEN_PREFIX = "rp"
# last_used_at is a hint for humans; writing it on every request would turn reads into writes.
LAST_USED_GRANULARITY = timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def staff_roles_grantable_by(user: Any) -> list[Role]:
    """A reseller admin may mint a token for any staff role; other staff only for their own."""
    role = role_of(user)
    if role == Role.RESELLER_ADMIN:
        return [Role.RESELLER_ADMIN, Role.RESELLER_BILLING, Role.RESELLER_SUPPORT]
    if role in STAFF_ROLES:
        return [role]
    return []


def api_token_create(
    *,
    actor: Any,
    name: str,
    role: str,
    tenant: Any = None,
    expires_in_days: int | None = None,
    request: HttpRequest | None = None,
) -> tuple[ApiToken, str]:
    """Returns the token row and the plaintext token, which is never stored and never shown again.

    Staff tokens: ``role`` must be grantable by the actor. Customer tokens: ``tenant`` must be the
    actor's own tenant and the actor its owner; the token is always read-only (customer_viewer)."""
    name = inputs.text(name, field="name", label="token name", max_length=100, required=True)
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        raise PortalError("Expiry must be between 1 and 3650 days.", field="expires_in_days")
    actor_role = role_of(actor)
    if tenant is None:
        if role not in staff_roles_grantable_by(actor):
            raise PortalError(
                "You may not create a token with this role.", field="role", status=403, code="permission_denied"
            )
        tenant_id = None
    else:
        own = tenant_for_user(user=actor)
        if actor_role != Role.CUSTOMER_OWNER or own is None or own.pk != tenant.pk:
            raise PortalError(
                "Only the company's owner may create its API tokens.", status=403, code="permission_denied"
            )
        role = Role.CUSTOMER_VIEWER
        tenant_id = tenant.pk
    prefix = secrets.token_hex(5)
    secret = secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    with transaction.atomic():
        token = ApiToken.objects.create(
            name=name,
            prefix=prefix,
            secret_hash=_hash(secret),
            user=actor,
            role=str(role),
            tenant_id=tenant_id,
            created_by=actor,
            expires_at=expires_at,
        )
        audit_log(
            actor=actor,
            action="portal.api_token.created",
            tenant_id=tenant_id,
            data={"token": str(token.uuid), "name": name, "role": str(role), "prefix": prefix},
            request=request,
        )
    return token, f"{TOKEN_PREFIX}_{prefix}_{secret}"


def api_token_revoke(*, actor: Any, token: ApiToken, request: HttpRequest | None = None) -> ApiToken:
    with transaction.atomic():
        # Conditional update: two revokes at once write one audit row.
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if updated:
            audit_log(
                actor=actor,
                action="portal.api_token.revoked",
                tenant_id=token.tenant_id,
                data={"token": str(token.uuid), "name": token.name, "prefix": token.prefix},
                request=request,
            )
    token.refresh_from_db()
    return token


def api_tokens_visible_to(*, user: Any) -> QuerySet[ApiToken]:
    """Reseller admins see every staff token; other staff their own; customer owners their tenant's."""
    role = role_of(user)
    tokens = ApiToken.objects.select_related("user")
    if role == Role.RESELLER_ADMIN:
        return tokens.filter(tenant_id__isnull=True)
    if role in STAFF_ROLES:
        return tokens.filter(user=user, tenant_id__isnull=True)
    if role == Role.CUSTOMER_OWNER:
        tenant = tenant_for_user(user=user)
        if tenant is not None:
            return tokens.filter(tenant_id=tenant.pk)
    return tokens.none()


def api_token_get(*, user: Any, uuid: Any) -> ApiToken:
    token = api_tokens_visible_to(user=user).filter(uuid=uuid).first()
    if token is None:
        raise Http404
    return token


def token_is_usable(token: ApiToken, *, now: datetime | None = None) -> bool:
    """Re-checked on every request: the owner's role or membership may have changed since."""
    now = now or timezone.now()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return False
    user = token.user
    if not user.is_active:
        return False
    owner_role = role_of(user)
    if token.tenant_id is None:
        if token.role not in STAFF_ROLES:
            return False
        return owner_role == Role.RESELLER_ADMIN or owner_role == token.role
    if token.role not in CUSTOMER_ROLES or owner_role not in CUSTOMER_ROLES:
        return False

    # The owner's membership now (cached on the user for the rest of the request).
    tenant = membership_tenant(user=user)
    return tenant is not None and tenant.pk == token.tenant_id and tenant.status != tenant.Status.CLOSED


def api_token_authenticate(raw: str) -> ApiToken | None:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2] or len(raw) > 200:
        return None
    # One query: the token, its owner and the owner's role group (kept on the user for the
    # request, so neither the usability check nor any permission check reads it again).
    token = (
        ApiToken.objects.select_related("user")
        .annotate(owner_role_group=role_group_subquery("user_id"))
        .filter(prefix=parts[1])
        .first()
    )
    if token is None or not hmac.compare_digest(token.secret_hash, _hash(parts[2])):
        return None
    remember_role(token.user, [token.owner_role_group])  # type: ignore[attr-defined]
    now = timezone.now()
    if not token_is_usable(token, now=now):
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
