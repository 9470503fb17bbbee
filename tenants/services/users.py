"""PBX users inside a tenant's provider account: read them, create, rename, disable, enable
and delete them (docs/pbx_users.md).

The provider is the truth: ``pbx_users_read`` walks its user list (every application, page
by page) into :class:`~tenants.models.PbxUser`, and a user it no longer lists gets
``deleted_at`` (the row stays for its transfer history). Every change is one provider call
made with no database transaction open, then one short transaction with the row and its
audit event. A user's password goes to the provider and nowhere else: it is never stored,
audited or logged.

An AddUser whose answer was lost may have created the user: before anything else the name
is looked up at the provider (GetUsers by name), and a create is never sent again while a
user of that name exists there. Setting a user's fields is idempotent, so an unanswered
SetUserInfo is simply re-read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from portal import inputs
from portal.audit import audit_log
from portal.errors import Conflict, ErrorCollector, NotAllowed, PortalError
from portal.money_format import money
from portal.roles import Actor, Role, has_perm, role_of
from providers.capabilities import Capability
from providers.errors import InvalidArgument, NotFound, OutcomeUnknown, ProviderError
from providers.pbx_users import UserSnapshot
from providers.voximplant.users import USER_NAME_RE
from tenants.connections import client_for, effective_matrix
from tenants.models import Membership, PbxUser, Tenant
from tenants.services.validation import _password_rules

logger = logging.getLogger("tenants.users")

#: A page that opens the users list reads them from the provider at most this often.
READ_ON_OPEN_SECONDS = 30
DISPLAY_NAME_MAX = 255

OPEN_STATES = frozenset({Tenant.Status.ACTIVE, Tenant.Status.FROZEN})

#: A customer's words when the provider has no PBX users, or cannot move money to or from them
#: (the staff reason names the provider or its methods, and when they were last checked).
CUSTOMER_NO_USERS = "Your telephony service has no users to manage here."
CUSTOMER_NO_USER_TRANSFERS = "Money cannot be moved to or from your users at the moment."


# -- who may ----------------------------------------------------------------------------------


def _is_owner(actor: Actor, tenant: Tenant) -> bool:
    return (
        isinstance(actor, User)
        and role_of(actor) == Role.CUSTOMER_OWNER
        and Membership.objects.filter(user_id=actor.pk, tenant_id=tenant.pk).exists()
    )


def may_manage_pbx_users(actor: Actor, tenant: Tenant) -> bool:
    """Staff who may move money, and the tenant's own customer owner: the people who create,
    change and delete its PBX users and move money between the account and a user."""
    return has_perm(actor, "billing.move_money") or _is_owner(actor, tenant)


def may_view_pbx_users(actor: Actor, tenant: Tenant) -> bool:
    if has_perm(actor, "console.view"):
        return True
    return (
        isinstance(actor, User)
        and role_of(actor) in (Role.CUSTOMER_OWNER, Role.CUSTOMER_VIEWER)
        and Membership.objects.filter(user_id=actor.pk, tenant_id=tenant.pk).exists()
    )


def pbx_users_refusal(tenant: Tenant) -> str | None:
    """Why this tenant's users cannot be read or changed now, or None."""
    matrix = effective_matrix(tenant.connection)
    if not matrix.supports(Capability.PBX_USERS):
        return matrix.reason(Capability.PBX_USERS) or "This provider has no PBX users."
    if tenant.provider_account_id is None:
        return "This company has no provider account yet."
    if tenant.status not in OPEN_STATES:
        return f"Users cannot be changed while the company is {tenant.get_status_display().lower()}."
    return None


def customer_refusal(tenant: Tenant, refusal: str | None) -> str | None:
    """``refusal`` as a customer reads it: a reason of the (probed) capability matrix becomes
    plain words; any other refusal is already in them."""
    if refusal is None:
        return None
    matrix = effective_matrix(tenant.connection)
    for capability, words in (
        (Capability.PBX_USERS, CUSTOMER_NO_USERS),
        (Capability.PBX_USER_TRANSFERS, CUSTOMER_NO_USER_TRANSFERS),
    ):
        if refusal == matrix.reason(capability):
            return words
    return refusal


