"""Console pages: who may see and do what (403/404 for everyone else), forms, lists."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.urls import reverse

from portal.models import Job
from tenants.models import Tenant, TenantOperation
from tests.factories import ProviderConnectionFactory, TenantFactory
from tests.tenants.conftest import STRONG

pytestmark = pytest.mark.django_db

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def tenant(db):
    return TenantFactory()


@pytest.fixture
def open_op(tenant):
    job = Job.objects.create(kind="tenants.freeze", title="Freeze", tenant_id=tenant.pk)
    return TenantOperation.objects.create(
        tenant=tenant, kind="freeze", state="needs_attention", job=job, reason="x", last_error="boom"
    )


def _views(tenant, op, job):
    t, o = str(tenant.uuid), str(op.uuid)
    return [
        ("get", reverse("tenants:list"), "console.view"),
        ("get", reverse("tenants:create"), "tenants.manage"),
        ("post", reverse("tenants:create"), "tenants.manage"),
        ("post", reverse("tenants:bulk"), "tenants.freeze"),
        ("post", reverse("tenants:bulk_import"), "tenants.manage"),
        ("get", reverse("tenants:bulk_job", args=[job.uuid]), "console.view"),
        ("get", reverse("tenants:import"), "tenants.manage"),
        ("post", reverse("tenants:import_one"), "tenants.manage"),
        ("post", reverse("tenants:import_scan"), "tenants.manage"),
        ("get", reverse("tenants:detail", args=[t]), "console.view"),
        ("get", reverse("tenants:clone", args=[t]), "tenants.manage"),
        ("post", reverse("tenants:clone", args=[t]), "tenants.manage"),
        ("post", reverse("tenants:freeze", args=[t]), "tenants.freeze"),
        ("post", reverse("tenants:unfreeze", args=[t]), "tenants.freeze"),
        ("get", reverse("tenants:close", args=[t]), "tenants.manage"),
        ("post", reverse("tenants:close", args=[t]), "tenants.manage"),
        ("post", reverse("tenants:operation_retry", args=[t, o]), "tenants.freeze"),
        ("post", reverse("tenants:operation_give_up", args=[t, o]), "tenants.freeze"),
    ]


@pytest.fixture
def bulk_job_row(db):
    return Job.objects.create(kind="tenants.bulk_freeze", title="Freeze 1 tenants")


def test_anonymous_users_are_sent_to_log_in(client, tenant, open_op, bulk_job_row):
    for method, url, _ in _views(tenant, open_op, bulk_job_row):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


@pytest.mark.parametrize("persona", ["no_role_user", "customer_owner", "customer_viewer"])
def test_outsiders_and_customers_get_403_everywhere(client, tenant, open_op, bulk_job_row, persona, request):
    client.force_login(request.getfixturevalue(persona))
    for method, url, _ in _views(tenant, open_op, bulk_job_row):
        assert getattr(client, method)(url).status_code == 403, url
    tenant.refresh_from_db()
    assert tenant.status == "active" and TenantOperation.objects.count() == 1


@pytest.mark.parametrize(
    "persona,allowed",
    [
        ("reseller_support", {"console.view", "tenants.freeze"}),
        ("reseller_billing", {"console.view"}),
    ],
)
def test_each_staff_role_gets_403_outside_its_permissions(
    client, tenant, open_op, bulk_job_row, persona, allowed, request
):
    client.force_login(request.getfixturevalue(persona))
    for method, url, permission in _views(tenant, open_op, bulk_job_row):
        status = getattr(client, method)(url).status_code
        if permission in allowed:
            assert status != 403, url
        else:
            assert status == 403, url


def test_unknown_uuids_are_404_for_staff(client, reseller_admin, tenant, open_op):
    client.force_login(reseller_admin)
    for name in ("detail", "clone", "close"):
        assert client.get(reverse(f"tenants:{name}", args=[MISSING])).status_code == 404
    for name in ("freeze", "unfreeze"):
        assert client.post(reverse(f"tenants:{name}", args=[MISSING]), {"reason": "x"}).status_code == 404
    other = TenantFactory(connection=tenant.connection)
    # An operation is reachable only through its own tenant.
    url = reverse("tenants:operation_retry", args=[other.uuid, open_op.uuid])
    assert client.post(url).status_code == 404
    assert client.post(reverse("tenants:operation_retry", args=[MISSING, open_op.uuid])).status_code == 404
    assert client.get(reverse("tenants:bulk_job", args=[MISSING])).status_code == 404


def test_support_can_freeze_but_billing_cannot(client, reseller_support, reseller_billing, tenant):
    client.force_login(reseller_billing)
    assert client.post(reverse("tenants:freeze", args=[tenant.uuid]), {"reason": "x"}).status_code == 403
    assert not TenantOperation.objects.exists()
    client.force_login(reseller_support)
    response = client.post(reverse("tenants:freeze", args=[tenant.uuid]), {"reason": "Unpaid"})
    assert response.status_code == 302
    assert TenantOperation.objects.get().kind == "freeze"


def test_the_create_form_shows_each_error_on_its_field(client, reseller_admin):
    connection = ProviderConnectionFactory()
    client.force_login(reseller_admin)
    response = client.post(
        reverse("tenants:create"),
        {
            "connection": connection.uuid,
            "company_name": "Acme",
            "account_name": "Bad_Name",
            "account_email": "x@example.com",
            "operation_key": "k" * 20,
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    field = re.search(r'<div class="field[^"]*" data-field="account_name".*?</div>', html, re.S).group(0)
    assert "has-error" in field and "must start with a lowercase latin letter" in field
    assert not Tenant.objects.exists()


def test_creating_through_the_form_twice_makes_one_tenant(client, reseller_admin, vox_connection):
    client.force_login(reseller_admin)
    data = {
        "connection": vox_connection.uuid,
        "company_name": "Acme",
        "account_name": "acme-web",
        "account_email": "web@example.com",
        "password": STRONG,
        "operation_key": "double-click-0001",
    }
    first = client.post(reverse("tenants:create"), data)
    second = client.post(reverse("tenants:create"), data)
    tenant = Tenant.objects.get()
    assert first["Location"] == second["Location"] == reverse("tenants:detail", args=[tenant.uuid])
    page = client.get(first["Location"]).content.decode()
    assert "Create Acme at the provider" in page and "data-job-bar" in page and "data-live" in page


def test_the_detail_page_never_shows_secrets_and_explains_unavailable_actions(client, reseller_admin):
    from portal.crypto import encrypt_json

    voiceit = ProviderConnectionFactory(name="VoiceIt", kind="voiceit")
    tenant = TenantFactory(
        connection=voiceit,
        provider_account_id=None,
        provider_account_ref="key_" + "a" * 32,
        secrets_encrypted=encrypt_json({"api_key": "key_" + "a" * 32, "api_token": "tok_SECRET1"}),
    )
    client.force_login(reseller_admin)
    html = client.get(reverse("tenants:detail", args=[tenant.uuid])).content.decode()
    assert "tok_SECRET1" not in html and "api_token" in html  # named, never shown
    assert 'data-testid="freeze-unavailable"' in html and "VoiceIt has no suspend API" in html
    assert "Clone (portal settings only)" in html and "VoiceIt has no call to clone" in html


def test_a_failed_create_offers_a_prefilled_retry_with_the_error_on_its_field(client, reseller_admin):
    conn = ProviderConnectionFactory()
    tenant = TenantFactory(
        connection=conn,
        status="failed",
        provider_account_id=None,
        provider_account_ref="",
        status_reason="The provider already has an account named like this.",
    )
    TenantOperation.objects.create(tenant=tenant, kind="create", state="failed", error_field="account_name")
    client.force_login(reseller_admin)
    html = client.get(reverse("tenants:detail", args=[tenant.uuid])).content.decode()
    assert f"?from={tenant.uuid}" in html
    html = client.get(reverse("tenants:create") + f"?from={tenant.uuid}").content.decode()
    field = re.search(r'<div class="field[^"]*" data-field="account_name".*?</div>', html, re.S).group(0)
    assert tenant.account_name in field and "already has an account named" in field


def test_close_needs_the_account_name_typed(client, reseller_admin, tenant):
    client.force_login(reseller_admin)
    url = reverse("tenants:close", args=[tenant.uuid])
    assert "Leave the account disabled at the provider" in client.get(url).content.decode()
    response = client.post(url, {"reason": "bye", "confirm": "wrong"})
    assert response.status_code == 200 and "exactly to confirm" in response.content.decode()
    assert not TenantOperation.objects.exists()
    response = client.post(url, {"reason": "bye", "confirm": tenant.account_name})
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.CLOSING


def test_the_list_searches_filters_and_pages_by_cursor(client, reseller_support):
    conn = ProviderConnectionFactory()
    for i in range(60):
        TenantFactory(connection=conn, company_name=f"Zeta {i:02d}", status="frozen" if i % 3 == 0 else "active")
    TenantFactory(
        connection=conn, company_name="Northwind Traders", account_name="northwind", provider_account_id=424242
    )
    client.force_login(reseller_support)
    url = reverse("tenants:list")
    page1 = client.get(url).content.decode()
    assert page1.count('name="tenants"') == 50 and "Next page" in page1
    next_url = re.search(r'href="([^"]+)" rel="next"', page1).group(1).replace("&amp;", "&")
    page2 = client.get(next_url).content.decode()
    assert page2.count('name="tenants"') == 11 and "End of the list" in page2
    assert "Northwind Traders" in client.get(url, {"q": "north"}).content.decode()
    assert "Northwind Traders" in client.get(url, {"q": "424242"}).content.decode()
    frozen = client.get(url, {"status": "frozen"}).content.decode()
    assert frozen.count('name="tenants"') == 20
    empty = client.get(url, {"q": "nothing-like-this"}).content.decode()
    assert "No tenant matches these filters" in empty
    bad = client.get(url, {"balance_min": "abc"})
    assert bad.status_code == 200 and "Enter an amount" in bad.content.decode()
    forged = client.get(url, {"cursor": "not-a-cursor"})
    assert "not valid any more" in forged.content.decode()


def test_the_list_runs_a_fixed_number_of_queries(client, reseller_admin, django_assert_max_num_queries):
    conn = ProviderConnectionFactory()
    for _ in range(30):
        TenantFactory(connection=conn)
    client.force_login(reseller_admin)
    client.get(reverse("tenants:list"))  # warm the session
    # The page, its rows, the connections and one capped count of the matches (no table count);
    # on PostgreSQL one more: the planner's estimate of the matches, asked before counting.
    with django_assert_max_num_queries(7 if connection.vendor == "sqlite" else 8):
        client.get(reverse("tenants:list"), {"status": "active", "sort": "company"})


def test_bulk_dry_run_changes_nothing_and_lists_each_row(client, reseller_support):
    conn = ProviderConnectionFactory()
    voiceit = ProviderConnectionFactory(name="VoiceIt", kind="voiceit")
    a, b = TenantFactory(connection=conn), TenantFactory(connection=voiceit)
    client.force_login(reseller_support)
    response = client.post(
        reverse("tenants:bulk"),
        {"action": "freeze", "scope": "selection", "reason": "audit", "tenants": [a.uuid, b.uuid]},
    )
    html = response.content.decode()
    assert response.status_code == 200 and "dry run" in html
    assert "Will freeze" in html and "VoiceIt has no suspend API" in html
    assert html.count('name="ids"') == 1
    assert not TenantOperation.objects.exists()
    by_filter = client.post(
        reverse("tenants:bulk"),
        {"action": "freeze", "scope": "filter", "reason": "audit", "connection": str(conn.uuid)},
    )
    # A filter's dry run passes the filter on, not ids: the job walks the filter itself.
    filter_html = by_filter.content.decode()
    assert 'name="ids"' not in filter_html
    assert f'name="connection" value="{conn.uuid}"' in filter_html and 'name="scope" value="filter"' in filter_html


def test_the_frozen_banner_shows_the_reason_to_customers(rf):
    from django.template.loader import render_to_string

    frozen = Tenant(status="frozen", status_reason="Unpaid invoice <b>42</b>")
    html = render_to_string("tenants/_frozen_banner.html", {"tenant": frozen})
    assert "Your account is frozen" in html and "Unpaid invoice &lt;b&gt;42&lt;/b&gt;" in html
    assert render_to_string("tenants/_frozen_banner.html", {"tenant": Tenant(status="active")}).strip() == ""


def test_the_console_home_lists_operations_that_need_attention(client, reseller_support, open_op):
    client.force_login(reseller_support)
    html = client.get(reverse("console:home")).content.decode()
    assert "1 needs attention" in html and open_op.tenant.company_name in html and "boom" in html
