"""The scan for provider accounts the portal does not know yet (import candidates), and the
lookup of one account by id, name or email (for providers that list accounts only so)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from portal import inputs
from portal.audit import audit_log
from portal.errors import PortalError
from portal.events import publish_on_commit
from portal.jobs import job_advance, job_create, job_finish, job_start
from portal.models import Job
from portal.roles import Actor, check_permission
from providers.base import AccountSnapshot, ListingNeedsFilter
from providers.capabilities import Capability
from providers.errors import ProviderError
from tenants import tasks
from tenants.connections import capability_matrix, client_for
from tenants.models import ProviderConnection, Tenant, UnknownProviderAccount
from tenants.services.validation import _connection

logger = logging.getLogger("tenants")

#: What the import page says when the provider refuses to list every account.
LISTING_REFUSED = "This provider only lists accounts by id, name or email; import by id, name or email below."
#: The key a refused scan leaves in its Job's params (the import page reads it).
LISTING_REFUSED_KEY = "listing_refused"
LOOKUP_FIELDS = {"id": "provider id", "name": "account name", "email": "email"}


def unknown_accounts_scan(
    *, actor: Actor, connection: ProviderConnection | str | int | None, request: HttpRequest | None = None
) -> Job:
    """List the provider's accounts now (instead of waiting for billing's nightly sync) and
    record those no tenant stands for as import candidates. Runs in Celery."""
    check_permission(actor, "tenants.manage", doing="scan the provider for accounts")

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
        publish_on_commit(lambda: tasks.scan_unknown_accounts.delay(job.pk), what=f"tenants.scan {job.pk}")
    return job


def unknown_accounts_scan_run(*, job_id: int) -> None:

    job = Job.objects.get(pk=job_id)
    conn = ProviderConnection.objects.get(pk=job.params["connection"])
    job_start(job_id=job.pk, message="Listing the provider's accounts…")
    seen = found = 0
    try:
        with client_for(conn) as client:
            for page in client.iter_account_pages():
                seen += len(page)
                found += _record_candidates(conn, page)
                job_advance(job_id=job.pk, by=0, message=f"{seen} accounts checked, {found} unknown to the portal.")
    except ListingNeedsFilter:
        _record_refusal(job)
        return
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


def _record_candidates(conn: ProviderConnection, accounts: Sequence[AccountSnapshot]) -> int:
    """Keep the accounts no tenant stands for as import candidates (one read, one upsert);
    how many there were."""
    ids = [a.account_id for a in accounts if isinstance(a.account_id, int)]
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
        for a in accounts
        if isinstance(a.account_id, int) and a.account_id not in known
    ]
    UnknownProviderAccount.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["connection", "provider_account_id"],
        update_fields=["account_name", "account_email", "balance", "currency", "active", "frozen", "last_seen_at"],
    )
    return len(rows)


def _record_refusal(job: Job) -> None:
    """The provider lists accounts only by id, name or email: say so on the scan's job, where
    the import page reads it, and in the audit log."""
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(params={**job.params, LISTING_REFUSED_KEY: True})
        audit_log(
            actor=None,
            action="tenants.unknown_accounts.scan_refused",
            data={"connection": job.params.get("connection"), "job": str(job.uuid), "reason": LISTING_REFUSED},
        )
        job_finish(job_id=job.pk, ok=False, message=LISTING_REFUSED)


def listing_refused(connection: ProviderConnection) -> bool:
    """Did the latest scan of this connection find that the provider lists accounts only by
    id, name or email?"""
    latest = (
        Job.objects.filter(kind="tenants.scan", params__connection=connection.pk, state__in=Job.FINISHED)
        .order_by("-id")
        .values_list("params", flat=True)
        .first()
    )
    return bool(latest and latest.get(LISTING_REFUSED_KEY))


def unknown_account_lookup(
    *, actor: Actor, connection: ProviderConnection | str | int | None, by: str, value: str
) -> list[int]:
    """Ask the provider for the account with this id, name or email (GetChildrenAccounts with
    that one filter, so it works where the provider refuses to list everything) and keep it
    as an import candidate. A name or email must be typed in full: the provider's filter may
    match parts, the answer is compared exactly. Returns the provider ids found (ascending)."""
    check_permission(actor, "tenants.manage", doing="import tenants")
    conn = _connection(connection)
    if by not in LOOKUP_FIELDS:
        raise PortalError("Choose to look the account up by provider id, name or email.", field="lookup_by")
    text = (value or "").strip()
    if not text or len(text) > 254:
        raise PortalError(f"Enter the account's full {LOOKUP_FIELDS[by]}.", field="lookup")
    matrix = capability_matrix(conn)
    if not matrix.supports(Capability.LIST_ACCOUNTS):
        raise PortalError(
            f"The provider cannot be asked about accounts: {matrix.reason(Capability.LIST_ACCOUNTS)}",
            field="lookup",
            code="unsupported",
        )
    if by == "id" and not (inputs.is_ascii_digits(text) and int(text) > 0):
        raise PortalError("Enter the provider's numeric account id.", field="lookup")
    try:
        with client_for(conn) as client:
            if by == "id":
                accounts = client.get_accounts([int(text)])
            elif by == "name":
                accounts = client.find_accounts(name=text)
            else:
                accounts = client.find_accounts(email=text)
    except ProviderError as exc:
        raise PortalError(f"The provider could not be asked: {exc}", field="lookup") from None
    if not accounts:
        raise PortalError(
            f"The provider has no account with the {LOOKUP_FIELDS[by]} “{text}”"
            + (" (type the full name or email, not a part of it)." if by != "id" else "."),
            field="lookup",
            code="not_found",
        )
    _record_candidates(conn, accounts)
    return sorted(int(a.account_id) for a in accounts)