def pbx_user_manage_refusal(actor: Actor, tenant: Tenant) -> str | None:
    """The check every change runs, asked first by the pages that offer the forms."""
    if not may_manage_pbx_users(actor, tenant):
        return "You may not change this company's users."
    return pbx_users_refusal(tenant)


def _require_manage(actor: Actor, tenant: Tenant) -> None:
    if not may_manage_pbx_users(actor, tenant):
        raise NotAllowed("You may not change this company's users.", code="forbidden")
    refusal = pbx_users_refusal(tenant)
    if refusal is not None:
        raise PortalError(refusal, code="unsupported" if tenant.provider_account_id else "no_account")


def _account(tenant: Tenant) -> int:
    assert tenant.provider_account_id is not None  # pbx_users_refusal checked it
    return int(tenant.provider_account_id)


def _unavailable(exc: ProviderError, what: str) -> PortalError:
    logger.warning("%s: %s", what, exc)
    return PortalError(
        f"The provider did not answer while {what}; try again in a moment.", code="provider_unavailable", status=503
    )


# -- input rules ------------------------------------------------------------------------------


def validate_user_name(value: object, *, field: str = "user_name") -> str:
    """The provider's rule for a user name, checked before any call."""
    name = value.strip() if isinstance(value, str) else ""
    if not name:
        raise PortalError("Enter a user name.", field=field)
    if not USER_NAME_RE.fullmatch(name):
        raise PortalError(
            "A user name is 3 to 50 characters: lower-case latin letters, digits, '_' and '-', "
            "starting with a letter or a digit.",
            field=field,
        )
    return name


def validate_display_name(value: object, *, field: str = "display_name") -> str:
    text = inputs.text(value, field=field, label="display name", max_length=DISPLAY_NAME_MAX)
    if not text:
        raise PortalError("Enter a display name.", field=field)
    return text


# -- reading ------------------------------------------------------------------------------------


def _apply_snapshots(tenant: Tenant, snapshots: Iterable[UserSnapshot], now: datetime) -> list[PbxUser]:
    """Write what the provider listed; users it no longer lists are marked deleted."""
    currency = (tenant.currency or tenant.connection.currency or "").upper()
    seen: set[int] = set()
    with transaction.atomic():
        known = {u.provider_user_id: u for u in PbxUser.objects.select_for_update().filter(tenant=tenant)}
        for snap in snapshots:
            seen.add(snap.user_id)
            values: dict[str, Any] = {
                "user_name": snap.user_name[:50],
                "display_name": (snap.display_name or "")[:255],
                "application_id": snap.application_id,
                "application_name": (snap.application_name or "")[:200],
                "parent_accounting": snap.parent_accounting is not False,
                "active": snap.active is not False,
                "balance": snap.balance if snap.has_own_balance else None,
                "currency": currency,
                "synced_at": now,
                "deleted_at": None,
            }
            row = known.get(snap.user_id)
            if row is None:
                PbxUser.objects.filter(
                    tenant=tenant,
                    application_id=snap.application_id,
                    user_name=values["user_name"],
                    deleted_at__isnull=True,
                ).update(deleted_at=now)  # a name the provider freed and gave to this new user
                PbxUser.objects.create(tenant=tenant, provider_user_id=snap.user_id, **values)
            else:
                PbxUser.objects.filter(pk=row.pk).update(updated_at=now, **values)
        PbxUser.objects.filter(tenant=tenant, deleted_at__isnull=True).exclude(provider_user_id__in=seen).update(
            deleted_at=now, updated_at=now
        )
    return list(PbxUser.objects.filter(tenant=tenant, deleted_at__isnull=True))


def pbx_users_read(*, actor: Actor, tenant: Tenant, request: HttpRequest | None = None) -> list[PbxUser]:
    """Read every user of the tenant's account from the provider into PbxUser ("Read now",
    and a page that opens the list). Anyone who may see the list may refresh it."""
    if not may_view_pbx_users(actor, tenant):
        raise NotAllowed("You may not see this company's users.", code="forbidden")
    refusal = pbx_users_refusal(tenant)
    if refusal is not None and tenant.provider_account_id is None:
        raise PortalError(refusal, code="no_account")
    if not effective_matrix(tenant.connection).supports(Capability.PBX_USERS):
        raise PortalError(refusal or "This provider has no PBX users.", code="unsupported")
    try:
        with client_for(tenant.connection) as client:
            snapshots = client.get_users(account_id=_account(tenant))
    except ProviderError as exc:
        raise _unavailable(exc, "reading the users") from exc
    return _apply_snapshots(tenant, snapshots, timezone.now())


