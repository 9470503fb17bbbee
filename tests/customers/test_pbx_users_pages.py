"""The users page: the owner creates a user with its own balance, funds it and sees the live
transfer; a viewer sees the list without actions; staff who move money act from the tenant's
users page, support only reads; another tenant's user is a 404."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import services
from billing.models import Transfer
from tenants.models import Membership, PbxUser
from tests.billing.conftest import Money
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def money(sandbox, vox_connection, settings) -> Money:
    settings.BILLING_SETTLE_SECONDS = 0
    return Money(sandbox, vox_connection)


def test_the_owner_creates_funds_and_deletes_a_user(client, money) -> None:
    tenant = money.tenant(balance="30")
    owner = CustomerFactory(username="pbx-owner", tenant=tenant)
    client.force_login(owner)
    page = client.get("/me/users/")
    assert page.status_code == 200 and b"Create a user" in page.content
    bad = client.post(
        "/me/users/create/", {"user_name": "No", "display_name": "x", "password": "p", "balance": "own"}, follow=True
    )
    assert b"A user name is 3 to 50 characters" in bad.content
    client.post(
        "/me/users/create/",
        {"user_name": "alice", "display_name": "Alice", "password": "Pbx-User-Pass-1!", "balance": "own"},
    )
    user = PbxUser.objects.get(tenant=tenant, user_name="alice")
    assert user.has_own_balance
    client.post(f"/me/users/{user.pk}/transfer/", {"amount": "7,50", "direction": "to_user", "key": "k1"})
    client.post(f"/me/users/{user.pk}/transfer/", {"amount": "7,50", "direction": "to_user", "key": "k1"})
    (t,) = Transfer.objects.filter(pbx_user=user)  # the resubmitted form recorded nothing new
    part = client.get("/me/users/?part=user_transfers")
    assert part.status_code == 200 and b"In progress" in part.content and b"hx-get" in part.content
    services.transfer_execute(transfer_id=t.pk)
    part = client.get("/me/users/?part=user_transfers")
    assert b"Done" in part.content and b"hx-get" not in part.content  # polling stops by itself
    page = client.get("/me/users/")
    assert b"still holds 7.50" in page.content  # delete refused with the reason
    refused = client.post(f"/me/users/{user.pk}/delete/", follow=True)
    assert b"still holds 7.50" in refused.content
    assert PbxUser.objects.get(pk=user.pk).deleted_at is None
    statement = client.get("/me/statement/")
    assert b"Moved from the company balance to Alice (alice)" in statement.content
    assert b"Money moved to user" not in statement.content  # the staff-side reason stays with staff


def test_a_viewer_sees_the_list_without_actions(client, money) -> None:
    tenant = money.tenant(balance="30")
    PbxUser.objects.create(tenant=tenant, provider_user_id=99, user_name="bob", parent_accounting=False, balance=0)
    viewer = CustomerFactory(username="pbx-viewer", tenant=tenant, role="customer_viewer")
    client.force_login(viewer)
    page = client.get("/me/users/")
    assert page.status_code == 200
    assert b"Create a user" not in page.content and b"Move money" not in page.content
    assert client.post("/me/users/create/", {"user_name": "carol"}).status_code == 403


def test_staff_who_move_money_act_and_support_reads(client, money, reseller_billing, reseller_support) -> None:
    tenant = money.tenant(balance="30")
    client.force_login(reseller_billing)
    url = f"/console/billing/tenants/{tenant.uuid}/users/"
    client.post(
        url + "create/",
        {"user_name": "dave", "display_name": "Dave", "password": "Pbx-User-Pass-1!", "balance": "own"},
    )
    user = PbxUser.objects.get(tenant=tenant, user_name="dave")
    client.post(f"{url}{user.pk}/transfer/", {"amount": "5", "direction": "to_user", "key": "s1"})
    assert Transfer.objects.get(pbx_user=user).amount == Decimal("5")
    client.force_login(reseller_support)
    page = client.get(url)
    assert page.status_code == 200 and b"dave" in page.content and b"Move money" not in page.content


def test_another_tenants_user_is_a_404(client, money) -> None:
    mine, other = money.tenant(), money.tenant()
    theirs = PbxUser.objects.create(tenant=other, provider_user_id=5, user_name="eve", parent_accounting=False)
    owner = CustomerFactory(username="pbx-owner2", tenant=mine)
    assert Membership.objects.get(user=owner).tenant_id == mine.pk
    client.force_login(owner)
    for action in ("update", "delete", "transfer"):
        assert client.post(f"/me/users/{theirs.pk}/{action}/", {"amount": "1"}).status_code == 404
        assert client.get(f"/me/users/{theirs.pk}/{action}/").status_code == 404
