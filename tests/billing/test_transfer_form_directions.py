"""The standalone move-money form offers only the directions its POST accepts
(billing.transfers.may_move_money), never the PBX-user ones, and says why for the others."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def offered(html: str) -> list[str]:
    select = html[html.index('data-testid="direction"') : html.index("</select>")]
    return re.findall(r'<option value="([^"]+)"', select)


def test_an_active_tenant_offers_top_up_and_pull_back_only(client, reseller_billing) -> None:
    tenant = TenantFactory(status="active")
    client.force_login(reseller_billing)
    html = client.get(reverse("billing:tenant_transfer", args=[tenant.uuid])).content.decode()
    assert offered(html) == ["to_tenant", "to_parent"]
    assert "to_user" not in html and "from_user" not in html
    assert "Move money</button>" in html


def test_a_closing_tenant_offers_only_the_pull_back_and_says_why(client, reseller_billing) -> None:
    tenant = TenantFactory(status="closing")
    client.force_login(reseller_billing)
    html = client.get(reverse("billing:tenant_transfer", args=[tenant.uuid])).content.decode()
    assert offered(html) == ["to_parent"]
    assert "A closing tenant cannot receive money" in html


def test_a_closed_tenant_offers_no_direction_and_no_button(client, reseller_billing) -> None:
    tenant = TenantFactory(status="closed")
    client.force_login(reseller_billing)
    html = client.get(reverse("billing:tenant_transfer", args=[tenant.uuid])).content.decode()
    assert offered(html) == []
    assert "Move money</button>" not in html and 'data-testid="no-direction"' in html


def test_support_and_customers_do_not_reach_the_form(client, reseller_support, customer_owner) -> None:
    tenant = TenantFactory(status="active")
    url = reverse("billing:tenant_transfer", args=[tenant.uuid])
    client.force_login(reseller_support)
    assert client.get(url).status_code == 403
    client.force_login(customer_owner)
    assert client.get(url).status_code in (403, 404)
