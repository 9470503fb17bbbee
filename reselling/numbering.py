"""Gap-free invoice numbers per year: ``YYYY-NNNNNN``.

Numbers are taken from InvoiceCounter in the transaction that inserts the invoices, under the
counter row's lock (SELECT … FOR UPDATE on PostgreSQL; on SQLite the UPDATE takes the
database's write lock first). A transaction that rolls back gives its numbers back with
everything else, so the sequence has no gap; the lock makes two issuers wait for each other,
so it has no duplicate.
"""

from __future__ import annotations

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from reselling.models import InvoiceCounter


def invoice_number(year: int, sequence: int) -> str:
    return f"{year:04d}-{sequence:06d}"


def take_numbers(year: int, count: int = 1) -> range:
    """Reserve ``count`` consecutive sequence numbers of ``year``. Call it inside the
    transaction that inserts the invoices (asserted), as late as possible: the lock is held
    until that transaction ends."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if not connection.in_atomic_block:
        raise RuntimeError("invoice numbers are taken inside the transaction that inserts the invoices")
    if connection.vendor == "postgresql":
        _ensure_counter(year)
        counter = InvoiceCounter.objects.select_for_update().get(year=year)
        first = counter.last_number + 1
        InvoiceCounter.objects.filter(year=year).update(last_number=first + count - 1)
        return range(first, first + count)
    # SQLite: write first, so the write lock is held before the value is read.
    if not InvoiceCounter.objects.filter(year=year).update(last_number=F("last_number") + count):
        _ensure_counter(year)
        InvoiceCounter.objects.filter(year=year).update(last_number=F("last_number") + count)
    last = InvoiceCounter.objects.get(year=year).last_number
    return range(last - count + 1, last + 1)


def _ensure_counter(year: int) -> None:
    if InvoiceCounter.objects.filter(year=year).exists():
        return
    try:
        with transaction.atomic():  # a savepoint: a concurrent first invoice of the year made it
            InvoiceCounter.objects.create(year=year, last_number=0)
    except IntegrityError:
        pass
