"""The staff list of charges (/console/reselling/charges/): filters by tenant, kind and month,
newest first a keyset page at a time, money in the currency's format; linked from the tenant's
plan panel; for the staff who manage plans only; bad filters are told, never a 500."""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any

import pytest
from django.urls import reverse

from reselling import views_plans
from tests.factories import TenantFactory
from tests.reselling.invoicing import charge

pytestmark = pytest.mark.django_db

URL = "/console/reselling/charges/"
MARCH = date(2026, 3, 1)
APRIL = date(2026, 4, 1)


def descriptions(html: str) -> list[str]:
    body = html[html.index('data-testid="charge-rows"') :]
    body = body[body.index("<tbody>") : body.index("</tbody>")]
    return re.findall(r"<td>(?:<a [^>]*>)?(desc [^<]+)", body)


@pytest.fixture
def ledger() -> dict[str, Any]:
    a = TenantFactory(company_name="Alpha Co")
    b = TenantFactory(company_name="Beta Co", currency="KZT")
    charge(a, "12.5", period=MARCH, description="desc a-march-usage", cost="10")
    charge(a, "9", period=MARCH, kind="monthly_fee", description="desc a-march-fee")
    charge(a, "3", period=APRIL, description="desc a-april-usage")
    charge(b, "1500", period=MARCH, currency="KZT", description="desc b-march-usage")
    return {"a": a, "b": b}


def test_filters_by_tenant_kind_and_month_with_money_formatted(client, reseller_billing, ledger) -> None:
    client.force_login(reseller_billing)
    a = ledger["a"]
    html = client.get(URL).content.decode()
    assert descriptions(html) == ["desc b-march-usage", "desc a-april-usage", "desc a-march-fee", "desc a-march-usage"]
    html = client.get(f"{URL}?tenant={a.uuid}").content.decode()
    assert descriptions(html) == ["desc a-april-usage", "desc a-march-fee", "desc a-march-usage"]
    assert "Charges of Alpha Co" in html
    html = client.get(f"{URL}?tenant={a.uuid}&month=2026-03&kind=usage").content.decode()
    assert descriptions(html) == ["desc a-march-usage"]
    # Revenue, cost and margin with every stored digit, in the charge's currency.
    assert '"num">12.5000 USD<' in html and '"num">10.0000 USD<' in html and '"num">2.5000 USD<' in html
    html = client.get(f"{URL}?month=2026-03&kind=usage").content.decode()
    assert descriptions(html) == ["desc b-march-usage", "desc a-march-usage"]
    assert '"num">1500.0000 KZT<' in html


def test_pages_by_keyset_newest_first(client, reseller_admin, monkeypatch) -> None:
    tenant = TenantFactory()
    for n in range(5):
        charge(tenant, "1", period=MARCH, description=f"desc n{n}")
    monkeypatch.setattr(views_plans, "CHARGES_PAGE", 2)
    client.force_login(reseller_admin)
    seen = []
    url = f"{URL}?tenant={tenant.uuid}"
    while url:
        html = client.get(url).content.decode()
        seen += descriptions(html)
        found = re.search(r'href="\?([^"]+)" data-testid="charges-next"', html)
        url = f"{URL}?{found.group(1).replace('&amp;', '&')}" if found else ""
    assert seen == [f"desc n{n}" for n in (4, 3, 2, 1, 0)]


def test_the_plan_panel_links_to_the_tenant_charges(client, reseller_billing, ledger) -> None:
    client.force_login(reseller_billing)
    a = ledger["a"]
    html = client.get(reverse("tenants:detail", args=[a.uuid])).content.decode()
    link = re.search(r'<a href="([^"]+)" data-testid="all-charges"', html)
    assert link is not None
    listed = client.get(link.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200
    assert descriptions(listed.content.decode()) == ["desc a-april-usage", "desc a-march-fee", "desc a-march-usage"]


@pytest.mark.parametrize("query", ["tenant=not-a-uuid", "kind=refund", "month=2026-13", "month=2026-3", "before=-5"])
def test_bad_filters_are_told_not_a_500(client, reseller_billing, query) -> None:
    client.force_login(reseller_billing)
    response = client.get(f"{URL}?{query}", follow=True)
    assert response.status_code == 200
    assert "msg-error" in response.content.decode()


def test_an_unknown_tenant_is_a_404(client, reseller_billing) -> None:
    client.force_login(reseller_billing)
    assert client.get(f"{URL}?tenant={uuid.uuid4()}").status_code == 404


def test_support_and_customers_do_not_reach_it(
    client, reseller_support, customer_owner, customer_tenant, ledger
) -> None:
    charge(customer_tenant, "4", period=MARCH, description="desc own")
    tenant = customer_tenant
    for user in (reseller_support, customer_owner):
        client.force_login(user)
        assert client.get(URL).status_code == 403
        assert client.get(f"{URL}?tenant={tenant.uuid}").status_code == 403
        assert client.get(f"{URL}?tenant={ledger['b'].uuid}").status_code == 403
    client.logout()
    anonymous = client.get(URL)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
