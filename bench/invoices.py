"""Benchmark of the monthly invoice run at scale.

    .venv/bin/python bench/invoices.py [--tenants N] [--batch B] [--reseed]

Seeds N tenants (default 530,350) with bench/tenant_list.py's bulk load and one charge each in
the month measured (bench/margin.py's load), then, in the same process and database:

- the run: reselling.invoices.invoice_run_execute for that month, from an empty state (no
  run, no invoice, the counter at zero), batches of B tenants;
- the floor: one bulk insert of the same invoice and line rows (bulk_create in one
  transaction, the rows built from the same charges), what any run must at least write.

Between the two the invoices are removed (the append-only triggers are dropped for it and put
back). Memory is sampled from /proc/self/status during each phase: the peak RSS above the
phase's start shows the run stays flat whatever N. Target: run time <= 3x the floor.
The last line is JSON.

SQLite file: $PORTAL_VAR_DIR/bench/invoices-N.sqlite3 (kept and reused; --reseed starts a new one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_TENANTS = 530_350
TARGET_RATIO = 3.0
TABLES = ("reselling_invoiceline", "reselling_invoice")


def setup_django(tenants: int, reseed: bool) -> None:
    var = Path(os.environ.get("PORTAL_VAR_DIR") or ROOT / "var")
    path = var / "bench" / f"invoices-{tenants}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    if reseed:  # a fresh file: the charges and invoices hold the tenants in place
        for leftover in path.parent.glob(f"{path.name}*"):
            leftover.unlink()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings_test")
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measured(work: Callable[[], Any]) -> tuple[float, float, float]:
    """(seconds, RSS at the start in MB, peak RSS above the start in MB)."""
    start_rss, peak = rss_mb(), [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return seconds, start_rss, max(0.0, max(peak[0], rss_mb()) - start_rss)


def clear_invoices() -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN (%s, %s)", TABLES)
        triggers = cursor.fetchall()
        for name, _ in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')
        cursor.execute("DELETE FROM reselling_dunning")
        for table in TABLES:
            cursor.execute(f"DELETE FROM {table}")
        cursor.execute("DELETE FROM reselling_invoicerun")
        cursor.execute("DELETE FROM reselling_invoicecounter")
        for _, sql in triggers:
            cursor.execute(sql)


def the_run(batch: int) -> int:
    from margin import MONTH

    from reselling.invoices import invoice_run_execute, invoice_run_start

    run = invoice_run_start(actor=None, period=MONTH, enqueue=False)
    return invoice_run_execute(run_id=run.pk, batch_size=batch).invoices_issued


def the_floor() -> int:
    """The same invoice and line rows, written with bulk_create in one transaction."""
    from datetime import timedelta
    from decimal import Decimal

    from django.db import transaction
    from django.utils import timezone
    from margin import MONTH

    from reselling.models import Charge, Invoice, InvoiceLine

    now = timezone.now()
    written = 0
    with transaction.atomic():
        charges = (
            Charge.objects.filter(period=MONTH)
            .order_by("tenant_id", "id")
            .values_list("id", "tenant_id", "kind", "description", "quantity", "revenue", "currency")
        )
        chunk: list[tuple[Any, ...]] = []

        def flush() -> None:
            nonlocal written
            invoices = [
                Invoice(
                    year=now.year,
                    sequence=written + n + 1,
                    number=f"{now.year}-{written + n + 1:06d}",
                    tenant_id=c[1],
                    period=MONTH,
                    currency=c[6],
                    subtotal=c[5],
                    tax_rate_percent=Decimal(0),
                    tax=Decimal(0),
                    total=c[5],
                    seller={"company_name": "Reseller"},
                    buyer={"company_name": str(c[1])},
                    issued_at=now,
                    due_on=now.date() + timedelta(days=14),
                )
                for n, c in enumerate(chunk)
            ]
            Invoice.objects.bulk_create(invoices)
            InvoiceLine.objects.bulk_create(
                [
                    InvoiceLine(
                        invoice_id=i.pk, charge_id=c[0], kind=c[2], description=c[3], quantity=c[4], amount=c[5]
                    )
                    for i, c in zip(invoices, chunk, strict=True)
                ]
            )
            written += len(chunk)
            chunk.clear()

        for row in charges.iterator(chunk_size=2000):
            chunk.append(row)
            if len(chunk) == 1000:
                flush()
        if chunk:
            flush()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=DEFAULT_TENANTS)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--reseed", action="store_true")
    args = parser.parse_args()
    setup_django(args.tenants, args.reseed)
    import margin
    import tenant_list

    tenant_list.migrate()
    tenants_s = tenant_list.seed(args.tenants, "sqlite", args.reseed)
    margin.seed_charges(1, args.reseed or bool(tenants_s))
    print(f"sqlite: {args.tenants} tenants, one charge each in {margin.MONTH:%Y-%m}")
    clear_invoices()
    floor_s, floor_base, floor_peak = measured(the_floor)
    clear_invoices()
    issued: list[int] = []
    run_s, run_base, run_peak = measured(lambda: issued.append(the_run(args.batch)))
    ratio = run_s / floor_s if floor_s else float("inf")
    import resource

    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"floor (one bulk insert of the rows): {floor_s:.1f} s, peak RSS +{floor_peak:.0f} MB over {floor_base:.0f} MB"
    )
    print(f"invoice run ({issued[0]} invoices):   {run_s:.1f} s, peak RSS +{run_peak:.0f} MB over {run_base:.0f} MB")
    print(f"ratio {ratio:.2f} (target <= {TARGET_RATIO}); process peak RSS {max_rss:.0f} MB")
    summary = {
        "tenants": args.tenants,
        "invoices": issued[0],
        "batch": args.batch,
        "run_s": round(run_s, 2),
        "floor_s": round(floor_s, 2),
        "ratio": round(ratio, 2),
        "target_ratio": TARGET_RATIO,
        "run_peak_rss_delta_mb": round(run_peak, 1),
        "floor_peak_rss_delta_mb": round(floor_peak, 1),
        "process_peak_rss_mb": round(max_rss, 1),
        "ok": ratio <= TARGET_RATIO and issued[0] == args.tenants,
    }
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
