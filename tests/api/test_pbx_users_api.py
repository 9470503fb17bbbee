"""PBX users over the API, against the sandbox over HTTP: create, list, rename, disable and
delete for staff and customers; money moved to a user with an Idempotency-Key that replays
(one movement at the provider, read from GetTransactionHistory); who may write and who only
reads; another tenant's user is a 404; a VoiceIt tenant a 409; bad input a 400, never a 500."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from billing.models import Transfer
from portal.models import AuditEvent
from tenants.models import Membership, PbxUser
from tests.billing.conftest import Money
from tests.billing.test_user_transfers import movements
from tests.factories import CustomerFactory, TenantFactory, TransferFactory, api_token, bearer
from tests.tenants.test_pbx_users import add_at_the_provider

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Api-User-Pass-1!"


@pytest.fixture(autouse=True)
def _fast_transfers(settings: Any) -> Any:
    settings.BILLING_SETTLE_SECONDS = 0
    settings.BILLING_PENDING_GRACE_SECONDS = 0
    settings.BILLING_REFRESH_AFTER_TRANSFER = False
    yield
    from billing import provider

    provider.forget_clients()


@pytest.fixture
def money(sandbox, vox_connection) -> Money:
    return Money(sandbox, vox_connection)


@pytest.fixture
def tenant(money) -> Any:
    return money.tenant(balance="50")


def call(client, method: str, url: str, headers: dict[str, str], body: Any = None, key: str | None = None) -> Any:
    extra = dict(headers)
    if key is not None:
        extra["Idempotency-Key"] = key
    if method == "get":
        return client.get(url, headers=extra)
    data = json.dumps(body) if body is not None else ""
    return getattr(client, method)(url, data=data, content_type="application/json", headers=extra)


def error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    if code is not None:
        assert body["code"] == code, body
    return body


def provider_users(money: Money, tenant: Any) -> dict[str, Any]:
    return {u.user_name: u for u in money.client.get_users(account_id=tenant.provider_account_id)}


def create_user(client, url: str, headers: dict[str, str], name: str = "alice", own: bool = True) -> dict[str, Any]:
    body = {"user_name": name, "display_name": name.title(), "password": PASSWORD, "own_balance": own}
    response = call(client, "post", url, headers, body)
    assert response.status_code == 201, response.content
    assert PASSWORD not in response.content.decode()
    return dict(response.json())


def test_staff_create_list_rename_disable_and_delete(client, money, tenant, reseller_billing, caplog) -> None:
    staff = bearer(api_token(reseller_billing))
    base = f"/api/v1/tenants/{tenant.uuid}/users"
    made = create_user(client, base, staff)
    assert made["own_balance"] is True and Decimal(made["balance"]) == 0 and "password" not in made
    shared = create_user(client, base, staff, "bob", own=False)
    assert shared["own_balance"] is False and shared["balance"] is None
    assert set(provider_users(money, tenant)) == {"alice", "bob"}
    # Made at the provider behind the portal's back: the list shows it after "read now".
    add_at_the_provider(money, tenant, "carol", own=False, password=PASSWORD)
    listed = call(client, "get", base, staff).json()
    assert sorted(u["user_name"] for u in listed["results"]) == ["alice", "bob"] and listed["next"] is None
    refreshed = call(client, "post", f"{base}/refresh", staff)
    assert refreshed.status_code == 200, refreshed.content
    assert sorted(u["user_name"] for u in refreshed.json()["results"]) == ["alice", "bob", "carol"]

    url = f"{base}/{made['id']}"
    changed = call(client, "patch", url, staff, {"user_name": "alice2", "display_name": "Alice Two", "active": False})
    assert changed.status_code == 200, changed.content
    assert (changed.json()["user_name"], changed.json()["active"]) == ("alice2", False)
    at_provider = provider_users(money, tenant)["alice2"]
    assert (at_provider.display_name, at_provider.active) == ("Alice Two", False)
    assert call(client, "patch", url, staff, {"active": True}).json()["active"] is True
    assert provider_users(money, tenant)["alice2"].active is True

    assert call(client, "delete", url, staff).status_code == 204
    assert "alice2" not in provider_users(money, tenant)
    assert PbxUser.objects.get(pk=made["id"]).deleted_at is not None
    assert made["id"] not in [u["id"] for u in call(client, "get", base, staff).json()["results"]]
    # The password went to the provider only.
    assert PASSWORD not in json.dumps([e.data for e in AuditEvent.objects.all()])
    assert PASSWORD not in caplog.text


def test_a_user_transfer_replays_on_retry_and_moves_once(client, money, tenant, reseller_billing, celery_eager) -> None:
    staff = bearer(api_token(reseller_billing))
    base = f"/api/v1/tenants/{tenant.uuid}/users"
    user = create_user(client, base, staff)
    url = f"{base}/{user['id']}/transfers"
    body = {"amount": "12.50", "direction": "to_user"}
    error(call(client, "post", url, staff, body), 400, "invalid")  # no Idempotency-Key
    first = call(client, "post", url, staff, body, key="fund-alice-1")
    assert first.status_code == 201, first.content
    again = call(client, "post", url, staff, {"direction": "to_user", "amount": "12.50"}, key="fund-alice-1")
    assert again.status_code == 201 and again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    error(call(client, "post", url, staff, {**body, "amount": "13.00"}, key="fund-alice-1"), 409)
    transfer = Transfer.objects.get()
    assert (transfer.direction, transfer.origin, transfer.state) == ("to_user", "api", "succeeded"), transfer.last_error
    assert len(movements(money, transfer)) == 1
    assert provider_users(money, tenant)["alice"].balance == Decimal("12.50")

    detail = call(client, "get", f"/api/v1/tenants/{tenant.uuid}/user-transfers/{transfer.uuid}", staff).json()
    assert (detail["state"], detail["amount"], detail["user"]) == ("succeeded", "12.50", user["id"])
    per_user = call(client, "get", url, staff).json()["results"]
    per_tenant = call(client, "get", f"/api/v1/tenants/{tenant.uuid}/user-transfers", staff).json()["results"]
    assert [t["id"] for t in per_user] == [t["id"] for t in per_tenant] == [str(transfer.uuid)]

    # Delete waits until the user's own money is back.
    refused = error(call(client, "delete", f"{base}/{user['id']}", staff), 409, "user_has_balance")
    assert "12.50 USD" in refused["message"]
    back = call(client, "post", url, staff, {"amount": "12.50", "direction": "from_user"}, key="back-1")
    assert back.status_code == 201 and back.json()["state"] == "succeeded", back.content
    assert call(client, "delete", f"{base}/{user['id']}", staff).status_code == 204
    assert "alice" not in provider_users(money, tenant)


def test_the_owner_writes_viewers_and_support_read(
    client, money, tenant, customer_owner, customer_viewer, reseller_support, celery_eager
) -> None:
    from django.test import Client

    Membership.objects.filter(user__in=[customer_owner, customer_viewer]).update(tenant=tenant)
    client.force_login(customer_owner)  # the owner signed in; a customer's token only reads
    owner: dict[str, str] = {}
    viewer_client = Client()
    viewer_client.force_login(customer_viewer)
    owner_token = bearer(api_token(customer_owner, tenant=tenant))
    support = bearer(api_token(reseller_support))
    user = create_user(client, "/api/v1/customer/users", owner)
    transfers = f"/api/v1/customer/users/{user['id']}/transfers"
    funded = call(client, "post", transfers, owner, {"amount": "5", "direction": "to_user"}, key="k1")
    assert funded.status_code == 201, funded.content
    shown = funded.json()
    assert shown["status"] == "done" and "state" not in shown and "payment_reference" not in shown
    assert shown["description"] == "Moved from the company balance to Alice (alice)"
    detail = call(viewer_client, "get", f"/api/v1/customer/user-transfers/{shown['id']}", {})
    assert detail.json()["status"] == "done"

    # The list is as last read; "read now" (viewers may) brings the balance the provider holds.
    listed = call(viewer_client, "get", "/api/v1/customer/users", {}).json()["results"]
    assert [u["user_name"] for u in listed] == ["alice"] and listed[0]["synced_at"]
    listed = call(viewer_client, "post", "/api/v1/customer/users/refresh", {}).json()["results"]
    assert [(u["user_name"], u["balance"]) for u in listed] == [("alice", "5.0000")]
    for reader, headers in ((viewer_client, {}), (client, owner_token)):
        error(call(reader, "post", "/api/v1/customer/users", headers, {"user_name": "eve"}), 403, "forbidden")
        error(call(reader, "patch", f"/api/v1/customer/users/{user['id']}", headers, {"active": False}), 403)
        error(call(reader, "delete", f"/api/v1/customer/users/{user['id']}", headers), 403)
        error(call(reader, "post", transfers, headers, {"amount": "1", "direction": "from_user"}, key="v1"), 403)
        assert call(reader, "get", transfers, headers).status_code == 200
    staff_base = f"/api/v1/tenants/{tenant.uuid}/users"
    assert [u["user_name"] for u in call(client, "get", staff_base, support).json()["results"]] == ["alice"]
    error(call(client, "post", staff_base, support, {"user_name": "eve"}), 403, "forbidden")
    error(call(client, "patch", f"{staff_base}/{user['id']}", support, {"active": False}), 403)
    error(call(client, "delete", f"{staff_base}/{user['id']}", support), 403)
    error(
        call(
            client,
            "post",
            f"{staff_base}/{user['id']}/transfers",
            support,
            {"amount": "1", "direction": "to_user"},
            key="s1",
        ),
        403,
    )
    assert Transfer.objects.count() == 1 and provider_users(money, tenant)["alice"].active is True


def test_another_tenants_user_is_a_404_like_a_missing_one(
    client, money, tenant, customer_owner, other_customer
) -> None:
    Membership.objects.filter(user=customer_owner).update(tenant=tenant)
    client.force_login(customer_owner)
    user = create_user(client, "/api/v1/customer/users", {})
    client.logout()
    transfer = TransferFactory(
        tenant=tenant,
        amount="1.00",
        reason="seed",
        direction="to_user",
        pbx_user=PbxUser.objects.get(pk=user["id"]),
        provider_user_id=PbxUser.objects.get(pk=user["id"]).provider_user_id,
    )
    outsider = bearer(api_token(other_customer, tenant=other_customer.membership.tenant))
    for uid in (user["id"], 987654321):
        for method, path, body in (
            ("get", f"/api/v1/customer/users/{uid}", None),
            ("patch", f"/api/v1/customer/users/{uid}", {"active": False}),
            ("delete", f"/api/v1/customer/users/{uid}", None),
            ("get", f"/api/v1/customer/users/{uid}/transfers", None),
            ("post", f"/api/v1/customer/users/{uid}/transfers", {"amount": "1", "direction": "to_user"}),
        ):
            error(call(client, method, path, outsider, body, key="x"), 404)
    error(call(client, "get", f"/api/v1/customer/user-transfers/{transfer.uuid}", outsider), 404)
    assert call(client, "get", "/api/v1/customer/users", outsider).json()["results"] == []
    assert call(client, "get", "/api/v1/customer/user-transfers", outsider).json()["results"] == []
    # Staff URLs are not a customer's at all.
    error(call(client, "get", f"/api/v1/tenants/{tenant.uuid}/users", outsider), 404)
    assert provider_users(money, tenant)["alice"].active is True


def test_a_voiceit_tenant_is_a_409_with_the_reason(client, voiceit_connection, reseller_admin) -> None:
    tenant = TenantFactory(connection=voiceit_connection, provider_account_id=None, provider_account_ref="vit-1")
    owner = CustomerFactory(username="vit-owner", tenant=tenant)
    staff = bearer(api_token(reseller_admin))
    for method, body in (("get", None), ("post", {"user_name": "alice", "display_name": "A", "password": PASSWORD})):
        refused = error(call(client, method, f"/api/v1/tenants/{tenant.uuid}/users", staff, body), 409, "unsupported")
        assert "VoiceIt has no telephony users" in refused["message"]
    error(call(client, "post", f"/api/v1/tenants/{tenant.uuid}/users/refresh", staff), 409, "unsupported")
    customer = error(call(client, "get", "/api/v1/customer/users", bearer(api_token(owner, tenant=tenant))), 409)
    assert customer["code"] == "unsupported" and "VoiceIt" not in customer["message"]


def test_bad_input_is_a_400_never_a_500(client, money, tenant, reseller_billing) -> None:
    staff = bearer(api_token(reseller_billing))
    base = f"/api/v1/tenants/{tenant.uuid}/users"
    good = {"user_name": "alice", "display_name": "Alice", "password": PASSWORD, "own_balance": True}
    for changes, field in (
        ({"user_name": "Al"}, "user_name"),
        ({"user_name": "-alice"}, "user_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "Al\u202eice"}, "display_name"),
        ({"password": "short"}, "password"),
        ({"password": "alllowercase-no-digits"}, "password"),
        ({"own_balance": "maybe"}, "own_balance"),
        ({"tenant": str(tenant.uuid)}, "tenant"),
        ({"provider_user_id": 5}, "provider_user_id"),
    ):
        refused = error(call(client, "post", base, staff, {**good, **changes}), 400)
        assert field in refused.get("fields", {}), (changes, refused)
        assert PASSWORD not in json.dumps(refused)
    error(client.post(base, data="not json", content_type="application/json", headers=staff), 400)
    assert provider_users(money, tenant) == {}
    user = create_user(client, base, staff)
    url = f"{base}/{user['id']}"
    error(call(client, "patch", url, staff, {}), 400)
    error(call(client, "patch", url, staff, {"active": "no"}), 400)
    error(call(client, "patch", url, staff, {"user_name": "UPPER"}), 400)
    for body in (
        {"amount": "1,00", "direction": "to_user"},
        {"amount": 1.5, "direction": "to_user"},
        {"amount": "0", "direction": "to_user"},
        {"amount": "1e3", "direction": "to_user"},
        {"amount": "-5", "direction": "from_user"},
        {"amount": "5", "direction": "to_tenant"},
        {"amount": "5"},
        [],
    ):
        refused = error(call(client, "post", f"{url}/transfers", staff, body, key=f"bad-{body!r}"), 400)
    assert refused["code"] == "invalid"
    error(call(client, "post", f"{url}/transfers", staff, {"amount": "5", "direction": "to_user"}, key="\u00e9"), 400)
    error(call(client, "get", f"{url}/transfers?cursor=%25%25", staff), 400)
    error(call(client, "get", f"{base}?limit=0", staff), 400)
    error(call(client, "get", f"{base}/987654321", staff), 404)
    assert Transfer.objects.count() == 0