def pbx_users_read_on_open(*, actor: Actor, tenant: Tenant, version: str = "") -> str | None:
    """The read a page makes when it opens, at most every READ_ON_OPEN_SECONDS per tenant and
    ``version`` (what the caller knows changed the balances since, e.g. a settled transfer).
    Returns a note when the provider could not be read (the page shows the stored list)."""
    if pbx_users_refusal(tenant) is not None and tenant.provider_account_id is None:
        return None
    if not effective_matrix(tenant.connection).supports(Capability.PBX_USERS):
        return None
    key = f"tenants:pbx-users-read:{tenant.pk}:{version}"
    if not cache.add(key, 1, timeout=READ_ON_OPEN_SECONDS):
        return None
    try:
        pbx_users_read(actor=actor, tenant=tenant)
    except PortalError as exc:
        cache.delete(key)
        return exc.message
    return None


def _read_one(tenant: Tenant, user_id: int) -> UserSnapshot | None:
    with client_for(tenant.connection) as client:
        for snap in client.get_users(account_id=_account(tenant), user_id=user_id):
            if snap.user_id == user_id:
                return snap
    return None


def _store_one(tenant: Tenant, pbx_user: PbxUser, snap: UserSnapshot | None, now: datetime) -> PbxUser:
    if snap is None:
        PbxUser.objects.filter(pk=pbx_user.pk, deleted_at__isnull=True).update(deleted_at=now, updated_at=now)
    else:
        PbxUser.objects.filter(pk=pbx_user.pk).update(
            user_name=snap.user_name[:50],
            display_name=(snap.display_name or "")[:255],
            parent_accounting=snap.parent_accounting is not False,
            active=snap.active is not False,
            balance=snap.balance if snap.has_own_balance else None,
            synced_at=now,
            updated_at=now,
        )
    pbx_user.refresh_from_db()
    return pbx_user


def pbx_user_refresh(*, tenant: Tenant, pbx_user: PbxUser) -> PbxUser:
    """Re-read one user (its balance after a transfer). Provider errors are the caller's."""
    return _store_one(tenant, pbx_user, _read_one(tenant, pbx_user.provider_user_id), timezone.now())


# -- create -------------------------------------------------------------------------------------


