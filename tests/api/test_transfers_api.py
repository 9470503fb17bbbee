"""Transfers through the API, against the sandbox: Idempotency-Key replay and conflict, strict
money input, maker-checker approval, list and detail, and sync runs."""

import pytest

from billing.models import Transfer
from tests.factories import CustomerFactory, TenantFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db


def auth(user, role=None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token(user, role=role)}"}


def post(client, url, body, headers, key=None):
    extra = dict(headers)
    if key is not None:
        extra["Idempotency-Key"] = key
    return client.post(url, body, content_type="application/json", headers=extra)


@pytest.fixture
def live_tenant(transactional_db, client, reseller_admin, vox_connection, celery_eager):
    """A tenant provisioned at the sandbox through the API. Transactional: billing calls the
    provider only outside a transaction, after the request's commit (tasks run eagerly)."""
    body = {
        "connection": str(vox_connection.uuid),
        "company_name": "Money Co",
        "account_name": "money-co",
        "account_email": "money@example.com",
    }
    response = post(client, "/api/v1/tenants", body, auth(reseller_admin))
    tenant = type(vox_connection.tenants.first()).objects.get(uuid=response.json()["id"])
    assert tenant.status == "active" and tenant.provider_account_id
    return tenant


def test_a_transfer_replays_on_retry_and_reaches_the_provider_once(
    client, reseller_billing, live_tenant, sandbox
) -> None:
    headers = auth(reseller_billing)
    url = f"/api/v1/tenants/{live_tenant.uuid}/transfers"
    body = {"amount": "25.50", "direction": "to_tenant", "reason": "April top-up"}
    first = post(client, url, body, headers, key="topup-april-1")
    assert first.status_code == 201, first.content
    again = post(
        client,
        url,
        {"reason": "April top-up", "direction": "to_tenant", "amount": "25.50"},
        headers,
        key="topup-april-1",
    )
    assert again.status_code == 201 and again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    different = post(client, url, {**body, "amount": "26.00"}, headers, key="topup-april-1")
    assert different.status_code == 409 and different.json()["error"]["code"] == "idempotency_key_reused"
    assert Transfer.objects.count() == 1
    transfer = Transfer.objects.get()
    assert transfer.origin == "api"
    assert transfer.state == "succeeded", (transfer.state, transfer.last_error)
    assert len(sandbox.store().transactions_by_reference(transfer.payment_reference)) == 2  # parent + child legs
    detail = client.get(f"/api/v1/transfers/{transfer.uuid}", headers=headers).json()
    assert detail["state"] == "succeeded" and detail["amount"] == "25.50" and detail["tenant"] == str(live_tenant.uuid)
    listed = client.get(f"/api/v1/transfers?tenant={live_tenant.uuid}&state=succeeded", headers=headers).json()
    assert [t["id"] for t in listed["results"]] == [str(transfer.uuid)]
    balance = client.get(f"/api/v1/tenants/{live_tenant.uuid}/balance", headers=headers).json()
    assert balance["currency"] == "USD"


def test_a_large_transfer_waits_for_a_second_person(client, reseller_billing, reseller_admin, live_tenant) -> None:
    maker = auth(reseller_billing)
    created = post(
        client,
        f"/api/v1/tenants/{live_tenant.uuid}/transfers",
        {"amount": "1500", "reason": "big deal"},
        maker,
        key="big-1",
    )
    assert created.status_code == 201, created.content
    assert created.json()["awaiting_approval"] is True
    approve_url = f"/api/v1/transfers/{created.json()['id']}/approve"
    same = post(client, approve_url, {}, maker)
    assert same.status_code == 403 and same.json()["error"]["code"] == "same_approver"
    assert (
        post(client, approve_url, {}, auth(UserFactory(username="support9", role="reseller_support"))).status_code
        == 403
    )
    approved = post(client, approve_url, {}, auth(reseller_admin))
    assert approved.status_code == 200 and approved.json()["approved_at"]
    assert Transfer.objects.get().state == "succeeded"


@pytest.mark.parametrize(
    "amount",
    [
        "-1",
        "0",
        "0.00",
        "-0.00",
        "0.001",
        "10.005",
        "NaN",
        "Infinity",
        "1e309",
        True,
        None,
        [],
        "١٠",
        "１０",
        " 10",
        "10,00",
        10.5,
        "1e3",
        "+10",
        "",
    ],
)
def test_bad_amounts_are_refused_before_anything_is_written(client, reseller_billing, amount) -> None:
    tenant = TenantFactory()
    response = post(
        client,
        f"/api/v1/tenants/{tenant.uuid}/transfers",
        {"amount": amount, "reason": "x"},
        auth(reseller_billing),
        key="bad-" + ascii(amount)[:200],
    )
    assert response.status_code == 400, (amount, response.content)
    assert "amount" in response.json()["error"]["fields"]
    assert not Transfer.objects.exists()


def test_raw_nan_in_json_is_a_parse_error(client, reseller_billing) -> None:
    tenant = TenantFactory()
    response = client.post(
        f"/api/v1/tenants/{tenant.uuid}/transfers",
        '{"amount": NaN, "reason": "x"}',
        content_type="application/json",
        headers={**auth(reseller_billing), "Idempotency-Key": "n"},
    )
    assert response.status_code == 400 and not Transfer.objects.exists()


def test_transfers_need_a_key_and_a_money_role(client, reseller_billing, reseller_support) -> None:
    tenant = TenantFactory()
    url = f"/api/v1/tenants/{tenant.uuid}/transfers"
    missing = post(client, url, {"amount": "5", "reason": "x"}, auth(reseller_billing))
    assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["error"]["fields"]
    assert post(client, url, {"amount": "5", "reason": "x"}, auth(reseller_support), key="k").status_code == 403
    owner = CustomerFactory(username="owner-t", tenant=tenant)
    customer = {"Authorization": f"Bearer {api_token(owner, tenant=tenant)}"}
    assert post(client, url, {"amount": "5", "reason": "x"}, customer, key="k").status_code == 403
    forged = post(
        client,
        url,
        {"amount": "5", "reason": "x", "child_account_id": 1, "tenant": 2},
        auth(reseller_billing),
        key="k2",
    )
    assert forged.status_code == 400 and {"child_account_id", "tenant"} <= set(forged.json()["error"]["fields"])
    assert not Transfer.objects.exists()


def test_sync_runs_start_and_report(client, reseller_billing, reseller_support, vox_connection) -> None:
    support = auth(reseller_support)
    body = {"connection": str(vox_connection.uuid)}
    assert post(client, "/api/v1/sync-runs", body, support).status_code == 403
    started = post(client, "/api/v1/sync-runs", body, auth(reseller_billing))
    assert started.status_code == 202, started.content
    run = started.json()
    assert run["connection"] == str(vox_connection.uuid) and run["state"] == "running"
    status = client.get(f"/api/v1/sync-runs/{run['id']}", headers=support)
    assert status.status_code == 200 and status.json()["id"] == run["id"]
    assert [r["id"] for r in client.get("/api/v1/sync-runs", headers=support).json()["results"]] == [run["id"]]
