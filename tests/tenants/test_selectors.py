"""The list selector: every sort pages through every row exactly once, searches use the
documented rules, bad input is refused on its field."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from portal.errors import PortalError
from tenants.selectors import tenant_for_user, tenant_get, tenant_list
from tests.factories import MembershipFactory, ProviderConnectionFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def many(db):
    rng = random.Random(7)
    conn = ProviderConnectionFactory()
    rows = []
    for i in range(37):
        balance = None if i % 7 == 0 else Decimal(rng.choice(["0", "1.50", "1.50", "-3", "20", "7.25"]))
        rows.append(
            TenantFactory(
                connection=conn,
                company_name=rng.choice(["Acme", "Beta", "acme", "Gamma"]) + f" {i % 5}",
                balance=balance,
            )
        )
    return rows


def _expected(rows, sort):
    key = {
        "-id": lambda t: -t.pk,
        "id": lambda t: t.pk,
        "company": lambda t: (t.company_name, t.pk),
        "-company": lambda t: (t.company_name, t.pk),
    }
    if sort in key:
        return [t.pk for t in sorted(rows, key=key[sort], reverse=sort == "-company")]
    known = [t for t in rows if t.balance is not None]
    unknown = sorted((t for t in rows if t.balance is None), key=lambda t: t.pk)
    ordered = sorted(known, key=lambda t: (t.balance, t.pk), reverse=sort == "-balance")
    return [t.pk for t in ordered + unknown]


@pytest.mark.parametrize("sort", ["-id", "id", "company", "-company", "balance", "-balance"])
@pytest.mark.parametrize("limit", [1, 5, 50])
def test_cursor_pages_visit_every_row_once_in_order(many, sort, limit):
    seen, cursor = [], None
    for _ in range(100):
        page = tenant_list(filters={"sort": sort}, cursor=cursor, limit=limit)
        assert len(page.rows) <= limit
        seen += [t.pk for t in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == _expected(many, sort)


def test_search_rules(db):
    conn = ProviderConnectionFactory()
    TenantFactory(
        connection=conn,
        company_name="Northwind Traders",
        account_name="nwind",
        account_email="Boss@North.example",
        provider_account_id=123456,
    )
    TenantFactory(connection=conn, company_name="Southwind", account_name="south-one", account_email="s@south.example")

    def names(**filters):
        return [t.company_name for t in tenant_list(filters=filters).rows]

    assert names(q="north") == ["Northwind Traders"]  # company prefix, any case
    assert names(q="Northwind TR") == ["Northwind Traders"]  # several words
    assert names(q="NWIND") == ["Northwind Traders"]  # account name prefix
    assert names(q="boss@north") == ["Northwind Traders"]  # email prefix
    assert names(q="123456") == ["Northwind Traders"]  # exact provider id
    assert names(q="12345") == []  # ids match exactly, not by prefix
    assert names(q="wind") == []  # prefixes only by default...
    assert sorted(names(q="wind", anywhere="1")) == ["Northwind Traders", "Southwind"]  # ...substrings on request
    assert names(q="100%") == [] and names(q="a_b", anywhere="1") == []  # LIKE wildcards are literal
    # Anywhere, a number matches the exact provider id as well as the text; an absurd one, nothing.
    TenantFactory(connection=conn, company_name="Unit 9123456", account_name="unit", account_email="u@u.example")
    assert sorted(names(q="123456", anywhere="1")) == ["Northwind Traders", "Unit 9123456"]
    assert names(q="9" * 40, anywhere="1") == []


def test_substring_search_follows_renames(db):
    conn = ProviderConnectionFactory()
    tenant = TenantFactory(connection=conn, company_name="Old Name")
    from tenants.models import Tenant

    Tenant.objects.filter(pk=tenant.pk).update(company_name="Brand New Co")
    assert [t.pk for t in tenant_list(filters={"q": "new c", "anywhere": "1"}).rows] == [tenant.pk]
    assert tenant_list(filters={"q": "old n", "anywhere": "1"}).rows == []


def test_substring_search_follows_bulk_adds_email_changes_and_deletes(db):
    from tenants.models import Tenant

    conn = ProviderConnectionFactory()
    kept = TenantFactory(connection=conn, company_name="Kept Co", account_email="kept@example.com")
    Tenant.objects.bulk_create(
        [
            Tenant(company_name=f"Bulkhead {i}", connection=conn, account_name=f"bulk{i}", status="active")
            for i in range(3)
        ]
    )

    def found(q: str) -> set[str]:
        return {t.company_name for t in tenant_list(filters={"q": q, "anywhere": "1"}).rows}

    assert found("ulkhea") == {"Bulkhead 0", "Bulkhead 1", "Bulkhead 2"}
    Tenant.objects.filter(pk=kept.pk).update(account_email="renamed@elsewhere.example")
    assert found("elsewhere") == {"Kept Co"} and found("kept@") == set()
    # An update that sets none of the searched columns (the balance sync's) leaves the text be.
    Tenant.objects.filter(pk=kept.pk).update(balance=Decimal("12.5"), currency="USD")
    assert found("elsewhere") == {"Kept Co"}
    Tenant.objects.filter(company_name__startswith="Bulkhead").delete()
    assert found("ulkhea") == set() and found("ept c") == {"Kept Co"}


@pytest.mark.parametrize(
    "filters,field",
    [
        ({"status": "nope"}, "status"),
        ({"sort": "name"}, "sort"),
        ({"currency": "dollars"}, "currency"),
        ({"balance_min": "1e5"}, "balance_min"),
        ({"balance_min": "5", "balance_max": "1"}, "balance_max"),
        ({"connection": "42424242"}, "connection"),
        ({"q": "x" * 101}, "q"),
        ({"q": "a\x00b"}, "q"),
    ],
)
def test_bad_filters_are_refused_on_their_field(db, filters, field):
    with pytest.raises(PortalError) as caught:
        tenant_list(filters=filters)
    assert caught.value.field == field


def test_filters_combine(db):
    conn, other = ProviderConnectionFactory(), ProviderConnectionFactory(name="Other")
    low = TenantFactory(connection=conn, balance=Decimal("1"), is_low_balance=True, currency="EUR")
    TenantFactory(connection=conn, balance=Decimal("50"))
    TenantFactory(connection=other, balance=Decimal("1"), has_drift=True)
    assert [t.pk for t in tenant_list(filters={"low_balance": "1"}).rows] == [low.pk]
    assert [t.pk for t in tenant_list(filters={"currency": "eur"}).rows] == [low.pk]
    assert len(tenant_list(filters={"balance_max": "1"}).rows) == 2
    assert len(tenant_list(filters={"balance_max": "1", "connection": str(conn.uuid)}).rows) == 1
    assert len(tenant_list(filters={"drift": "true"}).rows) == 1


@pytest.mark.parametrize("cursor", ["!!", "W10", "WyJOYU4iLDJd", "WyJ4IiwxXQ"])
def test_forged_cursors_are_refused(db, cursor):
    with pytest.raises(PortalError) as caught:
        tenant_list(filters={"sort": "balance"}, cursor=cursor)
    assert caught.value.field == "cursor"


def test_tenant_get_and_tenant_for_user(db):
    from django.http import Http404

    customer = UserFactory(role="customer_owner")  # a customer role, no company yet
    tenant = TenantFactory()
    assert tenant_get(uuid=tenant.uuid) == tenant
    for bad in ("00000000-0000-4000-8000-000000000000", "not-a-uuid", None):
        with pytest.raises(Http404):
            tenant_get(uuid=bad)
    assert tenant_for_user(user=customer) is None
    MembershipFactory(user=customer, tenant=tenant)
    assert tenant_for_user(user=customer) == tenant
