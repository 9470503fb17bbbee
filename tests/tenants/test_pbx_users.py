"""PBX users of a tenant against the sandbox: read (paged, every application), create with a
shared or an own balance, a lost AddUser answer settled by name, rename / disable / enable,
delete refused while the user holds money, the password never stored or audited."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from portal.errors import PortalError
from portal.models import AuditEvent
from tenants.models import Membership, PbxUser
from tenants.services import users as pbx
from tests.billing.conftest import Money

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Pbx-User-Pass-1!"


@pytest.fixture
def money(sandbox, vox_connection) -> Money:
    return Money(sandbox, vox_connection)


def _create(actor, tenant, name="alice", own=True, **extra):
    return pbx.pbx_user_create(
        actor=actor,
        tenant=tenant,
        user_name=name,
        display_name=name.title(),
        password=PASSWORD,
        own_balance=own,
        **extra,
    )


def add_at_the_provider(money, tenant, name: str, *, own: bool, password: str = PASSWORD) -> int:
    """A user made at the provider directly, in the tenant's first application, not through
    the portal (``own``: with its own balance); returns its provider id."""
    app = money.client.get_applications(account_id=tenant.provider_account_id)[0]
    return money.client.add_user(
        account_id=tenant.provider_account_id,
        user_name=name,
        user_display_name=name.title(),
        user_password=password,
        parent_accounting=not own,
        application_id=app.application_id,
    )


def test_create_read_rename_disable_and_delete(money, customer_owner) -> None:
    tenant = money.tenant(balance="20")
    Membership.objects.filter(user=customer_owner).update(tenant=tenant)
    own = _create(customer_owner, tenant)
    shared = _create(customer_owner, tenant, "bob", own=False)
    assert own.has_own_balance and own.balance == 0 and not shared.has_own_balance and shared.balance is None
    # Made at the provider behind the portal's back, then read in pages of one.
    add_at_the_provider(money, tenant, "carol", own=True)
    money.client.del_user(account_id=tenant.provider_account_id, user_id=shared.provider_user_id)
    listed = pbx.pbx_users_read(actor=customer_owner, tenant=tenant)
    assert sorted(u.user_name for u in listed) == ["alice", "carol"]
    shared.refresh_from_db()
    assert shared.deleted_at is not None  # gone at the provider, row kept
    own = pbx.pbx_user_update(actor=customer_owner, tenant=tenant, pbx_user=own, user_name="alice2", active=False)
    (snap,) = money.client.get_users(account_id=tenant.provider_account_id, user_id=own.provider_user_id)
    assert (snap.user_name, snap.active) == ("alice2", False) and (own.user_name, own.active) == ("alice2", False)
    own = pbx.pbx_user_update(actor=customer_owner, tenant=tenant, pbx_user=own, active=True)
    assert own.active
    pbx.pbx_user_delete(actor=customer_owner, tenant=tenant, pbx_user=own)
    own.refresh_from_db()
    assert own.deleted_at is not None
    actions = list(AuditEvent.objects.filter(tenant_id=tenant.pk).values_list("action", flat=True))
    assert actions.count("tenants.pbx_user.created") == 2 and "tenants.pbx_user.deleted" in actions
    assert PASSWORD not in json.dumps([e.data for e in AuditEvent.objects.all()])


def test_names_and_passwords_are_checked_before_any_call(money, reseller_billing) -> None:
    tenant = money.tenant()
    money.sandbox.set_faults([{"method": "*", "kind": "latency", "latency_ms": 0}])
    with pytest.raises(PortalError) as exc:
        pbx.pbx_user_create(
            actor=reseller_billing, tenant=tenant, user_name="Al", display_name="", password="short", own_balance=True
        )
    fields = {e.field for e in getattr(exc.value, "errors", [exc.value])}
    assert fields == {"user_name", "display_name", "password"}
    assert money.sandbox.admin("GET", "faults").json().get("log", []) == []


def test_a_lost_add_user_answer_is_settled_by_name_and_never_created_twice(money, reseller_billing) -> None:
    tenant = money.tenant()
    money.sandbox.set_faults([{"method": "AddUser", "kind": "apply_then_drop", "count": 1}])
    user = _create(reseller_billing, tenant)
    assert PbxUser.objects.filter(tenant=tenant, deleted_at__isnull=True).count() == 1
    assert [u.user_name for u in money.client.get_users(account_id=tenant.provider_account_id)] == ["alice"]
    # The request never arrived: the lookup proves nothing was made, and says so.
    money.sandbox.set_faults([{"method": "AddUser", "kind": "reset", "count": 1}])
    with pytest.raises(PortalError, match="nothing was created"):
        _create(reseller_billing, tenant, "dave")
    assert user.provider_user_id


def test_delete_is_refused_while_the_user_holds_money(money, reseller_billing) -> None:
    from billing import services

    tenant = money.tenant(balance="20")
    user = _create(reseller_billing, tenant)
    t = services.user_transfer_create(
        actor=reseller_billing, tenant=tenant, pbx_user=user, amount=Decimal("5"), direction="to_user"
    )
    services.transfer_execute(transfer_id=t.pk)
    with pytest.raises(PortalError, match=r"still holds 5\.00 USD"):
        pbx.pbx_user_delete(actor=reseller_billing, tenant=tenant, pbx_user=user)
    assert PbxUser.objects.get(pk=user.pk).deleted_at is None


def test_viewers_and_support_may_not_change_users(money, customer_viewer, reseller_support) -> None:
    tenant = money.tenant()
    for actor in (customer_viewer, reseller_support):
        with pytest.raises(PortalError, match="may not change"):
            _create(actor, tenant)
