"""Benchmark of the staff tenant list at scale.

    .venv/bin/python bench/tenant_list.py [--tenants N] [--db sqlite|postgres] [--rounds R]

Seeds N tenants (default 530,350, the total_count in the example of Voximplant's GetChildrenAccounts reference) with one bulk insert
(SQLite: executemany in one transaction; PostgreSQL: COPY), then measures the server time of
the list page (first page, a search, a filter, a deep page through a cursor) and of a trivial
authenticated page in the same run, interleaved, in-process through Django's test client (the
whole middleware stack, session and permission checks included). Prints median and p95 per
page and their ratio to the trivial page; the last line is JSON. Target: p95 within 3x.

The seeded database is kept and reused while it holds exactly N tenants (--reseed forces).
SQLite: var/bench/tenants.sqlite3 ($PORTAL_VAR_DIR/bench/ when set). PostgreSQL: postgres://postgres@127.0.0.1:5432/bench_tenants (--pg-db to name another).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
PG_DB = "bench_tenants"
DEFAULT_TENANTS = 530_350

ADJECTIVES = [
    "Blue",
    "Bright",
    "Silver",
    "Golden",
    "Rapid",
    "Quiet",
    "North",
    "South",
    "Green",
    "Red",
    "Prime",
    "Union",
    "Coastal",
    "Urban",
    "Royal",
    "Atlas",
    "Summit",
    "Pioneer",
    "Harbor",
    "Metro",
    "Alpine",
    "Crystal",
    "Delta",
    "Eagle",
    "Falcon",
    "Global",
    "Horizon",
    "Iron",
    "Jade",
    "Keystone",
    "Liberty",
    "Maple",
    "Nova",
    "Oak",
    "Pacific",
    "Quantum",
    "River",
    "Sterling",
    "Titan",
    "Vertex",
    "Willow",
    "Zenith",
    "Amber",
    "Beacon",
    "Cedar",
    "Dynamo",
    "Ember",
    "Frontier",
    "Granite",
    "Highland",
]
NOUNS = [
    "Harbor",
    "Logistics",
    "Dental",
    "Realty",
    "Motors",
    "Foods",
    "Clinic",
    "Studios",
    "Partners",
    "Labs",
    "Systems",
    "Traders",
    "Travel",
    "Bakery",
    "Legal",
    "Media",
    "Energy",
    "Fitness",
    "Garden",
    "Hotels",
    "Insurance",
    "Jewelers",
    "Kitchens",
    "Logic",
    "Marine",
    "Networks",
    "Optics",
    "Pharmacy",
    "Robotics",
    "Security",
    "Telecom",
    "Textiles",
    "Ventures",
    "Works",
    "Academy",
    "Builders",
    "Capital",
    "Design",
    "Express",
    "Farms",
    "Group",
    "Holdings",
    "Imports",
    "Junction",
    "Kinetics",
    "Leasing",
    "Market",
    "Nursery",
    "Outfitters",
    "Plumbing",
]
SUFFIXES = ["Ltd", "LLC", "Inc", "GmbH", "Co", "Group", "& Sons", "SA", "BV", "Pty"]


def setup_django(db: str, tenants: int, pg_db: str = PG_DB) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings_test")
    # Under the caller's PORTAL_VAR_DIR when set (several checkouts' runs stay apart).
    bench_dir = Path(os.environ.get("PORTAL_VAR_DIR") or ROOT / "var") / "bench"
    os.environ["PORTAL_VAR_DIR"] = str(bench_dir)
    if db == "sqlite":
        path = bench_dir / "tenants.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    else:
        if not pg_db.replace("_", "").isalnum():
            raise SystemExit("--pg-db takes letters, digits and underscores only")
        os.environ["DATABASE_URL"] = f"{PG_SERVER}/{pg_db}"
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [pg_db]).fetchone():
                conn.execute(f'CREATE DATABASE "{pg_db}"')
    os.environ.pop("REDIS_URL", None)  # same local-memory cache for every page measured
    import django

    django.setup()
    from django.conf import settings

    # A trivial authenticated page in the same process and middleware stack as the list.
    settings.ROOT_URLCONF = "bench_urls"
    sys.modules["bench_urls"] = _bench_urls()


def _bench_urls():  # type: ignore[no-untyped-def]
    import types

    from django.shortcuts import render
    from django.urls import path

    from portal.roles import require
    from portal.urls import urlpatterns

    @require("console.view")
    def trivial(request):  # type: ignore[no-untyped-def]
        return render(request, "base.html", {})

    module = types.ModuleType("bench_urls")
    module.urlpatterns = [path("bench/trivial/", trivial), *urlpatterns]  # type: ignore[attr-defined]
    return module


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _rows(n: int, connections: list[int], seed: int = 42):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    now = datetime.now(UTC)
    statuses = ["active"] * 90 + ["frozen"] * 7 + ["closed"] * 2 + ["failed"]
    for i in range(1, n + 1):
        company = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(SUFFIXES)} {i}"
        name = f"{company.split()[0].lower()}-{i}"[:20]
        email = f"{name}@{rng.choice(['example.com', 'mail.example', 'corp.example', 'biz.example'])}"
        balance = None if rng.random() < 0.01 else Decimal(rng.randrange(-5000, 500000)) / 100
        conn = connections[0] if rng.random() < 0.98 else connections[1]
        status = rng.choice(statuses)
        created = now - timedelta(seconds=n - i)
        yield {
            "uuid": uuid.UUID(int=rng.getrandbits(128), version=4),
            "company_name": company,
            "contact_name": "",
            "contact_email": "",
            "notes": "",
            "plan": "",
            "connection_id": conn,
            "provider_account_id": 100_000 + i,
            "provider_account_ref": str(100_000 + i),
            "account_name": name,
            "account_email": email,
            "voiceit_type": "",
            "secrets_encrypted": "",
            "status": status,
            "status_reason": "",
            "balance": balance,
            "currency": "EUR" if rng.random() < 0.05 else "USD",
            "provider_active": status == "active",
            "provider_frozen": False,
            "credit_limit": None,
            "low_balance_threshold": None,
            "provider_threshold": None,
            "require_two_factor": False,
            "balance_synced_at": now,
            "is_low_balance": balance is not None and balance < 5,
            "has_drift": rng.random() < 0.005,
            "missing_at_provider": False,
            "created_at": created,
            "updated_at": created,
            "closed_at": None,
            "verification_status": "",
            "unverified_hold_until": None,
            "verification_checked_at": None,
            "verification_warned_for": None,
            "account_plans": "[]",
            "account_plans_checked_at": None,
        }


def insert_batches(raw: Any, sql: str, rows: Iterable[Sequence[object]], size: int) -> None:
    """``sql`` (one INSERT) run by the driver's executemany over ``rows``, ``size`` at a time."""
    batch: list[Sequence[object]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            raw.executemany(sql, batch)
            batch = []
    if batch:
        raw.executemany(sql, batch)


def drop_sqlite_indexes(cursor: Any, table: str) -> list[tuple[str, str]]:
    """Drop the SQLite table's own indexes (a load appends faster without them); returns their
    (name, CREATE statement) pairs to build them again once the rows are in."""
    cursor.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s AND sql IS NOT NULL", [table]
    )
    indexes = [(str(name), str(sql)) for name, sql in cursor.fetchall()]
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return indexes


