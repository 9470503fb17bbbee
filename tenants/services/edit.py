"""Changes to a tenant after it exists: the staff edit (portal fields at once, provider fields
through a tracked operation), enabling the account at the provider, pushing the low-balance
threshold to the provider and rotating a VoiceIt sub-account's token.

Every provider-touching change here is a TenantOperation of the engine in ``operations``:
committed with its Job and audit row before any call, claimed with a compare-and-swap and
settled only by the claim's owner. Setting an email, a password, ``active`` or
``min_balance_to_notify`` is idempotent (it sets a value), so an unanswered attempt is simply
sent again; a rotation is not, and asks a human instead.

Follow-ups: when an operation succeeds, ``_follow_up`` starts what the tenant still needs, in
the same transaction: a new account the provider reports disabled is enabled (ACTIVATE), then
a threshold the provider does not hold yet is pushed (SET_THRESHOLD). Create, clone, import,
an edit, and a threshold change made while another operation was running all end there.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext

from portal import inputs
from portal.audit import audit_log
from portal.crypto import decrypt_json, encrypt_json
from portal.errors import Conflict, NotAllowed, PortalError
from portal.events import publish_on_commit
from portal.mail import site_link, templated_email
from portal.roles import Actor, Role, check_permission, has_perm, role_of
from providers.capabilities import Capability
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFound,
    NotSent,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from tenants.connections import capability_matrix, client_for, unavailable
from tenants.mail import owner_messages
from tenants.models import Membership, Tenant, TenantOperation, UnknownProviderAccount
from tenants.selectors import owner_emails
from tenants.services.operations import (
    AFTER_SUCCESS,
    _call,
    _describe,
    _not_answered,
    _settle,
    _start_operation,
)
from tenants.services.validation import _password_rules

Op = TenantOperation

logger = logging.getLogger("tenants")

# The words the tenant page and the status reason use for an account the provider keeps disabled.
DISABLED_AT_PROVIDER = "Disabled at the provider"
PORTAL_FIELDS = ("company_name", "contact_name", "contact_email", "notes", "plan")
PROVIDER_FIELDS = ("account_email", "account_name", "password")
ROTATE_DELIVERIES = ("show", "email")


# --- who may, and what is possible --------------------------------------------------------


def threshold_local_reason(tenant: Tenant) -> str | None:
    """Why the provider cannot hold this tenant's low-balance threshold (the portal keeps it
    and sends its own alerts), or None when it can."""
    matrix = capability_matrix(tenant.connection)
    if matrix.supports(Capability.UPDATE_PROFILE):
        return None
    return (
        "The provider has no low-balance threshold to set; the portal keeps it and sends the alerts "
        f"itself. ({matrix.reason(Capability.UPDATE_PROFILE)})"
    )


def editable_provider_fields(tenant: Tenant) -> dict[str, str | None]:
    """{field: None if it can be changed at this provider, else why not}."""
    matrix = capability_matrix(tenant.connection)
    profile = None if matrix.supports(Capability.UPDATE_PROFILE) else matrix.reason(Capability.UPDATE_PROFILE)
    return {
        # Voximplant's SetChildAccountInfo changes the email and the password, never the name.
        "account_name": "The provider has no call to rename an account; the name is fixed at creation.",
        "account_email": profile,
        "password": profile,
    }


def activate_refusal(tenant: Tenant) -> str | None:
    """Why the account cannot be enabled at the provider now, or None."""
    if (refusal := unavailable(tenant.connection, Capability.UNFREEZE)) is not None:
        return refusal
    if tenant.provider_account is None:
        return "This tenant has no provider account."
    if tenant.provider_active is True:
        return "The provider already reports this account enabled."
    if tenant.status == Tenant.Status.FROZEN and not tenant.status_reason.startswith(DISABLED_AT_PROVIDER):
        return "This tenant was frozen on purpose; unfreeze it instead."
    if tenant.status not in (Tenant.Status.PROVISIONING, Tenant.Status.ACTIVE, Tenant.Status.FROZEN):
        return f"A {tenant.get_status_display().lower()} tenant cannot be enabled."
    return None


def rotate_refusal(tenant: Tenant) -> str | None:
    if (refusal := unavailable(tenant.connection, Capability.ROTATE_CREDENTIALS)) is not None:
        return refusal
    if not tenant.is_open or tenant.provider_account is None:
        return "Only an active or frozen tenant with a provider account has credentials to rotate."
    return None


def may_set_threshold(actor: Actor, tenant: Tenant) -> bool:
    """The same people as billing's threshold service: staff who manage tenants or move money,
    and the tenant's own customer owner."""
    if has_perm(actor, "tenants.manage") or has_perm(actor, "billing.move_money"):
        return True
    return (
        isinstance(actor, User)
        and role_of(actor) == Role.CUSTOMER_OWNER
        and Membership.objects.filter(user_id=actor.pk, tenant_id=tenant.pk).exists()
    )


