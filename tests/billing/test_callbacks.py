"""The provider's account callbacks end to end: the sandbox's sender posts over HTTP to the
portal's webhook running under a live server; the portal verifies, stores once and applies.
Also: bad hashes, malformed bodies, redelivery, unknown types and accounts, and the nightly
sync catching up when callbacks are lost."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from billing import callbacks, services
from billing.alerts import low_balance_alerts_send
from billing.models import DriftItem, LowBalanceAlert, ProviderCallback, Transfer
from tenants.models import ProviderConnection, Tenant
from tests.factories import CustomerFactory, TransferFactory

pytestmark = pytest.mark.django_db(transaction=True)

SALT = "portal-test-salt"


def wait_for(what: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll the database (bounded) until ``what()`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("the callback did not arrive in time")
        time.sleep(0.05)


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@pytest.fixture
def hooked(money: Any, live_server: Any, settings: Any, reseller_admin: Any) -> Any:
    """The connection's callbacks set on the sandbox's parent account, pointing at the live portal."""
    settings.SITE_URL = live_server.url
    connection = callbacks.callbacks_configure(
        actor=reseller_admin, connection=money.connection, url=callbacks.webhook_url(money.connection), salt=SALT
    )
    assert connection.callback_configured_at is not None
    return money


def api_key(money: Any) -> str:
    return money.sandbox.parent_api_key_path.read_text().strip()


def post(money: Any, body: Any, *, raw: bytes | None = None) -> httpx.Response:
    url = callbacks.webhook_url(money.connection)
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=10)


def one_callback(money: Any, account_id: int, callback_id: int, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "callback_id": callback_id,
        "type": kind,
        "account_id": account_id,
        "account_name": "acct",
        "account_email": "acct@example.com",
        "balance": 1.5,
        "currency": "USD",
        "hash": md5(f"{SALT}{account_id}{api_key(money)}{callback_id}"),
        kind: {},
        **extra,
    }


def sync(money: Any) -> None:
    run = services.sync_start(actor=None, connection=money.connection)
    services.sync_execute(sync_run_id=run.pk)


def freeze(money: Any, account_id: int, frozen: bool = True) -> None:
    money.sandbox.admin("POST", "freeze", {"account_id": account_id, "frozen": frozen})


def received(tenant: Tenant, kind: str) -> ProviderCallback | None:
    return (
        ProviderCallback.objects.filter(tenant=tenant, type=kind)
        .exclude(outcome=ProviderCallback.Outcome.PENDING)
        .first()
    )


def test_a_child_frozen_at_the_provider_is_seen_at_once_and_is_a_drift(hooked: Any) -> None:
    tenant = hooked.tenant(balance="3")
    sync(hooked)  # the portal knows the account (enabled, not frozen)
    freeze(hooked, tenant.provider_account_id)
    callback = wait_for(lambda: received(tenant, "account_is_frozen"))
    assert callback.outcome == ProviderCallback.Outcome.APPLIED
    assert callback.account_id == tenant.provider_account_id and callback.callback_id == 1
    assert "hash" not in callback.payload
    tenant.refresh_from_db()
    assert tenant.provider_frozen is True
    assert tenant.status == Tenant.Status.ACTIVE  # the portal's status is not changed silently
    drift = DriftItem.objects.get(tenant=tenant, kind=DriftItem.Kind.STATUS_MISMATCH)
    assert drift.fingerprint == callbacks.status_fingerprint(tenant)
    assert drift.resolved_at is None and tenant.has_drift
    # The nightly sync sees the same disagreement and records nothing more.
    sync(hooked)
    assert DriftItem.objects.filter(tenant=tenant, kind=DriftItem.Kind.STATUS_MISMATCH).count() == 1

    freeze(hooked, tenant.provider_account_id, False)
    wait_for(lambda: received(tenant, "account_is_unfrozen"))
    tenant.refresh_from_db()
    assert tenant.provider_frozen is False


def test_a_transfer_updates_the_balance_and_resolves_an_unknown_transfer(hooked: Any, celery_eager: None) -> None:
    tenant = hooked.tenant(balance="0")
    lost = TransferFactory(tenant=tenant, state=Transfer.State.UNKNOWN, amount=Decimal("10.00"), completed_at=None)
    # The provider applied the transfer but the portal never heard the answer.
    hooked.client.transfer_money(
        account_id=tenant.provider_account_id,
        amount=Decimal("10.00"),
        payment_reference=lost.payment_reference,
        check_duplicate_reference_from=lost.dup_check_from,
    )
    callback = wait_for(lambda: received(tenant, "balance_is_changed"))
    assert callback.outcome == ProviderCallback.Outcome.APPLIED
    assert "1 unknown transfer(s) sent to resolution" in callback.note
    tenant.refresh_from_db()
    assert tenant.balance == Decimal("10.0000")
    # The resolution runs right after the callback's commit (a task; eager here).
    wait_for(lambda: Transfer.objects.filter(pk=lost.pk, state=Transfer.State.SUCCEEDED).exists())


def test_a_balance_below_the_threshold_alerts_once_per_crossing(hooked: Any, mailoutbox: list[Any]) -> None:
    tenant = hooked.tenant(balance="10", low_balance_threshold=Decimal("5"))
    Tenant.objects.filter(pk=tenant.pk).update(balance=Decimal("10"))
    CustomerFactory(username="low-owner", email="owner@low.example", tenant=tenant)
    hooked.client.withdraw_money(
        account_id=tenant.provider_account_id,
        amount=Decimal("6.00"),
        payment_reference="rp-withdraw-low",
        check_duplicate_reference_from=timezone.now(),
    )
    crossing = wait_for(lambda: received(tenant, "min_balance"))
    assert crossing.outcome == ProviderCallback.Outcome.APPLIED
    tenant.refresh_from_db()
    assert tenant.balance == Decimal("4.0000") and tenant.is_low_balance
    assert LowBalanceAlert.objects.filter(tenant=tenant).count() == 1
    mailoutbox.clear()
    low_balance_alerts_send()
    assert sorted(m.to[0] for m in mailoutbox) == ["owner@low.example", "staff-alerts@reseller.example"]
    assert low_balance_alerts_send() == 0


def test_a_bad_hash_is_refused_and_nothing_is_stored(hooked: Any) -> None:
    tenant = hooked.tenant()
    bad = one_callback(hooked, tenant.provider_account_id, 7, "account_is_frozen", hash="0" * 32)
    response = post(
        hooked, {"callbacks": [one_callback(hooked, tenant.provider_account_id, 6, "account_is_frozen"), bad]}
    )
    assert response.status_code == 403
    assert SALT not in response.text and api_key(hooked) not in response.text
    assert not ProviderCallback.objects.exists()
    tenant.refresh_from_db()
    assert tenant.provider_frozen is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"callbacks": []}',
        b'{"callbacks": "x"}',
        b'{"callbacks": [1]}',
        b'{"callbacks": [{"callback_id": "a", "account_id": 1, "type": "x", "hash": "h"}]}',
        b'{"callbacks": [{"callback_id": 1, "account_id": 1, "type": "x"}]}',
    ],
)
def test_a_malformed_body_is_a_400_with_a_json_error(hooked: Any, raw: bytes) -> None:
    response = post(hooked, None, raw=raw)
    assert response.status_code == 400
    assert "error" in response.json()
    assert not ProviderCallback.objects.exists()


def test_unknown_connections_and_other_methods_are_refused(hooked: Any, live_server: Any) -> None:
    url = live_server.url + reverse("hooks:voximplant", args=["00000000-0000-0000-0000-000000000000"])
    assert httpx.post(url, content=b'{"callbacks": []}', timeout=10).status_code == 404
    response = httpx.get(callbacks.webhook_url(hooked.connection), timeout=10)
    assert response.status_code == 405 and "error" in response.json()


def test_a_redelivery_answers_200_and_changes_nothing(hooked: Any) -> None:
    tenant = hooked.tenant(status=Tenant.Status.FROZEN)
    body = {"callbacks": [one_callback(hooked, tenant.provider_account_id, 41, "account_is_frozen")]}
    first, again = post(hooked, body), post(hooked, body)
    assert (first.status_code, first.json()["new"]) == (200, 1)
    assert (again.status_code, again.json()["duplicates"]) == (200, 1)
    assert ProviderCallback.objects.filter(account_id=tenant.provider_account_id, callback_id=41).count() == 1
    tenant.refresh_from_db()
    assert tenant.provider_frozen is True
    # Frozen at the provider and frozen in the portal agree: no drift.
    assert not DriftItem.objects.filter(tenant=tenant).exists()


def test_unknown_types_and_accounts_are_kept_and_listed(hooked: Any, client: Any, reseller_support: Any) -> None:
    tenant = hooked.tenant()
    body = {
        "callbacks": [
            one_callback(hooked, tenant.provider_account_id, 3, "next_charge_alert"),
            one_callback(hooked, 987654, 1, "account_is_frozen"),
        ]
    }
    assert post(hooked, body).status_code == 200
    outcomes = dict(ProviderCallback.objects.values_list("type", "outcome"))
    assert outcomes == {
        "next_charge_alert": ProviderCallback.Outcome.UNKNOWN_TYPE,
        "account_is_frozen": ProviderCallback.Outcome.UNKNOWN_ACCOUNT,
    }
    client.force_login(reseller_support)
    page = client.get(reverse("console:callbacks")).content.decode()
    assert 'data-type="next_charge_alert" data-outcome="unknown_type"' in page
    assert 'data-outcome="unknown_account"' in page


def test_lost_callbacks_are_caught_up_by_the_nightly_sync(hooked: Any) -> None:
    from sandbox.callbacks import outbox

    tenant = hooked.tenant(balance="2")
    hooked.sandbox.admin("PUT", "options", {"callbacks_drop_rate": "1"})
    freeze(hooked, tenant.provider_account_id)
    store = hooked.sandbox.store()
    try:
        wait_for(lambda: [r["state"] for r in outbox(store, tenant.provider_account_id)] == ["dropped"])
    finally:
        store.close()
    assert not ProviderCallback.objects.exists()
    sync(hooked)
    tenant.refresh_from_db()
    assert tenant.provider_frozen is True
    assert DriftItem.objects.filter(
        tenant=tenant, kind=DriftItem.Kind.STATUS_MISMATCH, resolved_at__isnull=True
    ).exists()


def test_callbacks_need_a_configured_salt(money: Any, live_server: Any, settings: Any) -> None:
    settings.SITE_URL = live_server.url
    ProviderConnection.objects.filter(pk=money.connection.pk).update(callback_salt_encrypted="")
    response = post(money, {"callbacks": [one_callback(money, 1, 1, "account_is_frozen")]})
    assert response.status_code == 403
    assert not ProviderCallback.objects.exists()