def seed(n: int, db: str, reseed: bool) -> float:
    from django.db import connection, transaction

    from tenants.models import ProviderConnection, Tenant

    if not reseed and Tenant.objects.count() == n:
        return 0.0
    started = time.perf_counter()
    sqlite_indexes: list[tuple[str, str]] = []
    with connection.cursor() as cursor:
        if db == "sqlite":
            cursor.execute("DELETE FROM tenants_tenantoperation")
            # No triggers and no indexes: DELETE becomes a truncate, the load appends, the
            # indexes and the FTS table are built once at the end (and triggers restored).
            for trigger in ("ai", "ad", "au"):
                cursor.execute(f"DROP TRIGGER IF EXISTS tenants_tenant_fts_{trigger}")
            sqlite_indexes = drop_sqlite_indexes(cursor, "tenants_tenant")
            cursor.execute("DELETE FROM tenants_tenant")
        else:
            cursor.execute("TRUNCATE tenants_tenant, tenants_tenantoperation CASCADE")
    vox, _ = ProviderConnection.objects.get_or_create(
        name="Voximplant (bench)", defaults={"kind": "voximplant", "base_url": "http://127.0.0.1:9", "currency": "USD"}
    )
    voiceit, _ = ProviderConnection.objects.get_or_create(
        name="VoiceIt (bench)", defaults={"kind": "voiceit", "base_url": "http://127.0.0.1:9", "currency": "USD"}
    )
    fields = [f for f in Tenant._meta.concrete_fields if f.column != "id"]
    columns = [f.column for f in fields]
    names = [f.attname for f in fields]
    rows = _rows(n, [vox.pk, voiceit.pk])
    if db == "postgresql" or db == "postgres":
        with connection.cursor() as cursor, transaction.atomic():
            # Indexes are built once after the load (a sort each) instead of row by row.
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'tenants_tenant'::regclass AND contype = 'u'"
            )
            constraints = cursor.fetchall()
            for name, _ in constraints:
                cursor.execute(f'ALTER TABLE tenants_tenant DROP CONSTRAINT "{name}"')
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tenants_tenant' "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'tenants_tenant'::regclass)"
            )
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            raw = cursor.cursor
            with raw.copy(f"COPY tenants_tenant ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[name] for name in names])
            inserted = time.perf_counter()
        # Deferred foreign-key checks must run (commit) before an index can be built.
        with connection.cursor() as cursor, transaction.atomic():
            for _, definition in indexes:
                cursor.execute(definition)
            for name, definition in constraints:
                cursor.execute(f'ALTER TABLE tenants_tenant ADD CONSTRAINT "{name}" {definition}')
            cursor.execute("SELECT setval(pg_get_serial_sequence('tenants_tenant', 'id'), max(id)) FROM tenants_tenant")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE tenants_tenant")
        print(f"  COPY {inserted - started:.1f} s, indexes {time.perf_counter() - inserted:.1f} s")
    else:

        def sqlite_value(value):  # type: ignore[no-untyped-def]
            if isinstance(value, uuid.UUID):
                return value.hex
            if isinstance(value, Decimal):
                return str(value)
            if isinstance(value, datetime):
                return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
            if isinstance(value, bool):
                return int(value)
            return value

        sql = f"INSERT INTO tenants_tenant ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous = OFF")
        indexes = sqlite_indexes
        with transaction.atomic(), connection.cursor() as cursor:
            insert_batches(
                cursor.connection, sql, ([sqlite_value(row[name]) for name in names] for row in rows), 10_000
            )
        loaded = time.perf_counter()
        with connection.cursor() as cursor:
            for _, sql_text in indexes:
                cursor.execute(sql_text)
        print(f"  insert {loaded - started:.1f} s, indexes {time.perf_counter() - loaded:.1f} s")
        inserted = time.perf_counter()
        from tenants.apps import _ensure_sqlite_search

        _ensure_sqlite_search()  # recreates the triggers and rebuilds the FTS table
        indexed = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"  FTS rebuild {indexed - inserted:.1f} s, ANALYZE {time.perf_counter() - indexed:.1f} s")
    return time.perf_counter() - started


