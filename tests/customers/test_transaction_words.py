"""Provider transaction types read as words from one table: the customer's statement page and
CSV say "Top-up" and "Adjustment" (never the provider's codes or the parent account), while
the staff statement of the same tenant says where the money came from."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing import services
from billing.models import Transfer
from billing.transaction_words import STAFF_ONLY, WORDS, kind_for_customer, kind_for_staff
from tests.billing.conftest import Money
from tests.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db

CODES = ("money_acceptance_from_parent", "money_transfer_to_parent", "money acceptance", "money transfer")


def test_no_customer_word_is_a_staff_word() -> None:
    for kind in [*WORDS, "money_transfer_to_reseller", "child_fee", "call_charge"]:
        words = kind_for_customer(kind).lower()
        assert not any(w in words for w in STAFF_ONLY), (kind, words)
    assert kind_for_customer("call_charge") == "Call charge"
    assert kind_for_staff("money_acceptance_from_parent") == "Top-up from the parent account"


@pytest.mark.django_db(transaction=True)
def test_the_statements_read_transaction_types_as_words(client, sandbox, vox_connection, settings) -> None:
    settings.BILLING_SETTLE_SECONDS = 0
    settings.BILLING_PENDING_GRACE_SECONDS = 0
    settings.BILLING_REFRESH_AFTER_TRANSFER = False
    money = Money(sandbox, vox_connection)
    admin = UserFactory(username="words-admin", role="reseller_admin")
    tenant = money.tenant(balance="50", company_name="Words Co")
    owner = CustomerFactory(username="words-owner", tenant=tenant)
    for direction, amount in (("to_tenant", "5.00"), ("to_parent", "2.00")):
        t = services.transfer_create(
            actor=admin, tenant=tenant, amount=Decimal(amount), direction=direction, reason="ops", dispatch=False
        )
        assert services.transfer_execute(transfer_id=t.pk).state == Transfer.State.SUCCEEDED
    day = timezone.now().date().isoformat()

    client.force_login(owner)
    page = client.get("/me/statement/", {"from": day, "to": day}).content.decode()
    download = client.get("/me/statement/", {"from": day, "to": day, "format": "csv"}).content.decode()
    for text in (page[page.index('data-testid="statement"') :], download):
        assert "Top-up" in text and "Adjustment" in text
        lowered = text.lower()
        for word in (*CODES, "parent", "pull"):
            assert word not in lowered, word

    client.force_login(admin)
    staff = client.get(reverse("billing:statement", args=[tenant.uuid]), {"from": day, "to": day}).content.decode()
    assert "Top-up from the parent account" in staff and "Pulled back to the parent account" in staff
    assert "money_acceptance_from_parent" not in staff
