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
