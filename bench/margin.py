"""Benchmark of the margin report at scale.

    .venv/bin/python bench/margin.py [--tenants N] [--charges-per-tenant K] [--rounds R] [--reseed]

Seeds N tenants (default 530,350) with bench/tenant_list.py's bulk load and at least one
charge per tenant in the month measured (SQLite executemany in one transaction, the
charges' indexes built after the load), then measures, in-process through Django's test
client (the whole middleware stack, session, second factor and permission checks), the
margin report's first page, a page deep in the keyset, the connection filter and the JSON
API, interleaved with a trivial authenticated page in the same run. The first request after
the load (a cold totals cache: one pass over the whole ledger) is reported apart, and so is
the first request after the beat (reselling.margin_totals) rebuilt a lost cache. Prints
median and p95 per page and their ratio to the trivial page; the last line is JSON.
Target: p95 within 3x of the trivial page.

SQLite file: $PORTAL_VAR_DIR/bench/margin.sqlite3 (kept and reused while it holds N tenants).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_TENANTS = 530_350
MONTH = date(2026, 3, 1)


def setup_django() -> None:
    var = Path(os.environ.get("PORTAL_VAR_DIR") or ROOT / "var")
    path = var / "bench" / "margin.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings_test")
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.pop("REDIS_URL", None)  # the same local-memory cache for every page measured
    import django

    django.setup()
    import tenant_list
    from django.conf import settings

    settings.ROOT_URLCONF = "bench_urls"
    sys.modules["bench_urls"] = tenant_list._bench_urls()


def _fill_new_tenant_fields(tenant_list: Any) -> None:
    """Tenant fields the tenant-list bench's rows do not name get their model default."""
    from tenants.models import Tenant

    rows = tenant_list._rows
    defaults = {f.attname: f.get_default() for f in Tenant._meta.concrete_fields if f.column != "id"}

    def filled(*args: Any, **kwargs: Any) -> Any:
        for row in rows(*args, **kwargs):
            yield {**defaults, **row}

    tenant_list._rows = filled


