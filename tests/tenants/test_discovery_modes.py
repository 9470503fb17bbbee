"""Discovery of provider accounts the portal does not know, under both readings of
GetChildrenAccounts: where the provider lists every child the scan records candidates;
where it requires an id, name or email the scan says why, the import page says it in plain
words, and import by id, name or email still works, with names and emails typed in full
whether the provider matches parts or whole values."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from portal.models import Job
from tenants import services
from tenants.connections import client_for
from tenants.models import Tenant, UnknownProviderAccount

pytestmark = pytest.mark.django_db

READINGS = [
    pytest.param(True, "substring", id="filter-required-substring"),
    pytest.param(True, "exact", id="filter-required-exact"),
    pytest.param(False, "substring", id="listing-allowed-substring"),
    pytest.param(False, "exact", id="listing-allowed-exact"),
]
REFUSED = "only lists accounts by id, name or email; import by id, name or email below"


@pytest.fixture
def children(sandbox: Any, vox_connection: Any) -> dict[str, int]:
    """Two children whose names overlap (one is a part of the other)."""
    with client_for(vox_connection) as client:
        made = {}
        for name in ("northwind", "northwind-eu"):
            added = client.add_account(
                account_name=name,
                account_email=f"{name}@customers.example",
                account_password="Sandbox-Pass-1!",
                active=True,
            )
            made[name] = int(added.account_id)
    return made


def provider_reads(sandbox: Any, require_filter: bool, match: str) -> None:
    sandbox.admin("PUT", "options", {"children_require_filter": require_filter, "children_filter_match": match})


def scan(actor: Any, connection: Any) -> Job:
    job = services.unknown_accounts_scan(actor=actor, connection=connection)
    services.unknown_accounts_scan_run(job_id=job.pk)
    job.refresh_from_db()
    return job


@pytest.mark.parametrize(("require_filter", "match"), READINGS)
def test_the_scan_lists_where_allowed_and_says_why_where_refused(
    client, sandbox, vox_connection, children, reseller_admin, require_filter: bool, match: str
) -> None:
    provider_reads(sandbox, require_filter, match)
    job = scan(reseller_admin, vox_connection)
    client.force_login(reseller_admin)
    page = client.get(reverse("tenants:import")).content.decode()
    found = set(UnknownProviderAccount.objects.values_list("provider_account_id", flat=True))
    if require_filter:
        assert job.state == Job.State.FAILED and "only lists accounts by id, name or email" in job.message
        assert found == set()
        assert REFUSED in page
    else:
        assert job.state == Job.State.SUCCEEDED
        assert found == set(children.values())
        assert REFUSED not in page
    # The lookup form is there either way.
    assert 'name="lookup"' in page


@pytest.mark.parametrize(("require_filter", "match"), READINGS)
@pytest.mark.parametrize(
    ("by", "typed", "account"),
    [
        ("name", "northwind", "northwind"),
        ("email", "NorthWind-EU@Customers.example", "northwind-eu"),
        ("id", None, "northwind-eu"),
    ],
)
def test_import_by_id_name_or_email_works_under_every_reading(
    client,
    sandbox,
    vox_connection,
    children,
    reseller_admin,
    require_filter: bool,
    match: str,
    by: str,
    typed: str | None,
    account: str,
) -> None:
    provider_reads(sandbox, require_filter, match)
    client.force_login(reseller_admin)
    response = client.post(
        reverse("tenants:import_one"),
        {
            "connection": str(vox_connection.uuid),
            "lookup_by": by,
            "lookup": typed if typed is not None else str(children[account]),
            "company_name": "Northwind Traders",
        },
        follow=True,
    )
    tenant = Tenant.objects.get(company_name="Northwind Traders")
    assert tenant.provider_account_id == children[account]
    assert tenant.account_name == account
    assert "Imported Northwind Traders" in response.content.decode()


@pytest.mark.parametrize(("require_filter", "match"), READINGS)
def test_a_part_of_a_name_imports_nothing_and_says_to_type_it_in_full(
    client, sandbox, vox_connection, children, reseller_admin, require_filter: bool, match: str
) -> None:
    provider_reads(sandbox, require_filter, match)
    client.force_login(reseller_admin)
    response = client.post(
        reverse("tenants:import_one"),
        {"connection": str(vox_connection.uuid), "lookup_by": "name", "lookup": "north"},
        follow=True,
    )
    assert "type the full name or email" in response.content.decode()
    assert not Tenant.objects.filter(connection=vox_connection).exists()


def test_bad_lookups_are_clear_errors(client, sandbox, vox_connection, children, reseller_admin) -> None:
    client.force_login(reseller_admin)
    url = reverse("tenants:import_one")
    base = {"connection": str(vox_connection.uuid)}
    for data, message in [
        ({"lookup_by": "id", "lookup": "abc"}, "numeric account id"),
        ({"lookup_by": "phone", "lookup": "123"}, "by provider id, name or email"),
        ({"lookup_by": "email", "lookup": "  "}, "full email"),
        ({"lookup_by": "id", "lookup": "999999999"}, "no account with the provider id"),
    ]:
        response = client.post(url, {**base, **data}, follow=True)
        assert response.status_code == 200
        assert message in response.content.decode(), data
    assert not Tenant.objects.filter(connection=vox_connection).exists()


def test_a_customer_cannot_look_accounts_up(client, sandbox, vox_connection, children, other_customer) -> None:
    client.force_login(other_customer)
    response = client.post(
        reverse("tenants:import_one"),
        {"connection": str(vox_connection.uuid), "lookup_by": "name", "lookup": "northwind"},
    )
    assert response.status_code in (403, 404)
    assert not UnknownProviderAccount.objects.exists()
