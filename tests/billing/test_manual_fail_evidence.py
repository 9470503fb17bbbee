"""Staff may mark a sent transfer "failed" only with the evidence the automatic path needs:
the settle window has passed since the last send, no worker holds a live lease, and two
history lookups found nothing (the fresh lookup made when staff resolve is the second).
The transfer page says what is known and what is still missing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import services
from billing.models import JournalEntry, Transfer
from portal.errors import PortalError
from tests.billing.conftest import check_invariants
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

TRANSFER = "TransferMoneyToChildAccount"


def _unknown(money, actor, fault: str = "reset") -> Transfer:
    """A top-up whose send got no answer (``reset``: it never arrived at the provider)."""
    tenant = money.tenant(balance="5")
    t = services.transfer_create(
        actor=actor, tenant=tenant, amount=Decimal("12"), direction="to_tenant", reason="evidence test"
    )
    money.sandbox.set_faults([{"method": TRANSFER, "kind": fault, "count": 1}])
    t = services.transfer_execute(transfer_id=t.pk)
    money.sandbox.clear_faults()
    assert t.state == "unknown"
    return t


def _fail(actor, t: Transfer, now):
    return services.transfer_resolve(actor=actor, transfer=t, outcome="failed", note="checked by hand", now=now)


def test_failed_is_refused_until_the_settle_window_passed_and_two_lookups_were_empty(
    money, reseller_billing, settings
) -> None:
    settings.BILLING_SETTLE_SECONDS = 30
    t = _unknown(money, reseller_billing)
    sent = t.last_sent_at
    with pytest.raises(PortalError) as exc:
        _fail(reseller_billing, t, sent + timedelta(seconds=5))
    assert exc.value.code == "evidence_missing"
    assert "settle window ends at" in str(exc.value) and "0 of 2 empty lookups" in str(exc.value)
    # The settle window passed, but no lookup was recorded yet: one empty lookup is not enough.
    with pytest.raises(PortalError) as exc:
        _fail(reseller_billing, t, sent + timedelta(seconds=31))
    assert "settle window" not in str(exc.value) and "0 of 2 empty lookups" in str(exc.value)
    t.refresh_from_db()
    assert t.state == "unknown"
    # The automatic lookup records the first empty one; the fresh lookup at resolve is the second.
    t = services.transfer_reconcile(transfer_id=t.pk, now=sent + timedelta(seconds=31))
    assert t.state == "unknown" and t.empty_lookups == 1
    t = _fail(reseller_billing, t, sent + timedelta(seconds=40))
    assert t.state == "failed"
    assert JournalEntry.objects.filter(transfer=t, kind="release").count() == 1
    assert money.ops(t.payment_reference) == 0
    check_invariants(money)


def test_failed_is_refused_while_a_worker_holds_the_lease(money, reseller_billing) -> None:
    t = _unknown(money, reseller_billing)
    t = services.transfer_reconcile(transfer_id=t.pk)
    assert t.empty_lookups == 1
    # A worker that still owns the row (its lease runs for another minute).
    until = timezone.now() + timedelta(minutes=1)
    Transfer.objects.filter(pk=t.pk).update(lease_until=until)
    with pytest.raises(PortalError) as exc:
        _fail(reseller_billing, t, timezone.now())
    assert exc.value.code == "evidence_missing"
    assert f"lease is held by a worker until {until:%H:%M:%S}" in str(exc.value)
    t = _fail(reseller_billing, t, until + timedelta(seconds=1))
    assert t.state == "failed"
    check_invariants(money)


def test_an_applied_transfer_is_never_marked_failed_even_with_all_the_evidence(money, reseller_billing) -> None:
    t = _unknown(money, reseller_billing, fault="apply_then_drop")
    Transfer.objects.filter(pk=t.pk).update(state="needs_review", empty_lookups=1, review_reason="by hand")
    with pytest.raises(PortalError) as exc:
        _fail(reseller_billing, t, timezone.now())
    assert exc.value.code == "provider_applied"
    t.refresh_from_db()
    assert t.state == "needs_review"


def test_the_transfer_page_says_what_is_known_and_what_is_missing(client, money, reseller_billing, settings) -> None:
    settings.BILLING_SETTLE_SECONDS = 600
    t = _unknown(money, reseller_billing)
    client.force_login(UserFactory(username=f"rb-{uuid.uuid4().hex[:6]}", role="reseller_billing"))
    page = client.get(f"/console/billing/transfers/{t.uuid}/").content.decode()
    ends = t.last_sent_at + timedelta(seconds=600)  # the portal runs in UTC
    assert 'data-testid="fail-evidence"' in page
    assert f"ends at {ends:%H:%M:%S} UTC" in page
    assert "0 of 2 recorded" in page and "Still missing" in page
    assert "lease" in page and "none held" in page
    # A refused "failed" posted from the page is shown as an error, the transfer unchanged.
    response = client.post(
        f"/console/billing/transfers/{t.uuid}/resolve/", {"outcome": "failed", "note": "n"}, follow=True
    )
    assert response.status_code == 200
    assert "Not enough evidence" in response.content.decode()
    t.refresh_from_db()
    assert t.state == "unknown"
