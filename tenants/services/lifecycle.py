"""The tenant lifecycle as staff start it: create, clone, freeze, unfreeze, close, import.
Each call checks the actor's permission, validates, and commits an operation for the worker."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext, gettext_noop

from portal import inputs
from portal.audit import audit_log
from portal.errors import Conflict, PortalError
from portal.events import publish_on_commit
from portal.mail import site_link, templated_email
from portal.models import Job
from portal.roles import Actor, Role, assign_role, check_permission
from providers.capabilities import Capability
from providers.errors import ProviderError
from tenants import tasks
from tenants.connections import capability_matrix, client_for, unavailable
from tenants.mail import member_language
from tenants.models import Membership, ProviderConnection, Tenant, TenantOperation, UnknownProviderAccount
from tenants.services.edit import follow_up
from tenants.services.operations import _fingerprint, _operation_key, _replay, _start_operation
from tenants.services.validation import AccountInput, _check_unique, _connection, validate_account_input

Op = TenantOperation

logger = logging.getLogger("tenants")


def _invite_owner(*, actor: Actor, tenant: Tenant, email: str, request: HttpRequest | None) -> Any:
    user_model = get_user_model()
    user = user_model(username=email.lower()[:150], email=email)
    user.set_unusable_password()
    user.save()
    assign_role(user, Role.CUSTOMER_OWNER)
    membership = Membership.objects.create(
        user=user,
        tenant=tenant,
        invited_by=actor if actor is not None and actor.is_authenticated else None,
        invite_delivery=Membership.InviteDelivery.PENDING,
    )
    audit_log(actor=actor, action="tenants.owner.invited", tenant_id=tenant.pk, data={"email": email}, request=request)
    membership_id = membership.pk

    def deliver() -> None:
        # One attempt once the tenant is committed; a mail server that is down never fails the
        # create. A failed attempt is retried with backoff (tenants.owner_invite_deliver).
        if not send_owner_invitation(membership_id=membership_id):
            owner_invitation_retry_later(membership_id, attempt=1)

    publish_on_commit(deliver, what="the owner's invitation")
    return user


# Background retries of an invitation that was not delivered: the owner's here, a viewer's in
# customers, both on this schedule.
INVITE_RETRIES = 5
INVITE_RETRY_SECONDS = 60


def invite_retry_delay(attempt: int) -> int:
    """Seconds to wait before automatic retry number ``attempt`` (1-based)."""
    return INVITE_RETRY_SECONDS * 2 ** (attempt - 1)


def owner_invitation_retry_later(membership_id: int, *, attempt: int) -> None:
    publish_on_commit(
        lambda: tasks.owner_invite_deliver.apply_async(
            args=[membership_id, attempt], countdown=invite_retry_delay(attempt)
        ),
        what=f"tenants.owner_invite_deliver {membership_id}",
    )


def owner_invitation_retry(*, membership_id: int, attempt: int) -> bool:
    """Background retry number ``attempt`` of the owner's invitation. Does nothing for one that
    went out meanwhile, whose owner already chose a password, or that was removed; after
    INVITE_RETRIES it waits for staff to invite again."""
    membership = Membership.objects.select_related("user").filter(pk=membership_id).first()
    if (
        membership is None
        or membership.invite_delivery == Membership.InviteDelivery.SENT
        or not membership.user.is_active
        or membership.user.has_usable_password()
    ):
        return False
    if send_owner_invitation(membership_id=membership_id):
        return True
    if attempt < INVITE_RETRIES:
        owner_invitation_retry_later(membership_id, attempt=attempt + 1)
    else:
        logger.warning(
            "the owner's invitation (membership %s) was not delivered after %s retries", membership_id, attempt
        )
    return False


def send_invitation(membership: Membership, *, subject: str, template: str, context: dict[str, str]) -> bool:
    """One delivery attempt of an invitation: a set-password link with Django's password-reset
    token (no password is ever mailed), in ``emails/<template>.txt`` and ``.html``. The outcome
    is kept on the membership: sent, or not delivered with the time of the attempt. A mail server
    that is down or slower than EMAIL_TIMEOUT never raises here; the answer says whether the
    email went out. The owner's invitation and a team invitation both come through here.

    The email speaks the member's language (tenants.mail.member_language): ``subject`` is the
    English text (marked with gettext_noop), translated and filled from ``context`` here."""
    user = membership.user
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    link = site_link(reverse("password_reset_confirm", args=(uid, default_token_generator.make_token(user))))
    context = {**context, "link": link, "username": user.get_username()}
    with translation.override(member_language(membership)):
        message = templated_email(f"emails/{template}", context, subject=gettext(subject) % context, to=[user.email])
    try:
        message.send()
        delivered = True
    except (smtplib.SMTPException, OSError):
        logger.warning("the invitation (membership %s) was not delivered", membership.pk, exc_info=True)
        delivered = False
    now = timezone.now()
    Membership.objects.filter(pk=membership.pk).update(
        invite_delivery=Membership.InviteDelivery.SENT if delivered else Membership.InviteDelivery.FAILED,
        invite_attempts=F("invite_attempts") + 1,
        invite_attempted_at=now,
        invite_sent_at=now if delivered else F("invite_sent_at"),
    )
    return delivered


def send_owner_invitation(*, membership_id: int) -> bool:
    """One delivery attempt of the owner's invitation (see send_invitation)."""
    membership = Membership.objects.select_related("user", "tenant").get(pk=membership_id)
    company = membership.tenant.company_name
    return send_invitation(
        membership,
        subject=gettext_noop("You are invited to manage %(company)s"),
        template="owner_invitation",
        context={"company": company},
    )


