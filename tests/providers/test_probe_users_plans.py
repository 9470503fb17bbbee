"""The capability probe for the PBX user, user transfer, plan and verification methods: each is
found missing when the sandbox answers it as an unknown command (103), and the pages and the
API that need it then refuse with the reason (staff) or plain words (customers), offering no
form, until a later probe finds the method again."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import reverse

from billing.models import Transfer
from providers.capabilities import AVAILABLE, MISSING, Capability
from tenants.capability_probe import connection_probe
from tenants.connections import effective_matrix
from tenants.models import Membership
from tenants.services import users as pbx
from tests.billing.conftest import Money
from tests.factories import UserFactory
from tests.providers.test_probe import PROBED, served

NEW_METHODS = {
    "AddUser": Capability.PBX_USERS,
    "GetUsers": Capability.PBX_USERS,
    "SetUserInfo": Capability.PBX_USERS,
    "DelUser": Capability.PBX_USERS,
    "TransferMoneyToUser": Capability.PBX_USER_TRANSFERS,
    "GetAccountPlans": Capability.ACCOUNT_PLANS,
    "GetAvailablePlans": Capability.ACCOUNT_PLANS,
    "ChangeAccountPlan": Capability.ACCOUNT_PLANS,
    "GetAccountDocuments": Capability.ACCOUNT_VERIFICATION,
}
PASSWORD = "Pbx-User-Pass-1!"


@pytest.mark.parametrize("method", list(NEW_METHODS))
def test_a_withdrawn_method_is_found_missing_and_the_rest_stand(socket_env: Any, method: str) -> None:
    socket_env.set_options(disabled_methods=method)
    found = socket_env.vox().probe_methods()
    assert found[method] == MISSING
    assert {m: s for m, s in found.items() if m != method} == {m: served(m) for m in PROBED if m != method}


# -- the portal --------------------------------------------------------------------------------


@pytest.fixture
def money(sandbox: Any, vox_connection: Any) -> Money:
    return Money(sandbox, vox_connection)


@pytest.fixture
def funded(money: Money, customer_owner: Any) -> Any:
    """A tenant of the customer owner with one user that has money of its own."""
    tenant = money.tenant(balance="30")
    Membership.objects.filter(user=customer_owner).update(tenant=tenant)
    user = pbx.pbx_user_create(
        actor=customer_owner,
        tenant=tenant,
        user_name="alice",
        display_name="Alice",
        password=PASSWORD,
        own_balance=True,
    )
    return tenant, user


def _probe_without(money: Money, methods: str) -> Any:
    money.sandbox.admin("PUT", "options", {"disabled_methods": methods})
    connection_probe(money.connection)
    money.connection.refresh_from_db()
    return money.connection


def _api(client: Any, method: str, url: str, body: Any = None, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    if method == "get":
        return client.get(url, headers=headers)
    return client.post(url, data=json.dumps(body or {}), content_type="application/json", headers=headers)


@pytest.mark.django_db(transaction=True)
def test_no_transfer_to_user_shows_the_reason_and_no_form(
    client: Any, money: Money, funded: Any, customer_owner: Any
) -> None:
    tenant, user = funded
    connection = _probe_without(money, "TransferMoneyToUser")
    assert connection.capabilities["TransferMoneyToUser"] == MISSING
    matrix = effective_matrix(connection)
    reason = matrix.reason(Capability.PBX_USER_TRANSFERS)
    assert reason and reason.startswith("The provider no longer answers TransferMoneyToUser (checked ")
    assert matrix.supports(Capability.PBX_USERS)  # the users themselves are still managed

    staff = UserFactory(username="userbiller", role="reseller_billing")
    client.force_login(staff)
    page = client.get(reverse("billing:tenant_users", args=[tenant.uuid])).content.decode()
    assert reason in page and 'data-testid="user-transfer-form"' not in page
    assert 'data-testid="user-create-form"' in page
    url = f"/api/v1/tenants/{tenant.uuid}/users/{user.pk}/transfers"
    answer = _api(client, "post", url, {"amount": "5.00", "direction": "to_user"}, key="staff-1")
    assert answer.status_code == 409, answer.content
    assert answer.json()["error"]["code"] == "unsupported" and reason in answer.json()["error"]["message"]

    client.force_login(customer_owner)
    page = client.get(reverse("customer:users")).content.decode()
    assert pbx.CUSTOMER_NO_USER_TRANSFERS in page and "TransferMoneyToUser" not in page
    assert 'data-testid="user-transfer-form"' not in page
    answer = _api(
        client, "post", f"/api/v1/customer/users/{user.pk}/transfers", {"amount": "5.00", "direction": "to_user"}, "c-1"
    )
    assert answer.status_code == 409, answer.content
    assert answer.json()["error"]["message"] == pbx.CUSTOMER_NO_USER_TRANSFERS
    assert not Transfer.objects.filter(tenant=tenant).exists()

    # The method answers again: the next probe lifts the refusal.
    _probe_without(money, "")
    assert money.connection.capabilities["TransferMoneyToUser"] == AVAILABLE
    page = client.get(reverse("customer:users")).content.decode()
    assert 'data-testid="user-transfer-form"' in page


@pytest.mark.django_db(transaction=True)
def test_no_user_methods_refuse_the_users_with_the_reason(
    client: Any, money: Money, funded: Any, customer_owner: Any
) -> None:
    tenant, _user = funded
    connection = _probe_without(money, "AddUser;DelUser")
    reason = effective_matrix(connection).reason(Capability.PBX_USERS)
    assert reason and "AddUser" in reason
    client.force_login(UserFactory(username="usersbiller", role="reseller_billing"))
    page = client.get(reverse("billing:tenant_users", args=[tenant.uuid])).content.decode()
    assert reason in page and 'data-testid="user-create-form"' not in page
    answer = _api(client, "get", f"/api/v1/tenants/{tenant.uuid}/users")
    assert answer.status_code == 409 and reason in answer.json()["error"]["message"]

    client.force_login(customer_owner)
    page = client.get(reverse("customer:users")).content.decode()
    assert pbx.CUSTOMER_NO_USERS in page and "AddUser" not in page
    assert 'data-testid="user-create-form"' not in page


@pytest.mark.django_db(transaction=True)
def test_no_plan_or_document_methods_refuse_plans_and_verification(
    client: Any, money: Money, reseller_admin: Any
) -> None:
    tenant = money.tenant(balance="10")
    connection = _probe_without(money, "ChangeAccountPlan;GetAccountDocuments")
    matrix = effective_matrix(connection)
    plans_reason = matrix.reason(Capability.ACCOUNT_PLANS)
    docs_reason = matrix.reason(Capability.ACCOUNT_VERIFICATION)
    assert plans_reason and "ChangeAccountPlan" in plans_reason
    assert docs_reason and "GetAccountDocuments" in docs_reason

    client.force_login(reseller_admin)
    page = client.get(reverse("tenants:detail", args=[tenant.uuid])).content.decode()
    assert plans_reason in page and docs_reason in page and "Change plan</a>" not in page
    assert client.get(reverse("tenants:change_plan", args=[tenant.uuid])).status_code == 409
    for url in ("account-plans", "account-plans/available", "verification"):
        answer = _api(client, "get", f"/api/v1/tenants/{tenant.uuid}/{url}")
        assert answer.status_code == 409, (url, answer.content)
        assert answer.json()["error"]["code"] == "unsupported"
    answer = _api(
        client,
        "post",
        f"/api/v1/tenants/{tenant.uuid}/account-plans/change",
        {"plan_type": "IM", "plan_id": 102},
        "p-1",
    )
    assert answer.status_code == 409 and plans_reason in answer.json()["error"]["message"]
    assert not tenant.operations.exists()
