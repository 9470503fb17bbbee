"""Tenants through the API: the console's filters, lifecycle calls, Idempotency-Key."""

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import IdempotencyRecord
from tenants.models import Tenant
from tests.factories import ProviderConnectionFactory, TenantFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(reseller_admin) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token(reseller_admin)}"}


def new_tenant_body(connection, n: int = 1, **extra) -> dict:
    return {
        "connection": str(connection.uuid),
        "company_name": f"Acme {n}",
        "account_name": f"acme-{n:04d}",
        "account_email": f"acme{n}@example.com",
        **extra,
    }


def post(client, url, body, headers, key=None):
    extra = dict(headers)
    if key:
        extra["Idempotency-Key"] = key
    return client.post(url, body, content_type="application/json", headers=extra)


def test_the_list_takes_the_consoles_search_and_filters(client, admin) -> None:
    connection = ProviderConnectionFactory()
    TenantFactory(company_name="Alpha Ltd", connection=connection, balance="5.00")
    TenantFactory(company_name="Beta GmbH", connection=connection, balance="500.00")
    TenantFactory(company_name="Alpine Co", connection=connection, status="frozen")
    names = lambda r: sorted(t["company_name"] for t in r.json()["results"])  # noqa: E731
    assert names(client.get("/api/v1/tenants?q=alp", headers=admin)) == ["Alpha Ltd", "Alpine Co"]
    assert names(client.get("/api/v1/tenants?status=frozen", headers=admin)) == ["Alpine Co"]
    assert names(client.get("/api/v1/tenants?balance_max=10", headers=admin)) == ["Alpha Ltd"]
    bad = client.get("/api/v1/tenants?status=bogus", headers=admin)
    assert bad.status_code == 400 and "status" in bad.json()["error"]["fields"]
    one = client.get("/api/v1/tenants?limit=1&sort=company", headers=admin).json()
    assert one["results"][0]["company_name"] == "Alpha Ltd" and one["next"]
    second = client.get(one["next"], headers=admin).json()
    assert second["results"][0]["company_name"] == "Alpine Co"


def test_create_with_an_idempotency_key_replays_and_refuses_a_different_body(client, admin) -> None:
    connection = ProviderConnectionFactory()
    first = post(client, "/api/v1/tenants", new_tenant_body(connection), admin, key="k-123")
    assert first.status_code == 201, first.content
    again = post(client, "/api/v1/tenants", new_tenant_body(connection), admin, key="k-123")
    assert again.status_code == 201 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Tenant.objects.count() == 1
    other = post(client, "/api/v1/tenants", new_tenant_body(connection, 2), admin, key="k-123")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert Tenant.objects.count() == 1


def test_keys_belong_to_their_owner(client, admin, reseller_admin) -> None:
    connection = ProviderConnectionFactory()
    assert post(client, "/api/v1/tenants", new_tenant_body(connection), admin, key="shared").status_code == 201
    someone = {"Authorization": f"Bearer {api_token(UserFactory(username='admin2', role='reseller_admin'))}"}
    response = post(client, "/api/v1/tenants", new_tenant_body(connection, 2), someone, key="shared")
    assert response.status_code == 201 and Tenant.objects.count() == 2


def test_invalid_input_releases_the_key(client, admin) -> None:
    connection = ProviderConnectionFactory()
    bad = post(client, "/api/v1/tenants", new_tenant_body(connection, account_name="Bad Name!"), admin, key="k-9")
    assert bad.status_code == 400
    good = post(client, "/api/v1/tenants", new_tenant_body(connection), admin, key="k-9")
    assert good.status_code == 201


def test_a_duplicate_in_flight_is_409_and_a_dead_one_is_taken_over(client, admin, reseller_admin) -> None:
    from api.idempotency import request_fingerprint  # noqa: F401 - the same hashing is exercised below

    connection = ProviderConnectionFactory()
    first = post(client, "/api/v1/tenants", new_tenant_body(connection), admin, key="k-live")
    record = IdempotencyRecord.objects.get(key="k-live")
    # Pretend the first request is still running: the duplicate must not run the work again.
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state="in_progress", status_code=None, body=None, locked_until=timezone.now() + timedelta(minutes=1)
    )
    busy = post(client, "/api/v1/tenants", new_tenant_body(connection), admin, key="k-live")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "idempotency_in_progress"
    # Its lease ran out (the process died): a retry takes over; the tenants service's own
    # operation key makes the retry return the same tenant instead of creating another.
    IdempotencyRecord.objects.filter(pk=record.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    retry = post(client, "/api/v1/tenants", new_tenant_body(connection), admin, key="k-live")
    assert retry.status_code == 201 and retry.json()["id"] == first.json()["id"]
    assert Tenant.objects.count() == 1


@pytest.mark.parametrize("key", ["x" * 256, "ключ", "a\tb"])
def test_malformed_keys_are_400(client, admin, key) -> None:
    response = post(client, "/api/v1/tenants", new_tenant_body(ProviderConnectionFactory()), admin, key=key)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]["fields"]


def test_lifecycle_calls_return_the_job_and_respect_roles(client, admin, reseller_billing, reseller_support) -> None:
    tenant = TenantFactory()
    billing = {"Authorization": f"Bearer {api_token(reseller_billing)}"}
    support = {"Authorization": f"Bearer {api_token(reseller_support)}"}
    url = f"/api/v1/tenants/{tenant.uuid}/freeze"
    assert post(client, url, {"reason": "unpaid"}, billing).status_code == 403
    missing = post(client, url, {}, support)
    assert missing.status_code == 400 and "reason" in missing.json()["error"]["fields"]
    response = post(client, url, {"reason": "unpaid"}, support)
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["state"] in ("queued", "running")
    status = client.get(f"/api/v1/jobs/{job['id']}", headers=support)
    assert status.status_code == 200 and status.json()["id"] == job["id"]
    # A second freeze while the first is open is refused by the service, in the error shape.
    again = post(client, url, {"reason": "again"}, admin)
    assert again.status_code in (400, 409) and "error" in again.json()
    assert post(client, f"/api/v1/tenants/{tenant.uuid}/close", {"reason": "x"}, support).status_code == 403


def test_a_tenant_created_through_the_api_is_provisioned_at_the_sandbox(
    client, admin, vox_connection, sandbox, celery_eager, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "/api/v1/tenants", new_tenant_body(vox_connection, 7), admin, key="sandbox-1")
    assert response.status_code == 201, response.content
    detail = client.get(f"/api/v1/tenants/{response.json()['id']}", headers=admin).json()
    assert detail["status"] == "active", detail
    assert detail["provider_account_id"]
    store = sandbox.store()
    assert store is not None
