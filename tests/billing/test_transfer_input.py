"""Bad input never creates a Transfer or reaches the provider (amounts, text and keys are
checked before anything is written);
limits, maker-checker and idempotency keys."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import services
from billing.models import JournalEntry, StaffDailyUsage, Transfer
from billing.money import parse_amount
from portal.errors import Conflict, NotAllowed, PortalError
from tests.billing.conftest import check_invariants
from tests.factories import UserFactory

BAD_AMOUNTS = [
    "-1",
    "0",
    "0.00",
    "-0.00",
    "0.001",
    "10.005",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1e309",
    "1e3",
    "١٠",
    "１０",
    " 10",
    "10 ",
    "10,00",
    "+10",
    "10.",
    ".5",
    "",
    "0x10",
    "1_000",
    "٫5",
    True,
    False,
    None,
    [],
    {},
    10.5,
    float("nan"),
    Decimal("NaN"),
    Decimal("Infinity"),
    Decimal("-1"),
    Decimal("0.001"),
    Decimal("-0.00"),
]


@pytest.mark.parametrize("value", BAD_AMOUNTS, ids=repr)
def test_parse_amount_refuses_what_a_person_or_client_should_not_send(value: object) -> None:
    with pytest.raises(PortalError) as caught:
        parse_amount(value, currency="USD")
    assert caught.value.field == "amount"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10", "10.00"), ("10.5", "10.50"), ("10.50", "10.50"), ("0.01", "0.01"), (10, "10.00"), (Decimal("7.1"), "7.10")],
)
def test_parse_amount_accepts_plain_decimals(value: object, expected: str) -> None:
    assert parse_amount(value, currency="USD") == Decimal(expected)


def test_zero_decimal_currencies_refuse_cents() -> None:
    with pytest.raises(PortalError):
        parse_amount("10.5", currency="JPY")
    assert parse_amount("10", currency="JPY") == Decimal("10")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "value",
    [
        Decimal("0"),
        Decimal("-0.00"),
        Decimal("0.001"),
        Decimal("-5"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1e309"),
        10.5,
        True,
        "10",
    ],
    ids=repr,
)
def test_the_service_refuses_bad_amounts_without_a_row_or_a_provider_call(money, reseller_billing, value) -> None:
    tenant = money.tenant()
    money.sandbox.set_faults([{"method": "*", "kind": "latency", "latency_ms": 0}])
    with pytest.raises(PortalError) as caught:
        services.transfer_create(
            actor=reseller_billing, tenant=tenant, amount=value, direction="to_tenant", reason="test"
        )
    assert caught.value.field == "amount"
    assert Transfer.objects.count() == 0
    assert money.sandbox.admin("GET", "faults").json()["requests_seen"] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("reason", {"reason": ""}),
        ("reason", {"reason": "   "}),
        ("reason", {"reason": "x" * 501}),
        ("reason", {"reason": "null\x00byte"}),
        ("reason", {"reason": "rtl \u202e override"}),
        ("direction", {"direction": "sideways"}),
    ],
)
def test_reason_and_direction_are_checked(money, reseller_billing, field, kwargs) -> None:
    tenant = money.tenant()
    params = {"amount": Decimal("5"), "direction": "to_tenant", "reason": "ok"} | kwargs
    with pytest.raises(PortalError) as caught:
        services.transfer_create(actor=reseller_billing, tenant=tenant, **params)
    assert caught.value.field == field
    assert Transfer.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_limits_per_transfer_and_per_staff_day(money, reseller_billing, settings) -> None:
    settings.BILLING_TRANSFER_LIMIT = "100"
    settings.BILLING_DAILY_LIMIT_PER_STAFF = "150"
    settings.BILLING_APPROVAL_THRESHOLD = "1000"
    tenant = money.tenant()
    with pytest.raises(PortalError) as caught:
        services.transfer_create(
            actor=reseller_billing, tenant=tenant, amount=Decimal("100.01"), direction="to_tenant", reason="too much"
        )
    assert caught.value.code == "over_transfer_limit"
    services.transfer_create(
        actor=reseller_billing, tenant=tenant, amount=Decimal("100"), direction="to_tenant", reason="first"
    )
    with pytest.raises(PortalError) as caught:
        services.transfer_create(
            actor=reseller_billing, tenant=tenant, amount=Decimal("50.01"), direction="to_tenant", reason="over the day"
        )
    assert caught.value.code == "over_daily_limit"
    # Another staff member has their own day.
    other = UserFactory(username="billing2", role="reseller_billing")
    services.transfer_create(
        actor=other, tenant=tenant, amount=Decimal("50.01"), direction="to_tenant", reason="other staff"
    )
    assert Transfer.objects.count() == 2
    check_invariants(money)


@pytest.mark.django_db(transaction=True)
def test_a_refused_transfer_gives_its_daily_room_back(money, reseller_billing, settings) -> None:
    settings.BILLING_DAILY_LIMIT_PER_STAFF = "100"
    tenant = money.tenant()
    money.sandbox.set_faults([{"method": "TransferMoneyToChildAccount", "kind": "error_code", "code": 127, "count": 1}])
    t = services.transfer_create(
        actor=reseller_billing, tenant=tenant, amount=Decimal("80"), direction="to_tenant", reason="refused"
    )
    assert services.transfer_execute(transfer_id=t.pk).state == "failed"
    assert StaffDailyUsage.objects.get(user=reseller_billing).amount == 0
    services.transfer_create(
        actor=reseller_billing, tenant=tenant, amount=Decimal("80"), direction="to_tenant", reason="again"
    )


@pytest.mark.django_db(transaction=True)
def test_above_the_threshold_a_second_staff_member_must_approve(
    money, reseller_billing, reseller_admin, settings
) -> None:
    settings.BILLING_APPROVAL_THRESHOLD = "50"
    tenant = money.tenant()
    t = services.transfer_create(
        actor=reseller_billing, tenant=tenant, amount=Decimal("60"), direction="to_tenant", reason="big one"
    )
    assert t.awaiting_approval
    # Nothing moves before approval, whoever runs the task.
    assert services.transfer_execute(transfer_id=t.pk).state == "pending"
    assert money.ops(t.payment_reference) == 0
    with pytest.raises(NotAllowed):
        services.transfer_approve(actor=reseller_billing, transfer=t)
    support = UserFactory(username="support9", role="reseller_support")
    with pytest.raises(NotAllowed):
        services.transfer_approve(actor=support, transfer=t)
    services.transfer_approve(actor=reseller_admin, transfer=t)
    assert services.transfer_execute(transfer_id=t.pk).state == "succeeded"
    t.refresh_from_db()
    assert t.approved_by == reseller_admin
    check_invariants(money)


@pytest.mark.django_db(transaction=True)
def test_a_rejected_transfer_fails_and_releases_the_reservation(
    money, reseller_billing, reseller_admin, settings
) -> None:
    settings.BILLING_APPROVAL_THRESHOLD = "50"
    tenant = money.tenant()
    t = services.transfer_create(
        actor=reseller_billing, tenant=tenant, amount=Decimal("60"), direction="to_tenant", reason="big one"
    )
    services.transfer_reject(actor=reseller_admin, transfer=t, reason="not agreed")
    t.refresh_from_db()
    assert t.state == "failed" and "not agreed" in t.last_error
    assert JournalEntry.objects.filter(transfer=t, kind="release").count() == 1
    check_invariants(money)


@pytest.mark.django_db(transaction=True)
def test_support_cannot_move_money(money, reseller_support) -> None:
    with pytest.raises(NotAllowed):
        services.transfer_create(
            actor=reseller_support, tenant=money.tenant(), amount=Decimal("5"), direction="to_tenant", reason="no"
        )


@pytest.mark.django_db(transaction=True)
def test_idempotency_key_replays_and_refuses_other_parameters(money, reseller_billing) -> None:
    tenant = money.tenant()
    first = services.transfer_create(
        actor=reseller_billing,
        tenant=tenant,
        amount=Decimal("5"),
        direction="to_tenant",
        reason="r",
        idempotency_key="k-1",
    )
    again = services.transfer_create(
        actor=reseller_billing,
        tenant=tenant,
        amount=Decimal("5"),
        direction="to_tenant",
        reason="r",
        idempotency_key="k-1",
    )
    assert again.pk == first.pk and getattr(again, "replayed", False)
    with pytest.raises(Conflict):
        services.transfer_create(
            actor=reseller_billing,
            tenant=tenant,
            amount=Decimal("6"),
            direction="to_tenant",
            reason="r",
            idempotency_key="k-1",
        )
    # Keys are per sender: another staff member's "k-1" is their own.
    other = UserFactory(username="billing3", role="reseller_billing")
    mine = services.transfer_create(
        actor=other, tenant=tenant, amount=Decimal("6"), direction="to_tenant", reason="r", idempotency_key="k-1"
    )
    assert mine.pk != first.pk
    assert Transfer.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_money_the_parent_does_not_have_is_refused_before_the_claim(money, reseller_billing, settings) -> None:
    settings.BILLING_TRANSFER_LIMIT = "1000000"
    settings.BILLING_DAILY_LIMIT_PER_STAFF = "1000000"
    settings.BILLING_APPROVAL_THRESHOLD = "1000000"
    tenant = money.tenant()
    parent = money.parent_balance()
    with pytest.raises(PortalError) as caught:
        services.transfer_create(
            actor=reseller_billing, tenant=tenant, amount=parent + 1, direction="to_tenant", reason="too much"
        )
    assert caught.value.code == "insufficient_funds"
    assert Transfer.objects.count() == 0
    check_invariants(money)


@pytest.mark.django_db(transaction=True)
def test_tenants_that_cannot_receive_money_are_refused(money, reseller_billing, voiceit_connection) -> None:
    from tenants.models import Tenant

    closed = money.tenant(status="closed")
    with pytest.raises(PortalError) as caught:
        services.transfer_create(
            actor=reseller_billing, tenant=closed, amount=Decimal("1"), direction="to_tenant", reason="r"
        )
    assert caught.value.field == "tenant"
    voiceit = Tenant.objects.create(
        company_name="VI", connection=voiceit_connection, provider_account_ref="abc", status="active", currency="USD"
    )
    with pytest.raises(PortalError) as caught:
        services.transfer_create(
            actor=reseller_billing, tenant=voiceit, amount=Decimal("1"), direction="to_tenant", reason="r"
        )
    assert caught.value.code == "unsupported"
    eur = money.tenant(currency="EUR")
    with pytest.raises(PortalError) as caught:
        services.transfer_create(
            actor=reseller_billing, tenant=eur, amount=Decimal("1"), direction="to_tenant", reason="r"
        )
    assert caught.value.code == "currency_mismatch"
    assert Transfer.objects.count() == 0
