"""Staff's words never reach a customer. A unique marker is planted in every field staff type
(a transfer's reason, a rejection, the tenant's notes, a freeze reason, a drift note, a review
note) through the real services against the sandbox; then every page, download and API
endpoint the customer's owner can GET is fetched, and the marker is nowhere. The words staff
wrote for the customer (customer_description) are where the customer expects them."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from tests.billing.conftest import Money
from tests.factories import CustomerFactory, UserFactory, api_token, bearer
from tests.test_isolation import PARAM, all_routes, fill

MARK = "QZX7-STAFF-ONLY-4412"
FOR_CUSTOMER = "Welcome credit for May"


def _plant(money: Money, admin: Any, eager: Any) -> dict[str, Any]:
    from billing import services
    from billing.models import DriftItem, Transfer
    from tenants.models import Tenant
    from tenants.services import tenant_edit, tenant_freeze

    tenant = money.tenant(balance="50", company_name="Words Co")
    owner = CustomerFactory(username="words-owner", tenant=tenant, email="owner@words.example")
    tenant_edit(actor=admin, tenant=tenant, notes=f"Internal notes {MARK}")
    top_up = services.transfer_create(
        actor=admin,
        tenant=tenant,
        amount=Decimal("5.00"),
        direction="to_tenant",
        reason=f"Correction {MARK}",
        customer_description=FOR_CUSTOMER,
        dispatch=False,
    )
    assert services.transfer_execute(transfer_id=top_up.pk).state == Transfer.State.SUCCEEDED
    pull = services.transfer_create(
        actor=admin,
        tenant=tenant,
        amount=Decimal("2.00"),
        direction="to_parent",
        reason=f"Pulled back per ticket {MARK}",
        dispatch=False,
    )
    assert services.transfer_execute(transfer_id=pull.pk).state == Transfer.State.SUCCEEDED
    # The review note is written by the resolution when it cannot decide; planted here on the row.
    Transfer.objects.filter(pk=pull.pk).update(review_reason=f"Review {MARK}")
    big = services.transfer_create(
        actor=admin,
        tenant=tenant,
        amount=Decimal("1500.00"),
        direction="to_tenant",
        reason=f"Big one {MARK}",
        customer_description=f"never sent {MARK}",
        dispatch=False,
    )
    assert big.awaiting_approval
    services.transfer_reject(actor=admin, transfer=big, reason=f"Rejected {MARK}")
    drift = DriftItem.objects.create(
        connection=money.connection,
        tenant=tenant,
        kind=DriftItem.Kind.MISSING_IN_PORTAL,
        fingerprint=f"words-{tenant.pk}",
        provider_amount=Decimal("1.00"),
        currency="USD",
    )
    services.drift_resolve(actor=admin, item=drift, resolution="acknowledged", note=f"Drift note {MARK}")
    with eager():
        tenant_freeze(actor=admin, tenant=tenant, reason=f"Frozen for {MARK}")
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.FROZEN and MARK in tenant.status_reason and MARK in tenant.notes
    return {"tenant": tenant, "owner": owner, "pull": pull}


def _customer_urls(owner: Any, tenant: Any) -> list[str]:
    """Every route the walk finds, filled with the owner's own ids (no admin pages)."""
    from tenants.models import Membership

    member = Membership.objects.get(user=owner)
    urls = []
    for route in all_routes():
        if route.is_admin or route.is_regex:
            continue
        values = {}
        for conv, name in route.params:
            values[name] = str(member.pk) if conv == "int" else str(tenant.uuid) if conv == "uuid" else "x"
        urls.append(fill(route, values))
    return sorted(set(urls))


@pytest.fixture
def eager(celery_eager: None) -> Any:
    """What the services queue after a commit runs at once, in-process (a real transaction)."""
    from contextlib import nullcontext

    return nullcontext


@pytest.mark.django_db(transaction=True)
def test_no_staff_words_on_any_customer_surface(client, sandbox, vox_connection, settings, eager) -> None:
    settings.BILLING_SETTLE_SECONDS = 0
    settings.BILLING_PENDING_GRACE_SECONDS = 0
    settings.BILLING_REFRESH_AFTER_TRANSFER = False
    settings.BILLING_APPROVAL_THRESHOLD = "1000"
    money = Money(sandbox, vox_connection)
    admin = UserFactory(username="words-admin", role="reseller_admin")
    world = _plant(money, admin, eager)
    owner, tenant = world["owner"], world["tenant"]
    client.force_login(owner)
    seen: dict[str, str] = {}
    day = timezone.now().date().isoformat()
    extra = [f"/me/statement/?from={day}&to={day}", f"/me/statement/?format=csv&from={day}&to={day}"]
    for url in _customer_urls(owner, tenant) + extra:
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        seen[url] = body.decode("utf-8", "replace")
    token = api_token(owner, tenant=tenant)
    api_client = type(client)()
    for route in all_routes():
        if route.is_api and not PARAM.search(route.template):
            url = fill(route, {})
            response = api_client.get(url, headers=bearer(token))
            seen[f"token {url}"] = response.content.decode("utf-8", "replace")
    leaks = sorted(url for url, body in seen.items() if MARK in body)
    assert leaks == [], f"staff words reached the customer at {leaks}"
    # The customer's own surfaces were really reached, and carry the customer's words.
    statement = seen["/me/statement/"]
    assert FOR_CUSTOMER in statement and "Adjustment" in statement
    assert "Words Co" in seen["/me/"] and "Your account is frozen" in seen["/me/"]
    rows = list(csv.reader(io.StringIO(seen[extra[1]])))
    descriptions = [r[2] for r in rows[1:]]
    assert FOR_CUSTOMER in descriptions and "Adjustment" in descriptions
    api_rows = api_client.get("/api/v1/customer/statement", headers=bearer(token)).json()
    texts = [r["description"] for r in api_rows.get("results", api_rows.get("items", []))]
    assert FOR_CUSTOMER in texts and "Adjustment" in texts, api_rows
    assert re.search(r"customer/statement", " ".join(seen)), "the walk found the customer API"


@pytest.mark.django_db
@pytest.mark.parametrize("words", ["x" * 201, "Credit\u202e for May", "Credit\x00"])
def test_bad_customer_words_are_refused_everywhere_staff_type_them(client, words) -> None:
    from billing import services
    from billing.models import Transfer
    from portal.errors import PortalError
    from tests.factories import TenantFactory

    staff = UserFactory(username="words-billing", role="reseller_billing")
    tenant = TenantFactory()
    response = client.post(
        f"/api/v1/tenants/{tenant.uuid}/transfers",
        {"amount": "5.00", "direction": "to_tenant", "reason": "ok", "customer_description": words},
        content_type="application/json",
        headers={**bearer(api_token(staff)), "Idempotency-Key": "words-1"},
    )
    assert response.status_code == 400 and "customer_description" in response.json()["error"]["fields"]
    with pytest.raises(PortalError) as refused:
        services.transfer_create(
            actor=staff,
            tenant=tenant,
            amount=Decimal("5"),
            direction="to_tenant",
            reason="ok",
            customer_description=words,
        )
    assert refused.value.field == "customer_description"
    with pytest.raises(PortalError) as bulk_refused:
        services.bulk_transfer_plan(
            actor=staff,
            tenant_uuids=[str(tenant.uuid)],
            amount="5",
            direction="to_tenant",
            reason="ok",
            customer_description=words,
        )
    assert bulk_refused.value.field == "customer_description"
    assert Transfer.objects.count() == 0