def _provision_once(
    *, key: str | None, fingerprint: str, validate: Callable[[], AccountInput], insert: Callable[[AccountInput], Tenant]
) -> Tenant:
    """The shape create and clone share. A repeat with the same operation key returns the first
    tenant; a concurrent twin that committed first (its name and email now look taken, or the
    insert hits a unique index) is a replay, not an error."""
    replayed = _replay(key, fingerprint)
    if replayed is not None:
        return replayed
    try:
        data = validate()
    except PortalError:
        replayed = _replay(key, fingerprint)
        if replayed is not None:
            return replayed
        raise
    try:
        with transaction.atomic():
            return insert(data)
    except IntegrityError:
        replayed = _replay(key, fingerprint)
        if replayed is not None:
            return replayed
        _check_unique(data.connection, data.account_name, data.account_email)
        raise PortalError("Someone created a tenant with the same data a moment ago; check the list.") from None


def tenant_create(
    *,
    actor: Actor,
    connection: ProviderConnection | str | int | None,
    company_name: str,
    account_name: str,
    account_email: str,
    contact_name: str = "",
    contact_email: str = "",
    password: str | None = None,
    voiceit_type: str = "",
    notes: str = "",
    plan: str = "",
    low_balance_threshold: Decimal | str | None = None,
    invite_owner_email: str = "",
    operation_key: str | None = None,
    request: HttpRequest | None = None,
) -> Tenant:
    """Validate, then write the tenant (provisioning), its create operation, Job and audit row;
    the provider account is created by the task after commit. A repeat with the same
    ``operation_key`` returns the same tenant."""
    check_permission(actor, "tenants.manage", doing="create tenants")
    key = _operation_key(operation_key)
    conn_for_print = connection.pk if isinstance(connection, ProviderConnection) else connection
    fingerprint = _fingerprint(
        connection=conn_for_print,
        company_name=company_name,
        account_name=account_name,
        account_email=str(account_email).strip().lower(),
    )

    def validate() -> AccountInput:
        return validate_account_input(
            connection=connection,
            company_name=company_name,
            account_name=account_name,
            account_email=account_email,
            contact_name=contact_name,
            contact_email=contact_email,
            password=password,
            voiceit_type=voiceit_type,
            notes=notes,
            plan=plan,
            low_balance_threshold=low_balance_threshold,
            invite_owner_email=invite_owner_email,
        )

    def insert(data: AccountInput) -> Tenant:
        tenant = Tenant.objects.create(
            connection=data.connection,
            company_name=data.company_name,
            account_name=data.account_name,
            account_email=data.account_email,
            contact_name=data.contact_name,
            contact_email=data.contact_email,
            voiceit_type=data.voiceit_type,
            notes=data.notes,
            plan=data.plan,
            low_balance_threshold=data.low_balance_threshold,
            currency=data.connection.currency,
            status=Tenant.Status.PROVISIONING,
        )
        op = _start_operation(
            tenant=tenant,
            kind=Op.Kind.CREATE,
            actor=actor,
            key=key,
            params={"fingerprint": fingerprint, "password_generated": data.password_generated},
            secret_inputs={"password": data.password},
        )
        audit_log(
            actor=actor,
            action="tenants.tenant.created",
            tenant_id=tenant.pk,
            request=request,
            data={
                "company_name": data.company_name,
                "account_name": data.account_name,
                "account_email": data.account_email,
                "connection": data.connection.name,
                "voiceit_type": data.voiceit_type,
                "operation": str(op.uuid),
                "password_generated": data.password_generated,
            },
        )
        if data.invite_owner_email:
            _invite_owner(actor=actor, tenant=tenant, email=data.invite_owner_email, request=request)
        return tenant

    return _provision_once(key=key, fingerprint=fingerprint, validate=validate, insert=insert)


