"""Transfers on a connection whose provider no longer answers TransferMoneyToChildAccount (as
the last probe found) are refused before anything is recorded: no Transfer row, no budget
reservation, no ledger entry, by every way in (service, staff form, bulk, API)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing import provider as prov
from billing import services
from billing.models import ResellerBudget, Transfer
from portal.errors import PortalError
from providers.capabilities import Capability
from tenants.capability_probe import connection_probe
from tests.factories import UserFactory, api_token

pytestmark = pytest.mark.django_db

REFUSAL = "The provider no longer answers TransferMoneyToChildAccount (checked "


def _money_state() -> tuple[Any, ...]:
    from billing.models import JournalEntry, StaffDailyUsage

    return (
        Transfer.objects.count(),
        sorted(ResellerBudget.objects.values_list("currency", "available", "provider_balance")),
        JournalEntry.objects.count(),
        StaffDailyUsage.objects.count(),
    )


@pytest.fixture
def gone(money: Any) -> Any:
    """A funded tenant whose connection's provider answered 103 for transfers at the last probe."""
    tenant = money.tenant(balance="20")
    money.sandbox.admin("PUT", "options", {"disabled_methods": "TransferMoneyToChildAccount"})
    outcome = connection_probe(money.connection)
    assert outcome.capabilities["TransferMoneyToChildAccount"] == "missing"
    tenant.connection.refresh_from_db()
    return tenant


def test_the_matrix_says_why(gone: Any) -> None:
    connection = gone.connection
    assert not prov.supports(connection, Capability.TRANSFER_MONEY)
    reason = prov.unsupported_reason(connection, Capability.TRANSFER_MONEY)
    assert reason == f"{REFUSAL}{connection.capabilities_checked_at:%Y-%m-%d %H:%M})"
    # What does not need the method stays as the static matrix says.
    assert prov.supports(connection, Capability.LIST_BALANCES)


@pytest.mark.parametrize("direction", ["to_tenant", "to_parent"])
def test_the_service_refuses_before_recording_anything(gone: Any, money: Any, direction: str) -> None:
    actor = UserFactory(username="biller", role="reseller_billing")
    before = _money_state()
    parent_before = money.parent_balance()
    with pytest.raises(PortalError) as refused:
        services.transfer_create(
            actor=actor, tenant=gone, amount=Decimal("5"), direction=direction, reason="top-up", idempotency_key="k1"
        )
    assert refused.value.message.startswith(REFUSAL)
    assert refused.value.status == 400 and refused.value.field == "tenant"
    assert _money_state() == before
    assert money.parent_balance() == parent_before
    assert money.child_balance(gone.provider_account_id) == Decimal("20")


def test_a_later_probe_that_finds_it_again_lets_transfers_through(gone: Any, money: Any) -> None:
    money.sandbox.admin("PUT", "options", {"disabled_methods": ""})
    connection_probe(gone.connection)
    gone.connection.refresh_from_db()
    actor = UserFactory(username="biller2", role="reseller_billing")
    transfer = services.transfer_create(
        actor=actor, tenant=gone, amount=Decimal("5"), direction="to_tenant", reason="top-up", dispatch=False
    )
    assert Transfer.objects.filter(pk=transfer.pk).exists()


def test_the_staff_form_shows_the_refusal(client: Any, gone: Any) -> None:
    client.force_login(UserFactory(username="formbiller", role="reseller_billing"))
    before = _money_state()
    response = client.post(
        f"/console/billing/tenants/{gone.uuid}/transfer/",
        {"amount": "5", "direction": "to_tenant", "reason": "top-up", "key": "a" * 32},
    )
    assert response.status_code == 400
    assert REFUSAL in response.content.decode()
    assert _money_state() == before


def test_bulk_transfers_refuse_the_tenant_with_the_reason(client: Any, gone: Any) -> None:
    actor = UserFactory(username="bulkbiller", role="reseller_billing")
    plan = services.bulk_transfer_plan(
        actor=actor, tenant_uuids=[str(gone.uuid)], amount="2", direction="to_tenant", reason="bulk"
    )
    assert not plan.runnable
    assert [r.message for r in plan.rows][0].startswith(REFUSAL)
    before = _money_state()
    with pytest.raises(PortalError):
        services.bulk_transfer_start(
            actor=actor, tenant_uuids=[str(gone.uuid)], amount="2", direction="to_tenant", reason="bulk"
        )
    client.force_login(actor)
    page = client.post(
        "/console/billing/bulk/",
        {"tenants": [str(gone.uuid)], "amount": "2", "direction": "to_tenant", "reason": "bulk", "action": "dry_run"},
    )
    assert REFUSAL in page.content.decode()
    assert _money_state() == before


@pytest.mark.parametrize("direction", ["to_tenant", "to_parent"])
def test_the_api_answers_400_with_the_reason(client: Any, gone: Any, direction: str) -> None:
    from django.core.cache import cache

    cache.clear()  # the API's throttle counters live in the cache
    token = api_token(UserFactory(username=f"apibiller-{direction}", role="reseller_billing"))
    before = _money_state()
    response = client.post(
        f"/api/v1/tenants/{gone.uuid}/transfers",
        {"amount": "5", "direction": direction, "reason": "api top-up"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"api-{direction}"},
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "unsupported" and REFUSAL in error["message"]
    assert _money_state() == before