def pbx_user_create(
    *,
    actor: Actor,
    tenant: Tenant,
    user_name: object,
    display_name: object,
    password: object,
    own_balance: bool,
    request: HttpRequest | None = None,
) -> PbxUser:
    """Add a user to the tenant's account (its first application). ``own_balance``: the user
    gets a balance of its own, funded from the account; otherwise it spends the account's
    money. A lost answer is settled by looking the name up before anything is sent again."""
    _require_manage(actor, tenant)
    errors = ErrorCollector()
    name = errors.check(lambda: validate_user_name(user_name))
    shown = errors.check(lambda: validate_display_name(display_name))
    secret = password if isinstance(password, str) else ""
    if not secret:
        errors.errors.append(PortalError("Enter a password for the user.", field="password"))
    else:
        errors.check(lambda: _password_rules(secret, tenant.connection.kind))
    if not isinstance(own_balance, bool):
        errors.errors.append(PortalError("Choose whether the user has a balance of its own.", field="own_balance"))
    errors.raise_if_any()
    assert isinstance(name, str) and isinstance(shown, str)
    if PbxUser.objects.filter(tenant=tenant, user_name=name, deleted_at__isnull=True).exists():
        raise Conflict("A user with this name already exists.", field="user_name", code="user_exists")
    account = _account(tenant)
    try:
        with client_for(tenant.connection) as client:
            # Before any send: a user of this name at the provider (an earlier create whose
            # answer was lost, or one made elsewhere) is never created twice.
            existing = client.find_user(account_id=account, user_name=name)
            if existing is not None:
                _apply_snapshots(tenant, client.get_users(account_id=account), timezone.now())
                raise Conflict(
                    "A user with this name already exists at the provider; it is now in the list.",
                    field="user_name",
                    code="user_exists",
                )
            apps = client.get_applications(account_id=account)
            if not apps:
                raise PortalError("The account has no application to hold users.", code="no_application")
            app = apps[0]
            try:
                user_id = client.add_user(
                    account_id=account,
                    user_name=name,
                    user_display_name=shown,
                    user_password=secret,
                    parent_accounting=not own_balance,
                    application_id=app.application_id,
                )
            except OutcomeUnknown:
                logger.warning("AddUser for tenant %s went unanswered; looking the name up", tenant.pk)
                found = client.find_user(account_id=account, user_name=name, application_id=app.application_id)
                if found is None:
                    raise PortalError(
                        "The provider did not answer and has no such user: nothing was created. Try again.",
                        code="provider_unavailable",
                        status=503,
                    ) from None
                user_id = found.user_id
            snap = next(
                (s for s in client.get_users(account_id=account, application_id=app.application_id, user_id=user_id)),
                None,
            )
    except InvalidArgument as exc:
        raise PortalError(_provider_words(exc), field=_form_field(exc.field), code="invalid") from exc
    except PortalError:
        raise
    except ProviderError as exc:
        raise _unavailable(exc, "creating the user") from exc
    now = timezone.now()
    with transaction.atomic():
        row, _ = PbxUser.objects.update_or_create(
            tenant=tenant,
            provider_user_id=user_id,
            defaults={
                "user_name": name,
                "display_name": shown,
                "application_id": app.application_id,
                "application_name": app.application_name[:200],
                "parent_accounting": not own_balance,
                "active": snap.active is not False if snap else True,
                "balance": (snap.balance if snap and snap.has_own_balance else (Decimal(0) if own_balance else None)),
                "currency": (tenant.currency or tenant.connection.currency or "").upper(),
                "synced_at": now,
                "deleted_at": None,
            },
        )
        audit_log(
            actor=actor,
            action="tenants.pbx_user.created",
            tenant_id=tenant.pk,
            request=request,
            data={"user": user_id, "user_name": name, "own_balance": own_balance},
        )
    return row


def _form_field(field: str | None) -> str | None:
    return {
        "user_name": "user_name",
        "new_user_name": "user_name",
        "user_display_name": "display_name",
        "user_password": "password",
    }.get(field or "")


def _provider_words(exc: ProviderError) -> str:
    text = getattr(exc, "message", "") or str(exc)
    return f"The provider refused: {text}"


# -- change ---------------------------------------------------------------------------------


def pbx_user_update(
    *,
    actor: Actor,
    tenant: Tenant,
    pbx_user: PbxUser,
    user_name: object = None,
    display_name: object = None,
    active: bool | None = None,
    request: HttpRequest | None = None,
) -> PbxUser:
    """Rename, disable or enable a user (SetUserInfo). An unanswered call is re-read: setting
    a field is idempotent, so the provider's answer to the read is the outcome."""
    _require_manage(actor, tenant)
    _require_live(pbx_user, tenant)
    errors = ErrorCollector()
    new_name = errors.check(lambda: validate_user_name(user_name)) if user_name not in (None, "") else None
    shown = errors.check(lambda: validate_display_name(display_name)) if display_name not in (None, "") else None
    if active is not None and not isinstance(active, bool):
        errors.errors.append(PortalError("Choose enabled or disabled.", field="active"))
    errors.raise_if_any()
    if new_name == pbx_user.user_name:
        new_name = None
    if shown == pbx_user.display_name:
        shown = None
    if active == pbx_user.active:
        active = None
    if new_name is None and shown is None and active is None:
        return pbx_user
    if (
        new_name is not None
        and PbxUser.objects.filter(tenant=tenant, user_name=new_name, deleted_at__isnull=True)
        .exclude(pk=pbx_user.pk)
        .exists()
    ):
        raise Conflict("A user with this name already exists.", field="user_name", code="user_exists")
    before = {"user_name": pbx_user.user_name, "display_name": pbx_user.display_name, "active": pbx_user.active}
    try:
        with client_for(tenant.connection) as client:
            try:
                client.set_user_info(
                    account_id=_account(tenant),
                    user_id=pbx_user.provider_user_id,
                    new_user_name=new_name,
                    user_display_name=shown,
                    user_active=active,
                )
            except OutcomeUnknown:
                logger.warning("SetUserInfo for user %s went unanswered; reading it back", pbx_user.pk)
        snap = _read_one(tenant, pbx_user.provider_user_id)
    except NotFound as exc:
        _store_one(tenant, pbx_user, None, timezone.now())
        raise PortalError("The provider no longer has this user.", code="user_gone", status=409) from exc
    except InvalidArgument as exc:
        raise PortalError(_provider_words(exc), field=_form_field(exc.field), code="invalid") from exc
    except ProviderError as exc:
        raise _unavailable(exc, "changing the user") from exc
    applied = snap is not None and (
        (new_name is None or snap.user_name == new_name)
        and (shown is None or snap.display_name == shown)
        and (active is None or (snap.active is not False) == active)
    )
    with transaction.atomic():
        row = _store_one(tenant, pbx_user, snap, timezone.now())
        if applied:
            audit_log(
                actor=actor,
                action="tenants.pbx_user.updated",
                tenant_id=tenant.pk,
                request=request,
                data={
                    "user": pbx_user.provider_user_id,
                    "before": before,
                    "after": {"user_name": row.user_name, "display_name": row.display_name, "active": row.active},
                },
            )
    if not applied:
        raise PortalError(
            "The provider did not confirm the change; the user is shown as it is now. Try again.",
            code="provider_unavailable",
            status=503,
        )
    return row


