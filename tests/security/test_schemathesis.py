"""The API keeps the promises of its own schema: schemathesis, in-process against the WSGI
application, with every check it has (no 5xx, documented status codes, content types,
headers and bodies, invalid input refused, valid input accepted, ...) and none excluded, as a staff token on
the staff schema and as a customer token on the customer schema.

Bounded: a few examples per operation and generation mode, no deadline, one fixed seed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.factories import CustomerFactory, TenantFactory, TransferFactory, api_token, balance_history, bearer

pytestmark = pytest.mark.django_db

EXAMPLES = 15  # per operation and mode: the whole file stays under a minute


# Schema-valid input must be accepted: answered with a documented success, or refused only
# for what no schema can say - credentials (401), role (403), an id of nothing that exists
# (404), a name or email already taken, or a state that does not allow it (409). A 400 for
# well-formed input means the schema and the API disagree on a rule.
POSITIVE_DATA_STATUSES = ["2xx", "401", "403", "404", "409"]


def config() -> Any:
    from schemathesis.config import SchemathesisConfig

    return SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_DATA_STATUSES}}}
    )


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

    return schemathesis.openapi.from_wsgi(path, WSGIHandler(), headers=headers, config=config())


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
            case.call_and_validate(headers=headers)
        except (AssertionError, FailureGroup) as exc:
            found.append(f"{operation.method.upper()} {operation.path} [{mode.value}]: {_describe(exc)}")

    from django.core.cache import cache

    # A fresh request budget per operation and mode: the whole run is one token's ~1,200
    # requests within a minute, which the per-token throttle (rightly) answers with 429s.
    cache.clear()
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
    assert not unique, (
        f"{len(unique)} failures:\n" + "\n".join(map(_headline, unique)) + "\n\n" + "\n\n".join(unique[:10])
    )


def _headline(failure: str) -> str:
    """One line per failure: the operation, the status and the refusal's fields."""
    import re

    status = re.search(r"\[(\d{3})\]", failure)
    fields = re.search(r'"fields":(\{.*?\})\}', failure)
    return (
        f"  {failure.split(':', 1)[0]} {status.group(1) if status else '?'} {fields.group(1)[:160] if fields else ''}"
    )


# --- the statuses the check relies on, one by one ---------------------------------------------


def _error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if field is not None:
        assert field in error.get("fields", {}), error
    return error


def test_an_id_of_nothing_is_404_and_a_malformed_one_400(client, world) -> None:
    staff, nobody = world["staff"], "7f0c7a52-4d0e-4c3a-9a43-0a8d7f5e2b11"
    _error(client.get(f"/api/v1/transfers?tenant={nobody}", headers=staff), 404, "tenant")
    _error(client.get("/api/v1/transfers?tenant=not-a-uuid", headers=staff), 400, "tenant")
    _error(client.get(f"/api/v1/tenants?connection={nobody}", headers=staff), 404, "connection")
    body = {"connection": nobody}
    _error(client.post("/api/v1/sync-runs", body, content_type="application/json", headers=staff), 404, "connection")
    _error(client.post("/api/v1/sync-runs", {"connection": "x"}, content_type="application/json", headers=staff), 400)


def test_a_cursor_the_api_did_not_issue_is_404_and_a_malformed_one_400(client, world) -> None:
    staff = world["staff"]
    for path in ("/api/v1/audit-events", "/api/v1/sync-runs", "/api/v1/tenants", "/api/v1/transfers"):
        _error(client.get(f"{path}?cursor=Create", headers=staff), 404, "cursor")
        _error(client.get(f"{path}?cursor=%25%25", headers=staff), 400, "cursor")
    _error(client.get("/api/v1/customer/statement?cursor=Zm9v", headers=world["customer"]), 404, "cursor")
    # A cursor the API issued still works.
    first = client.get("/api/v1/audit-events?limit=1", headers=staff).json()
    if first["next"]:
        assert client.get(first["next"], headers=staff).status_code == 200


def test_a_name_or_email_taken_is_409(client, world, vox_connection) -> None:
    TenantFactory(company_name="Taken", connection=vox_connection, account_name="taken-name", account_email="t@x.test")
    body = {
        "connection": str(vox_connection.uuid),
        "company_name": "Second",
        "account_name": "taken-name",
        "account_email": "other@example.com",
    }
    post = lambda data: client.post("/api/v1/tenants", data, content_type="application/json", headers=world["staff"])  # noqa: E731
    _error(post(body), 409, "account_name")
    _error(post({**body, "account_name": "fresh-name", "account_email": "T@X.test"}), 409, "account_email")


def test_a_state_that_does_not_allow_it_is_409(client, world) -> None:
    from billing.models import Transfer

    staff = world["staff"]
    transfer = Transfer.objects.get(uuid=world["ids"]["transfer_uuid"])
    assert not transfer.awaiting_approval
    _error(
        client.post(f"/api/v1/transfers/{transfer.uuid}/approve", content_type="application/json", headers=staff), 409
    )
    tenant = world["ids"]["tenant_uuid"]
    patch = client.patch(
        f"/api/v1/tenants/{tenant}", {"account_name": "renamed-one"}, content_type="application/json", headers=staff
    )
    _error(patch, 409, "account_name")


def test_an_empty_balance_range_is_an_empty_page(client, world) -> None:
    response = client.get("/api/v1/tenants?balance_min=10&balance_max=5", headers=world["staff"])
    assert response.status_code == 200 and response.json() == {"results": [], "next": None}
    _error(client.get("/api/v1/tenants?balance_min=x&balance_max=5", headers=world["staff"]), 400)


def test_the_schema_states_the_rules_the_api_enforces(client, world) -> None:
    import re

    schema = client.get("/api/schema/?format=json", headers=world["staff"]).json()
    components = schema["components"]["schemas"]
    create = components["TenantCreateIn"]["properties"]
    assert create["password"]["minLength"] == 12
    assert re.fullmatch(create["account_name"]["pattern"][1:-1], "acme-0001")
    assert not re.fullmatch(create["account_name"]["pattern"][1:-1], "1acme")
    reason = components["ReasonIn"]["properties"]["reason"]["pattern"]
    assert re.search(reason, "closing, asked by the owner") and not re.search(reason, "refund\u202e")
    assert not re.search(reason, "   ")
    amount = components["TransferCreateIn"]["properties"]["amount"]["pattern"]
    assert re.search(amount, "5000") and re.search(amount, "0.01")
    assert not any(re.search(amount, value) for value in ("5000.01", "0", "0.00", "007", "1.234"))
    transfers = schema["paths"]["/api/v1/tenants/{tenant_uuid}/transfers"]["post"]["parameters"]
    key = next(p for p in transfers if p["name"] == "Idempotency-Key")["schema"]
    assert key["minLength"] == 1 and key["maxLength"] == 255 and "pattern" in key
