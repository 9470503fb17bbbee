"""The runway: the parent balance against the portal's own tenants' spending, measured over
at least a day of balance syncs, and one staff email per crossing below the alert."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from billing import runway, services
from billing.models import ResellerBudget, SyncRun
from tests.factories import ProviderConnectionFactory, TenantFactory, TransferFactory, UserFactory


def _run(connection: Any, *, hours_ago: float, tenants_balance: str, **extra: Any) -> SyncRun:
    finished = timezone.now() - timedelta(hours=hours_ago)
    fields: dict[str, Any] = {
        "connection": connection,
        "kind": SyncRun.Kind.BALANCES,
        "state": SyncRun.State.SUCCEEDED,
        "started_at": finished - timedelta(minutes=2),
        "finished_at": finished,
        "heartbeat_at": finished,
        "tenants_balance": Decimal(tenants_balance),
    }
    fields.update(extra)
    return SyncRun.objects.create(**fields)


def _budget(connection: Any, balance: str) -> ResellerBudget:
    budget, _ = ResellerBudget.objects.update_or_create(
        connection=connection,
        currency="USD",
        defaults={"provider_balance": Decimal(balance), "available": Decimal(balance), "refreshed_at": timezone.now()},
    )
    return budget


def _console(client: Any) -> str:
    """The parent summary as the console renders it (the same computation as the email)."""
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    from billing.selectors import parent_summary

    request = RequestFactory().get("/console/")
    request.user = UserFactory(username="runway-admin", role="reseller_admin")
    return render_to_string("billing/_parent_summary.html", {"summary": parent_summary()}, request=request)


def test_a_real_sync_sums_only_the_portals_open_tenants(money, django_capture_on_commit_callbacks) -> None:
    first = money.tenant(balance="12.34")
    second = money.tenant(balance="5.00")
    frozen = money.tenant(balance="1.50", status="frozen")
    closed = money.tenant(balance="70.00", status="closed")
    strangers = [money.child(balance="1000"), money.child(balance="250.25")]  # children no tenant stands for
    run = services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()
    assert run.state == SyncRun.State.SUCCEEDED
    for tenant in (first, second, frozen, closed):
        tenant.refresh_from_db()
    assert first.balance == Decimal("12.34") and frozen.balance == Decimal("1.50")
    assert run.tenants_balance == Decimal("18.84")  # 12.34 + 5.00 + 1.50; the closed tenant is out
    # The children no tenant stands for hold money at the provider, and none of it is counted.
    assert all(money.child_balance(a) > 0 for a in strangers)
    assert run.tenants_balance < sum((money.child_balance(a) for a in strangers), Decimal(0))


def test_under_a_day_of_syncs_is_not_enough_data_yet(money, client) -> None:
    _budget(money.connection, "1000")
    first = _run(money.connection, hours_ago=23, tenants_balance="900")
    _run(money.connection, hours_ago=0.1, tenants_balance="300")
    r = runway.runway(connection=money.connection)
    assert r.state == runway.NOT_ENOUGH_DATA and r.spend_per_day is None and r.days_of_cover is None
    assert r.ready_at == first.finished_at + timedelta(hours=24)
    html = _console(client)
    assert "Not enough data yet" in html
    assert first.finished_at is not None
    assert (first.finished_at + timedelta(hours=24)).strftime("%Y-%m-%d %H:%M") in html
    assert "/day" not in html and 'data-testid="parent-alert"' not in html


def test_two_syncs_minutes_apart_make_no_daily_figure(money) -> None:
    _budget(money.connection, "5993")
    _run(money.connection, hours_ago=0.1, tenants_balance="338775")
    _run(money.connection, hours_ago=0.01, tenants_balance="338543")
    assert runway.runway(connection=money.connection).state == runway.NOT_ENOUGH_DATA


def test_spending_counts_the_money_moved_in_during_the_window(money, client, settings) -> None:
    settings.BILLING_PARENT_ALERT_DAYS = 30
    _budget(money.connection, "1661.50")
    _run(money.connection, hours_ago=72, tenants_balance="900")  # older than the newest day-old run
    _run(money.connection, hours_ago=26, tenants_balance="400")
    _run(money.connection, hours_ago=0, tenants_balance="300")
    _run(money.connection, hours_ago=1, tenants_balance="1", state=SyncRun.State.FAILED)  # failed runs don't count
    tenant = TenantFactory(connection=money.connection)
    now = timezone.now()
    TransferFactory(tenant=tenant, amount="100.00", completed_at=now - timedelta(hours=10))
    TransferFactory(tenant=tenant, amount="20.00", direction="to_parent", completed_at=now - timedelta(hours=5))
    TransferFactory(tenant=tenant, amount="1000.00", completed_at=now - timedelta(hours=40))  # before the window
    TransferFactory(tenant=tenant, amount="500.00", state="failed")
    TransferFactory(tenant=TenantFactory(), amount="700.00", completed_at=now - timedelta(hours=3))  # elsewhere
    r = runway.runway(connection=money.connection)
    # (400 - 300 + 100 - 20) over 26 hours.
    assert r.state == runway.OK
    assert (
        r.spend_per_day == (Decimal(180) / (Decimal(26) / Decimal(24))).quantize(Decimal("0.01")) == Decimal("166.15")
    )
    assert r.days_of_cover == Decimal("10.0")
    html = _console(client)
    assert "166.15 USD/day" in html and 'data-testid="days-of-cover">10.0' in html
    assert 'data-testid="parent-alert"' in html  # 10 days < 30


def test_no_net_spending_gives_no_runway_figure(money, client) -> None:
    _budget(money.connection, "100")
    _run(money.connection, hours_ago=30, tenants_balance="300")
    _run(money.connection, hours_ago=0, tenants_balance="300")
    TransferFactory(tenant=TenantFactory(connection=money.connection), amount="0.01", direction="to_parent")
    r = runway.runway(connection=money.connection)
    assert r.state == runway.NO_SPENDING and r.days_of_cover is None and not r.alert
    html = _console(client)
    assert "no net spending" in html.lower() and 'data-testid="parent-alert"' not in html


def _spending_100_a_day(connection: Any) -> None:
    _run(connection, hours_ago=48, tenants_balance="500")
    _run(connection, hours_ago=0, tenants_balance="300")


def test_one_email_per_crossing_and_another_after_recovery(money, mailoutbox, settings) -> None:
    settings.BILLING_PARENT_ALERT_DAYS = 7
    UserFactory(username="boss", role="reseller_admin", email="boss@reseller.example")
    UserFactory(username="payer", role="reseller_billing", email="payer@reseller.example")
    UserFactory(username="helper", role="reseller_support", email="helper@reseller.example")
    conn = money.connection
    _spending_100_a_day(conn)
    _budget(conn, "500")  # 5 days
    assert runway.runway_alert_check(connection_id=conn.pk) is True
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert set(mail.to) == {"boss@reseller.example", "payer@reseller.example", "staff-alerts@reseller.example"}
    assert "5.0" in mail.subject and "100.00" in mail.body
    assert ResellerBudget.objects.get(connection=conn).runway_alerted_at is not None
    # Still below: no second email, however often it is checked.
    _budget(conn, "450")
    assert runway.runway_alert_check(connection_id=conn.pk) is False
    assert runway.runway_alert_check(connection_id=conn.pk) is False
    assert len(mailoutbox) == 1
    # Recovered: the mark is cleared, nothing is sent.
    _budget(conn, "1000")
    assert runway.runway_alert_check(connection_id=conn.pk) is False
    assert ResellerBudget.objects.get(connection=conn).runway_alerted_at is None
    assert len(mailoutbox) == 1
    # A new crossing emails again.
    _budget(conn, "300")
    assert runway.runway_alert_check(connection_id=conn.pk) is True
    assert len(mailoutbox) == 2


def test_the_claim_admits_one_sender(money, mailoutbox) -> None:
    conn = money.connection
    _spending_100_a_day(conn)
    budget = _budget(conn, "100")
    # Another worker claimed this crossing a moment ago.
    ResellerBudget.objects.filter(pk=budget.pk).update(runway_alerted_at=timezone.now())
    assert runway.runway_alert_check(connection_id=conn.pk) is False
    assert mailoutbox == []


def test_not_enough_data_neither_sends_nor_rearms(money, mailoutbox) -> None:
    conn = money.connection
    budget = _budget(conn, "1")
    ResellerBudget.objects.filter(pk=budget.pk).update(runway_alerted_at=timezone.now())
    _run(conn, hours_ago=1, tenants_balance="300")
    assert runway.runway_alert_check(connection_id=conn.pk) is False
    assert ResellerBudget.objects.get(pk=budget.pk).runway_alerted_at is not None
    assert mailoutbox == []


def test_a_finished_sync_checks_the_runway_and_emails_staff(
    money, mailoutbox, settings, celery_eager, django_capture_on_commit_callbacks
) -> None:
    settings.BILLING_PARENT_ALERT_DAYS = 100000
    money.tenant(balance="10.00")
    # A day ago the tenants held far more than now: they spend, and the parent covers little.
    _run(money.connection, hours_ago=30, tenants_balance="10000")
    with django_capture_on_commit_callbacks(execute=True):
        run = services.sync_start(actor=None, connection=money.connection)
    with django_capture_on_commit_callbacks(execute=True):
        services.sync_execute(sync_run_id=run.pk)
    run.refresh_from_db()
    assert run.tenants_balance == Decimal("10.00")
    assert len(mailoutbox) == 1 and "runway" in mailoutbox[0].subject.lower()
    assert ResellerBudget.objects.get(connection=money.connection).runway_alerted_at is not None
    # The next sync finds the same crossing and stays quiet.
    with django_capture_on_commit_callbacks(execute=True):
        again = services.sync_start(actor=None, connection=money.connection)
    with django_capture_on_commit_callbacks(execute=True):
        services.sync_execute(sync_run_id=again.pk)
    assert len(mailoutbox) == 1


def test_each_currency_of_a_connection_stands_alone(db) -> None:
    conn = ProviderConnectionFactory(currency="EUR")
    TenantFactory(connection=conn, currency="EUR", balance="40")
    TenantFactory(connection=conn, currency="", balance="2")
    TenantFactory(connection=conn, currency="USD", balance="1000")
    assert runway.tenants_balance(connection_id=conn.pk, currency="EUR") == Decimal("42")


@pytest.mark.parametrize("hours", [1, 24])
def test_the_window_is_never_shorter_than_a_day(settings, hours) -> None:
    from billing import conf

    settings.BILLING_RUNWAY_WINDOW_HOURS = hours
    assert conf.runway_min_window() == timedelta(hours=24)
    settings.BILLING_RUNWAY_WINDOW_HOURS = 48
    assert conf.runway_min_window() == timedelta(hours=48)