def _clear_charges(*, keep_dropped: bool = False) -> list[tuple[str, str]]:
    """Empty the charges table. Its triggers refuse DELETE: they are dropped for it and put
    back (or, with ``keep_dropped``, returned for the caller to put back after its load)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'reselling_charge'")
        triggers = cursor.fetchall()
        for name, _ in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')
        cursor.execute("DELETE FROM reselling_charge")
        if not keep_dropped:
            for _, definition in triggers:
                cursor.execute(definition)
    return triggers


def seed_charges(per_tenant: int, reseed: bool) -> float:
    import tenant_list
    from django.db import connection, transaction

    from reselling.models import Charge
    from tenants.models import Tenant

    wanted = Tenant.objects.count() * per_tenant
    if not reseed and Charge.objects.filter(period=MONTH).count() == wanted:
        return 0.0
    started = time.perf_counter()
    triggers = _clear_charges(keep_dropped=True)
    with connection.cursor() as cursor:
        indexes = tenant_list.drop_sqlite_indexes(cursor, "reselling_charge")
        cursor.execute("PRAGMA synchronous = OFF")
    rng = random.Random(7)
    tenants = list(Tenant.objects.values_list("pk", "currency"))
    occurred = datetime(2026, 3, 15, tzinfo=UTC).replace(tzinfo=None).isoformat(" ")
    sql = (
        "INSERT INTO reselling_charge (tenant_id, plan_id, kind, period, occurred_at, currency, revenue, cost, "
        "quantity, description, source_key, transfer_id, created_at) "
        "VALUES (?, NULL, ?, ?, ?, ?, ?, ?, 1, ?, ?, NULL, ?)"
    )

    def charge_rows() -> Iterator[tuple[Any, ...]]:
        for pk, currency in tenants:
            for k in range(per_tenant):
                cost = rng.randint(1, 500_000)
                revenue = cost + rng.randint(0, 50_000)
                yield (
                    pk,
                    "usage",
                    MONTH.isoformat(),
                    occurred,
                    currency or "USD",
                    f"{revenue / 10_000:.4f}",
                    f"{cost / 10_000:.4f}",
                    "Calls",
                    f"usage:{pk}:bench-{k}",
                    occurred,
                )

    with transaction.atomic(), connection.cursor() as cursor:
        tenant_list.insert_batches(cursor.connection, sql, charge_rows(), 20_000)
    loaded = time.perf_counter()
    with connection.cursor() as cursor:
        for _, definition in indexes:
            cursor.execute(definition)
        for _, definition in triggers:
            cursor.execute(definition)
        cursor.execute("ANALYZE")
    print(f"  charges insert {loaded - started:.1f} s, indexes {time.perf_counter() - loaded:.1f} s")
    return time.perf_counter() - started


def measure(rounds: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    import tenant_list
    from django.contrib.auth.models import User
    from django.core.cache import cache

    from portal.roles import assign_role
    from tenants.models import ProviderConnection, Tenant

    user = User.objects.filter(username="bench-admin").first()
    if user is None:
        user = User.objects.create_user("bench-admin", "bench@example.com", "bench-password-0123456789")
    assign_role(user, "reseller_admin")
    client = tenant_list.staff_client(user)
    month = MONTH.strftime("%Y-%m")
    cache.clear()
    started = time.perf_counter()
    assert client.get(f"/console/reselling/margin/?month={month}").status_code == 200
    cold_ms = (time.perf_counter() - started) * 1000
    # The same after a lost cache that the beat (reselling.margin_totals) rebuilt first.
    from reselling.margin import totals_refresh

    cache.clear()
    started = time.perf_counter()
    totals_refresh()
    beat_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    assert client.get(f"/console/reselling/margin/?month={month}").status_code == 200
    after_beat_ms = (time.perf_counter() - started) * 1000
    ids = list(Tenant.objects.order_by("id").values_list("id", flat=True))
    vox = ProviderConnection.objects.get(name="Voximplant (bench)")
    pages = {
        "trivial": "/bench/trivial/",
        "margin_first_page": f"/console/reselling/margin/?month={month}",
        "margin_deep_page": f"/console/reselling/margin/?month={month}&after={ids[len(ids) * 3 // 4]}",
        "margin_connection": f"/console/reselling/margin/?month={month}&connection={vox.pk}",
        "margin_api": f"/api/v1/margin?month={month}",
    }
    firsts = {"cold": cold_ms, "beat": beat_ms, "after_beat": after_beat_ms}
    return tenant_list.time_pages(client, pages, rounds), firsts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=DEFAULT_TENANTS)
    parser.add_argument("--charges-per-tenant", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--reseed", action="store_true")
    args = parser.parse_args()
    setup_django()
    import tenant_list

    tenant_list.migrate()
    _fill_new_tenant_fields(tenant_list)
    from tenants.models import Tenant

    if args.reseed or Tenant.objects.count() != args.tenants:
        _clear_charges()  # they point at the tenants about to be replaced
    tenants_s = tenant_list.seed(args.tenants, "sqlite", args.reseed)
    charges_s = seed_charges(args.charges_per_tenant, args.reseed or bool(tenants_s))
    print(f"sqlite: {args.tenants} tenants, {args.tenants * args.charges_per_tenant} charges in {MONTH:%Y-%m}")
    result, first = measure(args.rounds)
    base = result["trivial"]
    print(f"first request on a cold totals cache: {first['cold']:.1f} ms")
    print(
        f"the beat rebuilding a lost cache: {first['beat']:.1f} ms, then the first request: {first['after_beat']:.1f} ms"
    )
    print(f"{'page':<22}{'median ms':>10}{'p95 ms':>10}{'median x':>10}{'p95 x':>8}")
    summary = {}
    for name, figures in result.items():
        summary[name] = {
            **{k: round(v, 2) for k, v in figures.items()},
            "median_ratio": round(figures["median_ms"] / base["median_ms"], 2),
            "p95_ratio": round(figures["p95_ms"] / base["p95_ms"], 2),
        }
        print(
            f"{name:<22}{figures['median_ms']:>10.2f}{figures['p95_ms']:>10.2f}"
            f"{summary[name]['median_ratio']:>10.2f}{summary[name]['p95_ratio']:>8.2f}"
        )
    worst = max(v["p95_ratio"] for k, v in summary.items() if k != "trivial")
    print(f"worst p95 ratio: {worst:.2f} (target <= 3)")
    print(
        json.dumps(
            {
                "db": "sqlite",
                "tenants": args.tenants,
                "charges": args.tenants * args.charges_per_tenant,
                "seed_seconds": {"tenants": round(tenants_s, 1), "charges": round(charges_s, 1)},
                "cold_first_request_ms": round(first["cold"], 1),
                "beat_rebuild_ms": round(first["beat"], 1),
                "first_request_after_beat_ms": round(first["after_beat"], 1),
                "pages": summary,
                "worst_p95_ratio": worst,
                "target": 3,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
