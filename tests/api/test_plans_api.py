"""A tenant's provider plans and document verification through the API, against the sandbox
over HTTP: the stored read and "read now", the reseller admin's plan change (202 and a job,
one operation per Idempotency-Key, a clear 400 for a plan the account cannot move to), the
verification, VoiceIt's refusal, and the customer's read-only view (outsiders get 404)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from portal.models import IdempotencyRecord
from tenants.models import Tenant, TenantOperation
from tenants.services import verification_scan
from tests.factories import CustomerFactory, TenantFactory, api_token, bearer
from tests.tenants.conftest import create_vox, drain
from tests.tenants.test_plans import _active, _fund, _hold, _set_documents

pytestmark = pytest.mark.django_db

Op = TenantOperation


def _url(tenant, rest=""):
    return f"/api/v1/tenants/{tenant.uuid}/{rest}"


def _change(client, tenant, headers, body, key="change-1"):
    extra = dict(headers)
    if key is not None:
        extra["Idempotency-Key"] = key
    return client.post(_url(tenant, "account-plans/change"), body, content_type="application/json", headers=extra)


def _refresh(client, tenant, headers, body=None):
    return client.post(
        _url(tenant, "account-plans/refresh"), body or {}, content_type="application/json", headers=headers
    )


def _changes(tenant):
    return Op.objects.filter(tenant=tenant, kind=Op.Kind.CHANGE_PLAN).count()


@pytest.fixture
def vox_tenant(vox_connection, reseller_admin, sandbox):
    tenant = _active(vox_connection, reseller_admin, name="plans-api")
    _fund(vox_connection, tenant)
    return Tenant.objects.get(pk=tenant.pk)


@pytest.fixture
def admin(reseller_admin):
    return bearer(api_token(reseller_admin))


def test_staff_read_the_stored_plans_and_read_them_now(client, vox_tenant, reseller_support):
    support = bearer(api_token(reseller_support))
    before = client.get(_url(vox_tenant, "account-plans"), headers=support)
    assert before.status_code == 200, before.content
    assert before.json() == {"plans": [], "checked_at": None}
    read = _refresh(client, vox_tenant, support)
    assert read.status_code == 200, read.content
    body = read.json()
    assert [(p["plan_type"], p["plan_id"], p["name"]) for p in body["plans"]] == [
        ("IM", 101, "IM Start"),
        ("MAU", 201, "MAU 1000"),
    ]
    im = body["plans"][0]
    assert Decimal(im["price"]) == Decimal("10") and im["currency"] == "USD" and im["next_charge"]
    assert im["packages"][0]["name"] == "Messages" and im["packages"][0]["amount"] == 1000
    assert body["checked_at"] is not None
    # The stored read now answers what the provider said, without asking it again.
    assert client.get(_url(vox_tenant, "account-plans"), headers=support).json() == body
    assert _refresh(client, vox_tenant, support, {"x": 1}).status_code == 400


def test_provider_trouble_on_read_is_a_clear_error_not_a_500(client, vox_tenant, admin, sandbox):
    sandbox.set_faults([{"method": "GetAccountPlans", "kind": "error_code", "code": 100, "count": 10}])
    refused = _refresh(client, vox_tenant, admin)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "provider_error"
    sandbox.set_faults([{"method": "GetAccountPlans", "kind": "http_429", "count": 20}])
    busy = _refresh(client, vox_tenant, admin)
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "provider_unavailable"
    assert Tenant.objects.get(pk=vox_tenant.pk).account_plans_checked_at is None


def test_a_reseller_admin_changes_the_plan_once_per_key_and_reads_the_job(client, vox_tenant, admin, vox_connection):
    available = client.get(_url(vox_tenant, "account-plans/available"), headers=admin)
    assert available.status_code == 200, available.content
    offered = {(p["plan_type"], p["plan_id"]) for p in available.json()["plans"]}
    assert offered == {("IM", 102), ("IM", 103), ("MAU", 202), ("MAU", 203)}
    assert "reserves next month" in available.json()["notice"]

    first = _change(client, vox_tenant, admin, {"plan_type": "IM", "plan_id": 102})
    assert first.status_code == 202, first.content
    job = first.json()
    assert job["kind"] == "tenants.change_plan" and not job["finished"]
    op = Op.objects.get(uuid=job["operation"])
    assert op.kind == Op.Kind.CHANGE_PLAN and op.params == {"plan_type": "IM", "plan_id": 102}

    again = _change(client, vox_tenant, admin, {"plan_type": "IM", "plan_id": 102})
    assert again.status_code == 202 and again.json() == job and again["Idempotent-Replayed"] == "true"
    assert _changes(vox_tenant) == 1

    drain()
    status = client.get(f"/api/v1/jobs/{job['id']}", headers=admin).json()
    assert status["state"] == "succeeded" and status["finished"]
    plans = client.get(_url(vox_tenant, "account-plans"), headers=admin).json()
    assert plans["plans"][0]["plan_id"] == 102 and plans["checked_at"]
    assert _hold(vox_connection, vox_tenant) == Decimal("30")  # one fee + 20 % tax, not two
    # A replay after the change finished still starts nothing.
    assert _change(client, vox_tenant, admin, {"plan_type": "IM", "plan_id": 102}).json() == job
    assert _changes(vox_tenant) == 1


@pytest.mark.parametrize("persona", ["reseller_support", "reseller_billing"])
def test_support_and_billing_may_not_change_plans(client, vox_tenant, persona, request):
    headers = bearer(api_token(request.getfixturevalue(persona)))
    refused = _change(client, vox_tenant, headers, {"plan_type": "IM", "plan_id": 102})
    assert refused.status_code == 403 and refused.json()["error"]["message"] == "Only reseller admins change plans."
    assert client.get(_url(vox_tenant, "account-plans/available"), headers=headers).status_code == 403
    assert _changes(vox_tenant) == 0 and not IdempotencyRecord.objects.exists()
    # They still read the plans and the verification.
    assert client.get(_url(vox_tenant, "account-plans"), headers=headers).status_code == 200
    assert client.get(_url(vox_tenant, "verification"), headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan_type": "IM", "plan_id": 999}, "plan_id"),  # no such plan
        ({"plan_type": "IM", "plan_id": 101}, "plan_id"),  # the current one
        ({"plan_type": "MAU", "plan_id": 102}, "plan_id"),  # a plan of the other type
        ({"plan_type": "XX", "plan_id": 102}, "plan_type"),
        ({"plan_type": "IM", "plan_id": "abc"}, "plan_id"),
        ({"plan_type": "IM", "plan_id": 102, "tenant": 1}, "tenant"),
    ],
)
def test_a_plan_the_account_cannot_move_to_is_a_clear_400(client, vox_tenant, admin, body, field):
    refused = _change(client, vox_tenant, admin, body, key="k-bad")
    assert refused.status_code == 400, refused.content
    assert field in refused.json()["error"]["fields"]
    assert _changes(vox_tenant) == 0
    # Nothing started, so the key is free for the corrected request.
    assert _change(client, vox_tenant, admin, {"plan_type": "IM", "plan_id": 103}, key="k-bad").status_code == 202


def test_the_change_needs_an_idempotency_key(client, vox_tenant, admin):
    missing = _change(client, vox_tenant, admin, {"plan_type": "IM", "plan_id": 102}, key=None)
    assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["error"]["fields"]
    assert _changes(vox_tenant) == 0


def test_the_verification_as_last_read(client, vox_tenant, admin, sandbox):
    assert client.get(_url(vox_tenant, "verification"), headers=admin).json() == {
        "status": None,
        "hold_until": None,
        "checked_at": None,
    }
    hold = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    _set_documents(sandbox, vox_tenant, "REQUIRED", hold)
    verification_scan(fresh_for=timedelta(0))
    body = client.get(_url(vox_tenant, "verification"), headers=admin).json()
    assert body["status"] == "REQUIRED" and body["hold_until"].startswith(hold) and body["checked_at"]


def test_voiceit_tenants_are_told_plans_and_verification_are_unsupported(
    client, voiceit_connection, reseller_admin, admin
):
    tenant = TenantFactory(connection=voiceit_connection, status=Tenant.Status.ACTIVE, provider_account_ref="key_x")
    calls = [
        client.get(_url(tenant, "account-plans"), headers=admin),
        client.get(_url(tenant, "account-plans/available"), headers=admin),
        _refresh(client, tenant, admin),
        _change(client, tenant, admin, {"plan_type": "IM", "plan_id": 102}),
    ]
    for response in calls:
        assert response.status_code == 409, response.content
        error = response.json()["error"]
        assert error["code"] == "unsupported" and "VoiceIt has no subscription plans" in error["message"]
    verification = client.get(_url(tenant, "verification"), headers=admin)
    assert verification.status_code == 409
    assert "VoiceIt has no document verification" in verification.json()["error"]["message"]
    owner = bearer(api_token(CustomerFactory(tenant=tenant), tenant=tenant))
    for path in ("customer/account-plans", "customer/verification"):
        response = client.get(f"/api/v1/{path}", headers=owner)
        assert response.status_code == 409 and response.json()["error"]["code"] == "unsupported"
        assert "VoiceIt" not in response.json()["error"]["message"]
    assert not IdempotencyRecord.objects.exists()


def test_customers_read_their_own_plans_and_verification_only(client, vox_tenant, admin, sandbox, vox_connection):
    _refresh(client, vox_tenant, admin)
    hold = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    _set_documents(sandbox, vox_tenant, "REQUIRED", hold)
    verification_scan(fresh_for=timedelta(0))
    owner = CustomerFactory(tenant=vox_tenant)
    viewer = CustomerFactory(tenant=vox_tenant, role="customer_viewer")
    # The owner's token, and the viewer's session (tokens are the owner's to make).
    for headers in (bearer(api_token(owner, tenant=vox_tenant)), None):
        if headers is None:
            client.force_login(viewer)
            headers = {}
        plans = client.get("/api/v1/customer/account-plans", headers=headers)
        assert plans.status_code == 200, plans.content
        assert [p["name"] for p in plans.json()["plans"]] == ["IM Start", "MAU 1000"]
        assert all("price" not in p and all("price" not in k for k in p["packages"]) for p in plans.json()["plans"])
        verification = client.get("/api/v1/customer/verification", headers=headers).json()
        assert verification["status"] == "REQUIRED" and verification["hold_until"].startswith(hold)
        for path in ("customer/account-plans", "customer/verification"):
            assert (
                client.post(f"/api/v1/{path}", {}, content_type="application/json", headers=headers).status_code == 405
            )
        # The staff routes of their own tenant are not theirs either: 404, as for a missing one.
        for rest in ("account-plans", "account-plans/available", "verification"):
            assert client.get(_url(vox_tenant, rest), headers=headers).status_code == 404
        assert _change(client, vox_tenant, headers, {"plan_type": "IM", "plan_id": 102}).status_code == 404
        assert _refresh(client, vox_tenant, headers).status_code == 404
    assert _changes(vox_tenant) == 0


def test_an_outsider_gets_404_and_sees_only_their_own_tenant(
    client, vox_tenant, admin, vox_connection, reseller_admin, other_customer
):
    _refresh(client, vox_tenant, admin)
    Tenant.objects.filter(pk=vox_tenant.pk).update(verification_status="REQUIRED")
    outsider_tenant = create_vox(vox_connection, reseller_admin, name="plans-outsider")
    drain()
    outsider = CustomerFactory(tenant=Tenant.objects.get(pk=outsider_tenant.pk))
    for headers in (bearer(api_token(outsider, tenant=outsider_tenant)), None):
        if headers is None:
            client.force_login(other_customer)
            headers = {}
        missing = client.get(f"/api/v1/tenants/{uuid.uuid4()}/account-plans", headers=headers)
        for rest in ("account-plans", "account-plans/available", "verification"):
            response = client.get(_url(vox_tenant, rest), headers=headers)
            assert response.status_code == 404 == missing.status_code
        assert _change(client, vox_tenant, headers, {"plan_type": "IM", "plan_id": 102}).status_code == 404
        assert _refresh(client, vox_tenant, headers).status_code == 404
    outsider_view = client.get(
        "/api/v1/customer/account-plans", headers=bearer(api_token(outsider, tenant=outsider_tenant))
    ).json()
    assert outsider_view == {"plans": [], "checked_at": None}
    assert (
        client.get("/api/v1/customer/verification", headers=bearer(api_token(outsider, tenant=outsider_tenant))).json()[
            "status"
        ]
        is None
    )
    # Staff have no company: the customer routes are not theirs (as for the balance).
    client.logout()
    assert client.get("/api/v1/customer/account-plans", headers=admin).status_code == 403
    assert _changes(vox_tenant) == 0
    assert Tenant.objects.get(pk=vox_tenant.pk).account_plans_checked_at is not None


def test_the_schemas_document_the_plan_routes_and_their_errors(client, admin, customer_owner, customer_tenant):
    staff = client.get("/api/schema/?format=json", headers=admin).json()
    change = staff["paths"]["/api/v1/tenants/{tenant_uuid}/account-plans/change"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in change["parameters"])
    assert change["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/PlanChangeOut")
    for status in ("400", "403", "404", "409", "503"):
        assert change["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    body = staff["components"]["schemas"]["PlanChangeIn"]
    assert body["additionalProperties"] is False and set(body["required"]) == {"plan_type", "plan_id"}
    for path in ("account-plans", "account-plans/available", "account-plans/refresh", "verification"):
        assert f"/api/v1/tenants/{{tenant_uuid}}/{path}" in staff["paths"]
    customer = client.get(
        "/api/customer/schema/?format=json", headers=bearer(api_token(customer_owner, tenant=customer_tenant))
    ).json()
    assert {"/api/v1/customer/account-plans", "/api/v1/customer/verification"} <= set(customer["paths"])
    assert not any("account-plans/change" in path for path in customer["paths"])
    plan = customer["components"]["schemas"]["CustomerPlanOut"]["properties"]
    assert "price" not in plan
