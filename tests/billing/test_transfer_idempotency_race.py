"""Two POSTs of a transfer with one Idempotency-Key at the same instant. The key is claimed
in the transfer's own transaction, so the loser waits for the winner's commit (on the unique
key, or SQLite's write lock) and then finds its stored response: one transfer, one
reservation, and the loser replays it or is told the key is in use, never a second
transfer."""

from __future__ import annotations

import threading

import pytest

from billing.models import JournalEntry, Transfer
from portal.models import IdempotencyRecord
from tests.billing.conftest import check_invariants
from tests.factories import UserFactory, api_token, bearer

pytestmark = pytest.mark.django_db(transaction=True)


def _race(tenant, token: str, key: str, bodies: list[dict[str, str]]) -> list[tuple[int, dict, str | None]]:
    from django.db import connection as db
    from django.test import Client

    barrier = threading.Barrier(len(bodies))
    answers: list[tuple[int, dict, str | None]] = []

    def post(body: dict[str, str]) -> None:
        try:
            barrier.wait(timeout=10)
            response = Client().post(
                f"/api/v1/tenants/{tenant.uuid}/transfers",
                body,
                content_type="application/json",
                headers={**bearer(token), "Idempotency-Key": key},
            )
            answers.append((response.status_code, response.json(), response.headers.get("Idempotent-Replayed")))
        finally:
            db.close()  # each thread has its own connection

    threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == len(bodies), answers
    return answers


@pytest.fixture
def staff_token(db: None) -> str:
    return api_token(UserFactory(username="race-billing", role="reseller_billing"))


def test_a_double_click_creates_one_transfer(money, client, staff_token) -> None:
    tenant = money.tenant()
    body = {"amount": "2.00", "direction": "to_tenant", "reason": "double click"}
    for round_ in range(3):
        answers = _race(tenant, staff_token, f"double-{round_}", [body, body])
        statuses = sorted(status for status, _, _ in answers)
        assert statuses in ([201, 201], [201, 409]), answers
        created = [payload for status, payload, _ in answers if status == 201]
        assert len({payload["id"] for payload in created}) == 1, answers
        if statuses == [201, 201]:
            assert sorted(replayed or "" for _, _, replayed in answers) == ["", "true"], answers
        else:
            refused = next(payload for status, payload, _ in answers if status == 409)
            assert refused["error"]["code"] == "idempotency_in_progress", answers
        record = IdempotencyRecord.objects.get(key=f"double-{round_}")
        assert record.state == IdempotencyRecord.State.DONE and record.body == created[0]
    # One transfer and one reservation per key; the money adds up.
    assert Transfer.objects.count() == 3
    assert JournalEntry.objects.filter(kind="reserve").count() == 3
    check_invariants(money)
    # A later retry replays what the winner stored.
    again = client.post(
        f"/api/v1/tenants/{tenant.uuid}/transfers",
        body,
        content_type="application/json",
        headers={**bearer(staff_token), "Idempotency-Key": "double-0"},
    )
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == IdempotencyRecord.objects.get(key="double-0").body
    assert Transfer.objects.count() == 3


def test_one_key_with_two_bodies_at_once_creates_one_transfer(money, staff_token) -> None:
    tenant = money.tenant()
    bodies = [
        {"amount": "1.00", "direction": "to_tenant", "reason": "first body"},
        {"amount": "3.00", "direction": "to_tenant", "reason": "second body"},
    ]
    answers = _race(tenant, staff_token, "two-bodies", bodies)
    assert sorted(status for status, _, _ in answers) == [201, 409], answers
    refused = next(payload for status, payload, _ in answers if status == 409)
    assert refused["error"]["code"] in {"idempotency_key_reused", "idempotency_in_progress"}, answers
    created = next(payload for status, payload, _ in answers if status == 201)
    transfer = Transfer.objects.get()
    assert str(transfer.uuid) == created["id"]
    assert JournalEntry.objects.filter(kind="reserve").count() == 1
    check_invariants(money)