def tenant_clone(
    *,
    actor: Actor,
    source: Tenant,
    company_name: str,
    account_name: str,
    account_email: str,
    password: str | None = None,
    operation_key: str | None = None,
    request: HttpRequest | None = None,
) -> Tenant:
    """A new tenant copied from ``source``: CloneAccount where the provider has it, otherwise a
    fresh account (the matrix's reason is recorded), plus the portal-side settings (alert
    threshold, notes, plan, contact, VoiceIt type)."""
    check_permission(actor, "tenants.manage", doing="clone tenants")
    key = _operation_key(operation_key)
    fingerprint = _fingerprint(
        source=source.pk,
        company_name=company_name,
        account_name=account_name,
        account_email=str(account_email).strip().lower(),
    )
    source = Tenant.objects.select_related("connection").get(pk=source.pk)
    matrix = capability_matrix(source.connection)
    provider_clone = matrix.supports(Capability.CLONE)

    def validate() -> AccountInput:
        if not provider_clone and not matrix.supports(Capability.CREATE):
            raise PortalError(f"Clone is unavailable: {matrix.reason(Capability.CLONE)}", code="unsupported")
        if source.status not in (Tenant.Status.ACTIVE, Tenant.Status.FROZEN) or source.provider_account is None:
            raise Conflict("Only an active or frozen tenant with a provider account can be cloned.")
        return validate_account_input(
            connection=source.connection,
            company_name=company_name,
            account_name=account_name,
            account_email=account_email,
            password=password,
            voiceit_type=source.voiceit_type,
            notes=source.notes,
            plan=source.plan,
            low_balance_threshold=source.low_balance_threshold,
            check_create=False,
        )

    def insert(data: AccountInput) -> Tenant:
        tenant = Tenant.objects.create(
            connection=source.connection,
            company_name=data.company_name,
            account_name=data.account_name,
            account_email=data.account_email,
            contact_name=source.contact_name,
            contact_email=source.contact_email,
            voiceit_type=source.voiceit_type,
            notes=source.notes,
            plan=source.plan,
            low_balance_threshold=source.low_balance_threshold,
            currency=source.currency or source.connection.currency,
            status=Tenant.Status.PROVISIONING,
        )
        op = _start_operation(
            tenant=tenant,
            kind=Op.Kind.CLONE,
            actor=actor,
            key=key,
            params={
                "fingerprint": fingerprint,
                # Without CloneAccount the provider side starts empty; say so on the page.
                "mode": "clone" if provider_clone else "create",
                "without_clone": "" if provider_clone else matrix.reason(Capability.CLONE),
                "source_tenant": source.pk,
                "source_account": str(source.provider_account),
                "password_generated": data.password_generated,
            },
            secret_inputs={"password": data.password},
        )
        audit_log(
            actor=actor,
            action="tenants.tenant.cloned",
            tenant_id=tenant.pk,
            request=request,
            data={
                "source": str(source.uuid),
                "source_company": source.company_name,
                "account_name": data.account_name,
                "account_email": data.account_email,
                "operation": str(op.uuid),
            },
        )
        return tenant

    return _provision_once(key=key, fingerprint=fingerprint, validate=validate, insert=insert)


