"""Thin Celery wrappers: ids in, a service call, nothing else (see tenants.services).

Each body imports the service it runs when it runs: the services queue these tasks, so they
import this module, and this module stays free of theirs at import time."""

from celery import shared_task


@shared_task(name="tenants.run_operation")
def run_operation(operation_id: int) -> str:
    from tenants.services import operation_run

    return operation_run(operation_id=operation_id)


@shared_task(name="tenants.sweep_operations")
def sweep_operations() -> int:
    from tenants.services import operations_sweep

    return operations_sweep()


@shared_task(name="tenants.run_bulk")
def run_bulk(job_id: int) -> None:
    from tenants.services import bulk_run

    bulk_run(job_id=job_id)


@shared_task(name="tenants.scan_unknown_accounts")
def scan_unknown_accounts(job_id: int) -> None:
    from tenants.services import unknown_accounts_scan_run

    unknown_accounts_scan_run(job_id=job_id)


@shared_task(name="tenants.owner_invite_deliver", ignore_result=True)
def owner_invite_deliver(membership_id: int, attempt: int = 1) -> bool:
    """Background retry ``attempt`` of an owner's invitation that was not delivered."""
    from tenants.services.lifecycle import owner_invitation_retry

    return owner_invitation_retry(membership_id=membership_id, attempt=attempt)


@shared_task(name="tenants.probe_connection", ignore_result=True)
def probe_connection(connection_id: int) -> bool:
    """Ask one connection's provider which methods it answers (queued when it is created)."""
    from tenants.capability_probe import connection_probe
    from tenants.models import ProviderConnection

    connection = ProviderConnection.objects.filter(pk=connection_id).first()
    return connection is not None and connection_probe(connection).answered


@shared_task(name="tenants.probe_capabilities_nightly", ignore_result=True)
def probe_capabilities_nightly() -> dict[str, int]:
    """The nightly probe of every active connection."""
    from tenants.capability_probe import connections_probe_all

    return connections_probe_all()


@shared_task(name="tenants.verification_nightly", ignore_result=True)
def verification_nightly(after_id: int = 0) -> dict[str, int]:
    """One batch of the nightly verification read; queues the next batch from where it stopped."""
    from django.conf import settings

    from tenants.services import verification_scan

    result = verification_scan(after_id=after_id, limit=int(getattr(settings, "VERIFICATION_BATCH", 500)))
    if result["last_id"]:
        verification_nightly.delay(result["last_id"])
    return result
