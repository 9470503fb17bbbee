"""The bulk page moves tenant-level money only: it offers top-up and pull back (the directions
of billing.transfers.TENANT_FORM_DIRECTIONS), never the PBX-user ones, and its dry run and
run refuse a PBX-user direction sent by hand with a clear error."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from billing.models import Transfer
from billing.transfers import TENANT_FORM_DIRECTIONS
from portal.models import Job
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def offered(html: str) -> list[str]:
    select = html[html.index('name="direction"') :]
    select = select[: select.index("</select>")]
    return re.findall(r'<option value="([^"]+)"', select)


def test_the_bulk_page_offers_top_up_and_pull_back_only(client, reseller_billing) -> None:
    client.force_login(reseller_billing)
    html = client.get(reverse("billing:bulk")).content.decode()
    assert offered(html) == ["to_tenant", "to_parent"] == [d.value for d in TENANT_FORM_DIRECTIONS]
    assert "to_user" not in html and "from_user" not in html


@pytest.mark.parametrize("direction", ["to_user", "from_user", "sideways"])
@pytest.mark.parametrize("action", ["dry_run", "run"])
def test_a_pbx_user_direction_sent_by_hand_is_refused(client, reseller_billing, direction, action) -> None:
    tenant = TenantFactory(status="active")
    client.force_login(reseller_billing)
    data = {"tenants": [str(tenant.uuid)], "amount": "2", "direction": direction, "reason": "bulk", "action": action}
    page = client.post(reverse("billing:bulk"), data)
    assert page.status_code == 400
    assert "Choose top-up or pull back." in page.content.decode()
    assert not Transfer.objects.exists() and not Job.objects.filter(kind="billing.bulk_transfer").exists()
