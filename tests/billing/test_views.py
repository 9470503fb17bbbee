"""Console pages for money: who may see and do what, forms that refuse bad input, escaping,
statements (CSV), bulk dry run and run, sync start, drift, the console home panel."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from billing import services
from billing.charts import balance_chart_svg
from billing.models import BalanceSnapshot, ParentBalanceSnapshot, SyncRun, Transfer
from portal.models import Job
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def login(client, role: str, name: str | None = None):
    user = UserFactory(username=name or f"u-{role}-{uuid.uuid4().hex[:6]}", role=role)
    client.force_login(user)
    return user


@pytest.mark.parametrize(
    ("role", "status"),
    [("reseller_admin", 200), ("reseller_billing", 200), ("reseller_support", 200), ("customer_owner", 403)],
)
def test_who_sees_the_money_pages(client, money, role, status) -> None:
    tenant = money.tenant()
    login(client, role)
    for url in [
        "/console/billing/",
        "/console/billing/sync/",
        "/console/billing/drift/",
        f"/console/billing/tenants/{tenant.uuid}/",
        f"/console/billing/tenants/{tenant.uuid}/statement/",
    ]:
        assert client.get(url).status_code == status, url


def test_anonymous_users_go_to_the_login_page(client) -> None:
    response = client.get("/console/billing/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_staff_top_up_from_the_form_once_per_submitted_form(client, money) -> None:
    tenant = money.tenant()
    login(client, "reseller_billing")
    data = {"amount": "12.50", "direction": "to_tenant", "reason": "monthly", "key": "form-key-1"}
    url = f"/console/billing/tenants/{tenant.uuid}/transfer/"
    first = client.post(url, data)
    second = client.post(url, data)  # a double-click or a resubmitted page
    assert first.status_code == second.status_code == 302
    assert Transfer.objects.count() == 1
    t = Transfer.objects.get()
    assert t.amount == Decimal("12.50") and t.reason == "monthly"


# " 10" and "10,00" are ten on a form (portal.inputs.typed_amount); "1,000" could be a thousand or one.
@pytest.mark.parametrize("amount", ["-1", "0", "0.001", "NaN", "1e309", "١٠", "1,000", "10,000,5", "0,001"])
def test_the_form_shows_bad_amounts_on_the_field(client, money, amount) -> None:
    tenant = money.tenant()
    login(client, "reseller_billing")
    response = client.post(
        f"/console/billing/tenants/{tenant.uuid}/transfer/",
        {"amount": amount, "direction": "to_tenant", "reason": "x", "key": "k"},
    )
    assert response.status_code == 400
    assert b'data-testid="amount-error"' in response.content
    assert Transfer.objects.count() == 0


def test_support_and_customers_cannot_move_money(client, money) -> None:
    tenant = money.tenant()
    for role in ("reseller_support", "customer_owner"):
        login(client, role)
        response = client.post(
            f"/console/billing/tenants/{tenant.uuid}/transfer/",
            {"amount": "5", "direction": "to_tenant", "reason": "x", "key": "k"},
        )
        assert response.status_code == 403
    assert Transfer.objects.count() == 0


def test_money_posts_need_a_csrf_token(money) -> None:
    tenant = money.tenant()
    client = Client(enforce_csrf_checks=True)
    login(client, "reseller_billing")
    response = client.post(
        f"/console/billing/tenants/{tenant.uuid}/transfer/",
        {"amount": "5", "direction": "to_tenant", "reason": "x", "key": "k"},
    )
    assert response.status_code == 403
    assert Transfer.objects.count() == 0


def test_unknown_and_malformed_ids_are_404(client, money) -> None:
    login(client, "reseller_admin")
    assert client.get(f"/console/billing/transfers/{uuid.uuid4()}/").status_code == 404
    assert client.get(f"/console/billing/tenants/{uuid.uuid4()}/").status_code == 404
    assert client.get("/console/billing/transfers/not-a-uuid/").status_code == 404


def test_maker_checker_through_the_pages(client, money, settings) -> None:
    settings.BILLING_APPROVAL_THRESHOLD = "10"
    tenant = money.tenant()
    maker = login(client, "reseller_billing", "maker")
    client.post(
        f"/console/billing/tenants/{tenant.uuid}/transfer/",
        {"amount": "25", "direction": "to_tenant", "reason": "big", "key": "k1"},
    )
    t = Transfer.objects.get()
    assert t.awaiting_approval and t.created_by == maker
    page = client.get(f"/console/billing/transfers/{t.uuid}/")
    assert b"another staff member must approve" in page.content
    assert client.post(f"/console/billing/transfers/{t.uuid}/approve/").status_code == 302
    assert Transfer.objects.get().approved_at is None  # refused: same person
    login(client, "reseller_admin", "checker")
    listing = client.get("/console/billing/")
    assert b'data-testid="awaiting"' in listing.content and b"big" in listing.content
    client.post(f"/console/billing/transfers/{t.uuid}/approve/")
    assert Transfer.objects.get().approved_at is not None


def test_the_tenant_page_shows_the_billing_panel_with_an_svg_chart(client, money) -> None:
    tenant = money.tenant(company_name="<script>alert(1)</script> Ltd")
    now = timezone.now()
    for days, balance in ((5, "10"), (3, "4.5"), (1, "20")):
        BalanceSnapshot.objects.create(
            tenant=tenant, balance=Decimal(balance), currency="USD", taken_at=now - timedelta(days=days)
        )
    login(client, "reseller_billing")
    page = client.get(f"/console/tenants/{tenant.uuid}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="billing-panel"' in html and "<svg" in html and 'data-testid="transfer-form"' in html
    assert "<script>alert(1)</script>" not in html


def test_the_chart_escapes_everything() -> None:
    svg = balance_chart_svg([(timezone.now(), Decimal("1"))], width=300, height=120, currency='"><script>x</script>')
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "No balance history" in balance_chart_svg([], width=300, height=120, currency="USD")


def test_statement_and_csv(client, money) -> None:
    from sandbox import money as units
    from sandbox.store import DEPOSIT_TYPE, Store

    tenant = money.tenant()
    transfer = Transfer.objects.create(
        tenant=tenant,
        connection=money.connection,
        child_account_id=tenant.provider_account_id,
        direction="to_tenant",
        amount=Decimal("5"),
        currency="USD",
        reason="=HYPERLINK(evil)",
        payment_reference="rp-x1",
        dup_check_from=timezone.now(),
        state="succeeded",
        completed_at=timezone.now(),
    )
    # The provider's history holds that transfer (under its reference) and a row of its own
    # whose description a spreadsheet would run as a formula.
    store = money.sandbox.store()
    try:
        with store.write() as conn:
            for reference, description in (("rp-x1", "Transfer from parent"), (None, "=HYPERLINK(evil)")):
                Store.add_transaction(
                    conn,
                    account_id=tenant.provider_account_id,
                    amount=units.parse("5"),
                    currency="USD",
                    transaction_type=DEPOSIT_TYPE,
                    ts=int(time.time()),
                    description=description,
                    payment_reference=reference,
                )
    finally:
        store.close()
    login(client, "reseller_support")
    page = client.get(f"/console/billing/tenants/{tenant.uuid}/statement/")
    assert page.status_code == 200 and "=HYPERLINK(evil)" in page.content.decode()
    response = client.get(f"/console/billing/tenants/{tenant.uuid}/statement/?format=csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["time_utc", "kind", "description", "amount", "balance", "currency", "reference", "transfer"]
    portal_row = next(r for r in rows[1:] if r[6] == "rp-x1")
    assert portal_row[2] == "Top-up (parent → tenant): =HYPERLINK(evil)" and portal_row[7] == str(transfer.uuid)
    assert "'=HYPERLINK(evil)" in [r[2] for r in rows[1:]]  # the provider's own text, defused
    assert not [cell for r in rows for cell in r if cell[:1] in ("=", "+", "@")]


def test_bulk_dry_run_then_run(client, money) -> None:
    tenants = [money.tenant() for _ in range(3)]
    closed = money.tenant(status="closed")
    login(client, "reseller_billing")
    data = {
        "tenants": [str(t.uuid) for t in [*tenants, closed]],
        "amount": "2",
        "direction": "to_tenant",
        "reason": "bulk",
        "action": "dry_run",
    }
    page = client.post("/console/billing/bulk/", data)
    assert page.status_code == 200 and b'data-testid="bulk-plan"' in page.content
    assert b"3 of 4 tenants ready" in page.content
    assert Transfer.objects.count() == 0
    bad = client.post("/console/billing/bulk/", {**data, "amount": "NaN"})
    assert bad.status_code == 400
    ran = client.post("/console/billing/bulk/", {**data, "action": "run"})
    assert ran.status_code == 302
    job = Job.objects.get(kind="billing.bulk_transfer")
    assert job.total == 3 and job.params["tenants"] == [str(t.uuid) for t in tenants]
    assert client.get(ran["Location"]).status_code == 200


def test_sync_start_from_the_console(client, money) -> None:
    login(client, "reseller_support")
    data = {"connection": str(money.connection.uuid), "kind": "balances"}
    assert client.post("/console/billing/sync/start/", data).status_code == 403
    login(client, "reseller_billing")
    response = client.post("/console/billing/sync/start/", data)
    run = SyncRun.objects.get()
    assert response.status_code == 302 and str(run.uuid) in response["Location"]
    page = client.get(response["Location"])
    assert b"data-job-bar" in page.content and b"data-live" in page.content  # the live progress bar
    again = client.post("/console/billing/sync/start/", data, follow=True)
    assert b"already running" in again.content
    assert SyncRun.objects.count() == 1


def test_console_home_shows_the_parent_balance_and_days_of_cover(client, money, settings) -> None:
    settings.BILLING_PARENT_ALERT_DAYS = 30
    now = timezone.now()
    ParentBalanceSnapshot.objects.create(
        connection=money.connection, balance=Decimal("1000"), currency="USD", taken_at=now
    )
    for days, total in ((3, "900"), (0, "600")):
        SyncRun.objects.create(
            connection=money.connection,
            state="succeeded",
            started_at=now - timedelta(days=days),
            finished_at=now - timedelta(days=days) + timedelta(minutes=1),
            heartbeat_at=now,
            tenants_balance=Decimal(total),
        )
    login(client, "reseller_admin")
    page = client.get("/console/")
    html = page.content.decode()
    assert 'data-testid="parent-balance"' in html
    assert "100.00 USD/day" in html  # 300 spent over 3 days
    assert 'data-testid="days-of-cover">10.0' in html
    assert 'data-testid="parent-alert"' in html


def test_threshold_form(client, money) -> None:
    tenant = money.tenant()
    login(client, "reseller_billing")
    client.post(f"/console/billing/tenants/{tenant.uuid}/threshold/", {"threshold": "7.5"})
    tenant.refresh_from_db()
    assert tenant.low_balance_threshold == Decimal("7.5")
    client.post(f"/console/billing/tenants/{tenant.uuid}/threshold/", {"threshold": "-1"})
    tenant.refresh_from_db()
    assert tenant.low_balance_threshold == Decimal("7.5")


@pytest.mark.django_db(transaction=True)
def test_the_bulk_job_reports_each_row(money) -> None:
    tenants = [money.tenant() for _ in range(2)]
    actor = UserFactory(username="bulker", role="reseller_billing")
    job = services.bulk_transfer_start(
        actor=actor, tenant_uuids=[str(t.uuid) for t in tenants], amount="3", direction="to_tenant", reason="bulk run"
    )
    services.bulk_transfer_run(job_id=job.pk)
    services.bulk_transfer_run(job_id=job.pk)  # a redelivered task: nothing twice
    job.refresh_from_db()
    assert job.state == "succeeded" and job.done == 2
    assert [r["message"] for r in job.results] == ["Done", "Done"]
    assert Transfer.objects.filter(state="succeeded").count() == 2
    assert money.child_balance(tenants[0].provider_account_id) == Decimal("3")
