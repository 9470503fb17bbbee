"""The charges ledger: top-up conversions, monthly fees and usage, with exact Decimal sums,
idempotent derivations, and a plan change from a date (old days keep their old terms)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from portal.errors import PortalError
from reselling.charges import (
    monthly_fees_derive,
    topup_charges_derive,
    topup_credited,
    topup_for_payment,
    topup_paid,
)
from reselling.models import Charge, PlanAssignment, PricePlan
from tests.billing.conftest import Money
from tests.factories import ProviderConnectionFactory, TenantFactory, TransferFactory

pytestmark = pytest.mark.django_db

D = Decimal


def plan(name: str = "Basic", **terms: Any) -> PricePlan:
    terms.setdefault("currency", "USD")
    return PricePlan.objects.create(name=name, **terms)


def assign(tenant: Any, p: PricePlan, day: date) -> PlanAssignment:
    # History in the past is written directly: the service only assigns from today on.
    return PlanAssignment.objects.create(tenant=tenant, plan=p, effective_from=day)


def at(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


# -- the top-up rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "percent", "fee", "credited", "paid"),
    [
        ("margin", "12.5", "0", "87.50", "100.00"),
        ("margin", "3", "0", "9.71", "10.01"),  # 9.71 / 0.97 = 10.0103… → 10.01
        ("margin", "7.25", "0", "0.01", "0.01"),  # 0.01078… → 0.01: rounds half up to the cent
        ("fee", "0", "1.50", "48.50", "50.00"),
        ("none", "0", "0", "20.00", "20.00"),
    ],
)
def test_what_the_customer_paid_is_derived_exactly_from_the_credited_amount(
    rule: str, percent: str, fee: str, credited: str, paid: str
) -> None:
    p = plan(topup_rule=rule, topup_margin_percent=D(percent), topup_fee=D(fee))
    assert topup_paid(p, D(credited), "USD") == D(paid)
    if rule != "margin" or credited != "0.01":
        assert topup_credited(p, D(paid), "USD") == D(credited)


def test_a_payment_no_credit_in_cents_reaches_is_refused_with_the_nearest_that_do() -> None:
    p = plan(topup_rule="margin", topup_margin_percent=D("50"))
    # Credits in cents give payments in steps of 0.02 at a 50 % margin: 10.01 is not one.
    with pytest.raises(PortalError) as refused:
        topup_credited(p, D("10.01"), "USD")
    assert refused.value.code == "payment_not_exact"
    assert "10.00 USD and 10.02 USD" in refused.value.message
    assert topup_credited(p, D("10.02"), "USD") == D("5.01")


def test_a_payment_below_the_fee_is_refused() -> None:
    p = plan(topup_rule="fee", topup_fee=D("2.00"))
    with pytest.raises(PortalError) as refused:
        topup_credited(p, D("2.00"), "USD")
    assert refused.value.code == "payment_below_fee"


def test_a_currency_without_minor_units_rounds_to_whole_units() -> None:
    p = plan(currency="JPY", topup_rule="margin", topup_margin_percent=D("10"))
    assert topup_paid(p, D("901"), "JPY") == D("1001")  # 1001.11 → 1001
    assert topup_credited(p, D("1000"), "JPY") == D("900")


# -- top-up charges from settled transfers ----------------------------------------------------


def test_each_succeeded_top_up_is_charged_once_at_its_plans_terms() -> None:
    tenant = TenantFactory()
    p = plan(topup_rule="margin", topup_margin_percent=D("12.5"))
    assign(tenant, p, date(2020, 1, 1))
    done = TransferFactory(tenant=tenant, amount="87.50")
    TransferFactory(tenant=tenant, amount="5.00", state="pending", completed_at=None)
    TransferFactory(tenant=tenant, amount="6.00", state="failed", completed_at=None)
    TransferFactory(tenant=tenant, amount="7.00", direction="to_parent")

    assert topup_charges_derive() == 1
    assert topup_charges_derive() == 0  # run twice: the same rows
    (charge,) = Charge.objects.all()
    assert (charge.kind, charge.revenue, charge.cost, charge.margin) == ("topup", D("100.00"), D("87.50"), D("12.50"))
    assert charge.transfer_id == done.pk and charge.plan_id == p.pk
    assert charge.source_key == f"topup:{done.uuid}"
    assert charge.period == done.created_at.date().replace(day=1)


def test_a_top_up_without_a_plan_or_in_another_currency_is_credited_in_full() -> None:
    kzt = TenantFactory(currency="KZT", connection=ProviderConnectionFactory(currency="KZT"))
    assign(kzt, plan(topup_rule="fee", topup_fee=D("1.00")), date(2020, 1, 1))  # a USD plan
    lone = TenantFactory()
    TransferFactory(tenant=kzt, amount="500.00", currency="KZT")
    TransferFactory(tenant=lone, amount="3.33")
    assert topup_charges_derive() == 2
    sums = {c.currency: (c.revenue, c.cost, c.plan_id) for c in Charge.objects.all()}
    assert sums == {"KZT": (D("500.00"), D("500.00"), None), "USD": (D("3.33"), D("3.33"), None)}


def test_a_plan_change_from_a_date_charges_the_old_days_at_the_old_terms() -> None:
    tenant = TenantFactory()
    old = plan("Old", topup_rule="margin", topup_margin_percent=D("20"), monthly_fee=D("10.00"))
    new = plan("New", topup_rule="fee", topup_fee=D("0.75"), monthly_fee=D("25.50"))
    tenant.created_at = at(2025, 12, 1)
    tenant.save(update_fields=["created_at"])
    assign(tenant, old, date(2025, 12, 1))
    assign(tenant, new, date(2026, 2, 1))
    jan = TransferFactory(tenant=tenant, amount="40.00")
    feb = TransferFactory(tenant=tenant, amount="40.00")
    TransferFactory._meta.model.objects.filter(pk=jan.pk).update(created_at=at(2026, 1, 31, 23))
    TransferFactory._meta.model.objects.filter(pk=feb.pk).update(created_at=at(2026, 2, 1, 0))

    topup_charges_derive()
    monthly_fees_derive(period=date(2026, 1, 1))
    monthly_fees_derive(period=date(2026, 2, 1))
    monthly_fees_derive(period=date(2026, 2, 1))

    rows = {
        (c.kind, c.period.isoformat()): (c.revenue, c.cost, c.plan_id) for c in Charge.objects.filter(tenant=tenant)
    }
    assert rows == {
        ("topup", "2026-01-01"): (D("50.00"), D("40.00"), old.pk),  # 40 / 0.8
        ("topup", "2026-02-01"): (D("40.75"), D("40.00"), new.pk),  # 40 + 0.75
        ("monthly_fee", "2026-01-01"): (D("10.00"), D("0"), old.pk),
        ("monthly_fee", "2026-02-01"): (D("25.50"), D("0"), new.pk),
    }
    keys = set(Charge.objects.filter(kind="monthly_fee").values_list("source_key", flat=True))
    assert keys == {f"fee:{tenant.pk}:2026-01", f"fee:{tenant.pk}:2026-02"}


def test_monthly_fees_only_for_open_tenants_on_a_plan_with_a_fee() -> None:
    connection = ProviderConnectionFactory()
    fee = plan("Fee", monthly_fee=D("9.99"))
    free = plan("Free")
    from reselling.models import ConnectionDefaultPlan

    ConnectionDefaultPlan.objects.create(connection=connection, plan=fee)
    on_default = TenantFactory(connection=connection)
    frozen = TenantFactory(connection=connection, status="frozen")
    TenantFactory(connection=connection, status="closed")
    on_free = TenantFactory(connection=connection)
    assign(on_free, free, date(2020, 1, 1))
    period = timezone.now().date().replace(day=1)

    assert monthly_fees_derive(period=period, batch=2) == 2
    assert monthly_fees_derive(period=period, batch=2) == 0
    charged = dict(Charge.objects.values_list("tenant_id", "revenue"))
    assert charged == {on_default.pk: D("9.99"), frozen.pk: D("9.99")}


# -- usage from the provider's history ----------------------------------------------------------


@pytest.fixture
def money(sandbox: Any, vox_connection: Any, settings: Any) -> Iterator[Money]:
    settings.BILLING_SETTLE_SECONDS = 0
    settings.BILLING_PENDING_GRACE_SECONDS = 0
    settings.BILLING_REFRESH_AFTER_TRANSFER = False
    yield Money(sandbox, vox_connection)
    from billing import provider

    provider.forget_clients()


def charge_at_provider(money: Money, account_id: int, amount: str, when: datetime | None = None) -> int:
    body: dict[str, Any] = {"account_id": account_id, "amount": amount, "description": "Call to +1 555 0100"}
    if when is not None:
        body["performed_ts"] = int(when.timestamp())
    return int(money.sandbox.admin("POST", "charge", body).json()["transaction_id"])


def test_usage_is_charged_with_the_markup_from_the_providers_history(money: Money) -> None:
    from reselling.usage import usage_derive_tenant

    tenant = money.tenant(balance="50")
    p = plan(usage_markup_percent=D("15"))
    assign(tenant, p, date(2020, 1, 1))
    first = charge_at_provider(money, tenant.provider_account_id, "0.1234")
    second = charge_at_provider(money, tenant.provider_account_id, "2.5")
    now = timezone.now() + timedelta(minutes=1)

    assert usage_derive_tenant(tenant, since=now - timedelta(days=1), until=now) == 2
    assert usage_derive_tenant(tenant, since=now - timedelta(days=2), until=now) == 0  # overlap: nothing twice
    rows = {c.source_key: (c.cost, c.revenue) for c in Charge.objects.filter(kind="usage")}
    assert rows == {
        f"usage:{tenant.pk}:{first}": (D("0.1234"), D("0.1419")),  # 0.14191 → 0.1419
        f"usage:{tenant.pk}:{second}": (D("2.5000"), D("2.8750")),
    }
    # The deposit in the history is not usage.
    assert Charge.objects.count() == 2


def test_the_nightly_run_walks_every_tenant_in_bounded_steps_and_resumes(money: Money) -> None:
    from portal.models import Job
    from reselling.usage import charges_run_current, charges_run_step

    p = plan(usage_markup_percent=D("10"), monthly_fee=D("5.00"))
    tenants = [money.tenant(balance="10") for _ in range(3)]
    for t in tenants:
        assign(t, p, date(2020, 1, 1))
        charge_at_provider(money, t.provider_account_id, "1.0000")
    job = charges_run_current()
    assert charges_run_step(job_id=job.pk, max_tenants=2) is False
    assert Job.objects.get(pk=job.pk).params["last_tenant_id"] == tenants[1].pk
    assert charges_run_step(job_id=job.pk, max_tenants=2) is True
    assert charges_run_current().pk == job.pk  # today's run, finished: the beat does nothing more
    assert charges_run_step(job_id=job.pk) is True
    assert Charge.objects.filter(kind="usage").count() == 3
    assert Charge.objects.filter(kind="monthly_fee").count() == 3
    usage = Charge.objects.filter(kind="usage")
    assert sum((c.revenue for c in usage), D(0)) == D("3.3000")


def test_the_sandbox_charge_control_refuses_bad_input(money: Money) -> None:
    import httpx

    for body in (
        {"account_id": "x", "amount": "1"},
        {"account_id": 1, "amount": 1.5},
        {"account_id": 1, "amount": "0"},
    ):
        response = httpx.post(
            f"{money.sandbox.base_url}/_sandbox/charge",
            json=body,
            headers={"X-Sandbox-Token": money.sandbox.admin_token},
            timeout=10,
        )
        assert response.status_code == 400


# -- a top-up for a customer's payment --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_top_up_for_a_payment_credits_the_plans_share_and_charges_the_payment(
    money: Money, reseller_billing: Any
) -> None:
    from billing import services

    tenant = money.tenant(balance="0")
    p = plan(topup_rule="margin", topup_margin_percent=D("12.5"))
    assign(tenant, p, date(2020, 1, 1))
    transfer, credited = topup_for_payment(actor=reseller_billing, tenant=tenant, paid="100.00", reason="Bank 42")
    assert credited == D("87.50") and transfer.amount == D("87.50")
    assert topup_charges_derive() == 0  # not settled yet: no charge
    assert services.transfer_execute(transfer_id=transfer.pk).state == "succeeded"
    assert money.child_balance(tenant.provider_account_id) == D("87.5000")
    assert topup_charges_derive() == 1
    charge = Charge.objects.get(transfer=transfer)
    assert (charge.revenue, charge.cost) == (D("100.00"), D("87.50"))


def test_the_payment_form_on_the_tenant_page_creates_the_transfer(money: Money, client: Any, reseller_billing: Any):
    from billing.models import Transfer

    tenant = money.tenant(balance="0")
    assign(tenant, plan(topup_rule="fee", topup_fee=D("1.25")), date(2020, 1, 1))
    client.force_login(reseller_billing)
    url = f"/console/reselling/tenants/{tenant.uuid}/topup/"
    response = client.post(url, {"paid": "21.25", "reason": "Invoice paid in cash", "key": "k1"})
    assert response.status_code == 302
    transfer = Transfer.objects.get(tenant=tenant)
    assert transfer.amount == D("20.00") and "customer paid 21.25 USD" in transfer.reason
    client.post(url, {"paid": "21.25", "reason": "Invoice paid in cash", "key": "k1"})  # a double click
    assert Transfer.objects.filter(tenant=tenant).count() == 1
    refused = client.post(url, {"paid": "1.00", "reason": "too little", "key": "k2"}, follow=True)
    assert "does not cover the plan" in refused.content.decode()
    assert client.post(url, {"paid": "abc", "reason": "x", "key": "k3"}).status_code == 302
    assert Transfer.objects.filter(tenant=tenant).count() == 1