def _threshold_pending(tenant: Tenant) -> bool:
    """The provider should hold the portal's value and (as far as the portal knows) does not."""
    if tenant.provider_account is None or not tenant.is_open or threshold_local_reason(tenant):
        return False
    if tenant.low_balance_threshold is None:
        # Never set in the portal: only clear a value the portal itself pushed earlier.
        return tenant.provider_threshold not in (None, Decimal(0))
    return tenant.provider_threshold != tenant.low_balance_threshold


# --- the threshold -------------------------------------------------------------------------


def tenant_push_threshold(
    *, actor: Actor, tenant: Tenant, threshold: Decimal | None, request: HttpRequest | None = None
) -> Op:
    """A tracked SET_THRESHOLD operation: SetChildAccountInfo min_balance_to_notify (None sends
    0, which turns the provider's warning off). On success tenant.provider_threshold holds what
    the provider accepted. Where the provider has no threshold the operation is recorded as
    done in the portal only, with the reason. The value is billing's to set
    (billing.alerts.tenant_set_low_balance_threshold), which calls this."""
    if not may_set_threshold(actor, tenant):
        raise NotAllowed("You may not change the low-balance threshold.", code="forbidden")
    value = inputs.threshold(threshold, field="low_balance_threshold")
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().select_related("connection").get(pk=tenant.pk)
        if locked.provider_account is None or not locked.is_open:
            raise Conflict(
                "The threshold is pushed once the provider account exists and the tenant is open.",
                code="not_allowed_now",
            )
        return _threshold_op(actor=actor, tenant=locked, value=value, request=request)


def _threshold_op(*, actor: Actor, tenant: Tenant, value: Decimal | None, request: HttpRequest | None) -> Op:
    local = threshold_local_reason(tenant)
    sent = value if value is not None else Decimal(0)
    op = _start_operation(
        tenant=tenant,
        kind=Op.Kind.SET_THRESHOLD,
        actor=actor,
        params={"threshold": str(sent), "local_only": bool(local)},
        enqueue=not local,
    )
    audit_log(
        actor=actor,
        action="tenants.threshold.push_requested",
        tenant_id=tenant.pk,
        request=request,
        data={"threshold": str(sent), "operation": str(op.uuid), "kept_in_portal_only": bool(local)},
    )
    if local:
        # Nothing to send: record the operation as done, saying where the value lives.
        now = timezone.now()
        Op.objects.filter(pk=op.pk).update(state=Op.State.SUCCEEDED, finished_at=now, secrets_encrypted="")
        if op.job_id:
            from portal.jobs import job_finish

            job_finish(job_id=op.job_id, ok=True, message=f"Kept in the portal only. {local}")
        op.refresh_from_db()
    return op


def _run_threshold(op: Op) -> None:
    tenant = op.tenant
    value = Decimal(op.params.get("threshold", "0"))
    what = "Setting the low-balance threshold"
    if not _call(op, what, lambda client: client.set_low_balance_threshold(tenant.provider_account, value)):
        return
    _settle(
        op,
        state=Op.State.SUCCEEDED,
        message=f"The provider now warns below {value} {tenant.currency}.",
        tenant_updates={"provider_threshold": value},
        audit=("tenants.threshold.pushed", {"threshold": str(value)}),
    )


# --- enabling at the provider --------------------------------------------------------------


