"""Input rules of the tenant forms, the API and the services: names, emails, passwords,
thresholds and the reason text."""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.db.models.functions import Lower

from portal import inputs
from portal.errors import Conflict, ErrorCollector, PortalError
from providers.capabilities import Capability
from tenants.connections import capability_matrix
from tenants.models import ProviderConnection, Tenant, TenantOperation, UnknownProviderAccount

Op = TenantOperation

logger = logging.getLogger("tenants")

ACCOUNT_NAME_RE = inputs.ACCOUNT_NAME_RE


def validate_account_name(value: object, *, field: str = "account_name") -> str:
    return inputs.account_name(value, field=field)


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


def _connection(connection: ProviderConnection | str | int | None) -> ProviderConnection:
    if not isinstance(connection, ProviderConnection):
        found = None
        if connection not in (None, ""):
            try:
                found = ProviderConnection.objects.filter(
                    Q(uuid=connection) if not inputs.is_ascii_digits(str(connection)) else Q(pk=int(connection))
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
        raise Conflict("A tenant already uses this account name; choose another.", field="account_name")
    if live.annotate(_email=Lower("account_email")).filter(_email=account_email.lower()).exists():
        raise Conflict(
            "A tenant already uses this email address (emails are compared case-insensitively).", field="account_email"
        )
    unknown = UnknownProviderAccount.objects.filter(connection=connection)
    if unknown.filter(Q(account_name=account_name) | Q(account_email__iexact=account_email)).exists():
        raise Conflict(
            "The provider already has an account with this name or email that the portal does not "
            "know yet: import it instead.",
            field="account_name",
        )


def validate_account_input(
    *,
    connection: ProviderConnection | str | int | None,
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

    Checks every field before it raises, so a form shows all its errors at once: one wrong field
    raises its PortalError, several raise portal.errors.FieldErrors (the first one's message,
    every one in ``errors``). Used by create and clone (and by the admin's add form, so that it
    shows the same errors)."""

    found = ErrorCollector()
    conn = found.check(_connection, connection)
    company = found.check(
        inputs.text, company_name, field="company_name", label="company name", max_length=200, required=True
    )
    name = found.check(validate_account_name, account_name)
    email = found.check(inputs.email, account_email, field="account_email", label="account email")
    contact = found.check(inputs.text, contact_name, field="contact_name", label="contact name", max_length=200)
    contact_mail = found.check(
        inputs.email, contact_email, field="contact_email", label="contact email", required=False
    )
    kind = conn.kind if conn is not None else ""
    vtype = str(voiceit_type or "").strip()
    if kind == ProviderConnection.Kind.VOICEIT:
        if vtype not in Tenant.VoiceItType.values:
            found.errors.append(
                PortalError(
                    "Choose managed (the reseller pays) or unmanaged (the customer pays).", field="voiceit_type"
                )
            )
    elif vtype and conn is not None:
        found.errors.append(
            PortalError("Managed or unmanaged applies to VoiceIt connections only.", field="voiceit_type")
        )
    generated = password in (None, "")
    secret = generate_password() if generated else str(password)
    if not generated:
        found.check(_password_rules, secret, kind)
    note_text = found.check(inputs.text, notes, field="notes", label="notes", max_length=5000, multiline=True)
    plan_text = found.check(inputs.text, plan, field="plan", label="plan", max_length=100)
    threshold = found.check(inputs.threshold, low_balance_threshold, field="low_balance_threshold")
    invite = found.check(
        inputs.email, invite_owner_email, field="invite_owner_email", label="owner's email", required=False
    )
    if invite:
        user_model = get_user_model()
        if user_model.objects.filter(Q(username__iexact=invite) | Q(email__iexact=invite)).exists():
            found.errors.append(
                PortalError(
                    "A portal user with this email already exists; invite another address.",
                    field="invite_owner_email",
                )
            )
    if conn is not None and check_create and not capability_matrix(conn).supports(Capability.CREATE):
        found.errors.append(PortalError(capability_matrix(conn).reason(Capability.CREATE), field="connection"))
    if conn is not None and not found.fields() & {"account_name", "account_email", "connection"}:
        found.check(_check_unique, conn, name, email)
    found.raise_if_any()
    assert conn is not None and name is not None and email is not None and company is not None
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
