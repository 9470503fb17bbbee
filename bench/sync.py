"""Benchmark of the nightly balance sync at scale, over real HTTP.

    .venv/bin/python bench/sync.py --children N [--changed 0.01] [--db sqlite|postgres] [--reseed]

1. Seeds the sandbox with N children (sandbox.seed) and serves it from its own process
   (`python -m sandbox serve`), so the sandbox never shares the portal's CPU or GIL.
2. Pre-creates N tenants in the portal database, one per child, *without provider data*
   (balance, currency, flags all empty): the portal made these tenants and has never synced
   them. That is the "first sync (all new)": every tenant's provider data is new, so every
   row is written and every tenant gets its first balance snapshot. (The other reading,
   every child an import candidate, writes the same number of rows to
   UnknownProviderAccount instead; see billing/sync.py.)
3. Measures the floor in the same run: every tenant read with a bare client (httpx, one
   JWT, GetChildrenAccounts with `child_account_id=a;b;c` lists of 1000 ids, the way the
   sync reads, `json.loads(parse_float=Decimal)`), plus one bulk write of the same rows (the
   sync's own bulk UPDATE statement, all N rows, one transaction).
4. Runs the real sync task (billing.tasks.sync_run_task, the code the Celery worker runs)
   in a fresh process, over HTTP, twice: the first sync, then a repeat after 1% of the
   children were charged for calls (sandbox spend). Each run's peak RSS is that process's
   ru_maxrss.

The sandbox follows the documented rule by default (GetChildrenAccounts needs an id, name or
email: `--listing required`), so the sync reads by id lists and skips discovery; with
`--listing allowed` the sandbox lists every child and the sync's discovery walk (brief id
pages) runs too.

Prints the figures; the last line is JSON with seconds, ratios to the floor and peak RSS.
Targets at N = 530,350: repeat ≤ 1.3× floor, first ≤ 2× floor, peak RSS < 300 MB and
within 1.2× of the N = 10,000 figure (pass --rss-baseline with that figure, or run both).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_URL = "postgres://postgres@127.0.0.1:5432/bench_sync"
PAGE = 1000


def _env(workdir: Path, db: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            # Production-like: DEBUG off (Django would keep every query in memory otherwise).
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789-abc",
            "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1maWVsZC1rZXktMDEyMzQ1Njc4OWE=",
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "PORTAL_VAR_DIR": str(workdir),
            "LOG_LEVEL": "WARNING",
            "CELERY_BROKER_URL": "filesystem://",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("REDIS_URL", None)
    if db == "postgres":
        env["DATABASE_URL"] = PG_URL
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'portal.sqlite3'}"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb() -> float:
    """This process's peak RSS. /proc's VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss over execve, so a child would report its parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- child mode: the real task in a fresh process -----------------------------------------------


def run_task(run_id: int) -> None:
    import django

    django.setup()
    from billing.models import SyncRun
    from billing.tasks import sync_run_task

    started = time.perf_counter()
    sync_run_task.run(run_id)
    seconds = time.perf_counter() - started
    run = SyncRun.objects.get(pk=run_id)
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "state": run.state,
                "pages": run.pages,
                "seen": run.seen,
                "changed": run.changed,
                "new": run.new,
                "missing": run.missing,
                "error": run.error_message,
            }
        )
    )


# -- parent mode -----------------------------------------------------------------------------


def _prepare_database(env: dict[str, str], db: str) -> None:
    if db == "postgres":
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench_sync")
            conn.execute("CREATE DATABASE bench_sync")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


