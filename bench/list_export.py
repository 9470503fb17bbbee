"""Benchmark of the tenant list's CSV export at scale: time and peak memory.

    .venv/bin/python bench/list_export.py [--tenants N] [--db sqlite|postgres]

Uses the database bench/tenant_list.py seeds (530,350 tenants by default; seeded here when
missing). Each measurement runs in a fresh process, so its peak RSS is its own:

- ``export``: GET /console/tenants/export/ through Django's test client (the whole
  middleware stack), reading the StreamingHttpResponse to the end;
- ``floor``: the same rows dumped by the database driver alone (SQLite: one cursor read in
  batches and written with csv; PostgreSQL: COPY ... TO STDOUT), the least any export costs.

RSS is also sampled after the first 10% of the rows and at the end: a streamed export stays
flat (the growth is reported). Prints a table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

COLUMNS = (
    "uuid, company_name, account_name, account_email, connection_id, provider_account_id, status, "
    "balance, currency, is_low_balance, has_drift, missing_at_provider, created_at"
)


def _status_kib(field: str) -> int:
    """One ``/proc/self/status`` memory field of this process, in KiB (0 when absent)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def _rss_kib() -> int:
    return _status_kib("VmRSS")


def _peak_kib() -> int:
    return _status_kib("VmHWM")


def _measured(rows: int, size: int, started: float, start_rss: int, early: int) -> dict[str, float]:
    """One run's figures, taken now: it ends here."""
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "bytes": size,
        "seconds": seconds,
        "rss_start_kib": start_rss,
        "rss_at_10pct_kib": early,
        "rss_end_kib": _rss_kib(),
        "peak_rss_kib": _peak_kib(),
    }


def run_export(tenants: int) -> dict[str, float]:
    from tenant_list import staff_client

    client = staff_client()
    start_rss = _rss_kib()
    started = time.perf_counter()
    response = client.get("/console/tenants/export/")
    assert response.status_code == 200 and response.streaming
    lines, size, early = 0, 0, 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")  # the seeded text holds no line breaks
        size += len(chunk)
        if not early and lines >= tenants // 10:
            early = _rss_kib()
    return _measured(lines - 1, size, started, start_rss, early)


def run_floor(tenants: int) -> dict[str, float]:
    from django.db import connection

    start_rss = _rss_kib()
    started = time.perf_counter()
    rows, size, early = 0, 0, 0
    sink = io.StringIO()
    if connection.vendor == "postgresql":
        raw = connection.cursor().connection
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY (SELECT {COLUMNS} FROM tenants_tenant ORDER BY id) TO STDOUT WITH CSV") as copy:
                for block in copy:
                    size += len(block)
                    rows += bytes(block).count(b"\n")
                    if not early and rows >= tenants // 10:
                        early = _rss_kib()
    else:
        writer = csv.writer(sink)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {COLUMNS} FROM tenants_tenant ORDER BY id")  # noqa: S608 - constant text
            while batch := cursor.fetchmany(1000):
                for row in batch:
                    writer.writerow(row)
                    rows += 1
                    if rows == tenants // 10:
                        early = _rss_kib()
                size += sink.tell()
                sink.seek(0)
                sink.truncate()
    return _measured(rows, size, started, start_rss, early)


def child(mode: str, db: str, tenants: int, pg_db: str) -> int:
    from tenant_list import migrate, seed, setup_django

    setup_django(db, tenants, pg_db)
    migrate()
    if mode == "seed":
        from django.db import connection

        seed(tenants, connection.vendor, False)
        return 0
    result = run_export(tenants) if mode == "export" else run_floor(tenants)
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=530_350)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-db", default="bench_tenants", help="PostgreSQL database (bench/tenant_list.py's)")
    parser.add_argument("--child", choices=["seed", "export", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.db, args.tenants, args.pg_db)
    me = [sys.executable, __file__, "--db", args.db, "--tenants", str(args.tenants), "--pg-db", args.pg_db]
    subprocess.run([*me, "--child", "seed"], check=True, env=os.environ.copy())
    results = {}
    for mode in ("floor", "export"):
        out = subprocess.run([*me, "--child", mode], check=True, capture_output=True, text=True, env=os.environ.copy())
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'':<8}{'rows':>9}{'MB':>8}{'s':>8}{'peak RSS MiB':>14}{'RSS growth 10%→end MiB':>25}")
    for mode, r in results.items():
        growth = (r["rss_end_kib"] - r["rss_at_10pct_kib"]) / 1024
        r["rss_growth_after_10pct_kib"] = r["rss_end_kib"] - r["rss_at_10pct_kib"]
        print(
            f"{mode:<8}{r['rows']:>9}{r['bytes'] / 1e6:>8.1f}{r['seconds']:>8.2f}{r['peak_rss_kib'] / 1024:>14.1f}"
            f"{growth:>25.1f}"
        )
    export, floor = results["export"], results["floor"]
    summary = {
        "db": args.db,
        "tenants": args.tenants,
        "results": results,
        "export_to_floor_seconds": round(export["seconds"] / floor["seconds"], 2),
        "export_peak_rss_over_floor_mib": round((export["peak_rss_kib"] - floor["peak_rss_kib"]) / 1024, 1),
        "rows_match": export["rows"] == floor["rows"] == args.tenants,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