def _require_live(pbx_user: PbxUser, tenant: Tenant) -> None:
    if pbx_user.tenant_id != tenant.pk:
        raise PortalError("No such user.", code="not_found", status=404)
    if pbx_user.deleted_at is not None:
        raise PortalError("This user was deleted.", code="user_gone", status=409)


def pbx_user_delete_refusal(pbx_user: PbxUser) -> str | None:
    """Why this user cannot be deleted now (from what the portal last read), or None."""
    if pbx_user.deleted_at is not None:
        return "This user was deleted."
    if pbx_user.has_own_balance and pbx_user.balance not in (None, Decimal(0)):
        held = money(pbx_user.balance, pbx_user.currency or "USD")
        return f"The user still holds {held} of its own; move it back to the company's balance first."
    return None


def pbx_user_delete(
    *,
    actor: Actor,
    tenant: Tenant,
    pbx_user: PbxUser,
    open_transfers: bool = False,
    request: HttpRequest | None = None,
) -> PbxUser:
    """Delete a user at the provider (DelUser). Refused while its own balance is not zero (read
    fresh first) or while money is on its way to or from it (``open_transfers``, which billing
    knows and passes)."""
    _require_manage(actor, tenant)
    _require_live(pbx_user, tenant)
    if open_transfers:
        raise Conflict(
            "Money is still on its way to or from this user; delete it once that transfer is done.",
            code="transfer_open",
        )
    try:
        pbx_user = pbx_user_refresh(tenant=tenant, pbx_user=pbx_user)
    except ProviderError as exc:
        raise _unavailable(exc, "reading the user") from exc
    refusal = pbx_user_delete_refusal(pbx_user)
    if refusal is not None:
        raise Conflict(refusal, code="user_has_balance" if pbx_user.deleted_at is None else "user_gone")
    try:
        with client_for(tenant.connection) as client:
            try:
                client.del_user(account_id=_account(tenant), user_id=pbx_user.provider_user_id)
            except (OutcomeUnknown, NotFound):
                pass  # read back below: gone is gone, whoever's answer was lost
        snap = _read_one(tenant, pbx_user.provider_user_id)
    except InvalidArgument as exc:
        raise PortalError(_provider_words(exc), code="invalid", status=409) from exc
    except ProviderError as exc:
        raise _unavailable(exc, "deleting the user") from exc
    with transaction.atomic():
        row = _store_one(tenant, pbx_user, snap, timezone.now())
        if snap is None:
            audit_log(
                actor=actor,
                action="tenants.pbx_user.deleted",
                tenant_id=tenant.pk,
                request=request,
                data={"user": pbx_user.provider_user_id, "user_name": pbx_user.user_name},
            )
    if snap is not None:
        raise PortalError("The provider still lists this user; try again.", code="provider_unavailable", status=503)
    return row
