"""Helpers for the tenants tests: run the real tasks in-process, inspect the sandbox."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.utils import timezone

STRONG = "Correct-Horse-42-battery"


def drain(*, rounds: int = 20) -> int:
    """Run every runnable tenant operation through the real Celery task, one attempt at a time,
    as if each backoff delay had passed. Returns the number of attempts run."""
    from tenants.models import TenantOperation
    from tenants.tasks import run_operation

    ran = 0
    for _ in range(rounds):
        ops = list(TenantOperation.objects.filter(state__in=TenantOperation.RUNNABLE_STATES))
        if not ops:
            break
        for op in ops:
            TenantOperation.objects.filter(pk=op.pk).update(next_attempt_at=timezone.now())
            run_operation(op.pk)
            ran += 1
    return ran


def run_once(op: Any) -> None:
    """One attempt of one operation, through the real task, whatever its backoff says."""
    from tenants.models import TenantOperation
    from tenants.tasks import run_operation

    TenantOperation.objects.filter(pk=op.pk).update(next_attempt_at=timezone.now())
    run_operation(op.pk)


def last_op(tenant: Any) -> Any:
    return tenant.operations.order_by("-id").first()


def vi_accounts(sandbox: Any) -> list[dict[str, Any]]:
    con = sqlite3.connect(str(sandbox.db_path))
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM vi_accounts WHERE master_key IS NOT NULL")]
    finally:
        con.close()


def children(sandbox: Any) -> list[dict[str, Any]]:
    con = sqlite3.connect(str(sandbox.db_path))
    con.row_factory = sqlite3.Row
    try:
        return [
            dict(r)
            for r in con.execute(
                "SELECT account_id, account_name, account_email, active, frozen, balance FROM accounts "
                "WHERE parent_id IS NOT NULL"
            )
        ]
    finally:
        con.close()


def actions(tenant: Any) -> list[str]:
    from portal.models import AuditEvent

    return list(AuditEvent.objects.filter(tenant_id=tenant.pk).order_by("id").values_list("action", flat=True))


@pytest.fixture
def eager_tasks(celery_eager: None, django_capture_on_commit_callbacks: Any) -> Any:
    """Context manager: what the services enqueue on commit runs right away, in-process,
    through the real Celery tasks (billing's too)."""

    @contextmanager
    def run() -> Iterator[Any]:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            yield callbacks

    return run


def create_vox(connection: Any, actor: Any, name: str = "acme-one", **extra: Any) -> Any:
    from tenants.services import tenant_create

    values = {
        "company_name": "Acme One",
        "account_name": name,
        "account_email": f"{name}@example.com",
        "password": STRONG,
        **extra,
    }
    return tenant_create(actor=actor, connection=connection, **values)


def provisioned_vox(connection: Any, actor: Any, name: str = "acme-one", **extra: Any) -> Any:
    """A tenant created at the sandbox with its operations run to the end: active."""
    from tenants.models import Tenant

    tenant = create_vox(connection, actor, name, **extra)
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    return tenant