def _second_factor(client: Any, user: Any) -> None:
    """Staff sign in with a code: give the bench user an authenticator and pass the verify page."""
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="bench", confirmed=True)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    if totp.t() <= device.last_t:
        totp.time += device.step * (device.last_t + 1 - totp.t())
    response = client.post("/accounts/two-factor/verify/", {"code": str(totp.token()).zfill(device.digits)})
    if response.status_code != 302:
        raise SystemExit(f"the second factor was refused ({response.status_code})")


def staff_client(user: Any = None) -> Any:
    """A test client signed in (both factors) as ``user``, by default the bench's reseller
    admin, created on first use."""
    from django.contrib.auth.models import Group, User
    from django.test import Client

    if user is None:
        user = User.objects.filter(username="bench-admin").first()
    if user is None:
        user = User.objects.create_user("bench-admin", "bench@example.com", "bench-password-0123456789")
        user.groups.add(Group.objects.get(name="reseller_admin"))
    client = Client()
    client.force_login(user)
    _second_factor(client, user)
    return client


def time_pages(client: Any, pages: dict[str, str], rounds: int) -> dict[str, dict[str, float]]:
    """Median and p95 milliseconds of each page, interleaved over ``rounds`` after three
    warm-up requests a page (which also check every page answers)."""
    for url in pages.values():
        for _ in range(3):
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
    times: dict[str, list[float]] = {name: [] for name in pages}
    for _ in range(rounds):
        for name, url in pages.items():
            started = time.perf_counter()
            response = client.get(url)
            times[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
    result = {}
    for name, values in times.items():
        values.sort()
        result[name] = {
            "median_ms": statistics.median(values),
            "p95_ms": values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))],
        }
    return result


