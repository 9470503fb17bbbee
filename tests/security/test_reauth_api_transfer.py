"""Creating a transfer above the approval threshold through the API from a browser session
needs a recent password and code, as the console's form and approving do; a token is its own
authentication and is not asked."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from billing.models import Transfer
from portal.models import IdempotencyRecord
from tests.factories import PASSWORD, UserFactory, api_token, bearer
from tests.twofactor import code_for, verified_login

pytestmark = [pytest.mark.django_db, pytest.mark.real_login]

REAUTH = "/accounts/two-factor/reauth/"
BIG = {"amount": "25.00", "direction": "to_tenant", "reason": "big top-up"}


@pytest.fixture
def money(sandbox, vox_connection, settings):
    from tests.billing.conftest import Money

    settings.BILLING_SETTLE_SECONDS = 0
    settings.BILLING_PENDING_GRACE_SECONDS = 0
    settings.BILLING_REFRESH_AFTER_TRANSFER = False
    settings.BILLING_APPROVAL_THRESHOLD = "10"
    yield Money(sandbox, vox_connection)
    from billing import provider

    provider.forget_clients()


def create(client: Client, tenant, body: dict[str, str], key: str, headers: dict[str, str] | None = None):
    return client.post(
        f"/api/v1/tenants/{tenant.uuid}/transfers",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": key, **(headers or {})},
    )


def test_a_session_without_a_recent_reauth_is_refused_and_nothing_is_recorded(client, money) -> None:
    tenant = money.tenant()
    maker = UserFactory(username="apimaker", role="reseller_billing")
    device = verified_login(client, maker)
    refused = create(client, tenant, BIG, "big-1")
    assert refused.status_code == 403, refused.content
    assert refused.json()["error"]["code"] == "reauthentication_required"
    assert REAUTH in refused.json()["error"]["message"]
    assert not Transfer.objects.exists()
    assert not IdempotencyRecord.objects.exists()  # the key is free for the retry
    # Below the threshold no reauth is asked.
    small = create(client, tenant, {**BIG, "amount": "5.00", "reason": "small"}, "small-1")
    assert small.status_code == 201, small.content
    # After password and code, the same request with the same key goes through.
    assert client.post(REAUTH, {"password": PASSWORD, "code": code_for(device), "next": "/"}).status_code == 302
    done = create(client, tenant, BIG, "big-1")
    assert done.status_code == 201, done.content
    transfer = Transfer.objects.get(reason="big top-up")
    assert transfer.amount == Decimal("25.00") and transfer.awaiting_approval


def test_a_session_with_a_recent_reauth_creates_it(client, money) -> None:
    tenant = money.tenant()
    verified_login(client, UserFactory(username="apireauthed", role="reseller_billing"), reauth=True)
    done = create(client, tenant, BIG, "big-2")
    assert done.status_code == 201, done.content
    assert done.json()["requires_approval"] is True
    assert Transfer.objects.filter(reason="big top-up", amount=Decimal("25.00")).count() == 1


def test_a_token_is_not_asked_to_reauthenticate(money) -> None:
    tenant = money.tenant()
    raw = api_token(UserFactory(username="apitokenmaker", role="reseller_billing"))
    done = create(Client(), tenant, BIG, "big-3", bearer(raw))
    assert done.status_code == 201, done.content
    assert Transfer.objects.filter(reason="big top-up").count() == 1


def test_bad_input_from_a_session_is_still_a_400_not_a_reauth(client, money) -> None:
    tenant = money.tenant()
    verified_login(client, UserFactory(username="apibadinput", role="reseller_billing"))
    refused = create(client, tenant, {**BIG, "amount": "not money"}, "bad-1")
    assert refused.status_code == 400 and "amount" in refused.json()["error"]["fields"]
    assert not Transfer.objects.exists()