def freeze_refusal(tenant: Tenant, kind: str) -> str | None:
    """Why ``kind`` (freeze/unfreeze/close) cannot start on this tenant now, or None."""

    if kind == Op.Kind.FREEZE:
        if (refusal := unavailable(tenant.connection, Capability.FREEZE)) is not None:
            return refusal
        if tenant.status != Tenant.Status.ACTIVE:
            return f"Only an active tenant can be frozen; this one is {tenant.get_status_display().lower()}."
    elif kind == Op.Kind.UNFREEZE:
        if (refusal := unavailable(tenant.connection, Capability.UNFREEZE)) is not None:
            return refusal
        if tenant.status != Tenant.Status.FROZEN:
            return f"Only a frozen tenant can be unfrozen; this one is {tenant.get_status_display().lower()}."
    elif kind == Op.Kind.CLOSE and tenant.status not in (Tenant.Status.ACTIVE, Tenant.Status.FROZEN):
        return f"Only an active or frozen tenant can be closed; this one is {tenant.get_status_display().lower()}."
    if tenant.provider_account is None:
        return "This tenant has no provider account."
    return None


def _lifecycle_start(
    *, actor: Actor, tenant: Tenant, kind: str, reason: object, request: HttpRequest | None, enqueue: bool = True
) -> Op:
    text = inputs.reason(reason)
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().select_related("connection").get(pk=tenant.pk)
        refusal = freeze_refusal(locked, kind)
        if refusal:
            raise Conflict(refusal, code="not_allowed_now")
        stage = Op.Stage.FREEZE if kind == Op.Kind.CLOSE else Op.Stage.PROVIDER
        op = _start_operation(
            tenant=locked,
            kind=kind,
            actor=actor,
            reason=text,
            stage=stage,
            total=4 if kind == Op.Kind.CLOSE else 1,
            enqueue=enqueue,
        )
        if kind == Op.Kind.CLOSE:
            Tenant.objects.filter(pk=locked.pk).update(
                status=Tenant.Status.CLOSING, status_reason=text, updated_at=timezone.now()
            )
        audit_log(
            actor=actor,
            action=f"tenants.tenant.{kind}_requested",
            tenant_id=locked.pk,
            request=request,
            data={"reason": text, "operation": str(op.uuid), "previous_status": locked.status},
        )
    return op


def tenant_freeze(*, actor: Actor, tenant: Tenant, reason: str, request: HttpRequest | None = None) -> Job:
    """Suspend the tenant at the provider (SetChildAccountInfo active=false); customers see the
    reason as a banner once the provider confirmed."""
    check_permission(actor, "tenants.freeze", doing="freeze tenants")
    op = _lifecycle_start(actor=actor, tenant=tenant, kind=Op.Kind.FREEZE, reason=reason, request=request)
    assert op.job is not None
    return op.job


def tenant_unfreeze(*, actor: Actor, tenant: Tenant, reason: str, request: HttpRequest | None = None) -> Job:
    check_permission(actor, "tenants.freeze", doing="unfreeze tenants")
    op = _lifecycle_start(actor=actor, tenant=tenant, kind=Op.Kind.UNFREEZE, reason=reason, request=request)
    assert op.job is not None
    return op.job


def tenant_freeze_by_rule(*, tenant: Tenant, reason: str, unfreeze: bool = False) -> Job:
    """Freeze (or unfreeze) on a rule of the portal's own, not a person's request: e.g.
    reselling's dunning of an overdue invoice. No role is checked (the system acts); the
    request is audited like a staff member's, with the reason customers see."""
    kind = Op.Kind.UNFREEZE if unfreeze else Op.Kind.FREEZE
    op = _lifecycle_start(actor=None, tenant=tenant, kind=kind, reason=reason, request=None)
    assert op.job is not None
    return op.job


def tenant_close(*, actor: Actor, tenant: Tenant, reason: str, request: HttpRequest | None = None) -> Job:
    """Staged and resumable: freeze → pull the balance back (billing) → delete at the provider
    where it can, else leave it disabled → closed. The tenant row stays for the audit trail."""
    check_permission(actor, "tenants.manage", doing="close tenants")
    op = _lifecycle_start(actor=actor, tenant=tenant, kind=Op.Kind.CLOSE, reason=reason, request=request)
    assert op.job is not None
    return op.job