def tenant_activate(*, actor: Actor, tenant: Tenant, request: HttpRequest | None = None) -> Op:
    """A tracked ACTIVATE operation: SetChildAccountInfo active=true, then the account is read
    back; the tenant becomes active only when the provider reports it enabled."""
    check_permission(actor, "tenants.manage", doing="enable tenants at the provider")
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().select_related("connection").get(pk=tenant.pk)
        refusal = activate_refusal(locked)
        if refusal:
            raise Conflict(refusal, code="not_allowed_now")
        op = _start_operation(tenant=locked, kind=Op.Kind.ACTIVATE, actor=actor)
        audit_log(
            actor=actor,
            action="tenants.tenant.activate_requested",
            tenant_id=locked.pk,
            request=request,
            data={"operation": str(op.uuid), "previous_status": locked.status},
        )
    return op


def _disabled(op: Op, message: str, *, state: str, failures: int | None = None) -> None:
    """Activation did not happen: say so on the tenant (its service is off at the provider)."""
    updates: dict[str, Any] = {}
    tenant = Tenant.objects.get(pk=op.tenant_id)
    if tenant.status in (Tenant.Status.PROVISIONING, Tenant.Status.ACTIVE):
        updates = {"status": Tenant.Status.FROZEN, "status_reason": f"{DISABLED_AT_PROVIDER}: {message}"[:500]}
    _settle(
        op,
        state=state,
        failures=failures,
        message=message,
        tenant_updates=updates,
        audit=("tenants.tenant.activation_failed", {"error": message}),
    )


def _run_activate(op: Op) -> None:
    tenant = op.tenant
    try:
        with client_for(tenant.connection) as client:
            client.unfreeze_account(tenant.provider_account)
            snapshot = (
                client.get_account(tenant.provider_account) if client.supports(Capability.LIST_ACCOUNTS) else None
            )
    except (OutcomeUnknown, NotSent, RateLimited) as exc:
        _not_answered(op, exc, lookup_possible=True, what="Enabling the account")
        return
    except (AuthenticationError, ConfigurationError, NotFound) as exc:
        _disabled(
            op,
            f"the provider refused ({exc}). Check the connection and the account, then retry.",
            state=Op.State.NEEDS_ATTENTION,
            failures=op.failures + 1,
        )
        return
    except ProviderError as exc:
        _disabled(op, f"enabling failed: {_describe(exc)}", state=Op.State.FAILED)
        return
    if snapshot is not None and snapshot.active is not True:
        _disabled(op, "the provider still reports the account disabled.", state=Op.State.FAILED)
        return
    updates: dict[str, Any] = {"status": Tenant.Status.ACTIVE, "status_reason": "", "provider_active": True}
    if snapshot is not None and snapshot.frozen is not None:
        updates["provider_frozen"] = snapshot.frozen
    _settle(
        op,
        state=Op.State.SUCCEEDED,
        message="Enabled at the provider.",
        tenant_updates=updates,
        audit=("tenants.tenant.activated", {"confirmed_by_read": snapshot is not None}),
    )


# --- the edit ------------------------------------------------------------------------------

ThresholdOwner = Callable[..., None]
_threshold_owner: list[ThresholdOwner] = []


def provide_threshold_owner(owner: ThresholdOwner) -> None:
    """Billing owns the threshold (billing.alerts.tenant_set_low_balance_threshold) and hands it
    over when Django starts, like the balance return of the close."""
    _threshold_owner[:] = [owner]


def _portal_changes(tenant: Tenant, changes: dict[str, Any]) -> dict[str, Any]:
    rules: dict[str, Callable[[Any], Any]] = {
        "company_name": lambda v: inputs.text(
            v, field="company_name", label="company name", max_length=200, required=True
        ),
        "contact_name": lambda v: inputs.text(v, field="contact_name", label="contact name", max_length=200),
        "contact_email": lambda v: inputs.email(v, field="contact_email", label="contact email", required=False),
        "notes": lambda v: inputs.text(v, field="notes", label="notes", max_length=5000, multiline=True),
        "plan": lambda v: inputs.text(v, field="plan", label="plan", max_length=100),
    }
    out = {}
    for name, rule in rules.items():
        if name in changes:
            value = rule(changes[name])
            if value != getattr(tenant, name):
                out[name] = value
    return out