def _insert_tenants(connection_id: int, ids: list[int]) -> None:
    """N tenants without provider data, written in bulk (COPY on PostgreSQL)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from tenants.models import Tenant

    now = timezone.now()
    fields = [f for f in Tenant._meta.concrete_fields if not f.primary_key]
    columns = [f.column for f in fields]

    def row(aid: int) -> list[Any]:
        values = []
        for f in fields:
            if f.name == "uuid":
                v: Any = uuid.uuid4()
            elif f.name == "connection":
                v = connection_id
            elif f.name == "provider_account_id":
                v = aid
            elif f.name == "company_name":
                v = f"Company {aid}"
            elif f.name == "account_name":
                v = f"bench-{aid}"
            elif f.name == "account_email":
                v = f"bench-{aid}@bench.example"
            elif f.name == "status":
                v = "active"
            elif getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                v = now
            elif f.has_default():
                v = f.get_default()
            elif f.null:
                v = None
            else:
                v = "" if f.get_internal_type() in ("CharField", "TextField", "EmailField") else None
            values.append(v if connection.vendor == "postgresql" else f.get_db_prep_save(v, connection))
        return values

    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {Tenant._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy:
                for aid in ids:
                    copy.write_row(row(aid))
        else:
            sql = f"INSERT INTO {Tenant._meta.db_table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
            for start in range(0, len(ids), 10_000):
                cursor.executemany(sql, [row(aid) for aid in ids[start : start + 10_000]])


def _floor(base_url: str, creds_path: Path, connection_obj: Any) -> dict[str, float]:
    """The bare minimum: fetch every page with a bare client, then one bulk write of the rows."""
    import httpx
    import jwt
    from django.db import connection, transaction
    from django.utils import timezone

    from billing.sync import _bulk_update_tenants
    from tenants.models import Tenant

    creds = json.loads(creds_path.read_text())
    now = int(time.time())
    token = jwt.encode(
        {"iss": str(creds["account_id"]), "iat": now - 5, "exp": now + 3000},
        creds["private_key"],
        algorithm="RS256",
        headers={"kid": creds["key_id"]},
    )
    rows: list[tuple[Any, ...]] = []
    wanted = sorted(Tenant.objects.filter(connection=connection_obj).values_list("provider_account_id", flat=True))
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        for start in range(0, len(wanted), PAGE):
            chunk = wanted[start : start + PAGE]
            response = client.post(
                "/platform_api/GetChildrenAccounts",
                data={
                    "child_account_id": ";".join(str(i) for i in chunk),
                    "ignore_invalid_accounts": "true",
                    "count": str(len(chunk)),
                    "order_by": "child_account_id",
                },
            )
            body = json.loads(response.content, parse_float=Decimal)
            page = body["result"]
            for a in page:
                rows.append(
                    (
                        a["account_id"],
                        _money(a.get("balance")),
                        a.get("currency") or "",
                        a.get("active"),
                        a.get("frozen"),
                        _money(a.get("credit_limit")),
                        _money(a.get("min_balance_to_notify")),
                    )
                )
    fetch = time.perf_counter() - started
    ids = dict(Tenant.objects.filter(connection=connection_obj).values_list("provider_account_id", "id"))
    updates = [
        (ids[aid], bal, cur, act, frz, cr, False, False, notify)
        for aid, bal, cur, act, frz, cr, notify in rows
        if aid in ids
    ]
    stamp = timezone.now()
    started = time.perf_counter()
    with transaction.atomic():
        for start in range(0, len(updates), PAGE):
            _bulk_update_tenants(updates[start : start + PAGE], stamp)
        transaction.set_rollback(True)  # measured, not kept: the first sync must find the rows new
    write = time.perf_counter() - started
    del rows, updates, ids
    assert connection.vendor in ("sqlite", "postgresql")
    return {"fetch_s": round(fetch, 2), "write_s": round(write, 2), "total_s": round(fetch + write, 2)}


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _sync(env: dict[str, str], connection_obj: Any) -> dict[str, Any]:
    from billing.services import sync_start

    run = sync_start(actor=None, connection=connection_obj)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--run-task", str(run.pk)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["state"] != "succeeded":
        raise SystemExit(f"the sync failed: {result}\n{out.stderr[-3000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of children charged before the repeat")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rss-baseline", type=float, default=None, help="peak RSS (MB) measured at N = 10,000")
    parser.add_argument(
        "--listing",
        choices=["required", "allowed"],
        default="required",
        help="the sandbox's GetChildrenAccounts rule: a filter required (documented) or every child listed",
    )
    parser.add_argument("--run-task", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_task is not None:
        run_task(args.run_task)
        return

    n = args.children
    workdir = ROOT / "var" / "bench" / f"sync-{n}-{args.db}-{args.listing}"
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    env = _env(workdir, args.db)
    os.environ.update(env)
    print(f"sync bench: {n} children, {args.db}, work dir {workdir}", flush=True)

    from sandbox.init import init_sandbox
    from sandbox.seed import seed_children

    t0 = time.perf_counter()
    sandbox_db = workdir / "sandbox.sqlite3"
    creds = workdir / "sandbox-creds"
    init_sandbox(str(sandbox_db), str(creds), balance=Decimal("100000000"))
    seeded = seed_children(str(sandbox_db), n, seed=1)
    ids = list(range(seeded["first_account_id"], seeded["last_account_id"] + 1))
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(sandbox_db),
            "--options",
            json.dumps({"children_require_filter": args.listing == "required"}),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(100):
            try:
                if httpx.get(f"{base_url}/_sandbox/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        _prepare_database(env, args.db)
        import django

        django.setup()
        from tenants.models import ProviderConnection

        conn_obj = ProviderConnection.objects.create(
            name="bench",
            kind="voximplant",
            base_url=base_url,
            credentials_path=str(creds / "credentials.json"),
            parent_api_key_path=str(creds / "parent_api_key"),
            currency="USD",
        )
        _insert_tenants(conn_obj.pk, ids)
        print(f"  set-up: {time.perf_counter() - t0:.1f}s (sandbox seed, server, migrate, {n} tenants)", flush=True)

        floor = _floor(base_url, creds / "credentials.json", conn_obj)
        print(f"  floor: fetch {floor['fetch_s']}s + bulk write {floor['write_s']}s = {floor['total_s']}s", flush=True)
        first = _sync(env, conn_obj)
        print(
            f"  first sync: {first['seconds']}s ({first['seconds'] / floor['total_s']:.2f}x floor), "
            f"{first['changed']} changed, peak RSS {first['peak_rss_mb']} MB",
            flush=True,
        )

        from sandbox.spend import spend

        charged = spend(str(sandbox_db), children=max(1, int(n * args.changed)), max_amount="0.5", seed=2)
        repeat = _sync(env, conn_obj)
        print(
            f"  repeat sync ({charged['charged']} charged): {repeat['seconds']}s "
            f"({repeat['seconds'] / floor['total_s']:.2f}x floor), {repeat['changed']} changed, "
            f"peak RSS {repeat['peak_rss_mb']} MB",
            flush=True,
        )
    finally:
        server.terminate()
        server.wait(10)
    peak = max(first["peak_rss_mb"], repeat["peak_rss_mb"])
    result = {
        "bench": "sync",
        "children": n,
        "db": args.db,
        "listing": args.listing,
        "first_sync_means": "tenants pre-created without provider data (every row new to the portal)",
        "floor": floor,
        "first": {
            "seconds": first["seconds"],
            "ratio": round(first["seconds"] / floor["total_s"], 3),
            "changed": first["changed"],
            "pages": first["pages"],
        },
        "repeat": {
            "seconds": repeat["seconds"],
            "ratio": round(repeat["seconds"] / floor["total_s"], 3),
            "changed": repeat["changed"],
            "charged": charged["charged"],
            "new": repeat["new"],
            "note": repeat["error"],
        },
        "peak_rss_mb": peak,
        "peak_rss_mb_first": first["peak_rss_mb"],
        "peak_rss_mb_repeat": repeat["peak_rss_mb"],
        "rss_vs_baseline": round(peak / args.rss_baseline, 3) if args.rss_baseline else None,
        "targets": {
            "repeat_le_1_3x": repeat["seconds"] / floor["total_s"] <= 1.3,
            "first_le_2x": first["seconds"] / floor["total_s"] <= 2.0,
            "rss_lt_300mb": peak < 300,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
