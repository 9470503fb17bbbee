"""How many queries a transfer costs: the API POST that records it and the worker step that
sends and settles it. A guard that is not a timing: the counts are exact facts of the code
path, so a change that adds a re-read, a savepoint or a per-line insert fails here on any
machine. The counts are exact (docs/money.md, "What a transfer costs the database"): one
query more fails, and so does one fewer, so that a saving is written down here. Both vendors
count BEGIN and COMMIT; SQLite reads a counter before writing it (its decimals are REAL) and
claims a transfer with a read and a conditional UPDATE, PostgreSQL updates a counter in one
statement and claims with one UPDATE ... RETURNING, so each vendor has its own count.

Every guarantee is asserted alongside: the row and its reservation, the balanced journal,
the audit trail, the idempotent replay, the provider applying the money once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import ledger
from billing.models import JournalEntry, StaffDailyUsage, Transfer
from billing.transfers import transfer_execute
from portal.models import AuditEvent, IdempotencyRecord
from tests.billing.conftest import check_invariants
from tests.factories import UserFactory, api_token, bearer

# Real transactions, as in production: a test wrapped in one would count savepoints instead.
pytestmark = pytest.mark.django_db(transaction=True)

#: vendor → (API POST, worker step). The POST: the token with its owner's role (one query),
#: the tenant (with its connection), then one transaction (budget reserve, daily usage,
#: transfer row, journal lines, journal entry, audit event, the idempotency key with its
#: stored response). The step: the claim with its audit event (PostgreSQL: one UPDATE that
#: returns the row and its connection; SQLite: the row read first, then the conditional
#: UPDATE), and the settle (transition, journal lines, journal entry, audit event), each one
#: transaction.
BUDGET = {"sqlite": (13, 11), "postgresql": (11, 10)}


def _commits(ctx: CaptureQueriesContext) -> int:
    return sum(1 for query in ctx.captured_queries if query["sql"].strip().upper() == "COMMIT")


@pytest.fixture
def bounds() -> tuple[int, int]:
    if connection.vendor not in BUDGET:
        pytest.skip(f"no query budget recorded for {connection.vendor}")
    return BUDGET[connection.vendor]


def _post(client, tenant, token: str, key: str, amount: str = "3.00"):
    return client.post(
        f"/api/v1/tenants/{tenant.uuid}/transfers",
        {"amount": amount, "direction": "to_tenant", "reason": "query budget"},
        content_type="application/json",
        headers={**bearer(token), "Idempotency-Key": key},
    )


@pytest.fixture
def staff_token(db: None) -> str:
    return api_token(UserFactory(username="budget-billing", role="reseller_billing"))


def test_the_api_post_stays_within_its_query_budget(money, client, staff_token, bounds) -> None:
    tenant = money.tenant()
    # The first top-up of the day reads the parent balance and opens the staff member's
    # daily row; the budget is about every top-up after it.
    assert _post(client, tenant, staff_token, "warm-up", "1.00").status_code == 201
    with CaptureQueriesContext(connection) as ctx:
        response = _post(client, tenant, staff_token, "budgeted")
    assert response.status_code == 201, response.content
    assert len(ctx.captured_queries) == bounds[0], [q["sql"][:80] for q in ctx.captured_queries]
    # The key, the transfer and the stored response: one commit.
    assert _commits(ctx) == 1
    body = response.json()
    transfer = Transfer.objects.select_related("tenant").get(uuid=body["id"])
    # The body is what was committed, although it was not read back.
    assert body["state"] == transfer.state == "pending"
    assert body["amount"] == "3.00" and body["tenant"] == str(tenant.uuid)
    assert body["payment_reference"] == transfer.payment_reference
    assert body["created_at"].startswith(transfer.created_at.isoformat()[:19])
    # Reserved: one balanced reserve entry, the budget and the journal agree, audited.
    assert JournalEntry.objects.filter(transfer=transfer, kind="reserve", line_count=2).count() == 1
    assert ledger.total() == 0
    assert ledger.balance(account="in_flight", connection_id=money.connection.pk) == Decimal("4.00")
    assert AuditEvent.objects.filter(action="billing.transfer.created", data__transfer=body["id"]).count() == 1
    check_invariants(money)
    # The response is stored under the key: the same request replays it, nothing new is made.
    assert IdempotencyRecord.objects.get(key="budgeted").state == IdempotencyRecord.State.DONE
    again = _post(client, tenant, staff_token, "budgeted")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == body
    assert Transfer.objects.count() == 2


def test_a_worker_step_stays_within_its_query_budget(money, client, staff_token, bounds) -> None:
    tenant = money.tenant()
    first = _post(client, tenant, staff_token, "step-warm", "1.00").json()
    second = _post(client, tenant, staff_token, "step-budgeted").json()
    transfer_execute(transfer_id=Transfer.objects.get(uuid=first["id"]).pk)  # the provider client's start-up
    pk = Transfer.objects.get(uuid=second["id"]).pk
    with CaptureQueriesContext(connection) as ctx:
        done = transfer_execute(transfer_id=pk)
    assert len(ctx.captured_queries) == bounds[1], [q["sql"][:80] for q in ctx.captured_queries]
    assert _commits(ctx) == 2  # the claim, then the settle
    # The instance it returns is the committed row, although it was not read back.
    row = Transfer.objects.get(pk=pk)
    assert done.state == row.state == Transfer.State.SUCCEEDED
    assert (done.attempt, done.lease_until, done.completed_at) == (row.attempt, row.lease_until, row.completed_at)
    assert row.attempt == 1 and row.lease_until is None
    assert money.ops(row.payment_reference) == 1
    assert money.child_balance(tenant.provider_account_id) == Decimal("4.00")
    assert JournalEntry.objects.filter(transfer_id=pk, kind="settle", line_count=2).count() == 1
    actions = list(
        AuditEvent.objects.filter(data__transfer=second["id"]).order_by("id").values_list("action", flat=True)
    )
    assert actions == ["billing.transfer.created", "billing.transfer.sending", "billing.transfer.succeeded"]
    check_invariants(money)
    # Run again (a redelivered task): the claim's fence admits nobody, nothing is sent twice.
    assert transfer_execute(transfer_id=pk).state == Transfer.State.SUCCEEDED
    assert money.ops(row.payment_reference) == 1


def test_a_reaped_key_replays_the_transfer_it_recorded(money, client, staff_token) -> None:
    """The API's key record is gone (reaped) but its transfer holds the key: the first claim
    skips the replay read, and the transfer's unique key rolls the new attempt back whole."""
    tenant = money.tenant()
    first = _post(client, tenant, staff_token, "reaped", "2.00")
    assert first.status_code == 201, first.content
    IdempotencyRecord.objects.filter(key="reaped").delete()
    again = _post(client, tenant, staff_token, "reaped", "2.00")
    assert again.status_code == 201, again.content
    assert again.json()["id"] == first.json()["id"]
    assert Transfer.objects.count() == 1
    # Nothing of the rolled-back attempt is left: one reservation, the budget and daily
    # usage taken once, the journal balanced.
    assert JournalEntry.objects.filter(kind="reserve").count() == 1
    assert ledger.balance(account="in_flight", connection_id=money.connection.pk) == Decimal("2.00")
    assert StaffDailyUsage.objects.get().amount == Decimal("2.00")
    check_invariants(money)
    # Another body under the reaped key is refused, as any reuse of a key is.
    other = _post(client, tenant, staff_token, "reaped", "5.00")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused", other.content
    assert Transfer.objects.count() == 1
