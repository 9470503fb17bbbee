"""The journal is append-only and balanced, enforced by the database (migration 0002)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from billing import ledger
from billing.models import JournalEntry, JournalLine

pytestmark = pytest.mark.django_db(transaction=True)


def _post(amounts: list[str]) -> JournalEntry:
    return ledger.post(
        kind="adjust",
        connection_id=1,
        currency="USD",
        legs=[ledger.Leg("world" if i == 0 else "reseller", Decimal(a)) for i, a in enumerate(amounts)],
    )


def test_balanced_entries_post_and_sum_exactly() -> None:
    for _ in range(10):
        _post(["-0.1", "0.1"])
        _post(["-0.2", "0.2"])
        ledger.move(
            kind="adjust", connection_id=1, currency="USD", amount=Decimal("0.3"), source="reseller", target="world"
        )
    assert ledger.balance(account="reseller", connection_id=1) == Decimal("0")
    assert ledger.total() == 0


def test_the_helper_refuses_an_unbalanced_entry() -> None:
    with pytest.raises(ValueError, match="sum to zero"):
        _post(["-1", "2"])


def _raw_entry(lines: list[str], line_count: int | None = None) -> None:
    entry_id = uuid.uuid4().hex if connection.vendor == "sqlite" else str(uuid.uuid4())
    with connection.cursor() as cursor:
        for amount in lines:
            cursor.execute(
                "INSERT INTO billing_journalline (entry_id, account, connection_id, currency, amount) "
                "VALUES (%s, 'world', 1, 'USD', %s)",
                [entry_id, amount],
            )
        cursor.execute(
            "INSERT INTO billing_journalentry (id, created_at, kind, currency, memo, line_count) "
            "VALUES (%s, CURRENT_TIMESTAMP, 'adjust', 'USD', '', %s)",
            [entry_id, line_count if line_count is not None else len(lines)],
        )


def test_the_database_refuses_an_unbalanced_entry_even_from_raw_sql() -> None:
    with pytest.raises(DatabaseError, match="does not balance"), transaction.atomic():
        _raw_entry(["-1.00", "2.00"])
    with pytest.raises(DatabaseError, match="does not balance"), transaction.atomic():
        _raw_entry(["-1.00", "1.00"], line_count=3)
    with transaction.atomic():
        _raw_entry(["-1.25", "1.25"])
    assert JournalEntry.objects.count() == 1


@pytest.mark.parametrize("operation", ["update_line", "delete_line", "update_entry", "delete_entry"])
def test_the_database_refuses_to_change_or_delete_journal_rows(operation: str) -> None:
    entry = _post(["-5", "5"])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        if operation == "update_line":
            JournalLine.objects.filter(entry=entry).update(amount=Decimal("7"))
        elif operation == "delete_line":
            JournalLine.objects.filter(entry=entry).delete()
        elif operation == "update_entry":
            JournalEntry.objects.filter(pk=entry.pk).update(memo="rewritten")
        else:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM billing_journalentry")
    assert JournalLine.objects.filter(entry=entry).count() == 2


def test_a_posted_entry_takes_no_more_lines() -> None:
    entry = _post(["-5", "5"])
    with pytest.raises(DatabaseError), transaction.atomic():
        JournalLine.objects.create(entry=entry, account="world", connection_id=1, currency="USD", amount=Decimal("1"))
