"""Price plans: the rules of their terms, the one rule of which plan applies, assignments from
a date, the staff pages, the tenant page's panel, roles and outsiders."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from portal.errors import NotAllowed, PortalError
from portal.models import AuditEvent
from reselling import plans
from reselling.models import Charge, ConnectionDefaultPlan, PlanAssignment, PricePlan
from tests.factories import ProviderConnectionFactory, TenantFactory

pytestmark = pytest.mark.django_db

D = Decimal
BASIC = {"name": "Basic", "currency": "usd", "topup_rule": "margin", "topup_margin_percent": "12.5"}


def make(actor: Any, **extra: Any) -> PricePlan:
    return plans.plan_create(actor=actor, data={**BASIC, **extra})


def charge_on(p: PricePlan, tenant: Any) -> Charge:
    now = timezone.now()
    return Charge.objects.create(
        tenant=tenant,
        plan=p,
        kind="monthly_fee",
        period=now.date().replace(day=1),
        occurred_at=now,
        currency="USD",
        revenue=D("1"),
        cost=D("0"),
        description="fee",
        source_key=f"test:{p.pk}:{tenant.pk}",
    )


def test_a_plan_is_created_with_exact_terms_and_audited(reseller_billing: Any) -> None:
    p = make(reseller_billing, monthly_fee="19.90", usage_markup_percent="7.125", reminder_days="3, 10")
    assert (p.currency, p.topup_margin_percent, p.monthly_fee, p.usage_markup_percent) == (
        "USD",
        D("12.5"),
        D("19.90"),
        D("7.125"),
    )
    assert p.reminder_days == [3, 10]
    event = AuditEvent.objects.get(action="reselling.plan.created")
    assert event.data["plan"] == p.pk and event.data["monthly_fee"] == "19.90"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("topup_margin_percent", "100", "percent_invalid"),
        ("topup_margin_percent", "12.34567", "percent_invalid"),
        ("topup_margin_percent", "0", "percent_invalid"),  # a margin plan needs a margin
        ("currency", "US", "currency_invalid"),
        ("monthly_fee", "1.001", "amount_precision"),
        ("monthly_fee", "-1", "amount_invalid"),
        ("usage_markup_percent", "1e3", "percent_invalid"),
        ("reminder_days", "10, 3", "days_invalid"),
        ("payment_terms_days", "400", "days_invalid"),
        ("name", "", "required"),
    ],
)
def test_bad_terms_are_refused_on_their_field(reseller_billing: Any, field: str, value: str, code: str) -> None:
    with pytest.raises(PortalError) as refused:
        make(reseller_billing, **{field: value})
    assert refused.value.field == field
    assert refused.value.code == code
    assert not PricePlan.objects.exists()


def test_support_staff_may_not_manage_plans(reseller_support: Any) -> None:
    with pytest.raises(NotAllowed):
        make(reseller_support)


def test_terms_are_fixed_once_a_charge_uses_the_plan_but_the_name_is_not(reseller_admin: Any) -> None:
    p = make(reseller_admin)
    p = plans.plan_update(actor=reseller_admin, plan=p, data={"topup_margin_percent": "10"})
    assert p.topup_margin_percent == D("10")
    charge_on(p, TenantFactory())
    with pytest.raises(PortalError) as refused:
        plans.plan_update(actor=reseller_admin, plan=p, data={"topup_margin_percent": "11"})
    assert refused.value.code == "plan_in_use" and refused.value.status == 409
    renamed = plans.plan_update(actor=reseller_admin, plan=p, data={"name": "Basic 2025", "payment_terms_days": 30})
    assert (renamed.name, renamed.payment_terms_days, renamed.topup_margin_percent) == ("Basic 2025", 30, D("10"))
    assert PricePlan.objects.get(pk=p.pk).topup_margin_percent == D("10")


def test_plan_on_is_the_latest_assignment_then_the_connection_default() -> None:
    connection = ProviderConnectionFactory()
    tenant = TenantFactory(connection=connection)
    default = PricePlan.objects.create(name="Default", currency="USD")
    a = PricePlan.objects.create(name="A", currency="USD")
    b = PricePlan.objects.create(name="B", currency="USD")
    assert plans.plan_on(tenant, date(2026, 1, 1)) is None
    ConnectionDefaultPlan.objects.create(connection=connection, plan=default)
    PlanAssignment.objects.create(tenant=tenant, plan=a, effective_from=date(2026, 2, 1))
    PlanAssignment.objects.create(tenant=tenant, plan=b, effective_from=date(2026, 3, 15))
    assert plans.plan_on(tenant, date(2026, 1, 31)) == default
    assert plans.plan_on(tenant, date(2026, 2, 1)) == a
    assert plans.plan_on(tenant, date(2026, 3, 14)) == a
    assert plans.plan_on(tenant, date(2026, 3, 15)) == b
    other = TenantFactory(connection=connection)
    many = plans.plans_on([(tenant, date(2026, 2, 10)), (other, date(2026, 2, 10))])
    assert many == {tenant.pk: a, other.pk: default}


def test_an_assignment_starts_today_or_later_and_is_audited(reseller_billing: Any) -> None:
    tenant = TenantFactory()
    p = make(reseller_billing)
    today = timezone.now().date()
    with pytest.raises(PortalError) as refused:
        plans.plan_assign(actor=reseller_billing, tenant=tenant, plan=p, effective_from=today - timedelta(days=1))
    assert refused.value.code == "date_in_past"
    done = plans.plan_assign(actor=reseller_billing, tenant=tenant, plan=p, effective_from=today + timedelta(days=3))
    again = plans.plan_assign(actor=reseller_billing, tenant=tenant, plan=p, effective_from=today + timedelta(days=3))
    assert not done.replayed and again.replayed and again.assignment.pk == done.assignment.pk
    other = make(reseller_billing, name="Other")
    with pytest.raises(PortalError) as taken:
        plans.plan_assign(actor=reseller_billing, tenant=tenant, plan=other, effective_from=today + timedelta(days=3))
    assert taken.value.code == "assignment_exists"
    event = AuditEvent.objects.get(action="reselling.plan.assigned")
    assert event.tenant_id == tenant.pk and event.data["effective_from"] == (today + timedelta(days=3)).isoformat()


def test_archived_and_foreign_currency_plans_cannot_be_assigned(reseller_billing: Any) -> None:
    tenant = TenantFactory()
    eur = make(reseller_billing, name="Euro", currency="EUR")
    with pytest.raises(PortalError) as mismatch:
        plans.plan_assign(actor=reseller_billing, tenant=tenant, plan=eur, effective_from=None)
    assert mismatch.value.code == "currency_mismatch"
    p = plans.plan_archive(actor=reseller_billing, plan=make(reseller_billing))
    assert p.archived_at is not None
    with pytest.raises(PortalError) as archived:
        plans.plan_assign(actor=reseller_billing, tenant=tenant, plan=p, effective_from=None)
    assert archived.value.code == "plan_archived"
    with pytest.raises(PortalError):
        plans.connection_default_set(actor=reseller_billing, connection=tenant.connection, plan=p)


# -- pages --------------------------------------------------------------------------------------


def test_staff_create_edit_and_archive_plans_on_the_pages(client: Any, reseller_billing: Any) -> None:
    client.force_login(reseller_billing)
    assert client.get("/console/reselling/plans/").status_code == 200
    form = {**BASIC, "monthly_fee": "5", "payment_terms_days": "14", "reminder_days": "3"}
    assert client.post("/console/reselling/plans/new/", form).status_code == 302
    p = PricePlan.objects.get(name="Basic")
    bad = client.post(f"/console/reselling/plans/{p.pk}/", {**form, "topup_margin_percent": "150"})
    assert bad.status_code == 400 and "less than 100" in bad.content.decode()
    assert client.post(f"/console/reselling/plans/{p.pk}/", {**form, "monthly_fee": "6.50"}).status_code == 302
    assert PricePlan.objects.get(pk=p.pk).monthly_fee == D("6.50")
    assert client.post(f"/console/reselling/plans/{p.pk}/archive/").status_code == 302
    assert PricePlan.objects.get(pk=p.pk).archived_at is not None
    link = f'/console/reselling/plans/{p.pk}/">Basic</a>'
    assert link not in client.get("/console/reselling/plans/").content.decode()
    assert link in client.get("/console/reselling/plans/?archived=1").content.decode()
    assert client.get("/console/reselling/plans/987654/").status_code == 404


def test_the_default_plan_is_set_per_connection(client: Any, reseller_admin: Any) -> None:
    connection = ProviderConnectionFactory(currency="USD")
    p = make(reseller_admin)
    client.force_login(reseller_admin)
    client.post(f"/console/reselling/connections/{connection.pk}/default-plan/", {"plan": str(p.pk)})
    assert plans.default_plan(connection) == p
    client.post(f"/console/reselling/connections/{connection.pk}/default-plan/", {"plan": ""})
    assert plans.default_plan(connection) is None
    assert client.post("/console/reselling/connections/987654/default-plan/", {"plan": ""}).status_code == 404


def test_the_tenant_page_shows_the_plan_panel_and_assigns_from_a_date(client: Any, reseller_billing: Any) -> None:
    tenant = TenantFactory()
    p = make(reseller_billing)
    client.force_login(reseller_billing)
    page = client.get(f"/console/tenants/{tenant.uuid}/").content.decode()
    assert 'data-testid="plan-panel"' in page and "No plan today" in page
    day = (timezone.now().date() + timedelta(days=2)).isoformat()
    response = client.post(
        f"/console/reselling/tenants/{tenant.uuid}/plan/", {"plan": str(p.pk), "effective_from": day}
    )
    assert response.status_code == 302
    assert PlanAssignment.objects.get(tenant=tenant).effective_from.isoformat() == day
    page = client.get(f"/console/tenants/{tenant.uuid}/").content.decode()
    assert day in page
    bad = client.post(
        f"/console/reselling/tenants/{tenant.uuid}/plan/",
        {"plan": str(p.pk), "effective_from": "2020-13-01"},
        follow=True,
    )
    assert "not a real date" in bad.content.decode()


def test_support_staff_see_no_plan_panel_and_no_plan_pages(client: Any, reseller_support: Any) -> None:
    tenant = TenantFactory()
    client.force_login(reseller_support)
    assert 'data-testid="plan-panel"' not in client.get(f"/console/tenants/{tenant.uuid}/").content.decode()
    assert client.get("/console/reselling/plans/").status_code == 403
    assert client.post(f"/console/reselling/tenants/{tenant.uuid}/plan/", {"plan": "1"}).status_code == 403


def test_customers_reach_none_of_it_and_a_missing_tenant_is_404(
    client: Any, customer_owner: Any, reseller_billing: Any
) -> None:
    tenant = TenantFactory()
    p = PricePlan.objects.create(name="X", currency="USD")
    client.force_login(customer_owner)
    for url in (
        "/console/reselling/plans/",
        f"/console/reselling/plans/{p.pk}/",
        "/console/reselling/margin/",
        f"/console/reselling/tenants/{tenant.uuid}/plan/",
    ):
        assert client.get(url).status_code in (403, 404), url
    assert client.post(f"/console/reselling/tenants/{tenant.uuid}/topup/", {"paid": "5"}).status_code == 403
    assert not PlanAssignment.objects.exists()
    client.force_login(reseller_billing)
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.post(f"/console/reselling/tenants/{missing}/plan/", {"plan": str(p.pk)}).status_code == 404
    assert client.post(f"/console/reselling/tenants/{missing}/topup/", {"paid": "5"}).status_code == 404
