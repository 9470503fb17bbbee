"""Every write to tenants: the lifecycle (create, clone, freeze, unfreeze, close, import),
the provider operations behind it, bulk actions and key rotation.

Each provider-touching change is a :class:`TenantOperation`, committed with its Job and audit
row before any provider call and run by a Celery task (tenants.tasks.run_operation). The task
claims the operation with a compare-and-swap (state + attempt are the fence), never holds a
transaction across HTTP, and records the outcome only if it still owns the claim. An outcome
the provider did not report (OutcomeUnknown) is resolved by looking the account up before any
new attempt; that is what keeps a dropped reply, a retried task or a killed worker from ever
creating a second provider account.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from portal.audit import audit_log
from portal.crypto import decrypt_json, encrypt_json, reencrypt
from portal.errors import Conflict, PortalError
from portal.jobs import job_advance, job_create, job_finish, job_set_state, job_start
from portal.models import Job
from portal.roles import Role, assign_role
from tenants.connections import capability_matrix, client_for
from tenants.models import Membership, ProviderConnection, Tenant, TenantOperation, UnknownProviderAccount

logger = logging.getLogger("tenants")

Op = TenantOperation
ACCOUNT_NAME_RE = re.compile(r"[a-z][a-z0-9-]{4,19}")
# Consecutive unanswered attempts before a human is asked to look.
MAX_FAILURES = 6
BULK_LIMIT = 1000
TERMINAL = (Op.State.SUCCEEDED, Op.State.FAILED)


def _lease() -> timedelta:
    # Longer than one provider call with its own retries (timeouts 5 s + 30 s, 4 attempts).
    return timedelta(seconds=int(getattr(settings, "TENANT_OPERATION_LEASE_SECONDS", 300)))


def _backoff(failures: int) -> int:
    return min(2 ** max(failures, 1), 60)


# --- validation ---------------------------------------------------------------------------

_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}


def _text(
    value: Any, *, field: str, label: str, max_length: int, required: bool = False, multiline: bool = False
) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise PortalError(f"Enter the {label}.", field=field)
    if len(text) > max_length:
        raise PortalError(
            f"The {label} can be at most {max_length} characters (this one has {len(text)}).", field=field
        )
    for ch in text:
        if ch in _BIDI or (unicodedata.category(ch) == "Cc" and not (multiline and ch in "\r\n\t")):
            raise PortalError(f"The {label} contains an invisible control character; retype it.", field=field)
    return text


def _email(value: Any, *, field: str, label: str, required: bool = True) -> str:
    text = "" if value is None else str(value)
    if "\r" in text or "\n" in text:
        raise PortalError(f"The {label} must be a single line.", field=field)
    text = text.strip()
    if not text:
        if required:
            raise PortalError(f"Enter the {label}.", field=field)
        return ""
    if len(text) > 254:
        raise PortalError(f"The {label} can be at most 254 characters.", field=field)
    try:
        validate_email(text)
    except ValidationError:
        raise PortalError(f"Enter a valid {label}, like name@example.com.", field=field) from None
    return text


def validate_account_name(value: Any, *, field: str = "account_name") -> str:
    name = "" if value is None else str(value)
    if not name.strip():
        raise PortalError("Enter the account name.", field=field)
    if not 5 <= len(name) <= 20:
        raise PortalError(f"The account name must be 5 to 20 characters long (this one has {len(name)}).", field=field)
    # fullmatch: "abcde\n" must fail, which a "$"-anchored match would let through.
    if not ACCOUNT_NAME_RE.fullmatch(name):
        if not ("a" <= name[0] <= "z"):
            raise PortalError("The account name must start with a lowercase latin letter (a-z).", field=field)
        raise PortalError(
            "The account name may contain only lowercase latin letters (a-z), digits and hyphens.", field=field
        )
    return name


def _password_rules(password: str, kind: str) -> None:
    if len(password) > 64:
        raise PortalError("The password can be at most 64 characters.", field="password")
    try:
        validate_password(password)
    except ValidationError as exc:
        raise PortalError(" ".join(exc.messages), field="password") from None
    if kind == ProviderConnection.Kind.VOXIMPLANT:
        missing = [
            label
            for label, test in (
                ("an uppercase letter", str.isupper),
                ("a lowercase letter", str.islower),
                ("a digit", str.isdigit),
            )
            if not any(test(ch) for ch in password)
        ]
        if not any(not ch.isalnum() for ch in password):
            missing.append("a special character")
        if missing:
            raise PortalError(
                "Voximplant requires the password to contain " + ", ".join(missing) + ".", field="password"
            )


def generate_password() -> str:
    """20 characters with every class Voximplant asks for (upper, lower, digit, special)."""
    alphabet = string.ascii_letters + string.digits + "-_.!#%+"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(20))
        if (
            any(c.isupper() for c in candidate)
            and any(c.islower() for c in candidate)
            and any(c.isdigit() for c in candidate)
            and any(not c.isalnum() for c in candidate)
        ):
            return candidate


def _threshold(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, float):
        raise PortalError("Enter the alert threshold as text or Decimal, never a float.", field="low_balance_threshold")
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.0001")) or value >= 10**12:
            raise PortalError("Enter an amount of zero or more, like 5 or 12.50.", field="low_balance_threshold")
        return value
    text = str(value).strip()
    if not re.fullmatch(r"\d{1,12}(\.\d{1,2})?", text):
        raise PortalError("Enter an amount of zero or more, like 5 or 12.50.", field="low_balance_threshold")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern rules it out
        raise PortalError("Enter an amount like 5 or 12.50.", field="low_balance_threshold") from None


def _reason(value: Any) -> str:
    return _text(value, field="reason", label="reason", max_length=500, required=True)


def _connection(connection: Any) -> ProviderConnection:
    if not isinstance(connection, ProviderConnection):
        found = None
        if connection not in (None, ""):
            try:
                found = ProviderConnection.objects.filter(
                    Q(uuid=connection) if not str(connection).isdigit() else Q(pk=int(connection))
                ).first()
            except (ValueError, ValidationError):
                found = None
        if found is None:
            raise PortalError("Choose a provider connection.", field="connection")
        connection = found
    if not connection.is_active:
        raise PortalError("This provider connection is switched off; choose another.", field="connection")
    return connection


@dataclass
class AccountInput:
    connection: ProviderConnection
    company_name: str
    account_name: str
    account_email: str
    contact_name: str
    contact_email: str
    password: str
    password_generated: bool
    voiceit_type: str
    notes: str
    plan: str
    low_balance_threshold: Decimal | None
    invite_owner_email: str


def _check_unique(connection: ProviderConnection, account_name: str, account_email: str) -> None:
    live = Tenant.objects.exclude(status=Tenant.Status.FAILED)
    if live.filter(connection=connection, account_name=account_name).exists():
        raise PortalError("A tenant already uses this account name; choose another.", field="account_name")
    if live.annotate(_email=Lower("account_email")).filter(_email=account_email.lower()).exists():
        raise PortalError(
            "A tenant already uses this email address (emails are compared case-insensitively).", field="account_email"
        )
    unknown = UnknownProviderAccount.objects.filter(connection=connection)
    if unknown.filter(Q(account_name=account_name) | Q(account_email__iexact=account_email)).exists():
        raise PortalError(
            "The provider already has an account with this name or email that the portal does not "
            "know yet: import it instead.",
            field="account_name",
        )


def validate_account_input(
    *,
    connection: Any,
    company_name: Any,
    account_name: Any,
    account_email: Any,
    contact_name: Any = "",
    contact_email: Any = "",
    password: Any = None,
    voiceit_type: Any = "",
    notes: Any = "",
    plan: Any = "",
    low_balance_threshold: Any = None,
    invite_owner_email: Any = "",
    check_create: bool = True,
) -> AccountInput:
    """Every rule the provider and the portal have for a new account, checked before any call.

    Raises PortalError on the first field that is wrong. Used by create and clone (and by the
    admin's add form, so that it shows the same errors)."""
    from providers.capabilities import Capability

    conn = _connection(connection)
    company = _text(company_name, field="company_name", label="company name", max_length=200, required=True)
    name = validate_account_name(account_name)
    email = _email(account_email, field="account_email", label="account email")
    contact = _text(contact_name, field="contact_name", label="contact name", max_length=200)
    contact_mail = _email(contact_email, field="contact_email", label="contact email", required=False)
    kind = conn.kind
    vtype = str(voiceit_type or "").strip()
    if kind == ProviderConnection.Kind.VOICEIT:
        if vtype not in Tenant.VoiceItType.values:
            raise PortalError(
                "Choose managed (the reseller pays) or unmanaged (the customer pays).", field="voiceit_type"
            )
    elif vtype:
        raise PortalError("Managed or unmanaged applies to VoiceIt connections only.", field="voiceit_type")
    generated = password in (None, "")
    secret = generate_password() if generated else str(password)
    if not generated:
        _password_rules(secret, kind)
    note_text = _text(notes, field="notes", label="notes", max_length=5000, multiline=True)
    plan_text = _text(plan, field="plan", label="plan", max_length=100)
    threshold = _threshold(low_balance_threshold)
    invite = _email(invite_owner_email, field="invite_owner_email", label="owner's email", required=False)
    if invite:
        user_model = get_user_model()
        if user_model.objects.filter(Q(username__iexact=invite) | Q(email__iexact=invite)).exists():
            raise PortalError(
                "A portal user with this email already exists; invite another address.", field="invite_owner_email"
            )
    if check_create and not capability_matrix(conn).supports(Capability.CREATE):
        raise PortalError(capability_matrix(conn).reason(Capability.CREATE), field="connection")
    _check_unique(conn, name, email)
    return AccountInput(
        conn,
        company,
        name,
        email,
        contact,
        contact_mail,
        secret,
        generated,
        vtype,
        note_text,
        plan_text,
        threshold,
        invite,
    )


# --- operations: start ------------------------------------------------------------------

_TITLES: dict[str, str] = {
    Op.Kind.CREATE: "Create {name} at the provider",
    Op.Kind.CLONE: "Clone into {name}",
    Op.Kind.FREEZE: "Freeze {name}",
    Op.Kind.UNFREEZE: "Unfreeze {name}",
    Op.Kind.CLOSE: "Close {name}",
}


def _enqueue_operation(op_id: int, countdown: int | None = None) -> None:
    from tenants.tasks import run_operation

    def send() -> None:
        try:
            run_operation.apply_async((op_id,), countdown=countdown)
        except Exception:  # noqa: BLE001 - a broker hiccup must not undo committed work; the sweeper re-sends
            logger.exception("could not enqueue tenant operation %s; the sweeper will", op_id)

    transaction.on_commit(send)


def _start_operation(
    *,
    tenant: Tenant,
    kind: str,
    actor: Any,
    reason: str = "",
    key: str | None = None,
    params: dict[str, Any] | None = None,
    secret_inputs: dict[str, Any] | None = None,
    stage: str = Op.Stage.PROVIDER,
    total: int = 1,
    enqueue: bool = True,
) -> Op:
    """Job + operation rows, inside the caller's transaction; the task is sent after commit."""
    if Op.objects.filter(tenant=tenant, state__in=Op.OPEN_STATES).exists():
        raise Conflict(
            "Another operation is still running on this tenant; wait for it to finish or resolve it.",
            code="operation_in_progress",
        )
    job = job_create(
        kind=f"tenants.{kind}",
        title=_TITLES[kind].format(name=tenant.company_name),
        total=total,
        created_by=actor,
        tenant_id=tenant.pk,
    )
    try:
        with transaction.atomic():
            op = Op.objects.create(
                tenant=tenant,
                kind=kind,
                key=key,
                reason=reason,
                params=params or {},
                stage=stage,
                secrets_encrypted=encrypt_json(secret_inputs or {}),
                job=job,
                next_attempt_at=timezone.now(),
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
    except IntegrityError:
        if key and Op.objects.filter(key=key).exists():
            raise  # the same request twice: the caller replays the first one's result
        # The partial unique index lost a race with a concurrent click.
        raise Conflict(
            "Another operation is still running on this tenant; wait for it to finish.", code="operation_in_progress"
        ) from None
    if enqueue:
        _enqueue_operation(op.pk)
    return op


def _fingerprint(**values: Any) -> str:
    raw = json.dumps({k: str(v) for k, v in sorted(values.items())}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def _replay(key: str | None, fingerprint: str) -> Tenant | None:
    """The tenant a previous request with this operation key made (same inputs), else None."""
    if not key:
        return None
    op = Op.objects.filter(key=key).select_related("tenant").first()
    if op is None:
        return None
    if op.params.get("fingerprint") != fingerprint:
        raise Conflict("This operation id was already used for a different request.", code="key_reused")
    return op.tenant


def _operation_key(value: Any) -> str | None:
    if value in (None, ""):
        return None
    key = str(value).strip()
    if not 8 <= len(key) <= 255 or not re.fullmatch(r"[A-Za-z0-9._:-]+", key):
        raise PortalError(
            "The operation id must be 8-255 letters, digits, dots, colons, dashes or underscores.",
            field="operation_key",
        )
    return key


def _invite_owner(*, actor: Any, tenant: Tenant, email: str, request: Any) -> Any:
    user_model = get_user_model()
    user = user_model(username=email.lower()[:150], email=email)
    user.set_unusable_password()
    user.save()
    assign_role(user, Role.CUSTOMER_OWNER)
    Membership.objects.create(user=user, tenant=tenant)
    audit_log(actor=actor, action="tenants.owner.invited", tenant_id=tenant.pk, data={"email": email}, request=request)
    transaction.on_commit(lambda: send_owner_invitation(user_id=user.pk, tenant_name=tenant.company_name))
    return user


def send_owner_invitation(*, user_id: int, tenant_name: str) -> None:
    """The set-password email, with Django's password-reset token (no password is ever mailed)."""
    from django.contrib.auth.tokens import default_token_generator
    from django.core.mail import send_mail
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    user = get_user_model().objects.get(pk=user_id)
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    link = str(settings.SITE_URL).rstrip("/") + reverse(
        "password_reset_confirm", args=(uid, default_token_generator.make_token(user))
    )
    send_mail(
        subject=f"You are invited to manage {tenant_name}",
        message=(
            f"Hello,\n\nYou have been invited to the customer portal of {tenant_name}.\n"
            f"Choose your password here (the link works once):\n\n{link}\n\nYour username is {user.username}.\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )


def tenant_create(
    *,
    actor: Any,
    connection: Any,
    company_name: str,
    account_name: str,
    account_email: str,
    contact_name: str = "",
    contact_email: str = "",
    password: str | None = None,
    voiceit_type: str = "",
    notes: str = "",
    plan: str = "",
    low_balance_threshold: Any = None,
    invite_owner_email: str = "",
    operation_key: str | None = None,
    request: Any = None,
) -> Tenant:
    """Validate, then write the tenant (provisioning), its create operation, Job and audit row;
    the provider account is created by the task after commit. A repeat with the same
    ``operation_key`` returns the same tenant."""
    key = _operation_key(operation_key)
    conn_for_print = connection.pk if isinstance(connection, ProviderConnection) else connection
    fingerprint = _fingerprint(
        connection=conn_for_print,
        company_name=company_name,
        account_name=account_name,
        account_email=str(account_email).strip().lower(),
    )
    replayed = _replay(key, fingerprint)
    if replayed is not None:
        return replayed
    try:
        data = validate_account_input(
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
    except PortalError:
        # A concurrent request with the same key may have committed meanwhile (its name and
        # email now look taken): that is a replay, not an error.
        replayed = _replay(key, fingerprint)
        if replayed is not None:
            return replayed
        raise
    try:
        with transaction.atomic():
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
    except IntegrityError:
        # A concurrent request won a race: the same key (replay it) or the same name/email.
        replayed = _replay(key, fingerprint)
        if replayed is not None:
            return replayed
        _check_unique(data.connection, data.account_name, data.account_email)
        raise PortalError("Someone created a tenant with the same data a moment ago; check the list.") from None
    return tenant


def tenant_clone(
    *,
    actor: Any,
    source: Tenant,
    company_name: str,
    account_name: str,
    account_email: str,
    password: str | None = None,
    operation_key: str | None = None,
    request: Any = None,
) -> Tenant:
    """A new tenant copied from ``source``: CloneAccount where the provider has it, otherwise a
    fresh account (the matrix's reason is recorded), plus the portal-side settings (alert
    threshold, notes, plan, contact, VoiceIt type)."""
    from providers.capabilities import Capability

    key = _operation_key(operation_key)
    fingerprint = _fingerprint(
        source=source.pk,
        company_name=company_name,
        account_name=account_name,
        account_email=str(account_email).strip().lower(),
    )
    replayed = _replay(key, fingerprint)
    if replayed is not None:
        return replayed
    source = Tenant.objects.select_related("connection").get(pk=source.pk)
    matrix = capability_matrix(source.connection)
    provider_clone = matrix.supports(Capability.CLONE)
    if not provider_clone and not matrix.supports(Capability.CREATE):
        raise PortalError(f"Clone is unavailable: {matrix.reason(Capability.CLONE)}", code="unsupported")
    if source.status not in (Tenant.Status.ACTIVE, Tenant.Status.FROZEN) or source.provider_account is None:
        raise Conflict("Only an active or frozen tenant with a provider account can be cloned.")
    try:
        data = validate_account_input(
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
    except PortalError:
        replayed = _replay(key, fingerprint)  # a concurrent twin committed first
        if replayed is not None:
            return replayed
        raise
    try:
        with transaction.atomic():
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
    except IntegrityError:
        replayed = _replay(key, fingerprint)
        if replayed is not None:
            return replayed
        _check_unique(data.connection, data.account_name, data.account_email)
        raise PortalError("Someone created a tenant with the same data a moment ago; check the list.") from None
    return tenant


def freeze_refusal(tenant: Tenant, kind: str) -> str | None:
    """Why ``kind`` (freeze/unfreeze/close) cannot start on this tenant now, or None."""
    from providers.capabilities import Capability

    matrix = capability_matrix(tenant.connection)
    if kind == Op.Kind.FREEZE:
        if not matrix.supports(Capability.FREEZE):
            return f"Unavailable: {matrix.reason(Capability.FREEZE)}"
        if tenant.status != Tenant.Status.ACTIVE:
            return f"Only an active tenant can be frozen; this one is {tenant.get_status_display().lower()}."
    elif kind == Op.Kind.UNFREEZE:
        if not matrix.supports(Capability.UNFREEZE):
            return f"Unavailable: {matrix.reason(Capability.UNFREEZE)}"
        if tenant.status != Tenant.Status.FROZEN:
            return f"Only a frozen tenant can be unfrozen; this one is {tenant.get_status_display().lower()}."
    elif kind == Op.Kind.CLOSE and tenant.status not in (Tenant.Status.ACTIVE, Tenant.Status.FROZEN):
        return f"Only an active or frozen tenant can be closed; this one is {tenant.get_status_display().lower()}."
    if tenant.provider_account is None:
        return "This tenant has no provider account."
    return None


def _lifecycle_start(*, actor: Any, tenant: Tenant, kind: str, reason: Any, request: Any, enqueue: bool = True) -> Op:
    text = _reason(reason)
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


def tenant_freeze(*, actor: Any, tenant: Tenant, reason: str, request: Any = None) -> Job:
    """Suspend the tenant at the provider (SetChildAccountInfo active=false); customers see the
    reason as a banner once the provider confirmed."""
    op = _lifecycle_start(actor=actor, tenant=tenant, kind=Op.Kind.FREEZE, reason=reason, request=request)
    assert op.job is not None
    return op.job


def tenant_unfreeze(*, actor: Any, tenant: Tenant, reason: str, request: Any = None) -> Job:
    op = _lifecycle_start(actor=actor, tenant=tenant, kind=Op.Kind.UNFREEZE, reason=reason, request=request)
    assert op.job is not None
    return op.job


def tenant_close(*, actor: Any, tenant: Tenant, reason: str, request: Any = None) -> Job:
    """Staged and resumable: freeze → pull the balance back (billing) → delete at the provider
    where it can, else leave it disabled → closed. The tenant row stays for the audit trail."""
    op = _lifecycle_start(actor=actor, tenant=tenant, kind=Op.Kind.CLOSE, reason=reason, request=request)
    assert op.job is not None
    return op.job


def tenant_import(
    *, actor: Any, connection: Any, provider_account_id: Any, company_name: str | None = None, request: Any = None
) -> Tenant:
    """Adopt a provider account the portal does not know yet (an UnknownProviderAccount row)."""
    conn = _connection(connection)
    try:
        account_id = int(str(provider_account_id).strip())
    except (TypeError, ValueError):
        raise PortalError("Enter the provider's numeric account id.", field="provider_account_id") from None
    company = _text(company_name, field="company_name", label="company name", max_length=200)
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
                },
            )
    except IntegrityError:
        raise Conflict(
            "Another tenant already uses this provider account, name or email.", field="provider_account_id"
        ) from None
    return tenant


def _record_candidate(conn: ProviderConnection, account_id: int) -> None:
    from providers.errors import ProviderError

    try:
        with client_for(conn) as client:
            snapshot = _fetch_account(client, account_id)
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


def _fetch_account(client: Any, account_id: int) -> Any:
    """One account's snapshot by id. The neutral interface has no get-by-id yet, so use the
    client's own lookup where it offers one (Voximplant: GetChildrenAccounts by id)."""
    getter = getattr(client, "get_account", None)
    if callable(getter):
        return getter(account_id)
    children = getattr(client, "get_children_accounts", None)
    if not callable(children):
        return None
    from providers.base import AccountSnapshot

    for a in children(child_account_id=[account_id], ignore_invalid_accounts=True).accounts:
        if a.account_id == account_id:
            return AccountSnapshot(
                account_id=a.account_id,
                name=a.account_name,
                email=a.account_email,
                active=a.active,
                frozen=a.frozen,
                balance=a.balance,
                currency=a.currency,
            )
    return None


# --- operations: staff decisions ----------------------------------------------------------


def operation_retry(*, actor: Any, operation: Op, request: Any = None) -> Op:
    """A human looked at an operation that needs attention and asks for another attempt. A
    create or clone still looks the account up first, so this never duplicates it."""
    with transaction.atomic():
        op = Op.objects.select_for_update().get(pk=operation.pk)
        if op.state != Op.State.NEEDS_ATTENTION:
            raise Conflict("Only an operation that needs attention can be retried.")
        updates: dict[str, Any] = {
            "state": Op.State.PENDING,
            "failures": 0,
            "next_attempt_at": timezone.now(),
            "lease_until": None,
            "updated_at": timezone.now(),
        }
        if op.stage == Op.Stage.WAIT_BALANCE and _transfer_state(op.transfer_ref) == "failed":
            updates["stage"] = Op.Stage.PULL_BALANCE
            updates["transfer_ref"] = ""
        Op.objects.filter(pk=op.pk).update(**updates)
        if op.job_id:
            job_set_state(job_id=op.job_id, state=Job.State.QUEUED, message="Retry requested.")
        audit_log(
            actor=actor,
            action="tenants.operation.retried",
            tenant_id=op.tenant_id,
            request=request,
            data={"operation": str(op.uuid), "kind": op.kind, "stage": updates.get("stage", op.stage)},
        )
        _enqueue_operation(op.pk)
    op.refresh_from_db()
    return op


def operation_give_up(*, actor: Any, operation: Op, request: Any = None) -> Op:
    """Stop an operation that needs attention. For a create or clone the tenant becomes failed
    (staff confirmed no account exists at the provider); a close cannot be abandoned."""
    with transaction.atomic():
        op = Op.objects.select_for_update().get(pk=operation.pk)
        if op.state != Op.State.NEEDS_ATTENTION:
            raise Conflict("Only an operation that needs attention can be abandoned.")
        if op.kind == Op.Kind.CLOSE:
            raise Conflict("A close cannot be abandoned half-way; fix the cause and retry it.")
        now = timezone.now()
        Op.objects.filter(pk=op.pk).update(
            state=Op.State.FAILED,
            finished_at=now,
            secrets_encrypted="",
            updated_at=now,
            last_error=(op.last_error + " Abandoned by staff.")[:1000],
        )
        if op.kind in (Op.Kind.CREATE, Op.Kind.CLONE):
            Tenant.objects.filter(pk=op.tenant_id, status=Tenant.Status.PROVISIONING).update(
                status=Tenant.Status.FAILED, status_reason="Abandoned by staff: " + op.last_error[:400], updated_at=now
            )
        if op.job_id:
            job_finish(job_id=op.job_id, ok=False, message="Abandoned by staff.")
        audit_log(
            actor=actor,
            action="tenants.operation.abandoned",
            tenant_id=op.tenant_id,
            request=request,
            data={"operation": str(op.uuid), "kind": op.kind, "last_error": op.last_error},
        )
    op.refresh_from_db()
    return op


# --- operations: run (the task) -----------------------------------------------------------


class _Stale(Exception):
    """Another worker took the operation over; this one must not record anything."""


_JOB_STATE: dict[str, str] = {
    Op.State.PENDING: Job.State.QUEUED,
    Op.State.SENDING: Job.State.RUNNING,
    Op.State.UNKNOWN: Job.State.RETRYING,
    Op.State.RETRYING: Job.State.RETRYING,
    Op.State.WAITING: Job.State.RUNNING,
    Op.State.NEEDS_ATTENTION: Job.State.NEEDS_ATTENTION,
    Op.State.SUCCEEDED: Job.State.SUCCEEDED,
    Op.State.FAILED: Job.State.FAILED,
}


def _claim(operation_id: int) -> Op | None:
    """Compare-and-swap: exactly one worker moves a runnable operation to sending."""
    now = timezone.now()
    claimed = (
        Op.objects.filter(pk=operation_id, state__in=Op.RUNNABLE_STATES)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(state=Op.State.SENDING, attempt=F("attempt") + 1, lease_until=now + _lease(), updated_at=now)
    )
    if not claimed:
        return None
    op = Op.objects.select_related("tenant", "tenant__connection", "created_by").get(pk=operation_id)
    if op.job_id:
        job_start(job_id=op.job_id, message=f"Working (attempt {op.attempt}).")
    return op


def _fenced(op: Op) -> Any:
    return Op.objects.filter(pk=op.pk, state=Op.State.SENDING, attempt=op.attempt)


def _settle(
    op: Op,
    *,
    state: str,
    message: str,
    tenant_updates: dict[str, Any] | None = None,
    audit: tuple[str, dict[str, Any]] | None = None,
    error_field: str = "",
    retry_in: int | None = None,
    failures: int | None = None,
    ok: bool | None = None,
) -> None:
    """Record an attempt's outcome if this worker still owns the claim (else raise _Stale)."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "state": state,
        "lease_until": None,
        "updated_at": now,
        "last_error": message[:1000] if state != Op.State.SUCCEEDED else "",
        "error_field": error_field,
    }
    if state in TERMINAL:
        fields["finished_at"] = now
        fields["secrets_encrypted"] = ""  # the password is not needed any more
    if retry_in is not None:
        fields["next_attempt_at"] = now + timedelta(seconds=retry_in)
    if failures is not None:
        fields["failures"] = failures
    with transaction.atomic():
        if not _fenced(op).update(**fields):
            raise _Stale
        if tenant_updates:
            Tenant.objects.filter(pk=op.tenant_id).update(**tenant_updates, updated_at=now)
        if audit:
            audit_log(
                actor=None,
                action=audit[0],
                tenant_id=op.tenant_id,
                data={"operation": str(op.uuid), "attempt": op.attempt, **audit[1]},
            )
        if op.job_id:
            if state in TERMINAL:
                if state == Op.State.SUCCEEDED:
                    Job.objects.filter(pk=op.job_id).update(done=F("total"))
                job_finish(
                    job_id=op.job_id, ok=bool(ok if ok is not None else state == Op.State.SUCCEEDED), message=message
                )
            else:
                job_set_state(job_id=op.job_id, state=_JOB_STATE[state], message=message)
        if retry_in is not None:
            _enqueue_operation(op.pk, countdown=retry_in)


def _not_answered(op: Op, exc: Exception, *, lookup_possible: bool, what: str) -> None:
    """No usable answer. Retry later while a later attempt can tell what happened; otherwise,
    or after MAX_FAILURES, ask a human."""
    from providers.errors import NotSent, RateLimited

    failures = op.failures + 1
    definite = isinstance(exc, NotSent) or (isinstance(exc, RateLimited) and exc.retry_safe)
    if not definite and not lookup_possible:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            failures=failures,
            message=(
                f"{what}: the provider did not answer ({exc}) and it offers no way to check whether the call took "
                f"effect. Check the provider's dashboard, then retry or abandon."
            ),
            audit=("tenants.operation.needs_attention", {"error": str(exc)}),
        )
        return
    if failures >= MAX_FAILURES:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            failures=failures,
            message=(f"{what}: no answer after {failures} attempts ({exc}). Retry when the provider is reachable."),
            audit=("tenants.operation.needs_attention", {"error": str(exc)}),
        )
        return
    delay = _backoff(failures)
    state = Op.State.RETRYING if definite else Op.State.UNKNOWN
    _settle(
        op,
        state=state,
        failures=failures,
        retry_in=delay,
        message=(
            f"{what}: no answer from the provider ({exc}); retrying in {delay} s"
            + ("" if definite else ", after checking whether the first attempt took effect")
            + "."
        ),
    )


def _form_field(field: str | None) -> str:
    mapping = {
        "account_name": "account_name",
        "new_account_name": "account_name",
        "name": "account_name",
        "account_email": "account_email",
        "new_account_email": "account_email",
        "email": "account_email",
        "account_password": "password",
        "new_account_password": "password",
        "password": "password",
    }
    return mapping.get(field or "", "")


def _describe(exc: Exception) -> str:
    from providers.errors import Duplicate, InvalidArgument

    field = _form_field(getattr(exc, "field", None))
    message = getattr(exc, "message", str(exc))
    if isinstance(exc, Duplicate) and field == "account_name":
        return f"The provider already has an account named like this ({message})."
    if isinstance(exc, Duplicate) and field == "account_email":
        return f"The provider already has an account with this email ({message})."
    if isinstance(exc, InvalidArgument) and field:
        return f"The provider refused the {field.replace('_', ' ')}: {message}"
    code = getattr(exc, "code", None)
    return f"The provider refused: {message}" + (f" (code {code})" if code is not None else "")


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
    updates: dict[str, Any] = {
        "provider_account_id": numeric,
        "provider_account_ref": str(account_id),
        "status": Tenant.Status.ACTIVE,
        "status_reason": "",
        "provider_active": active if active is not None else True,
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
            message=f"Provider account {account_id} is ready{note}.",
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


def _created_secrets(created: Any) -> dict[str, str]:
    out = {}
    for name in ("api_key", "api_token"):
        value = getattr(created, name, None)
        if value is not None:
            out[name] = value.reveal() if hasattr(value, "reveal") else str(value)
    return out


def _run_create(op: Op) -> None:
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
    from providers.errors import (
        AuthenticationError,
        ConfigurationError,
        NotFound,
        NotSent,
        OutcomeUnknown,
        ProviderError,
        RateLimited,
    )

    tenant = op.tenant
    freeze = op.kind == Op.Kind.FREEZE
    what = "Freezing" if freeze else "Unfreezing"
    try:
        with client_for(tenant.connection) as client:
            # Setting "active" is idempotent, so an unanswered attempt is simply sent again.
            if freeze:
                client.freeze_account(tenant.provider_account)
            else:
                client.unfreeze_account(tenant.provider_account)
    except (OutcomeUnknown, NotSent, RateLimited) as exc:
        _not_answered(op, exc, lookup_possible=True, what=what)
        return
    except (AuthenticationError, ConfigurationError, NotFound) as exc:
        _settle(
            op,
            state=Op.State.NEEDS_ATTENTION,
            failures=op.failures + 1,
            message=f"{what}: {exc}. Check the connection and the account, then retry or abandon.",
            audit=("tenants.operation.needs_attention", {"error": str(exc)}),
        )
        return
    except ProviderError as exc:
        _settle(
            op,
            state=Op.State.FAILED,
            message=f"{what} failed: {_describe(exc)}",
            audit=(f"tenants.tenant.{op.kind}_failed", {"error": str(exc)}),
        )
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


def _transfer_state(ref: str) -> str | None:
    if not ref:
        return None
    try:
        from billing.models import Transfer  # type: ignore[attr-defined]
    except ImportError:
        return None
    return Transfer.objects.filter(pk=ref).values_list("state", flat=True).first()


def _pull_back_transfer(op: Op) -> Any:
    """The balance transfer an earlier attempt of this close already started, if any."""
    try:
        from billing.models import Transfer  # type: ignore[attr-defined]
    except ImportError:
        return None
    return (
        Transfer.objects.filter(tenant_id=op.tenant_id, direction="to_parent", created_at__gte=op.created_at)
        .exclude(state="failed")
        .order_by("-id")
        .first()
    )


def _advance(op: Op, *, to: str, note: str, transfer_ref: str | None = None) -> None:
    """Commit a finished close stage (a recovery point) and renew the lease."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "stage": to,
        "notes": [*op.notes, note],
        "lease_until": now + _lease(),
        "failures": 0,
        "updated_at": now,
    }
    if transfer_ref is not None:
        fields["transfer_ref"] = transfer_ref
    with transaction.atomic():
        if not _fenced(op).update(**fields):
            raise _Stale
        audit_log(
            actor=None,
            action="tenants.tenant.close_stage",
            tenant_id=op.tenant_id,
            data={
                "operation": str(op.uuid),
                "stage": op.stage,
                "next": to,
                "note": note,
                **({"transfer": transfer_ref} if transfer_ref else {}),
            },
        )
        if op.job_id:
            job_advance(job_id=op.job_id, message=note)
    op.stage, op.notes, op.failures = to, [*op.notes, note], 0
    if transfer_ref is not None:
        op.transfer_ref = transfer_ref


def _run_close(op: Op) -> None:  # noqa: C901 - one stage machine, read top to bottom
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

    tenant = op.tenant
    matrix = capability_matrix(tenant.connection)
    account = tenant.provider_account
    while True:
        stage = op.stage
        try:
            if stage == Op.Stage.FREEZE:
                if account is None:
                    _advance(op, to=Op.Stage.PULL_BALANCE, note="No provider account to freeze.")
                elif not matrix.supports(Capability.FREEZE):
                    _advance(
                        op, to=Op.Stage.PULL_BALANCE, note=f"Freeze unavailable: {matrix.reason(Capability.FREEZE)}"
                    )
                else:
                    with client_for(tenant.connection) as client:
                        client.freeze_account(account)
                    Tenant.objects.filter(pk=tenant.pk).update(provider_active=False)
                    _advance(op, to=Op.Stage.PULL_BALANCE, note="Frozen at the provider.")
            elif stage == Op.Stage.PULL_BALANCE:
                if account is None or not matrix.supports(Capability.TRANSFER_MONEY):
                    reason = matrix.reason(Capability.TRANSFER_MONEY) or "no provider account"
                    _advance(op, to=Op.Stage.DELETE, note=f"No balance to pull back: {reason}")
                    continue
                try:
                    from billing.services import transfer_withdraw_balance  # type: ignore[attr-defined]
                except ImportError:
                    _settle(
                        op,
                        state=Op.State.NEEDS_ATTENTION,
                        message=(
                            "Pulling the balance back needs billing, which is not installed yet. Retry once it is."
                        ),
                    )
                    return
                # Billing reads the live balance at the provider, so this runs outside any
                # transaction. A crash between its commit and ours would leave its transfer
                # unrecorded here: look for it before asking for another one.
                transfer = _pull_back_transfer(op)
                if transfer is None:
                    try:
                        transfer = transfer_withdraw_balance(
                            actor=op.created_by, tenant=tenant, reason=f"Closing the tenant: {op.reason}"
                        )
                    except PortalError as exc:
                        _not_answered(
                            op, NotSent(exc.message), lookup_possible=True, what="Closing (pulling the balance back)"
                        )
                        return
                ref = str(transfer.pk) if transfer is not None else ""
                if ref:
                    _advance(
                        op,
                        to=Op.Stage.WAIT_BALANCE,
                        transfer_ref=ref,
                        note=f"Pulling the remaining balance back to the parent (transfer {ref}).",
                    )
                else:
                    _advance(op, to=Op.Stage.DELETE, note="No balance left to pull back.")
            elif stage == Op.Stage.WAIT_BALANCE:
                state = _transfer_state(op.transfer_ref)
                if state == "succeeded":
                    _advance(op, to=Op.Stage.DELETE, note="The balance is back on the parent account.")
                elif state == "failed":
                    _settle(
                        op,
                        state=Op.State.NEEDS_ATTENTION,
                        message=("Pulling the balance back failed (see the transfer). Retry to try again."),
                        audit=("tenants.operation.needs_attention", {"transfer": op.transfer_ref}),
                    )
                    return
                elif state == "needs_review":
                    _settle(
                        op,
                        state=Op.State.NEEDS_ATTENTION,
                        message=("The balance transfer needs review in billing; retry the close once it is settled."),
                        audit=("tenants.operation.needs_attention", {"transfer": op.transfer_ref}),
                    )
                    return
                elif op.failures >= 120:
                    _settle(
                        op,
                        state=Op.State.NEEDS_ATTENTION,
                        message=(
                            f"The balance transfer has not settled after {op.failures} checks (now {state}); look at it "
                            "in billing, then retry the close."
                        ),
                    )
                    return
                else:
                    delay = min(5 * (op.failures + 1), 60)
                    _settle(
                        op,
                        state=Op.State.WAITING,
                        retry_in=delay,
                        failures=op.failures + 1,
                        message=(
                            f"Waiting for the balance transfer to settle (now {state or 'not found'}); checking again "
                            f"in {delay} s."
                        ),
                    )
                    return
            elif stage == Op.Stage.DELETE:
                if account is None:
                    _advance(op, to=Op.Stage.FINISH, note="No provider account to delete.")
                elif matrix.supports(Capability.CLOSE_DELETE):
                    with client_for(tenant.connection) as client:
                        try:
                            client.close_account(account)
                            note = "Deleted at the provider."
                        except NotFound:
                            note = "Already gone at the provider."
                    _advance(op, to=Op.Stage.FINISH, note=note)
                else:
                    _advance(
                        op,
                        to=Op.Stage.FINISH,
                        note=f"Left disabled at the provider: {matrix.reason(Capability.CLOSE_DELETE)}",
                    )
            elif stage == Op.Stage.FINISH:
                now = timezone.now()
                _settle(
                    op,
                    state=Op.State.SUCCEEDED,
                    message="Closed. " + " ".join(op.notes[-2:]),
                    tenant_updates={"status": Tenant.Status.CLOSED, "closed_at": now, "provider_active": False},
                    audit=("tenants.tenant.closed", {"reason": op.reason, "notes": op.notes}),
                )
                return
            else:
                raise RuntimeError(f"unknown close stage {stage!r}")
        except (OutcomeUnknown, NotSent, RateLimited) as exc:
            # Freeze and delete are safe to send again (a second delete finds nothing).
            _not_answered(op, exc, lookup_possible=True, what=f"Closing ({op.get_stage_display().lower()})")
            return
        except (AuthenticationError, ConfigurationError, ProviderError) as exc:
            _settle(
                op,
                state=Op.State.NEEDS_ATTENTION,
                failures=op.failures + 1,
                message=(f"Closing ({op.get_stage_display().lower()}): {exc}. Fix the cause, then retry."),
                audit=("tenants.operation.needs_attention", {"error": str(exc), "stage": stage}),
            )
            return


# --- sweeper ---------------------------------------------------------------------------------


def operations_sweep(*, now: Any = None) -> int:
    """Re-send what a lost message or a killed worker left behind. A sending operation whose
    lease ran out may have reached the provider: it becomes unknown, so it is looked up first."""
    now = now or timezone.now()
    expired = list(Op.objects.filter(state=Op.State.SENDING, lease_until__lt=now).values_list("pk", flat=True))
    for pk in expired:
        with transaction.atomic():
            if Op.objects.filter(pk=pk, state=Op.State.SENDING, lease_until__lt=now).update(
                state=Op.State.UNKNOWN, lease_until=None, next_attempt_at=now, updated_at=now
            ):
                op = Op.objects.get(pk=pk)
                if op.job_id:
                    job_set_state(
                        job_id=op.job_id,
                        state=Job.State.RETRYING,
                        message="The worker stopped mid-call; checking what happened at the provider.",
                    )
    # Anything runnable whose time has come, a little late (its own countdown did not fire).
    due = Op.objects.filter(state__in=Op.RUNNABLE_STATES, next_attempt_at__lte=now - timedelta(seconds=20))
    ids = list(due.values_list("pk", flat=True)[:500])
    from tenants.tasks import run_bulk, run_operation

    for pk in expired + ids:
        run_operation.delay(pk)
    # A bulk job whose worker died stops reporting; bulk_run skips the rows it already did.
    stalled = list(
        Job.objects.filter(
            kind__startswith="tenants.bulk_",
            state__in=[Job.State.QUEUED, Job.State.RUNNING],
            updated_at__lt=now - timedelta(minutes=10),
        ).values_list("pk", flat=True)[:50]
    )
    for pk in stalled:
        Job.objects.filter(pk=pk).update(updated_at=now)
        run_bulk.delay(pk)
    return len(expired) + len(ids) + len(stalled)


# --- bulk ------------------------------------------------------------------------------------

BULK_ACTIONS = {"freeze": "Freeze", "unfreeze": "Unfreeze", "import": "Import"}


def bulk_preview(
    *, action: str, tenant_ids: list[int] | None = None, unknown_ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """What a bulk action would do, per row, without doing it (the dry run)."""
    rows: list[dict[str, Any]] = []
    if action in ("freeze", "unfreeze"):
        tenants = Tenant.objects.filter(pk__in=(tenant_ids or [])[:BULK_LIMIT]).select_related("connection")
        busy = set(
            Op.objects.filter(tenant_id__in=[t.pk for t in tenants], state__in=Op.OPEN_STATES).values_list(
                "tenant_id", flat=True
            )
        )
        for t in tenants.order_by("id"):
            refusal = freeze_refusal(t, action)
            if refusal is None and t.pk in busy:
                refusal = "Another operation is still running on this tenant."
            rows.append(
                {
                    "key": str(t.uuid),
                    "id": t.pk,
                    "label": f"{t.company_name} ({t.account_name})",
                    "ok": refusal is None,
                    "message": refusal or f"Will {action} ({t.connection.get_kind_display()}).",
                }
            )
    elif action == "import":
        accounts = UnknownProviderAccount.objects.filter(pk__in=(unknown_ids or [])[:BULK_LIMIT])
        known = {
            (c, a)
            for c, a in Tenant.objects.filter(
                provider_account_id__in=[u.provider_account_id for u in accounts]
            ).values_list("connection_id", "provider_account_id")
        }
        for u in accounts.select_related("connection").order_by("id"):
            already = (u.connection_id, u.provider_account_id) in known
            rows.append(
                {
                    "key": str(u.pk),
                    "id": u.pk,
                    "label": f"{u.account_name or u.provider_account_id} ({u.connection.name})",
                    "ok": not already,
                    "message": "Already a tenant." if already else "Will import as a new tenant.",
                }
            )
    else:
        raise PortalError("Choose freeze, unfreeze or import.", field="action")
    return rows


def bulk_start(*, actor: Any, action: str, ids: list[int], reason: str = "", request: Any = None) -> Job:
    """Start a bulk action on the rows the dry run showed as possible; runs in Celery."""
    if action not in BULK_ACTIONS:
        raise PortalError("Choose freeze, unfreeze or import.", field="action")
    if not ids:
        raise PortalError("Select at least one row.", field="ids")
    if len(ids) > BULK_LIMIT:
        raise PortalError(f"At most {BULK_LIMIT} rows at a time; narrow the filter.", field="ids")
    text = _reason(reason) if action in ("freeze", "unfreeze") else ""
    with transaction.atomic():
        job = job_create(
            kind=f"tenants.bulk_{action}",
            title=f"{BULK_ACTIONS[action]} {len(ids)} tenants",
            total=len(ids),
            created_by=actor,
            params={"action": action, "ids": ids, "reason": text},
        )
        audit_log(
            actor=actor,
            action=f"tenants.bulk.{action}_started",
            request=request,
            data={"job": str(job.uuid), "count": len(ids), "reason": text},
        )
        from tenants.tasks import run_bulk

        transaction.on_commit(lambda: run_bulk.delay(job.pk))
    return job


def bulk_run(*, job_id: int) -> None:
    """Process a bulk job row by row; each freeze runs its provider call here, so the row's
    result is the real outcome. Resumes after a crash: rows already reported are skipped."""
    job = Job.objects.get(pk=job_id)
    if job.is_finished:
        return
    action, ids, reason = job.params["action"], job.params["ids"], job.params.get("reason", "")
    actor = job.created_by
    done_keys = {str(r.get("id")) for r in job.results}
    job_start(job_id=job.pk, total=len(ids), message=f"{BULK_ACTIONS[action]}: working…")
    ok_count = 0
    for pk in ids:
        if str(pk) in done_keys:
            continue
        result: dict[str, Any] = {"id": pk, "key": str(pk), "label": str(pk), "ok": False, "message": ""}
        try:
            if action == "import":
                row = UnknownProviderAccount.objects.filter(pk=pk).select_related("connection").first()
                if row is None:
                    result["message"] = "No longer in the list (imported or gone)."
                else:
                    result["label"] = row.account_name or str(row.provider_account_id)
                    tenant = tenant_import(
                        actor=actor, connection=row.connection, provider_account_id=row.provider_account_id
                    )
                    result.update(ok=True, key=str(tenant.uuid), message="Imported.")
            else:
                tenant = Tenant.objects.select_related("connection").get(pk=pk)
                result.update(key=str(tenant.uuid), label=f"{tenant.company_name} ({tenant.account_name})")
                op = _lifecycle_start(
                    actor=actor, tenant=tenant, kind=action, reason=reason, request=None, enqueue=False
                )
                operation_run(operation_id=op.pk)
                op.refresh_from_db()
                result["ok"] = op.state == Op.State.SUCCEEDED
                result["message"] = op.last_error or ("Done." if result["ok"] else op.get_state_display())
                if op.state in (Op.State.UNKNOWN, Op.State.RETRYING):
                    result["message"] = "Retrying in the background: " + op.last_error
        except PortalError as exc:
            result["message"] = exc.message
        except Tenant.DoesNotExist:
            result["message"] = "No such tenant."
        ok_count += int(result["ok"])
        job_advance(job_id=job.pk, result=result)
    job.refresh_from_db()
    failed = sum(1 for r in job.results if not r.get("ok"))
    job_finish(job_id=job.pk, ok=True, message=f"{len(job.results) - failed} done, {failed} not done.")


# --- import candidates: scan the provider now -----------------------------------------------


def unknown_accounts_scan(*, actor: Any, connection: Any, request: Any = None) -> Job:
    """List the provider's accounts now (instead of waiting for billing's nightly sync) and
    record those no tenant stands for as import candidates. Runs in Celery."""
    from providers.capabilities import Capability

    conn = _connection(connection)
    matrix = capability_matrix(conn)
    if not matrix.supports(Capability.LIST_ACCOUNTS):
        raise PortalError(
            f"Scan unavailable: {matrix.reason(Capability.LIST_ACCOUNTS)}", field="connection", code="unsupported"
        )
    with transaction.atomic():
        job = job_create(
            kind="tenants.scan",
            title=f"Scan {conn.name} for unknown accounts",
            created_by=actor,
            params={"connection": conn.pk},
        )
        audit_log(
            actor=actor,
            action="tenants.unknown_accounts.scan_started",
            request=request,
            data={"connection": conn.name, "job": str(job.uuid)},
        )
        from tenants.tasks import scan_unknown_accounts

        transaction.on_commit(lambda: scan_unknown_accounts.delay(job.pk))
    return job


def unknown_accounts_scan_run(*, job_id: int) -> None:
    from providers.errors import ProviderError

    job = Job.objects.get(pk=job_id)
    conn = ProviderConnection.objects.get(pk=job.params["connection"])
    job_start(job_id=job.pk, message="Listing the provider's accounts…")
    seen = found = 0
    try:
        with client_for(conn) as client:
            for page in client.iter_account_pages():
                ids = [a.account_id for a in page if isinstance(a.account_id, int)]
                known = set(
                    Tenant.objects.filter(connection=conn, provider_account_id__in=ids).values_list(
                        "provider_account_id", flat=True
                    )
                )
                now = timezone.now()
                rows = [
                    UnknownProviderAccount(
                        connection=conn,
                        provider_account_id=a.account_id,
                        account_name=(a.name or "")[:100],
                        account_email=(a.email or "")[:254],
                        balance=a.balance,
                        currency=(a.currency or "")[:3],
                        active=a.active,
                        frozen=a.frozen,
                        last_seen_at=now,
                    )
                    for a in page
                    if isinstance(a.account_id, int) and a.account_id not in known
                ]
                UnknownProviderAccount.objects.bulk_create(
                    rows,
                    update_conflicts=True,
                    unique_fields=["connection", "provider_account_id"],
                    update_fields=[
                        "account_name",
                        "account_email",
                        "balance",
                        "currency",
                        "active",
                        "frozen",
                        "last_seen_at",
                    ],
                )
                seen += len(page)
                found += len(rows)
                job_advance(job_id=job.pk, by=0, message=f"{seen} accounts checked, {found} unknown to the portal.")
    except ProviderError as exc:
        job_finish(job_id=job.pk, ok=False, message=f"The scan stopped: {exc}. {seen} accounts checked so far.")
        return
    with transaction.atomic():
        audit_log(
            actor=None,
            action="tenants.unknown_accounts.scanned",
            data={"connection": conn.name, "checked": seen, "unknown": found, "job": str(job.uuid)},
        )
        job_finish(job_id=job.pk, ok=True, message=f"{seen} accounts checked, {found} unknown to the portal.")


# --- secrets ---------------------------------------------------------------------------------


def tenant_secrets(*, tenant: Tenant) -> dict[str, Any]:
    """Decrypted provider secrets, for provider calls only; never for templates or customers."""
    return decrypt_json(tenant.secrets_encrypted)


def tenant_secrets_rotate(*, batch_size: int = 1000, actor: Any = None) -> int:
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
