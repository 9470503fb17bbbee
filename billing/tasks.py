"""Thin Celery wrappers: load by id, call a service. Idempotency lives in the services (the
claim, the attempt fence, the running-run constraint), so any task may run twice or die.

Transfer tasks ack late and are rejected (redelivered) when their worker is lost: the claim
admits one caller and Transfer.attempt caps the loop (docs/money.md, "Crashes and unknown
outcomes")."""

from __future__ import annotations

import logging

from celery import shared_task

from portal.errors import PortalError
from providers.capabilities import Capability
from providers.errors import ProviderError
from tenants.models import ProviderConnection

logger = logging.getLogger("billing.tasks")

_TRANSFER = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="billing.transfer_execute", **_TRANSFER)
def transfer_execute_task(transfer_id: int) -> None:
    from billing.transfers import transfer_execute

    transfer_execute(transfer_id=transfer_id)


@shared_task(name="billing.transfer_reconcile", **_TRANSFER)
def transfer_reconcile_task(transfer_id: int) -> None:
    from billing.transfers import transfer_reconcile

    transfer_reconcile(transfer_id=transfer_id)


@shared_task(name="billing.transfer_sweep", ignore_result=True)
def transfer_sweep_task() -> None:
    from billing.transfers import transfer_sweep

    transfer_sweep()


# A walk of 530k children takes minutes; the default limits are for short tasks.
@shared_task(name="billing.sync_run", ignore_result=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 60)
def sync_run_task(sync_run_id: int) -> None:
    from billing.sync import sync_execute

    sync_execute(sync_run_id=sync_run_id)


# A shard of a balance run (billing/shards.py): any worker takes the next pending id range.
@shared_task(name="billing.sync_shard", ignore_result=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 60)
def sync_shard_task(sync_run_id: int, token: str) -> None:
    from billing.shards import shard_execute

    shard_execute(sync_run_id, token)


@shared_task(name="billing.sync_sweep", ignore_result=True)
def sync_sweep_task() -> None:
    """Beat: resume balance runs whose workers died, from the shards they had not finished."""
    from billing.shards import sync_sweep

    sync_sweep()


@shared_task(name="billing.reconcile_run", ignore_result=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 60)
def reconcile_run_task(sync_run_id: int) -> None:
    from billing.reconcile import reconcile_execute

    reconcile_execute(sync_run_id=sync_run_id)


def _start_all(kind: str) -> None:
    from billing import provider as prov
    from billing.models import SyncRun
    from billing.sync import run_start

    needed = Capability.LIST_BALANCES if kind == SyncRun.Kind.BALANCES else Capability.TRANSACTION_HISTORY
    for connection in ProviderConnection.objects.filter(is_active=True).order_by("pk"):
        if not prov.supports(connection, needed):
            continue
        try:
            run_start(actor=None, connection=connection, kind=kind)
        except PortalError as exc:  # already running (two beats): the DB lock admitted one
            logger.info("nightly %s for %s skipped: %s", kind, connection.name, exc.message)


@shared_task(name="billing.sync_nightly", ignore_result=True)
def sync_nightly_task() -> None:
    """Beat: a balance sync for every connection that can list balances."""
    _start_all("balances")


@shared_task(name="billing.reconcile_nightly", ignore_result=True)
def reconcile_nightly_task() -> None:
    _start_all("reconcile")


@shared_task(name="billing.low_balance_alerts", ignore_result=True)
def low_balance_alerts_task() -> None:
    from billing.alerts import low_balance_alerts_send

    low_balance_alerts_send()


@shared_task(name="billing.tenant_refresh", ignore_result=True)
def tenant_refresh_task(tenant_id: int) -> None:
    from billing.sync import tenant_refresh

    try:
        tenant_refresh(tenant_id=tenant_id)
    except ProviderError:
        logger.info("refreshing tenant %s after a transfer failed; the nightly sync will catch up", tenant_id)


@shared_task(name="billing.bulk_transfer", ignore_result=True, acks_late=True)
def bulk_transfer_task(job_id: int) -> None:
    from billing.bulk import bulk_transfer_run

    bulk_transfer_run(job_id=job_id)


@shared_task(name="billing.runway_check", ignore_result=True)
def runway_check_task(connection_id: int, currency: str | None = None) -> None:
    """After a balance sync or a budget refresh: email staff once per runway crossing."""
    from billing.runway import runway_alert_check

    runway_alert_check(connection_id=connection_id, currency=currency)