def _provider_changes(tenant: Tenant, changes: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """The new account email (if it changes) and the new password (or None), validated like
    create; a field this provider cannot change is refused on that field."""
    possible = editable_provider_fields(tenant)
    out: dict[str, str] = {}
    if "account_name" in changes and str(changes["account_name"] or "") not in ("", tenant.account_name):
        raise PortalError(possible["account_name"] or "", field="account_name", code="not_editable")
    if "account_email" in changes and changes["account_email"] not in (None, ""):
        email = inputs.email(changes["account_email"], field="account_email", label="account email")
        if email.lower() != tenant.account_email.lower() or email != tenant.account_email:
            if possible["account_email"]:
                raise PortalError(possible["account_email"], field="account_email", code="not_editable")
            _check_email_free(tenant, email)
            out["account_email"] = email
    password = changes.get("password")
    secret = None
    if password not in (None, ""):
        if possible["password"]:
            raise PortalError(possible["password"], field="password", code="not_editable")
        secret = str(password)
        _password_rules(secret, tenant.connection.kind)
    return out, secret


def _check_email_free(tenant: Tenant, email: str) -> None:
    """The create rule for emails (unique across live tenants, case-insensitively, and not an
    unimported provider account), excluding this tenant itself."""
    live = Tenant.objects.exclude(status=Tenant.Status.FAILED).exclude(pk=tenant.pk)
    if live.annotate(_email=Lower("account_email")).filter(_email=email.lower()).exists():
        raise Conflict(
            "A tenant already uses this email address (emails are compared case-insensitively).", field="account_email"
        )
    if UnknownProviderAccount.objects.filter(connection=tenant.connection, account_email__iexact=email).exists():
        raise Conflict(
            "The provider already has an account with this email that the portal does not know yet.",
            field="account_email",
        )


def tenant_edit(*, actor: Actor, tenant: Tenant, request: HttpRequest | None = None, **changes: Any) -> Op | None:
    """Staff edit a tenant. Portal fields (company_name, contact_name, contact_email, notes,
    plan) change at once; the account email and password go to the provider through a tracked
    EDIT operation (returned), the threshold through billing's threshold service. Unknown fields
    are refused. Everything is validated before anything is written."""
    check_permission(actor, "tenants.manage", doing="edit tenants")
    unknown = set(changes) - {*PORTAL_FIELDS, *PROVIDER_FIELDS, "low_balance_threshold"}
    if unknown:
        raise PortalError(f"These fields cannot be edited: {', '.join(sorted(unknown))}.", code="unknown_field")
    fresh = Tenant.objects.select_related("connection").get(pk=tenant.pk)
    if fresh.status in (Tenant.Status.CLOSING, Tenant.Status.CLOSED):
        raise Conflict("A closing or closed tenant cannot be edited.", code="not_allowed_now")
    portal = _portal_changes(fresh, changes)
    provider, password = _provider_changes(fresh, changes)
    threshold_given = "low_balance_threshold" in changes
    threshold = inputs.threshold(changes.get("low_balance_threshold"), field="low_balance_threshold")
    if (provider or password) and fresh.provider_account is None:
        raise Conflict("The provider account does not exist yet; edit it once it is created.", code="not_allowed_now")
    op = None
    try:
        with transaction.atomic():
            locked = Tenant.objects.select_for_update().select_related("connection").get(pk=fresh.pk)
            if portal:
                before = {name: getattr(locked, name) for name in portal}
                Tenant.objects.filter(pk=locked.pk).update(**portal, updated_at=timezone.now())
                audit_log(
                    actor=actor,
                    action="tenants.tenant.edited",
                    tenant_id=locked.pk,
                    request=request,
                    data={"before": before, "after": portal},
                )
            if provider or password:
                op = _start_operation(
                    tenant=locked,
                    kind=Op.Kind.EDIT,
                    actor=actor,
                    params={"changes": provider, "password": bool(password)},
                    secret_inputs={"password": password} if password else None,
                )
                audit_log(
                    actor=actor,
                    action="tenants.tenant.edit_requested",
                    tenant_id=locked.pk,
                    request=request,
                    data={
                        "before": {name: getattr(locked, name) for name in provider},
                        "after": provider,
                        "password_changed": bool(password),
                        "operation": str(op.uuid),
                    },
                )
            if threshold_given and threshold != locked.low_balance_threshold:
                if not _threshold_owner:
                    raise PortalError("The threshold cannot be changed right now; try again later.")
                _threshold_owner[0](actor=actor, tenant=locked, threshold=threshold, request=request)
    except IntegrityError:
        raise Conflict("Someone changed this tenant a moment ago; reload and try again.") from None
    tenant.refresh_from_db()
    return op


def _run_edit(op: Op) -> None:
    tenant = op.tenant
    new = dict(op.params.get("changes") or {})
    password = decrypt_json(op.secrets_encrypted).get("password") if op.params.get("password") else None
    if op.params.get("password") and not password:
        _settle(op, state=Op.State.FAILED, message="The new password was lost; enter it again.")
        return
    email = new.get("account_email")
    ok = _call(
        op,
        "Editing the account",
        lambda client: client.update_account(tenant.provider_account, email=email, password=password),
        failed_audit="tenants.tenant.edit_failed",
    )
    if not ok:
        return
    try:
        _settle(
            op,
            state=Op.State.SUCCEEDED,
            message="The provider accepted the changes.",
            tenant_updates=new,
            audit=("tenants.tenant.edited_at_provider", {"after": new, "password_changed": bool(password)}),
        )
    except IntegrityError:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            message="The provider took the new email, but another tenant now uses it in the portal. Resolve it.",
        )


