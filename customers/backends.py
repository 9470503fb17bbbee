"""Login refuses users of closed tenants (the middleware ends sessions that predate the close)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from tenants.models import Membership, Tenant


def tenant_is_closed_for(user: Any) -> bool:

    return Membership.objects.filter(user_id=user.pk, tenant__status=Tenant.Status.CLOSED).exists()


class TenantAwareModelBackend(ModelBackend):
    def user_can_authenticate(self, user: Any) -> bool:
        return super().user_can_authenticate(user) and not tenant_is_closed_for(user)

    def get_user(self, user_id: Any) -> Any:
        # Sessions: only the is_active check here; ClosedTenantMiddleware handles a closed
        # tenant (logs out with a message) so each request pays for the check once.
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get(pk=user_id)
        except user_model.DoesNotExist:
            return None
        return user if ModelBackend.user_can_authenticate(self, user) else None
