"""Provider secrets stored with a tenant: decrypted only for provider calls, and rotated to
the newest key."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from portal.audit import audit_log
from portal.crypto import decrypt_json, reencrypt
from portal.roles import Actor
from tenants.models import Tenant, TenantOperation

Op = TenantOperation

logger = logging.getLogger("tenants")


def tenant_secrets(*, tenant: Tenant) -> dict[str, Any]:
    """Decrypted provider secrets, for provider calls only; never for templates or customers."""
    return decrypt_json(tenant.secrets_encrypted)


def tenant_secrets_rotate(*, batch_size: int = 1000, actor: Actor = None) -> int:
    """Re-encrypt every stored secret with the newest FIELD_ENCRYPTION_KEYS key (run after adding
    a key in front; drop the old key once this finished). Returns the number of values rotated."""
    rotated = 0
    models: list[Any] = [Tenant, Op]
    for model in models:
        last = 0
        while True:
            batch = list(
                model.objects.filter(pk__gt=last)
                .exclude(secrets_encrypted="")
                .order_by("pk")
                .only("pk", "secrets_encrypted")[:batch_size]
            )
            if not batch:
                break
            with transaction.atomic():
                for row in batch:
                    model.objects.filter(pk=row.pk, secrets_encrypted=row.secrets_encrypted).update(
                        secrets_encrypted=reencrypt(row.secrets_encrypted)
                    )
            rotated += len(batch)
            last = batch[-1].pk
    with transaction.atomic():
        audit_log(actor=actor, action="tenants.secrets.rotated", data={"values": rotated})
    return rotated
