"""The tenant page offers exactly the actions its POSTs accept, for every staff role and
tenant state: a button the user may not press, or that the tenant's state forbids, is not
there (and the reason is said where it helps)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Transfer
from billing.templatetags.billing_tags import PANEL_FORM_KEY
from portal.roles import Role
from tenants.models import Tenant, TenantOperation
from tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db

STAFF = [Role.RESELLER_ADMIN, Role.RESELLER_BILLING, Role.RESELLER_SUPPORT]
STATES = [Tenant.Status.ACTIVE, Tenant.Status.FROZEN, Tenant.Status.CLOSING, Tenant.Status.CLOSED]
ACTIONS = ["to_tenant", "to_parent", "threshold", "freeze", "unfreeze"]


def _offered(html: str, tenant: Tenant) -> set[str]:
    offered = set()
    if 'data-testid="transfer-form"' in html:
        form = html.split('data-testid="transfer-form"', 1)[1].split("</form>", 1)[0]
        offered |= {d for d in ("to_tenant", "to_parent") if f'<option value="{d}"' in form}
    if 'data-testid="threshold-form"' in html:
        offered.add("threshold")
    for action in ("freeze", "unfreeze"):
        if f'action="/console/tenants/{tenant.uuid}/{action}/"' in html:
            offered.add(action)
    return offered


def _accepted(client, tenant: Tenant, action: str) -> bool:
    page = f"/console/tenants/{tenant.uuid}/"
    if action in ("to_tenant", "to_parent"):
        before = Transfer.objects.count()
        response = client.post(
            f"/console/billing/tenants/{tenant.uuid}/transfer/",
            {"amount": "1.00", "direction": action, "reason": "check", "key": f"key-{action}", "next": page},
        )
        if response.status_code == 403:
            return False
        refused = client.session.get(PANEL_FORM_KEY, {}).get("errors", {})
        client.get(page)  # the page takes the refused form back out of the session
        # Refusals about the amount (the parent's budget, say) are not refusals of the action.
        return Transfer.objects.count() > before or set(refused) <= {"amount"}
    if action == "threshold":
        response = client.post(f"/console/billing/tenants/{tenant.uuid}/threshold/", {"threshold": "5"})
        tenant.refresh_from_db()
        return response.status_code != 403 and tenant.low_balance_threshold == Decimal("5")
    before = TenantOperation.objects.filter(tenant=tenant).count()
    response = client.post(f"/console/tenants/{tenant.uuid}/{action}/", {"reason": "check"})
    return response.status_code != 403 and TenantOperation.objects.filter(tenant=tenant).count() > before


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("role", STAFF)
def test_the_page_offers_exactly_the_actions_the_posts_accept(client, vox_connection, role, state):
    user = UserFactory(role=role)
    client.force_login(user)
    offered = {}
    accepted = {}
    for action in ACTIONS:
        # A fresh tenant per action: one accepted action must not change what the next sees.
        tenant = TenantFactory(connection=vox_connection, status=state, low_balance_threshold=None)
        html = client.get(f"/console/tenants/{tenant.uuid}/").content.decode()
        offered[action] = action in _offered(html, tenant)
        accepted[action] = _accepted(client, tenant, action)
    assert offered == accepted


def test_a_closed_tenant_says_why_no_money_moves(client, vox_connection, reseller_billing):
    tenant = TenantFactory(connection=vox_connection, status=Tenant.Status.CLOSED)
    client.force_login(reseller_billing)
    html = client.get(f"/console/tenants/{tenant.uuid}/").content.decode()
    assert "Closed tenants cannot receive money." in html
    assert 'data-testid="transfer-form"' not in html and 'data-testid="threshold-form"' not in html


def test_support_is_not_offered_reading_the_parent_balance(client, vox_connection, reseller_support, reseller_billing):
    client.force_login(reseller_support)
    assert "Read the balance now" not in client.get("/console/").content.decode()
    assert client.post("/console/billing/parent/refresh/", {"connection": str(vox_connection.uuid)}).status_code == 403
    client.force_login(reseller_billing)
    assert "Read the balance now" in client.get("/console/").content.decode()
