"""The API keeps the promises of its own schema: schemathesis, in-process against the WSGI
application, with every check it has (no 5xx, documented status codes, content types,
headers and bodies, invalid input refused, valid input accepted, ...), as a staff token on
the staff schema and as a customer token on the customer schema.

Bounded: a few examples per operation and generation mode, no deadline, one fixed seed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.factories import CustomerFactory, TenantFactory, TransferFactory, api_token, balance_history, bearer

pytestmark = pytest.mark.django_db

EXAMPLES = 20


def _excluded() -> list[Any]:
    from schemathesis.checks import positive_data_acceptance

    # Every check but one: "schema-valid input is accepted". The API refuses, with a 400 and
    # the field named, input that is well formed but that its rules refuse: an account name
    # already taken, a password shorter than 12, an id of no tenant or connection, a page
    # cursor it did not issue (cursors are opaque). No schema can list those.
    return [positive_data_acceptance]


EXCLUDED = _excluded()


@pytest.fixture
def wsgi_keeps_the_test_connection():
    """schemathesis drives the real WSGI handler, which closes the database connection at each
    request's start and end; the test's transaction lives on that connection."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def load(path: str, headers: dict[str, str]) -> Any:
    import schemathesis
    from django.core.handlers.wsgi import WSGIHandler

    return schemathesis.openapi.from_wsgi(path, WSGIHandler(), headers=headers)


def _describe(failure: BaseException) -> str:
    text = str(failure).strip()
    return text[:1500]


def run_operation(operation: Any, headers: dict[str, str], real_ids: dict[str, str], mode: Any) -> list[str]:
    from schemathesis.core.failures import FailureGroup

    found: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        for name in list(case.path_parameters or {}):
            if name in real_ids and mode.name == "POSITIVE":
                case.path_parameters[name] = real_ids[name]
        try:
            case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)
        except (AssertionError, FailureGroup) as exc:
            found.append(f"{operation.method.upper()} {operation.path} [{mode.value}]: {_describe(exc)}")

    run()
    return found


def run_schema(schema: Any, headers: dict[str, str], real_ids: dict[str, str]) -> tuple[int, list[str]]:
    from schemathesis import GenerationMode

    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += run_operation(operation, headers, real_ids, mode)
    return operations, failures


@pytest.fixture
def world(vox_connection: Any, reseller_admin: Any) -> dict[str, Any]:
    from billing.models import SyncRun

    tenant = TenantFactory(company_name="Schema Co", connection=vox_connection)
    balance_history(tenant, ["10", "20"])
    transfer = TransferFactory(tenant=tenant, amount="1.00", reason="seed", state="pending")
    run = SyncRun.objects.create(connection=vox_connection, state="succeeded")
    owner = CustomerFactory(username="schema-owner", tenant=tenant)
    return {
        "ids": {"tenant_uuid": str(tenant.uuid), "transfer_uuid": str(transfer.uuid), "sync_run_uuid": str(run.uuid)},
        "staff": bearer(api_token(reseller_admin)),
        "customer": bearer(api_token(owner, tenant=tenant)),
    }


@pytest.mark.parametrize(
    "who,path,at_least",
    [("staff", "/api/schema/?format=json", 20), ("customer", "/api/customer/schema/?format=json", 4)],
)
def test_schemathesis_finds_nothing(world, wsgi_keeps_the_test_connection, who, path, at_least) -> None:
    from django.core.cache import cache

    cache.clear()
    headers = world[who]
    operations, failures = run_schema(load(path, headers), headers, world["ids"])
    assert operations >= at_least
    unique = sorted(set(failures))
    assert not unique, f"{len(unique)} failures:\n" + "\n\n".join(unique[:30])
