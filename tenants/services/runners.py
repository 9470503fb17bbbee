"""What a worker does for each kind of operation: create or clone the account, freeze or
unfreeze it, and the dispatch (operation_run) that also runs the staged close."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError

from portal.crypto import decrypt_json, encrypt_json
from providers.base import CreatedAccount
from providers.capabilities import Capability
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    Duplicate,
    NotFound,
    NotSent,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from tenants.connections import client_for
from tenants.models import Tenant, TenantOperation
from tenants.services.close import _run_close
from tenants.services.edit import RUNNERS
from tenants.services.operations import _call, _claim, _describe, _form_field, _not_answered, _settle, _Stale
from tenants.services.validation import generate_password

Op = TenantOperation

logger = logging.getLogger("tenants")


def operation_run(*, operation_id: int) -> str:
    """Run one attempt of an operation (the body of tenants.tasks.run_operation)."""
    op = _claim(operation_id)
    if op is None:
        return "not claimed"
    handlers: dict[str, Callable[[Op], None]] = {
        Op.Kind.CREATE: _run_create,
        Op.Kind.CLONE: _run_create,
        Op.Kind.FREEZE: _run_toggle,
        Op.Kind.UNFREEZE: _run_toggle,
        Op.Kind.CLOSE: _run_close,
        **RUNNERS,
    }
    try:
        handlers[op.kind](op)
    except _Stale:
        logger.warning("tenant operation %s was taken over by another worker; dropping attempt %s", op.pk, op.attempt)
        return "stale"
    except Exception as exc:  # noqa: BLE001 - a bug must leave a visible state, not a silent 'sending'
        logger.exception("tenant operation %s crashed", op.pk)
        try:
            _settle(
                op,
                state=Op.State.NEEDS_ATTENTION,
                failures=op.failures + 1,
                message=f"Internal error ({type(exc).__name__}); see the logs, then retry.",
            )
        except _Stale:
            pass
        return "crashed"
    return "ran"


def _provisioned(
    op: Op, tenant: Tenant, *, account_id: Any, secrets_out: dict[str, str], active: bool | None, recovered: bool
) -> None:
    numeric = account_id if isinstance(account_id, int) and not isinstance(account_id, bool) else None
    # The tenant is active only when the provider says the account is: a clone comes back
    # disabled, and the follow-up (tenants.services.edit) enables it first.
    enabled = active is not False
    updates: dict[str, Any] = {
        "provider_account_id": numeric,
        "provider_account_ref": str(account_id),
        "status": Tenant.Status.ACTIVE if enabled else Tenant.Status.PROVISIONING,
        "status_reason": "" if enabled else "Created disabled at the provider; enabling it.",
        "provider_active": enabled,
    }
    if secrets_out:
        updates["secrets_encrypted"] = encrypt_json(secrets_out)
    note = " (found at the provider after a lost reply)" if recovered else ""
    if op.params.get("without_clone"):
        note += f". Only the portal settings were copied: {op.params['without_clone']}"
    try:
        _settle(
            op,
            state=Op.State.SUCCEEDED,
            message=f"Provider account {account_id} is {'ready' if enabled else 'created, disabled'}{note}.",
            tenant_updates=updates,
            audit=(
                "tenants.tenant.provisioned",
                {"provider_account": str(account_id), "recovered": recovered, "secrets_stored": sorted(secrets_out)},
            ),
        )
    except IntegrityError:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            message=(
                f"The provider created account {account_id}, but another tenant already stands for it. "
                "Resolve the duplicate, then abandon this operation."
            ),
        )


def _created_secrets(created: CreatedAccount) -> dict[str, str]:
    """The secrets the provider returned for a new account, to be stored encrypted."""
    return {
        name: secret.reveal()
        for name, secret in (("api_key", created.api_key), ("api_token", created.api_token))
        if secret is not None
    }


def _run_create(op: Op) -> None:

    tenant = op.tenant
    what = "Creating the account" if op.kind == Op.Kind.CREATE else "Cloning the account"
    password = decrypt_json(op.secrets_encrypted).get("password") or generate_password()
    try:
        client = client_for(tenant.connection)
    except ProviderError as exc:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            failures=op.failures + 1,
            message=f"{what}: the provider connection is not usable ({exc}).",
        )
        return
    with client:
        recoverable = client.supports(Capability.RECOVERABLE_CREATE)
        try:
            # Any earlier attempt may have reached the provider: look before acting again.
            if op.attempt > 1 and recoverable:
                found = client.find_account(name=tenant.account_name)
                if found is not None:
                    _provisioned(
                        op, tenant, account_id=found.account_id, secrets_out={}, active=found.active, recovered=True
                    )
                    return
            if op.kind == Op.Kind.CREATE or op.params.get("mode") == "create":
                created = client.create_account(
                    name=tenant.account_name,
                    email=tenant.account_email,
                    password=password,
                    first_name=(tenant.contact_name or tenant.company_name)[:50] or None,
                    managed=tenant.voiceit_type != Tenant.VoiceItType.UNMANAGED,
                )
            else:
                source_account = op.params.get("source_account", "")
                created = client.clone_account(
                    source_account_id=int(source_account) if source_account.isdigit() else source_account,
                    name=tenant.account_name,
                    email=tenant.account_email,
                    password=password,
                )
        except (OutcomeUnknown, NotSent, RateLimited) as exc:
            _not_answered(op, exc, lookup_possible=recoverable, what=what)
            return
        except Duplicate as exc:
            if exc.code == 514:  # "account creation has already started": an earlier attempt is in flight
                _not_answered(op, OutcomeUnknown(str(exc)), lookup_possible=recoverable, what=what)
                return
            _create_failed(op, exc)
            return
        except (AuthenticationError, ConfigurationError) as exc:
            _settle(
                op,
                state=Op.State.NEEDS_ATTENTION,
                failures=op.failures + 1,
                message=f"{what}: the provider refused the reseller's credentials ({exc}). Fix the connection, "
                "then retry.",
                audit=("tenants.operation.needs_attention", {"error": str(exc)}),
            )
            return
        except NotFound as exc:
            _create_failed(op, exc)
            return
        except ProviderError as exc:
            _create_failed(op, exc)
            return
    _provisioned(
        op,
        tenant,
        account_id=created.account_id,
        secrets_out=_created_secrets(created),
        active=created.active,
        recovered=False,
    )


def _create_failed(op: Op, exc: Exception) -> None:
    message = _describe(exc)
    field = _form_field(getattr(exc, "field", None))
    _settle(
        op,
        state=Op.State.FAILED,
        message=message,
        error_field=field,
        tenant_updates={"status": Tenant.Status.FAILED, "status_reason": message[:500]},
        audit=(
            "tenants.tenant.provisioning_failed",
            {"error": message, "field": field, "code": str(getattr(exc, "code", ""))},
        ),
    )


def _run_toggle(op: Op) -> None:

    tenant = op.tenant
    freeze = op.kind == Op.Kind.FREEZE
    what = "Freezing" if freeze else "Unfreezing"

    # Setting "active" is idempotent, so an unanswered attempt is simply sent again.
    def toggle(client: Any) -> None:
        (client.freeze_account if freeze else client.unfreeze_account)(tenant.provider_account)

    if not _call(op, what, toggle, failed_audit=f"tenants.tenant.{op.kind}_failed"):
        return
    if freeze:
        updates = {"status": Tenant.Status.FROZEN, "status_reason": op.reason, "provider_active": False}
        message, action = "Frozen at the provider.", "tenants.tenant.frozen"
    else:
        updates = {"status": Tenant.Status.ACTIVE, "status_reason": "", "provider_active": True}
        message, action = "Active again at the provider.", "tenants.tenant.unfrozen"
    _settle(
        op, state=Op.State.SUCCEEDED, message=message, tenant_updates=updates, audit=(action, {"reason": op.reason})
    )


# --- close ---------------------------------------------------------------------------------