def tenant_import(
    *,
    actor: Actor,
    connection: ProviderConnection | str | int | None,
    provider_account_id: int | str,
    company_name: str | None = None,
    low_balance_threshold: Decimal | str | None = None,
    request: HttpRequest | None = None,
) -> Tenant:
    """Adopt a provider account the portal does not know yet (an UnknownProviderAccount row).
    A threshold given here is pushed to the provider once the tenant is saved."""
    check_permission(actor, "tenants.manage", doing="import tenants")
    conn = _connection(connection)
    threshold = inputs.threshold(low_balance_threshold, field="low_balance_threshold")
    try:
        account_id = int(str(provider_account_id).strip())
    except (TypeError, ValueError):
        raise PortalError("Enter the provider's numeric account id.", field="provider_account_id") from None
    company = inputs.text(company_name, field="company_name", label="company name", max_length=200)
    if Tenant.objects.filter(connection=conn, provider_account_id=account_id).exists():
        raise Conflict("This provider account is already a tenant.", field="provider_account_id")
    if not UnknownProviderAccount.objects.filter(connection=conn, provider_account_id=account_id).exists():
        # Not seen by a sync or scan yet: read this one account at the provider (a single read,
        # before any write) and record it as a candidate like the scan would.
        _record_candidate(conn, account_id)
    try:
        with transaction.atomic():
            row = (
                UnknownProviderAccount.objects.select_for_update()
                .filter(connection=conn, provider_account_id=account_id)
                .first()
            )
            if row is None:
                raise Conflict("This provider account was imported a moment ago.", field="provider_account_id")
            active = row.active is not False
            tenant = Tenant.objects.create(
                connection=conn,
                company_name=company or row.account_name or f"Account {account_id}",
                account_name=row.account_name,
                account_email=row.account_email,
                provider_account_id=account_id,
                provider_account_ref=str(account_id),
                balance=row.balance,
                currency=row.currency or conn.currency,
                provider_active=row.active,
                provider_frozen=row.frozen,
                balance_synced_at=row.last_seen_at if row.balance is not None else None,
                status=Tenant.Status.ACTIVE if active else Tenant.Status.FROZEN,
                status_reason="" if active else "Disabled at the provider when imported.",
                low_balance_threshold=threshold,
            )
            row.delete()
            audit_log(
                actor=actor,
                action="tenants.tenant.imported",
                tenant_id=tenant.pk,
                request=request,
                data={
                    "connection": conn.name,
                    "provider_account_id": account_id,
                    "account_name": row.account_name,
                    "account_email": row.account_email,
                    "low_balance_threshold": str(threshold) if threshold is not None else None,
                },
            )
            follow_up(tenant_id=tenant.pk, actor=actor)
    except IntegrityError:
        raise Conflict(
            "Another tenant already uses this provider account, name or email.", field="provider_account_id"
        ) from None
    return tenant


def _record_candidate(conn: ProviderConnection, account_id: int) -> None:
    """Read one account from the provider and keep it as an import candidate."""
    matrix = capability_matrix(conn)
    if not matrix.supports(Capability.LIST_ACCOUNTS):
        raise PortalError(
            f"The provider cannot be asked about account {account_id}: {matrix.reason(Capability.LIST_ACCOUNTS)}",
            field="provider_account_id",
            code="unsupported",
        )
    try:
        with client_for(conn) as client:
            snapshot = client.get_account(account_id)
    except ProviderError as exc:
        raise PortalError(
            f"The provider could not be asked about account {account_id}: {exc}", field="provider_account_id"
        ) from None
    if snapshot is None:
        raise PortalError(f"The provider has no account {account_id}.", field="provider_account_id")
    UnknownProviderAccount.objects.update_or_create(
        connection=conn,
        provider_account_id=account_id,
        defaults={
            "account_name": (snapshot.name or "")[:100],
            "account_email": (snapshot.email or "")[:254],
            "balance": snapshot.balance,
            "currency": (snapshot.currency or "")[:3],
            "active": snapshot.active,
            "frozen": snapshot.frozen,
            "last_seen_at": timezone.now(),
        },
    )