def measure(rounds: int) -> dict[str, dict[str, float]]:
    from tenants.models import ProviderConnection, Tenant
    from tenants.selectors import encode_cursor

    client = staff_client()
    sample = (
        Tenant.objects.filter(
            pk=Tenant.objects.order_by("id").values_list("id", flat=True)[Tenant.objects.count() // 2]
        ).first()
        if Tenant.objects.exists()
        else None
    )
    words = sample.company_name.split()[:2] if sample else ["Blue", "Harbor"]
    vox = ProviderConnection.objects.get(name="Voximplant (bench)")
    deep_id = Tenant.objects.order_by("id").values_list("id", flat=True)[min(5000, Tenant.objects.count() - 1)]
    pages = {
        "trivial": "/bench/trivial/",
        "list_first_page": "/console/tenants/",
        "search": f"/console/tenants/?q={'+'.join(words)}",
        "filter": f"/console/tenants/?status=frozen&connection={vox.uuid}",
        "deep_page_cursor": f"/console/tenants/?cursor={encode_cursor([None, deep_id])}",
        # Reported, not part of the target: other shapes staff use.
        "search_provider_id": f"/console/tenants/?q={sample.provider_account_id if sample else 1}",
        "search_email_prefix": f"/console/tenants/?q={sample.account_email[:12] if sample else 'a'}",
        "filter_low_balance_sorted": "/console/tenants/?low_balance=1&sort=balance",
        # Substring search on its own: a common three-letter piece and a rarer longer one.
        "search_anywhere_common": "/console/tenants/?q=ter&anywhere=1",
        "search_anywhere_rare": f"/console/tenants/?q={sample.account_email.split('@')[0][-6:] if sample else 'or-123'}&anywhere=1",
        "search_anywhere": f"/console/tenants/?q={words[1][:5].lower()}+{sample.company_name.split()[2][:2].lower() if sample else 'lt'}&anywhere=1",
    }
    result = time_pages(client, pages, rounds)
    result["_pages"] = {name: url for name, url in pages.items()}  # type: ignore[assignment]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=DEFAULT_TENANTS)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--pg-db", default=PG_DB, help="PostgreSQL database to seed and measure")
    args = parser.parse_args()
    setup_django(args.db, args.tenants, args.pg_db)
    migrate()
    from django.db import connection

    seconds = seed(args.tenants, connection.vendor, args.reseed)
    print(f"{args.db}: {args.tenants} tenants " + (f"seeded in {seconds:.1f} s" if seconds else "(reused)"))
    result = measure(args.rounds)
    pages = result.pop("_pages")
    base = result["trivial"]
    # Ratios: page median / trivial median, page p95 / trivial p95, and (stricter) page p95 /
    # trivial median.
    print(f"{'page':<28}{'median ms':>10}{'p95 ms':>10}{'median x':>10}{'p95 x':>8}{'p95/med x':>11}")
    summary = {}
    for name, figures in result.items():
        ratio_median = figures["median_ms"] / base["median_ms"]
        ratio_p95 = figures["p95_ms"] / base["p95_ms"]
        ratio_strict = figures["p95_ms"] / base["median_ms"]
        summary[name] = {
            **{k: round(v, 2) for k, v in figures.items()},
            "median_ratio": round(ratio_median, 2),
            "p95_ratio": round(ratio_p95, 2),
            "p95_to_trivial_median": round(ratio_strict, 2),
        }
        print(
            f"{name:<28}{figures['median_ms']:>10.2f}{figures['p95_ms']:>10.2f}{ratio_median:>10.2f}{ratio_p95:>8.2f}"
            f"{ratio_strict:>11.2f}"
        )
    targeted = ["list_first_page", "search", "filter", "deep_page_cursor"]
    worst = max(summary[name]["p95_ratio"] for name in targeted)
    worst_strict = max(summary[name]["p95_to_trivial_median"] for name in targeted)
    print(f"worst p95 / trivial median of the four targeted pages: {worst_strict:.2f}")
    print(f"worst p95 ratio of the four targeted pages: {worst:.2f} (target <= 3)")
    print(
        json.dumps(
            {
                "db": args.db,
                "tenants": args.tenants,
                "rounds": args.rounds,
                "seed_seconds": round(seconds, 1),
                "pages": summary,
                "urls": pages,
                "worst_targeted_p95_ratio": round(worst, 2),
                "worst_targeted_p95_to_trivial_median": round(worst_strict, 2),
                "target_met": worst <= 3,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