# --- rotation ------------------------------------------------------------------------------


def tenant_rotate(*, actor: Actor, tenant: Tenant, delivery: str, request: HttpRequest | None = None) -> Op:
    """A tracked ROTATE operation: the provider issues a new token and the old one stops
    working. The new token is kept encrypted with the tenant (the portal needs it for its own
    checks); ``delivery`` is "show" (staff see it once on the operation's page) or "email" (it
    goes to the tenant's owners, never shown in the portal)."""
    check_permission(actor, "tenants.manage", doing="rotate credentials")
    if delivery not in ROTATE_DELIVERIES:
        raise PortalError("Choose how the new credentials reach the customer.", field="delivery")
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().select_related("connection").get(pk=tenant.pk)
        refusal = rotate_refusal(locked)
        if refusal:
            raise Conflict(refusal, code="not_allowed_now")
        if delivery == "email" and not owner_emails(locked.pk):
            raise PortalError(
                "This tenant has no owner with an email address; show the credentials instead.", field="delivery"
            )
        op = _start_operation(
            tenant=locked, kind=Op.Kind.ROTATE, actor=actor, params={"delivery": delivery, "reveal": "pending"}
        )
        audit_log(
            actor=actor,
            action="tenants.credentials.rotate_requested",
            tenant_id=locked.pk,
            request=request,
            data={"operation": str(op.uuid), "delivery": delivery},
        )
    return op


def _run_rotate(op: Op) -> None:
    tenant = op.tenant
    try:
        with client_for(tenant.connection) as client:
            rotated = client.rotate_credentials(tenant.provider_account)
    except (OutcomeUnknown, NotSent, RateLimited) as exc:
        # A second rotation would be harmless but the first token may be the one in use now.
        _not_answered(op, exc, lookup_possible=False, what="Rotating the credentials")
        return
    except ProviderError as exc:
        _settle(
            op,
            state=Op.State.FAILED,
            message=f"Rotating failed: {_describe(exc)}",
            audit=("tenants.credentials.rotate_failed", {"error": str(exc)}),
        )
        return
    stored = decrypt_json(tenant.secrets_encrypted) if tenant.secrets_encrypted else {}
    stored["api_token"] = rotated.api_token.reveal()
    stored.setdefault("api_key", str(rotated.account_id))
    delivery = op.params.get("delivery", "show")
    _settle(
        op,
        state=Op.State.SUCCEEDED,
        message="New credentials issued; the old token no longer works."
        + (" They were emailed to the owners." if delivery == "email" else " Staff can see them once."),
        tenant_updates={"secrets_encrypted": encrypt_json(stored)},
        audit=("tenants.credentials.rotated", {"delivery": delivery}),
    )
    if delivery == "email":
        tenant_id = tenant.pk
        publish_on_commit(lambda: _email_credentials(tenant_id), what="the rotated credentials")


