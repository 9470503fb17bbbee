"""A real Celery worker killed (SIGKILL) while the provider is creating the account: the
sweeper hands the operation to a new worker, which finds the account instead of making a
second one."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.models import Tenant, TenantOperation
from tenants.services import operations_sweep
from tests.conftest import start_worker
from tests.factories import UserFactory
from tests.tenants.conftest import children, create_vox, last_op

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_worker_killed_mid_create_never_makes_a_second_account(celery_worker, sandbox, vox_connection, tmp_path):
    admin = UserFactory(username="admin-w", role="reseller_admin")
    # The sandbox creates the child, then holds the reply back: the worker dies in between.
    sandbox.set_faults(
        [{"method": "AddAccount", "kind": "latency", "latency_ms": 6000, "latency_when": "after", "count": 1}]
    )
    tenant = create_vox(vox_connection, admin)
    assert _wait(lambda: len(children(sandbox)) == 1), celery_worker.log()
    celery_worker.kill()
    op = last_op(tenant)
    assert op.state == TenantOperation.State.SENDING and op.attempt == 1
    # Time passes: the dead worker's lease runs out; the sweeper (beat, every 30 s) notices.
    TenantOperation.objects.filter(pk=op.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    second = start_worker(tmp_path / "worker2.log")
    try:
        assert operations_sweep() == 1
        assert _wait(lambda: Tenant.objects.get(pk=tenant.pk).status == Tenant.Status.ACTIVE), second.log()
    finally:
        second.stop()
    tenant.refresh_from_db()
    assert len(children(sandbox)) == 1
    assert tenant.provider_account_id == children(sandbox)[0]["account_id"]
    op.refresh_from_db()
    assert op.attempt == 2 and "found at the provider after a lost reply" in op.job.message


def test_two_simultaneous_submits_with_one_operation_key_make_one_tenant(vox_connection):
    import threading

    from django.db import connection

    admin = UserFactory(username="admin-d", role="reseller_admin")
    barrier = threading.Barrier(2)
    results: list[object] = []

    def submit() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(create_vox(vox_connection, admin, operation_key="same-click-000001").pk)
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2 and results[0] == results[1], results
    assert Tenant.objects.count() == 1 and TenantOperation.objects.count() == 1
