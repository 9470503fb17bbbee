"""Every write a customer page makes. The tenant argument always comes from the caller's own
login (customers.selectors.customer_tenant), and each service checks the actor's role again,
so a view that forgot its decorator still cannot let a viewer change anything."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_noop

from billing.alerts import tenant_set_low_balance_threshold
from billing.sync import tenant_refresh
from customers import tasks
from portal import inputs
from portal.audit import audit_log
from portal.errors import NotAllowed, PortalError
from portal.events import publish_on_commit
from portal.models import ApiToken
from portal.roles import Role, assign_role, role_of
from providers.errors import ProviderError
from tenants.mail import language_of
from tenants.models import Membership, Tenant
from tenants.services import send_owner_invitation
from tenants.services.lifecycle import INVITE_RETRIES, invite_retry_delay, send_invitation

logger = logging.getLogger("customers")


def _require_owner(actor: User, tenant: Tenant) -> None:
    if role_of(actor) != Role.CUSTOMER_OWNER or not Membership.objects.filter(user_id=actor.pk, tenant=tenant).exists():
        raise NotAllowed("Only your company's owner may do this.", code="permission_denied")


def _require_member(actor: User, tenant: Tenant) -> None:
    if (
        role_of(actor) not in (Role.CUSTOMER_OWNER, Role.CUSTOMER_VIEWER)
        or not Membership.objects.filter(user_id=actor.pk, tenant=tenant).exists()
    ):
        raise NotAllowed("You are not a member of this company.", code="permission_denied")


def normalize_email(raw: str) -> str:
    email = (raw or "").strip()
    if not email:
        raise PortalError(gettext("Enter an email address."), field="email")
    if len(email) > 150:
        # The address becomes the username, which Django caps at 150 characters.
        raise PortalError(gettext("Use an email address of at most 150 characters."), field="email")
    try:
        validate_email(email)
    except ValidationError:
        raise PortalError(gettext("Enter a valid email address."), field="email") from None
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


# A failed invitation is retried by customers.tasks.invite_deliver: INVITE_RETRIES more attempts,
# the first INVITE_RETRY_SECONDS after the failure, each wait twice the one before (1, 2, 4, 8
# and 16 minutes), so a mail server that is down for half an hour still gets the email out.


def customer_invite(
    *, actor: User, tenant: Tenant, email: str, request: HttpRequest | None = None
) -> Membership | None:
    """Invites a viewer: a user with no usable password, a membership, and an email with a
    link to set the password. The role is always viewer: an invite cannot make an owner.

    The email is sent once the invite is committed. A mail server that is down never fails
    the invite: the membership stays, shows as not delivered, and is retried in the background
    (and may be resent from the team page).

    An address that already has an account outside this tenant (another tenant's user, staff)
    returns None: nothing is created, changed or sent, and the caller answers as for an invite
    that went out, so an invite never tells one tenant who has an account elsewhere
    (docs/security.md)."""
    _require_owner(actor, tenant)
    if not tenant.is_open:
        raise PortalError(gettext("Your company's account is not active; invitations are paused."))
    email = normalize_email(email)
    existing = User.objects.filter(email__iexact=email) | User.objects.filter(username__iexact=email)
    if existing.exists():
        own = Membership.objects.filter(user__in=existing, tenant=tenant).select_related("user").first()
        if own is not None and own.user.is_active and not own.user.has_usable_password():
            raise PortalError(
                gettext("This person is already invited; use Resend on the team page to send the email again."),
                field="email",
                code="duplicate",
            )
        if own is not None:
            raise PortalError(gettext("This person is already on your team."), field="email", code="duplicate")
        _invite_not_sent(actor=actor, tenant=tenant, request=request)
        return None
    try:
        with transaction.atomic():
            user = User(username=email, email=email)
            user.set_unusable_password()
            user.save()
            assign_role(user, Role.CUSTOMER_VIEWER)
            membership = Membership.objects.create(
                user=user,
                tenant=tenant,
                invited_by=actor,
                invite_delivery=Membership.InviteDelivery.PENDING,
                # The invitation speaks the inviter's language until the viewer chooses one.
                language=_invite_language(),
            )
            audit_log(
                actor=actor,
                action="customers.member.invited",
                tenant_id=tenant.pk,
                data={"email": email, "role": Role.CUSTOMER_VIEWER.value},
                request=request,
            )
            _deliver_on_commit(membership.pk)
    except IntegrityError:
        # A concurrent invite or sign-up took the address first: the same quiet answer.
        _invite_not_sent(actor=actor, tenant=tenant, request=request)
        return None
    membership.refresh_from_db()
    return membership


def _invite_language() -> str:
    """The inviter's language when it is not the default one (empty: the default)."""
    language = language_of(translation.get_language() or "")
    return "" if language == language_of("") else language


def _invite_not_sent(*, actor: User, tenant: Tenant, request: HttpRequest | None) -> None:
    """Staff can see in the tenant's audit trail that an invite matched an existing account;
    the address itself is not kept (it belongs to someone outside the tenant)."""
    audit_log(actor=actor, action="customers.member.invite_not_sent", tenant_id=tenant.pk, request=request)


def customer_invite_resend(
    *, actor: User, tenant: Tenant, membership: Membership, request: HttpRequest | None = None
) -> Membership:
    """Sends a viewer's invitation again (a new link; the earlier one keeps working until the
    password is chosen). If this attempt fails too, the background retries start over."""
    _require_owner(actor, tenant)
    if membership.tenant_id != tenant.pk:
        raise NotAllowed("Not a member of your company.")
    if role_of(membership.user) != Role.CUSTOMER_VIEWER:
        raise PortalError("Only a viewer's invitation can be resent here.")
    if not _awaiting_invitation(membership):
        raise PortalError(f"{membership.user.email} has already chosen a password; there is nothing to resend.")
    if not tenant.is_open:
        raise PortalError(gettext("Your company's account is not active; invitations are paused."))
    with transaction.atomic():
        audit_log(
            actor=actor,
            action="customers.member.invite_resent",
            tenant_id=tenant.pk,
            data={"email": membership.user.email, "previous_delivery": membership.invite_delivery},
            request=request,
        )
        _deliver_on_commit(membership.pk)
    membership.refresh_from_db()
    return membership


def _awaiting_invitation(membership: Membership) -> bool:
    user = membership.user
    return user.is_active and not user.has_usable_password()


def _deliver_on_commit(membership_id: int) -> None:
    """Once committed: one attempt now, and on failure the first background retry."""

    def deliver() -> None:
        if not invitation_deliver(membership_id=membership_id):
            _retry_later(membership_id, attempt=1)

    publish_on_commit(deliver, what=f"the team invitation {membership_id}")


def _retry_later(membership_id: int, *, attempt: int) -> None:
    publish_on_commit(
        lambda: tasks.invite_deliver.apply_async(args=[membership_id, attempt], countdown=invite_retry_delay(attempt)),
        what=f"customers.invite_deliver {membership_id}",
    )


def invitation_deliver(*, membership_id: int) -> bool:
    """One delivery attempt of a membership's invitation: the owner's (tenants sends it) or a
    viewer's. The outcome is kept on the membership. Never raises for a mail server that is
    down or slower than EMAIL_TIMEOUT; answers whether the email went out."""
    membership = Membership.objects.select_related("user", "tenant", "invited_by").get(pk=membership_id)
    if role_of(membership.user) == Role.CUSTOMER_OWNER:
        return send_owner_invitation(membership_id=membership_id)
    tenant = membership.tenant
    return send_invitation(
        membership,
        subject=gettext_noop("You are invited to %(company)s's account"),
        template="team_invite",
        context={
            "company": tenant.company_name,
            "inviter": membership.invited_by.get_username() if membership.invited_by else tenant.company_name,
        },
    )


def invitation_retry(*, membership_id: int, attempt: int) -> bool:
    """Background retry number ``attempt`` of an invitation that was not delivered. Does
    nothing for one that went out meanwhile (a resend), whose invitee already chose a password,
    or that was removed; after INVITE_RETRIES the invitation waits for a resend."""
    membership = Membership.objects.select_related("user").filter(pk=membership_id).first()
    if (
        membership is None
        or membership.invite_delivery == Membership.InviteDelivery.SENT
        or not _awaiting_invitation(membership)
    ):
        return False
    if invitation_deliver(membership_id=membership_id):
        return True
    if attempt < INVITE_RETRIES:
        _retry_later(membership_id, attempt=attempt + 1)
    else:
        logger.warning("the invitation (membership %s) was not delivered after %s retries", membership_id, attempt)
    return False


def customer_remove(*, actor: User, tenant: Tenant, membership: Membership, request: HttpRequest | None = None) -> None:
    """Removes a viewer: the membership goes, the user is deactivated and their tokens revoked."""
    _require_owner(actor, tenant)
    if membership.tenant_id != tenant.pk:
        raise NotAllowed("Not a member of your company.")
    if membership.user_id == actor.pk:
        raise PortalError(gettext("You cannot remove yourself."))
    if role_of(membership.user) != Role.CUSTOMER_VIEWER:
        raise PortalError(gettext("Only viewers can be removed here; ask your reseller to change an owner."))

    with transaction.atomic():
        user = membership.user
        email = user.email
        deleted, _ = Membership.objects.filter(pk=membership.pk, tenant=tenant).delete()
        if not deleted:
            return
        User.objects.filter(pk=user.pk).update(is_active=False)
        user.groups.clear()
        ApiToken.objects.filter(user_id=user.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        audit_log(
            actor=actor, action="customers.member.removed", tenant_id=tenant.pk, data={"email": email}, request=request
        )
    # End their open sessions too: a deactivated user's session no longer authenticates.


def customer_set_two_factor(
    *, actor: User, tenant: Tenant, required: bool, request: HttpRequest | None = None
) -> Tenant:
    """The owner's choice: every member signs in with a second factor (portal/twofactor.py sends
    members without one to set it up at their next sign-in)."""
    _require_owner(actor, tenant)
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.require_two_factor != required:
            locked.require_two_factor = required
            locked.save(update_fields=["require_two_factor"])
            audit_log(
                actor=actor,
                action="customers.team.two_factor_required" if required else "customers.team.two_factor_optional",
                tenant_id=tenant.pk,
                data={"require_two_factor": required},
                request=request,
            )
    tenant.require_two_factor = required
    return tenant


def customer_set_alert(
    *, actor: User, tenant: Tenant, threshold: Decimal | None, request: HttpRequest | None = None
) -> None:
    """The owner's low-balance alert, through billing's one threshold service (which also
    pushes the value to the provider)."""
    _require_owner(actor, tenant)
    tenant_set_low_balance_threshold(actor=actor, tenant=tenant, threshold=threshold, request=request)


def customer_profile_update(
    *, actor: User, first_name: str, last_name: str, request: HttpRequest | None = None
) -> None:
    for name, value in (("first_name", first_name), ("last_name", last_name)):
        if len(value) > 150:
            raise PortalError("At most 150 characters.", field=name)
        if any(ch in value for ch in "\x00\u202a\u202b\u202c\u202d\u202e"):
            raise PortalError("Control characters are not allowed.", field=name)
    with transaction.atomic():
        User.objects.filter(pk=actor.pk).update(first_name=first_name.strip(), last_name=last_name.strip())
        tenant_id = Membership.objects.filter(user_id=actor.pk).values_list("tenant_id", flat=True).first()
        audit_log(actor=actor, action="customers.profile.updated", tenant_id=tenant_id, request=request)


def refresh_allowed_in(*, tenant: Tenant) -> int:
    """Seconds until this tenant may ask the provider again (0 = now)."""
    import time

    until = cache.get(f"customers:refresh:{tenant.pk}")
    return max(0, int(until - time.time())) if until else 0


def customer_refresh_balance(*, actor: User, tenant: Tenant, request: HttpRequest | None = None) -> Tenant:
    """Asks the provider for the balance now. One call per tenant per CUSTOMER_REFRESH_INTERVAL:
    the cache entry is only a rate limit (losing it allows one extra call, nothing worse)."""
    import time

    _require_member(actor, tenant)
    interval = int(settings.CUSTOMER_REFRESH_INTERVAL)
    if not cache.add(f"customers:refresh:{tenant.pk}", time.time() + interval, interval):
        raise PortalError(
            gettext("The balance was refreshed moments ago. Try again in %(seconds)s s.")
            % {"seconds": refresh_allowed_in(tenant=tenant)},
            code="throttled",
            status=429,
        )
    return _refresh_from_provider(actor=actor, tenant=tenant, request=request)


def _refresh_from_provider(*, actor: User, tenant: Tenant, request: HttpRequest | None) -> Tenant:
    """A direct, short provider call (the client's timeouts bound it) through billing's own
    one-tenant refresh, which writes the balance and its snapshot the way the sync does."""

    if tenant.provider_account_id is None:
        raise PortalError(gettext("This account has no balance at the provider to refresh."), code="unsupported")
    try:
        tenant_refresh(tenant_id=tenant.pk)
    except ProviderError:
        raise PortalError(
            gettext("The provider did not answer; the balance shown is the last one we know."),
            code="provider_unavailable",
            status=503,
        ) from None
    audit_log(actor=actor, action="customers.balance.refreshed", tenant_id=tenant.pk, request=request)
    return Tenant.objects.get(pk=tenant.pk)


# -- the statement's period -----------------------------------------------------------------

STATEMENT_MAX_DAYS = 366
STATEMENT_DEFAULT_DAYS = 30  # billing.selectors.statement_rows shows this much without a "from"
STATEMENT_EARLIEST = date(2000, 1, 1)


@dataclass
class StatementPeriod:
    """The customer's From/To as typed, checked: ``errors`` maps a field ("from", "to") to what
    is wrong with it, and a period with errors is not asked of the provider at all."""

    date_from: date | None
    date_to: date | None
    errors: dict[str, str]


def statement_period(*, raw_from: str | None, raw_to: str | None, today: date) -> StatementPeriod:
    errors: dict[str, str] = {}
    parsed: dict[str, date | None] = {}
    for field_name, raw, label in (
        ("from", raw_from, gettext_noop("From date")),
        ("to", raw_to, gettext_noop("To date")),
    ):
        try:
            value = inputs.iso_date((raw or "").strip(), field=field_name, label=label)
        except PortalError as exc:
            errors[field_name], value = exc.message, None
        if value is not None and value < STATEMENT_EARLIEST:
            errors[field_name] = gettext("The %(label)s must be %(earliest)s or later.") % {
                "label": gettext(label),
                "earliest": STATEMENT_EARLIEST.isoformat(),
            }
            value = None
        parsed[field_name] = value
    date_from, date_to = parsed["from"], parsed["to"]
    if date_from is not None and date_from > today:
        errors["from"] = "The From date is in the future."
    elif date_from is not None and date_to is not None and date_from > date_to:
        errors["from"] = "The From date is after the To date; choose a From date on or before it."
    elif not errors:
        end = min(date_to or today, today)
        start = date_from or end - timedelta(days=STATEMENT_DEFAULT_DAYS)
        if (end - start).days + 1 > STATEMENT_MAX_DAYS:
            errors["from"] = f"The period is too long: choose at most {STATEMENT_MAX_DAYS} days."
    if errors:
        return StatementPeriod(None, None, errors)
    return StatementPeriod(date_from, date_to, {})
