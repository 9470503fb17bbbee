"""Real Chromium against a live server and a real Celery worker: staff sort the tenant list
by clicking its headers (the order holds across pages) and freeze every tenant that matches a
filter through the dry run, without ticking a row."""

from __future__ import annotations

import pytest

from tenants.models import Tenant
from tests.browser.test_tenants import WAIT, log_in
from tests.conftest import screenshot
from tests.factories import TenantFactory, UserFactory
from tests.tenants.conftest import create_vox, drain

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _companies(page) -> list[str]:
    return [a.inner_text() for a in page.query_selector_all("[data-testid=tenant-table] tbody td:nth-child(2) a")]


def test_staff_sort_by_a_header_and_freeze_all_that_match(page, live_server, celery_worker, sandbox, vox_connection):
    boss = UserFactory(username="boss", role="reseller_admin")
    harbors = [
        create_vox(vox_connection, boss, name=f"harbor-{n}", company_name=f"Harbor {n}") for n in ("c", "a", "b")
    ]
    create_vox(vox_connection, boss, name="quay-one", company_name="Quay One")
    drain()
    for i in range(55):  # more than one page of 50
        TenantFactory(connection=vox_connection, company_name=f"Filler {i:02d}")
    log_in(page, live_server, "boss")
    page.goto(f"{live_server.url}/console/tenants/")
    assert "59 tenants" in page.inner_text("[data-testid=list-total]")

    page.click("[data-testid=tenant-table] th[data-sort=company] a")
    page.wait_for_selector("th[data-sort=company][aria-sort=ascending]")
    first = _companies(page)
    assert first == sorted(first) and first[0] == "Filler 00"
    page.click("a[rel=next]")
    page.wait_for_selector("th[data-sort=company][aria-sort=ascending]")
    second = _companies(page)
    assert second == sorted(second) and second[0] > first[-1] and len(first) + len(second) == 59
    page.click("[data-testid=tenant-table] th[data-sort=company] a")
    page.wait_for_selector("th[data-sort=company][aria-sort=descending]")
    assert _companies(page)[0] == "Quay One"
    screenshot(page, "tenant-list-sorted-desc")

    page.fill("input[name=q]", "harbor")
    page.click("button:has-text('Apply')")
    page.wait_for_selector("text=3 tenants match")
    page.select_option("[data-testid=bulk-scope]", "filter")
    page.fill("input[name=reason]", "Harbor audit")
    page.click("button:has-text('Preview (dry run)')")
    page.wait_for_selector("[data-testid=matching]")
    assert "3 tenants match the filter" in page.inner_text("[data-testid=matching]")
    assert page.inner_text("[data-testid=dry-run]").count("Will run") == 3
    assert all(t.status == "active" for t in Tenant.objects.filter(pk__in=[h.pk for h in harbors]))
    screenshot(page, "tenant-list-select-all-dry-run")
    page.click("[data-testid=run-bulk]")
    page.wait_for_selector("[data-job-state-value=succeeded]", timeout=WAIT)
    assert page.inner_text("[data-job-results]").count("OK") == 3
    statuses = dict(Tenant.objects.values_list("company_name", "status"))
    assert [statuses[f"Harbor {n}"] for n in "abc"] == ["frozen"] * 3
    assert statuses["Quay One"] == "active" and statuses["Filler 00"] == "active"
