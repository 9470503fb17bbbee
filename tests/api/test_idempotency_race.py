"""The same Idempotency-Key sent twice at the same instant creates one tenant; the loser
gets the replay or a 409 while the winner is in flight, never a second tenant."""

import threading

import pytest

from tests.factories import ProviderConnectionFactory, api_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_double_click_creates_one_tenant(reseller_admin) -> None:
    from django.db import connection as db
    from django.test import Client

    from tenants.models import Tenant

    conn = ProviderConnectionFactory()
    headers = {"Authorization": f"Bearer {api_token(reseller_admin)}", "Idempotency-Key": "double-click-1"}
    body = {
        "connection": str(conn.uuid),
        "company_name": "Race Co",
        "account_name": "race-co1",
        "account_email": "race@example.com",
    }
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def click() -> None:
        try:
            barrier.wait(timeout=10)
            response = Client().post("/api/v1/tenants", body, content_type="application/json", headers=headers)
            statuses.append(response.status_code)
        finally:
            db.close()  # each thread has its own connection

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses) in ([201, 201], [201, 409]), statuses
    assert Tenant.objects.filter(company_name="Race Co").count() == 1
