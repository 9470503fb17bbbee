"""The customer pages against the sandbox: the refresh asks the provider (at most once a
minute per tenant) and the statement comes from the provider's history with a running balance."""

from decimal import Decimal

import pytest

from portal.models import AuditEvent
from tests.factories import CustomerFactory

# Transactional: billing calls the provider only outside a transaction (after commit).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def funded_tenant(reseller_admin, reseller_billing, vox_connection, celery_eager):
    from billing.services import transfer_create
    from tenants.models import Tenant
    from tenants.services import tenant_create

    tenant = tenant_create(
        actor=reseller_admin,
        connection=vox_connection,
        company_name="Live Co",
        account_name="live-co1",
        account_email="live@example.com",
    )
    tenant.refresh_from_db()
    assert tenant.status == "active", tenant.status
    transfer = transfer_create(
        actor=reseller_billing,
        tenant=tenant,
        amount=Decimal("40.00"),
        direction="to_tenant",
        reason="Signed up, ticket 17",
        customer_description="Welcome credit",
    )
    transfer.refresh_from_db()
    assert transfer.state == "succeeded", (transfer.state, transfer.last_error)
    return Tenant.objects.get(pk=tenant.pk)


def test_refresh_asks_the_provider_once_a_minute(client, funded_tenant, sandbox) -> None:
    from tenants.models import Tenant

    # The portal's copy is stale; the provider knows better.
    Tenant.objects.filter(pk=funded_tenant.pk).update(balance=Decimal("1.00"))
    owner = CustomerFactory(username="live-owner", tenant=funded_tenant)
    client.force_login(owner)
    assert "1.00 USD" in client.get("/me/").content.decode()
    response = client.post("/me/refresh/", follow=True)
    text = response.content.decode()
    assert "refreshed from the provider" in text and "40.00 USD" in text
    # Within the interval the provider is not asked again, whoever asks.
    Tenant.objects.filter(pk=funded_tenant.pk).update(balance=Decimal("2.00"))
    viewer = CustomerFactory(username="live-viewer", tenant=funded_tenant, role="customer_viewer")
    client.force_login(viewer)
    again = client.post("/me/refresh/", follow=True).content.decode()
    assert "Try again in" in again and "2.00 USD" in again
    assert AuditEvent.objects.filter(action="customers.balance.refreshed").count() == 1


def test_the_statement_comes_from_the_providers_history(client, funded_tenant) -> None:
    owner = CustomerFactory(username="live-owner2", tenant=funded_tenant)
    client.force_login(owner)
    page = client.get("/me/statement/").content.decode()
    assert "Welcome credit" in page and "40.00" in page
    assert "statement-note" not in page  # the provider's history, not the fallback
    api = client.get("/api/v1/customer/statement").json()
    assert api["results"][0]["amount"].startswith("40.00") and api["results"][0]["balance"].startswith("40.00")


def test_the_csv_defuses_provider_text_a_spreadsheet_would_run(client, funded_tenant, sandbox) -> None:
    """The provider's history is not the portal's text: a description a spreadsheet would run
    as a formula is exported with a leading quote."""
    import csv
    import io
    import time

    from sandbox import money
    from sandbox.store import DEPOSIT_TYPE, Store

    store = sandbox.store()
    try:
        with store.write() as conn:
            Store.add_transaction(
                conn,
                account_id=funded_tenant.provider_account_id,
                amount=money.parse("1.25"),
                currency="USD",
                transaction_type=DEPOSIT_TYPE,
                ts=int(time.time()),
                description='=HYPERLINK("http://evil")',
            )
    finally:
        store.close()
    client.force_login(CustomerFactory(username="live-owner3", tenant=funded_tenant))
    response = client.get("/me/statement/?format=csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    descriptions = [r[2] for r in rows[1:]]
    assert '\'=HYPERLINK("http://evil")' in descriptions
    assert any("Welcome credit" in d for d in descriptions)
    assert not [cell for r in rows for cell in r if cell[:1] in ("=", "+", "@")]
