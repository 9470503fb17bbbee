"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis + hypothesis):
no generated request, valid or not, may produce a 5xx, and every error has the one shape.

Bounded: a fixed number of examples per operation and an overall time budget, so the whole
file stays well under a minute. Half the examples put a real tenant/transfer id into the
path so the fuzz reaches the services, not only the 404 branch. Real provider calls go to
the sandbox."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.factories import CustomerFactory, TenantFactory, TransferFactory, api_token, balance_history

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 12
BUDGET_SECONDS = 45.0


@pytest.fixture
def wsgi_keeps_the_test_connection():
    """Django's test client stops the WSGI handler from closing the database connection at
    each request's start and end; schemathesis drives the real handler, so do the same."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def load_schema(headers: dict[str, str]) -> Any:
    import schemathesis
    from django.core.handlers.wsgi import WSGIHandler

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler(), headers=headers)


def check_response(response: Any, label: str) -> None:
    assert response.status_code < 500, f"{label} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, f"{label}: {body}"
        assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "fields"}, f"{label}: {body}"


def fuzz_operation(operation: Any, headers: dict[str, str], real_ids: dict[str, str], deadline: float) -> int:
    """Runs one operation's bounded examples; returns how many requests were sent."""
    label = f"{operation.method.upper()} {operation.path}"
    calls = 0

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), use_real=st.booleans())
    def run(case: Any, use_real: bool) -> None:
        nonlocal calls
        if time.monotonic() > deadline:
            return
        if use_real and case.path_parameters:
            for name in case.path_parameters:
                if name in real_ids:
                    case.path_parameters[name] = real_ids[name]
        response = case.call(headers=headers)
        calls += 1
        check_response(response, f"{label} {case.path_parameters or ''} {str(case.body)[:200]}")

    run()
    return calls


def fuzz(
    schema: Any, headers: dict[str, str], real_ids: dict[str, str], deadline: float, only: str | None = None
) -> int:
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not only or operation.path.startswith(only):
            calls += fuzz_operation(operation, headers, real_ids, deadline)
    return calls


def test_the_api_survives_fuzzing_from_its_own_schema(
    reseller_admin, vox_connection, wsgi_keeps_the_test_connection
) -> None:
    from billing.models import SyncRun

    tenant = TenantFactory(company_name="Fuzz Co", connection=vox_connection)
    balance_history(tenant, ["10", "20"])
    transfer = TransferFactory(tenant=tenant, amount="1.00", reason="seed", state="pending")
    run = SyncRun.objects.create(connection=vox_connection, state="succeeded")
    owner = CustomerFactory(username="fuzz-owner", tenant=tenant)
    real_ids = {"tenant_uuid": str(tenant.uuid), "transfer_uuid": str(transfer.uuid), "sync_run_uuid": str(run.uuid)}

    started = time.monotonic()
    staff = {"Authorization": f"Bearer {api_token(reseller_admin)}"}
    schema = load_schema(staff)
    assert len(list(schema.get_all_operations())) >= 20
    calls = fuzz(schema, staff, real_ids, started + BUDGET_SECONDS)
    customer = {"Authorization": f"Bearer {api_token(owner, tenant=tenant)}"}
    calls += fuzz(load_schema(staff), customer, real_ids, started + BUDGET_SECONDS + 10, only="/api/v1/customer")
    assert calls > 100
