"""Live parts (portal/live.py): each page answers ?part=<name> with its partial alone, under the
page's own permissions and scoping, with the polling attributes only while the thing shown can
still change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import TenantFactory, TransferFactory, UserFactory

pytestmark = pytest.mark.django_db


def _job(**fields):
    from portal.jobs import job_create

    job = job_create(kind="test.live", title="Live test", total=fields.pop("total", 4))
    for name, value in fields.items():
        setattr(job, name, value)
    job.save()
    return job


def test_a_running_job_card_polls_and_a_finished_one_does_not(client, reseller_support) -> None:
    client.force_login(reseller_support)
    job = _job(state="running", done=1)
    part = client.get(f"/console/jobs/{job.uuid}/?part=job&results=1")
    html = part.content.decode()
    assert part.status_code == 200 and "<html" not in html
    assert "data-live" in html and 'hx-trigger="every 1s, live-refresh"' in html
    assert f"/console/jobs/{job.uuid}/?part=job&amp;results=1" in html
    assert 'aria-valuenow="25"' in html and 'aria-valuemin="0"' in html and 'aria-valuemax="100"' in html
    assert 'aria-live="polite"' in html and "data-job-results" in html
    assert "no-store" in part["Cache-Control"] and "HX-Refresh" not in part
    job.state, job.done = "succeeded", 4
    job.save()
    done = client.get(f"/console/jobs/{job.uuid}/?part=job&reload=1")
    assert "data-live" not in done.content.decode() and 'aria-valuenow="100"' in done.content.decode()
    assert done["HX-Refresh"] == "true"  # the page around it reloads once (Retry buttons, results)


def test_a_job_waiting_for_a_human_stops_polling(client, reseller_support) -> None:
    client.force_login(reseller_support)
    job = _job(state="needs_attention")
    html = client.get(f"/console/jobs/{job.uuid}/?part=job").content.decode()
    assert "data-job-bar" in html and "data-live" not in html


def test_parts_keep_the_page_permissions_and_refuse_unknown_names(client, customer_owner) -> None:
    job = _job(state="running")
    tenant = TenantFactory()
    transfer = TransferFactory(tenant=tenant, state="sending", completed_at=None)
    urls = [
        f"/console/jobs/{job.uuid}/?part=job",
        f"/console/billing/transfers/{transfer.uuid}/?part=summary",
        "/console/billing/?part=transfers",
        f"/console/billing/tenants/{tenant.uuid}/?part=transfers",
        "/console/billing/sync/?part=runs",
        "/console/?part=panels",
    ]
    for url in urls:
        assert client.get(url).status_code == 302, url  # anonymous: to the login page
    client.force_login(customer_owner)
    for url in urls:
        assert client.get(url).status_code in (403, 404), url  # a customer never reaches staff parts
    staff = UserFactory(role="reseller_support")
    client.force_login(staff)
    for url in urls:
        assert client.get(url).status_code == 200, url
        assert client.get(url.split("?")[0] + "?part=nope").status_code == 404, url


def test_a_sending_transfer_row_polls_until_it_settles(client, reseller_support) -> None:
    client.force_login(reseller_support)
    tenant = TenantFactory()
    transfer = TransferFactory(tenant=tenant, state="sending", completed_at=None)
    rows = client.get("/console/billing/?part=transfers").content.decode()
    assert "data-live" in rows and 'data-state="sending"' in rows
    panel = client.get(f"/console/billing/tenants/{tenant.uuid}/?part=transfers").content.decode()
    assert "data-live" in panel and "Sending" in panel
    summary = client.get(f"/console/billing/transfers/{transfer.uuid}/?part=summary")
    assert "data-live" in summary.content.decode() and "HX-Refresh" not in summary
    transfer.state, transfer.completed_at = "succeeded", timezone.now()
    transfer.save()
    rows = client.get("/console/billing/?part=transfers").content.decode()
    assert "data-live" not in rows and 'data-state="succeeded"' in rows
    settled = client.get(f"/console/billing/transfers/{transfer.uuid}/?part=summary")
    assert "data-live" not in settled.content.decode() and settled["HX-Refresh"] == "true"


def test_a_transfer_awaiting_approval_is_not_polled(client, reseller_support) -> None:
    client.force_login(reseller_support)
    TransferFactory(state="pending", completed_at=None, requires_approval=True)
    assert "data-live" not in client.get("/console/billing/?part=awaiting").content.decode()


def test_the_console_home_panels_refresh_as_one_part(client, reseller_support) -> None:
    client.force_login(reseller_support)
    page = client.get("/console/").content.decode()
    assert 'data-testid="console-panels"' in page and "/console/?part=panels" in page
    part = client.get("/console/?part=panels").content.decode()
    assert "<html" not in part and 'data-testid="console-panels"' in part


def test_the_customer_balance_is_a_part_of_the_customers_own_home(client, customer_owner, other_customer) -> None:
    client.force_login(customer_owner)
    part = client.get("/me/?part=balance")
    html = part.content.decode()
    assert part.status_code == 200 and "<html" not in html and 'data-testid="balance"' in html
    assert "999" not in html  # the other company's balance
    assert client.get("/me/?part=nope").status_code == 404
    client.force_login(UserFactory(role="reseller_admin"))
    assert client.get("/me/?part=balance").status_code in (403, 404)


def test_last_synced_is_the_last_sync_that_read_the_tenant(client, customer_owner) -> None:
    """A sync that reads an unchanged balance does not move balance_synced_at; the page still
    says the balance was read then. A failed run or one that did not find the tenant does not count."""
    from billing.models import SyncRun
    from tenants.models import Membership, Tenant

    tenant = Membership.objects.get(user=customer_owner).tenant
    long_ago = timezone.now() - timedelta(days=3)
    Tenant.objects.filter(pk=tenant.pk).update(balance_synced_at=long_ago, created_at=long_ago - timedelta(days=1))
    read_at = timezone.now() - timedelta(minutes=2)
    SyncRun.objects.create(
        connection=tenant.connection,
        state="succeeded",
        started_at=read_at - timedelta(minutes=1),
        finished_at=read_at,
        heartbeat_at=read_at,
    )
    now = timezone.now()
    SyncRun.objects.create(
        connection=tenant.connection, state="failed", started_at=now, heartbeat_at=now, finished_at=now
    )
    client.force_login(customer_owner)
    html = client.get("/me/?part=balance").content.decode()
    assert f"Last synced {read_at:%Y-%m-%d %H:%M} UTC" in html
    assert f"Last synced {read_at:%Y-%m-%d %H:%M} UTC" in client.get("/me/").content.decode()
    Tenant.objects.filter(pk=tenant.pk).update(missing_at_provider=True)
    html = client.get("/me/?part=balance").content.decode()
    assert f"Last synced {long_ago:%Y-%m-%d %H:%M} UTC" in html