def rotation_reveal(*, actor: Actor, tenant: Tenant, operation: Op) -> dict[str, str] | None:
    """The new credentials of a succeeded "show" rotation, exactly once (a conditional update
    claims the showing); None when already shown, not finished or emailed instead."""
    check_permission(actor, "tenants.manage", doing="see rotated credentials")
    if (
        operation.kind != Op.Kind.ROTATE
        or operation.tenant_id != tenant.pk
        or operation.state != Op.State.SUCCEEDED
        or operation.params.get("delivery") != "show"
    ):
        return None
    with transaction.atomic():
        claimed = Op.objects.filter(pk=operation.pk, params__reveal="pending").update(
            params={**operation.params, "reveal": "shown"}
        )
        if not claimed:
            return None
        audit_log(
            actor=actor,
            action="tenants.credentials.shown",
            tenant_id=tenant.pk,
            data={"operation": str(operation.uuid)},
        )
    secrets = decrypt_json(Tenant.objects.get(pk=tenant.pk).secrets_encrypted)
    return {
        "api_key": str(secrets.get("api_key", tenant.provider_account_ref)),
        "api_token": secrets.get("api_token", ""),
    }


def _email_credentials(tenant_id: int) -> None:
    tenant = Tenant.objects.get(pk=tenant_id)
    secrets = decrypt_json(tenant.secrets_encrypted)
    context = {
        "company": tenant.company_name,
        "api_key": secrets.get("api_key", tenant.provider_account_ref),
        "api_token": secrets.get("api_token", ""),
        "site": site_link(""),
    }

    def build(recipients: list[str]) -> EmailMultiAlternatives:
        return templated_email(
            "tenants/rotated_credentials_email",
            context,
            subject=gettext("New API credentials for %(company)s") % {"company": tenant.company_name},
            to=recipients,
            html=False,
        )

    try:
        for message in owner_messages(tenant_id, build):
            message.send()
    except (smtplib.SMTPException, OSError):
        # The message body holds the token: log only that the delivery failed.
        logger.warning("the rotated credentials of tenant %s could not be emailed", tenant_id)
        return
    with transaction.atomic():
        audit_log(actor=None, action="tenants.credentials.emailed", tenant_id=tenant_id, data={})


# --- shared runner pieces -----------------------------------------------------------------


RUNNERS: dict[str, Callable[[Op], None]] = {
    Op.Kind.EDIT: _run_edit,
    Op.Kind.ACTIVATE: _run_activate,
    Op.Kind.SET_THRESHOLD: _run_threshold,
    Op.Kind.ROTATE: _run_rotate,
}


# --- follow-ups -----------------------------------------------------------------------------


def follow_up(*, tenant_id: int, actor: Actor = None) -> Op | None:
    """Start what the tenant still needs at the provider, inside the caller's transaction:
    enabling a new account the provider reports disabled, then pushing the threshold. Nothing
    when an operation is open (its own success comes back here)."""
    tenant = Tenant.objects.select_related("connection").get(pk=tenant_id)
    if Op.objects.filter(tenant_id=tenant_id, state__in=Op.OPEN_STATES).exists():
        return None
    needs_enabling = (
        tenant.status == Tenant.Status.PROVISIONING
        and tenant.provider_account is not None
        and tenant.provider_active is False
    )
    if needs_enabling:
        if activate_refusal(tenant) is None:
            return _start_operation(tenant=tenant, kind=Op.Kind.ACTIVATE, actor=actor)
        return None
    if _threshold_pending(tenant):
        return _threshold_op(actor=actor, tenant=tenant, value=tenant.low_balance_threshold, request=None)
    return None


def _after_success(op: Op) -> None:
    try:
        with transaction.atomic():  # a savepoint: a follow-up that cannot start never undoes the success
            follow_up(tenant_id=op.tenant_id, actor=op.created_by if op.created_by_id else None)
    except (PortalError, IntegrityError):
        logger.warning("no follow-up for tenant %s after operation %s", op.tenant_id, op.pk, exc_info=True)


AFTER_SUCCESS.append(_after_success)
