"""The scan for provider accounts the portal does not know yet (import candidates)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from portal.audit import audit_log
from portal.errors import PortalError
from portal.events import publish_on_commit
from portal.jobs import job_advance, job_create, job_finish, job_start
from portal.models import Job
from portal.roles import Actor, check_permission
from providers.capabilities import Capability
from providers.errors import ProviderError
from tenants import tasks
from tenants.connections import capability_matrix, client_for
from tenants.models import ProviderConnection, Tenant, UnknownProviderAccount
from tenants.services.validation import _connection

logger = logging.getLogger("tenants")


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
