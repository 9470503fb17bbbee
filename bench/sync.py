"""Benchmark of the nightly balance sync at scale, over real HTTP.

    .venv/bin/python bench/sync.py --children N [--changed 0.01] [--db sqlite|postgres]
        [--concurrency C] [--latency-ms L] [--rss-baseline MB | --baseline-children 10000]
        [--listing required|allowed] [--workers W]

1. Seeds the sandbox with N children (sandbox.seed) and serves it from its own process
   (`python -m sandbox serve`), so the sandbox never shares the portal's CPU or GIL. With
   `--latency-ms L` every GetChildrenAccounts call waits L ms first (a sandbox `latency`
   fault rule), the way a provider far away answers.
2. Pre-creates N tenants in the portal database, one per child, *without provider data*
   (balance, currency, flags all empty): the portal made these tenants and has never synced
   them. That is the "first sync (all new)": every tenant's provider data is new, so every
   row is written and every tenant gets its first balance snapshot. (The other reading,
   every child an import candidate, writes the same number of rows to
   UnknownProviderAccount instead; see billing/sync.py.)
3. Measures two floors in the same run, against the same sandbox:
   - **fetch floor**: the wall time of reading every chunk (GetChildrenAccounts with
     `child_account_id=a;b;c` lists of 1000 ids, the way the sync reads, each answer
     decoded as the sync decodes it, a typed msgspec decode into Decimals) with a bare
     httpx client on a thread pool of C (`--concurrency`, the sync's
     BILLING_SYNC_CONCURRENCY), no database work;
   - **write floor**: the fastest raw write of the same rows in one transaction (rolled
     back): on PostgreSQL raw psycopg, COPY into a temporary table, one UPDATE … FROM and one
     INSERT … SELECT of the balance snapshots; on SQLite the sync's own executemany
     statements (billing/sync_write.py) for the tenants and their snapshots.
4. Runs the real sync task (billing.tasks.sync_run_task, the code the Celery worker runs)
   in a fresh process, over HTTP, twice: the first sync, then a repeat after 1% of the
   children were charged for calls (sandbox spend). Each run's peak RSS is that process's
   VmHWM.

The sandbox follows the documented rule by default (GetChildrenAccounts needs an id, name or
email: `--listing required`), so the sync reads by id lists and skips discovery; with
`--listing allowed` the sandbox lists every child and the sync's discovery walk (brief id
pages) runs too.

Targets, as ratios measured in the same run: first sync ≤ 1.5× (fetch floor + write floor);
repeat ≤ 1.2× the fetch floor; peak RSS < 150 MB and within 1.2× of the N = 10,000 figure
(pass --rss-baseline with that figure, or --baseline-children 10000 to measure it first in the same
invocation, under the same settings). Prints whether each is met; the last line is JSON.
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
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The bench database (dropped and created by each run); BENCH_PG_DATABASE names another.
PG_DB = os.environ.get("BENCH_PG_DATABASE", "bench_sync")
PG_URL = f"postgres://postgres@127.0.0.1:5432/{PG_DB}"
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

    profile_to = os.environ.get("BENCH_PROFILE")  # a path: the run's cProfile stats go there
    started = time.perf_counter()
    if profile_to:
        import cProfile

        with cProfile.Profile() as profiler:
            sync_run_task.run(run_id)
        profiler.dump_stats(f"{profile_to}.{run_id}")
    else:
        sync_run_task.run(run_id)
    seconds = time.perf_counter() - started
    run = SyncRun.objects.get(pk=run_id)
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(_peak_rss_mb(), 1), **_run_facts(run)}))


def _run_facts(run: Any) -> dict[str, Any]:
    """A finished run's counters, its readers' record (reads, peaks, the time spent waiting
    for the shared rate limit) and how many shards each worker process took."""
    from billing.shards import shard_state

    state = shard_state(run.job_id) if run.job_id else {}
    owners = Counter(str(s.get("owner", "")).split(":")[2] for s in state.get("shards", []) if s.get("owner"))
    return {
        "state": run.state,
        "pages": run.pages,
        "seen": run.seen,
        "changed": run.changed,
        "new": run.new,
        "missing": run.missing,
        "error": run.error_message,
        "reader": state.get("reader") or {},
        "shards": len(state.get("shards", [])),
        "shards_by_worker": sorted(owners.values(), reverse=True),
    }


# -- parent mode -----------------------------------------------------------------------------


def _prepare_database(env: dict[str, str], db: str) -> None:
    if db == "postgres":
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}"')
            conn.execute(f'CREATE DATABASE "{PG_DB}"')
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


def _token(creds_path: Path) -> str:
    import jwt

    creds = json.loads(creds_path.read_text())
    now = int(time.time())
    return str(
        jwt.encode(
            {"iss": str(creds["account_id"]), "iat": now - 5, "exp": now + 3000},
            creds["private_key"],
            algorithm="RS256",
            headers={"kid": creds["key_id"]},
        )
    )


class _FloorRow(msgspec.Struct):
    account_id: int
    balance: Decimal | None = None
    currency: str | None = None
    active: bool | None = None
    frozen: bool | None = None
    credit_limit: Decimal | None = None
    notify: Decimal | None = msgspec.field(default=None, name="min_balance_to_notify")


class _FloorPage(msgspec.Struct):
    result: list[_FloorRow]


def _fetch_floor(base_url: str, creds_path: Path, wanted: list[int], concurrency: int) -> tuple[float, list[Any]]:
    """Every chunk read with a bare client on a pool of ``concurrency`` threads, no database.
    Each answer is decoded the fastest way known, as the sync's reads decode it: a typed
    msgspec decode of the seven fields a sync writes (amounts exact, as Decimals), the other
    fields of a row skipped unread."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    decoder = msgspec.json.Decoder(_FloorPage)

    chunks = [wanted[start : start + PAGE] for start in range(0, len(wanted), PAGE)]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {_token(creds_path)}"}
    rows: list[Any] = []
    with httpx.Client(base_url=base_url, timeout=120, headers=headers, limits=limits) as client:

        def read(chunk: list[int]) -> list[tuple[Any, ...]]:
            response = client.post(
                "/platform_api/GetChildrenAccounts",
                data={
                    "child_account_id": ";".join(str(i) for i in chunk),
                    "ignore_invalid_accounts": "true",
                    "count": str(len(chunk)),
                    "order_by": "child_account_id",
                },
            )
            return [
                (a.account_id, a.balance, (a.currency or "").upper(), a.active, a.frozen, a.credit_limit, a.notify)
                for a in decoder.decode(response.content).result
            ]

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for page in pool.map(read, chunks):
                rows.extend(page)
        seconds = time.perf_counter() - started
    return seconds, rows


def _vacuum_analyze() -> None:
    """VACUUM ANALYZE the tables the sync writes, as autovacuum would between two nights."""
    import psycopg

    from billing.models import BalanceSnapshot
    from tenants.models import Tenant

    started = time.perf_counter()
    with psycopg.connect(PG_URL, autocommit=True) as pg:
        for table in (Tenant._meta.db_table, BalanceSnapshot._meta.db_table):
            pg.execute(f"VACUUM ANALYZE {table}")
    print(f"  vacuum analyze after the first sync: {time.perf_counter() - started:.1f}s", flush=True)


def _write_floor(rows: list[Any], connection_obj: Any, db: str) -> float:
    """The fastest raw write of the same rows (tenants and their first snapshots) in one
    transaction, rolled back: the first sync must still find every row new."""
    from django.db import connection, transaction
    from django.utils import timezone

    from billing import sync_write
    from billing.models import BalanceSnapshot
    from tenants.models import Tenant

    tenant, snap = Tenant._meta.db_table, BalanceSnapshot._meta.db_table
    if db == "postgres":
        import psycopg

        columns = "aid, balance, currency, active, frozen, credit, notify"
        with psycopg.connect(PG_URL) as pg, pg.cursor() as cur:
            started = time.perf_counter()
            cur.execute(
                "CREATE TEMPORARY TABLE floor_rows (aid bigint, balance numeric(18, 4), currency text, "
                "active boolean, frozen boolean, credit numeric(18, 4), notify numeric(18, 4)) ON COMMIT DROP"
            )
            with cur.copy(f"COPY floor_rows ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"UPDATE {tenant} t SET balance = v.balance, currency = v.currency, provider_active = v.active, "
                "provider_frozen = v.frozen, credit_limit = v.credit, is_low_balance = false, "
                "missing_at_provider = false, provider_threshold = v.notify, balance_synced_at = now(), "
                "updated_at = now() FROM floor_rows v WHERE t.connection_id = %s AND t.provider_account_id = v.aid",
                [connection_obj.pk],
            )
            cur.execute(
                f"INSERT INTO {snap} (tenant_id, balance, currency, taken_at) SELECT t.id, v.balance, v.currency, now() "
                f"FROM floor_rows v JOIN {tenant} t ON t.connection_id = %s AND t.provider_account_id = v.aid "
                "WHERE v.balance IS NOT NULL",
                [connection_obj.pk],
            )
            seconds = time.perf_counter() - started
            pg.rollback()
        with psycopg.connect(PG_URL, autocommit=True) as pg:  # the rolled-back rows must not slow the sync
            pg.execute(f"VACUUM ANALYZE {tenant}")
            pg.execute(f"VACUUM ANALYZE {snap}")
        return seconds
    ids = dict(Tenant.objects.filter(connection=connection_obj).values_list("provider_account_id", "id"))
    updates = [(ids[r[0]], r[1], r[2], r[3], r[4], r[5], False, False, r[6]) for r in rows if r[0] in ids]
    snapshots = [(u[0], u[1], u[2]) for u in updates if u[1] is not None]
    stamp = timezone.now()
    started = time.perf_counter()
    with transaction.atomic():
        sync_write.bulk_update_tenants(updates, stamp)
        sync_write.insert_snapshots(snapshots, stamp)
        seconds = time.perf_counter() - started
        transaction.set_rollback(True)
    assert connection.vendor == "sqlite"
    return seconds


def _floor(base_url: str, creds_path: Path, connection_obj: Any, db: str, concurrency: int) -> dict[str, float]:
    from tenants.models import Tenant

    wanted = sorted(Tenant.objects.filter(connection=connection_obj).values_list("provider_account_id", flat=True))
    fetch, rows = _fetch_floor(base_url, creds_path, wanted, concurrency)
    rows = [(aid, _q4(b), cur, act, frz, _q4(cr), _q4(notify)) for aid, b, cur, act, frz, cr, notify in rows]
    write = _write_floor(rows, connection_obj, db)
    del rows
    return {"fetch_s": round(fetch, 2), "write_s": round(write, 2), "total_s": round(fetch + write, 2)}


def _q4(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(Decimal("0.0001"))


def _sync(env: dict[str, str], connection_obj: Any) -> dict[str, Any]:
    from billing.services import sync_start

    run = sync_start(actor=None, connection=connection_obj)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--run-task", str(run.pk)],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    (Path(env["PORTAL_VAR_DIR"]) / f"sync-{run.pk}.log").write_text(out.stderr)
    if out.returncode:
        raise SystemExit(f"the sync process failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["state"] != "succeeded":
        raise SystemExit(f"the sync failed: {result}\n{out.stderr[-3000:]}")
    return result


def _start_workers(env: dict[str, str], workdir: Path, count: int, tag: str = "") -> list[subprocess.Popen[bytes]]:
    """``count`` real `celery worker` processes (solo pool) on the bench's broker and database."""
    procs = []
    for i in range(count):
        log = open(workdir / f"worker{tag}{i}.log", "w")  # noqa: SIM115 - handed to the child process
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo", "--loglevel", "INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", "celery", "-n", f"bench{tag}{i}@%h"],
                cwd=ROOT, env={**env, "LOG_LEVEL": "INFO"}, stdout=log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
    deadline = time.monotonic() + 120
    for i in range(count):
        while " ready." not in (workdir / f"worker{tag}{i}.log").read_text(errors="replace"):
            if time.monotonic() > deadline or procs[i].poll() is not None:
                raise SystemExit(f"worker {i} did not start: {(workdir / f'worker{tag}{i}.log').read_text()[-2000:]}")
            time.sleep(0.2)
    return procs


def _sync_on_workers(connection_obj: Any, procs: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """One sync queued to the Celery workers (its shards spread over them), timed from the
    start to the run's end; peak RSS is the largest worker's."""
    from billing.models import SyncRun
    from billing.services import sync_start

    run = sync_start(actor=None, connection=connection_obj)
    while SyncRun.objects.filter(pk=run.pk, state=SyncRun.State.RUNNING).exists():
        time.sleep(0.1)
    run.refresh_from_db()
    if run.state != SyncRun.State.SUCCEEDED:
        raise SystemExit(f"the sync failed: {run.error_message}")
    assert run.finished_at is not None
    peaks = []
    for proc in procs:
        with open(f"/proc/{proc.pid}/status") as status:
            peaks += [int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")]
    return {
        "seconds": round((run.finished_at - run.started_at).total_seconds(), 2),
        "peak_rss_mb": round(max(peaks), 1),
        **_run_facts(run),
    }


def _reads(base_url: str) -> int:
    """GetChildrenAccounts calls the sandbox answered so far (its latency rule's count)."""
    import httpx

    token = (Path(os.environ["PORTAL_VAR_DIR"]) / "sandbox-creds" / "sandbox_admin_token").read_text().strip()
    response = httpx.get(f"{base_url}/_sandbox/faults", headers={"X-Sandbox-Token": token}, timeout=10)
    response.raise_for_status()
    rules = response.json()["rules"]
    return sum(int(r["fired"]) for r in rules if r["method"] == "GetChildrenAccounts")


def _killed_sync(
    env: dict[str, str], workdir: Path, connection_obj: Any, workers: int, kill_at: float, base_url: str
) -> tuple[dict[str, Any], list[subprocess.Popen[bytes]]]:
    """The first sync on ``workers`` Celery workers, every worker killed (SIGKILL) once
    ``kill_at`` of the chunks are written; the sweeper resumes the run (its heartbeat gone
    stale) on as many fresh workers. What it read, and whether every tenant was synced
    exactly once (one balance snapshot each)."""
    from django.db.models import Count

    from billing.models import BalanceSnapshot, SyncRun
    from billing.services import sync_start
    from billing.shards import shard_state, sync_sweep
    from tenants.models import Tenant

    pool = _start_workers(env, workdir, workers)
    total = Tenant.objects.filter(connection=connection_obj).count()
    chunks = -(-total // PAGE)
    reads_before = _reads(base_url)
    run = sync_start(actor=None, connection=connection_obj)
    started = time.monotonic()
    while SyncRun.objects.get(pk=run.pk).pages < kill_at * chunks:
        if not SyncRun.objects.filter(pk=run.pk, state=SyncRun.State.RUNNING).exists():
            raise SystemExit("the run ended before the kill")
        time.sleep(0.05)
    for proc in pool:
        proc.kill()
        proc.wait(30)
    killed_after = time.monotonic() - started
    run.refresh_from_db()
    pages_at_kill = run.pages
    while run.pk not in sync_sweep():  # the heartbeat goes stale after BILLING_SYNC_STALE_SECONDS
        time.sleep(0.5)
    pool = _start_workers(env, workdir, workers, tag="resumed")
    resumed_at = time.monotonic()
    while SyncRun.objects.filter(pk=run.pk, state=SyncRun.State.RUNNING).exists():
        time.sleep(0.1)
    run.refresh_from_db()
    if run.state != SyncRun.State.SUCCEEDED:
        raise SystemExit(f"the resumed sync failed: {run.error_message}")
    per_tenant = Counter(
        BalanceSnapshot.objects.values("tenant_id").annotate(n=Count("id")).values_list("n", flat=True)
    )
    synced = Tenant.objects.filter(connection=connection_obj, balance_synced_at__isnull=False).count()
    with_balance = Tenant.objects.filter(connection=connection_obj, balance__isnull=False).count()
    once = per_tenant.get(1, 0)
    return {
        "at": kill_at,
        "pages_at_kill": pages_at_kill,
        "seconds_before_kill": round(killed_after, 2),
        "seconds_after_resume": round(time.monotonic() - resumed_at, 2),
        "reads": _reads(base_url) - reads_before,
        "resumes": int(shard_state(run.job_id).get("resumes", 0)) if run.job_id else 0,
        "pages": run.pages,
        "seen": run.seen,
        "changed": run.changed,
        "tenants": total,
        "tenants_synced": synced,
        "tenants_with_balance": with_balance,
        "tenants_with_one_snapshot": once,
        "tenants_with_several_snapshots": sum(c for n, c in per_tenant.items() if n > 1),
        "snapshots": BalanceSnapshot.objects.count(),
        "every_tenant_synced_once": run.seen == total and synced == total and once == with_balance
        and BalanceSnapshot.objects.count() == with_balance,
    }, pool  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of children charged before the repeat")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rss-baseline", type=float, default=None, help="peak RSS (MB) measured at N = 10,000")
    parser.add_argument(
        "--baseline-children",
        type=int,
        default=None,
        help="first run the same bench at this N (10000) and take its peak RSS as --rss-baseline",
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="chunks read at once (the sync's BILLING_SYNC_CONCURRENCY)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="latency the sandbox adds to every GetChildrenAccounts call"
    )
    parser.add_argument(
        "--listing",
        choices=["required", "allowed"],
        default="required",
        help="the sandbox's GetChildrenAccounts rule: a filter required (documented) or every child listed",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="run the syncs on W real Celery worker processes (shards)"
    )
    parser.add_argument(
        "--kill-at",
        type=float,
        default=None,
        help="kill the workers when this share of the first sync's chunks is written; the sweeper resumes it",
    )
    parser.add_argument("--run-task", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_task is not None:
        run_task(args.run_task)
        return

    n = args.children
    if args.concurrency < 1 or args.latency_ms < 0:
        parser.error("--concurrency must be at least 1 and --latency-ms at least 0")
    baseline: dict[str, Any] | None = None
    if args.baseline_children is not None:
        if args.rss_baseline is not None or not 0 < args.baseline_children < n:
            parser.error("--baseline-children needs a count below --children, and no --rss-baseline")
        baseline = _baseline(args)
        args.rss_baseline = baseline["peak_rss_mb"]
    workdir = Path(os.environ.get("PORTAL_VAR_DIR") or ROOT / "var") / "bench" / f"sync-{n}-{args.db}-{args.listing}"
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    env = _env(workdir, args.db)
    env["BILLING_SYNC_CONCURRENCY"] = str(args.concurrency)
    os.environ.update(env)
    workers = args.workers or 1
    if workers < 1:
        parser.error("--workers must be at least 1")
    if args.kill_at is not None:
        if not 0 < args.kill_at < 1:
            parser.error("--kill-at must be between 0 and 1")
        # Only the bench runs the sweeper here: a killed run's heartbeat is stale after 2 s.
        env["BILLING_SYNC_STALE_SECONDS"] = "2"
    # The floors read without a rate limit; so does the sync here, unless the caller sets one.
    env.setdefault("BILLING_PROVIDER_RATE_PER_SECOND", "0")
    os.environ.update(env)
    print(
        f"sync bench: {n} children, {args.db}, concurrency {args.concurrency}, latency {args.latency_ms:g} ms, "
        f"work dir {workdir}",
        flush=True,
    )

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
            *(
                [
                    "--faults",
                    json.dumps([{"method": "GetChildrenAccounts", "kind": "latency", "latency_ms": args.latency_ms}]),
                ]
                if args.latency_ms or args.kill_at is not None
                else []
            ),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    pool: list[subprocess.Popen[bytes]] = []
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

        floor = _floor(base_url, creds / "credentials.json", conn_obj, args.db, args.concurrency)
        honest = floor["total_s"]
        print(
            f"  floors: fetch {floor['fetch_s']}s (concurrency {args.concurrency}) + write {floor['write_s']}s "
            f"= {honest}s",
            flush=True,
        )
        killed: dict[str, Any] | None = None
        if args.kill_at is not None:
            killed, pool = _killed_sync(env, workdir, conn_obj, workers, args.kill_at, base_url)
            first = {"seconds": killed["seconds_before_kill"] + killed["seconds_after_resume"], "peak_rss_mb": 0.0}
            first.update({k: killed[k] for k in ("pages", "seen", "changed")})
            print(f"  killed first sync: {json.dumps(killed)}", flush=True)
        elif args.workers:
            pool = _start_workers(env, workdir, args.workers)
        if killed is None:
            first = _sync_on_workers(conn_obj, pool) if pool else _sync(env, conn_obj)
        print(
            f"  first sync: {first['seconds']}s ({first['seconds'] / honest:.2f}x fetch + write floor), "
            f"{first['changed']} changed, peak RSS {first['peak_rss_mb']} MB",
            flush=True,
        )

        if args.db == "postgres":
            # The bench's server runs without autovacuum; a deployment's would vacuum and
            # analyze the tenants after a first sync rewrote every row, before the next night.
            _vacuum_analyze()
        from sandbox.spend import spend

        charged = spend(str(sandbox_db), children=max(1, int(n * args.changed)), max_amount="0.5", seed=2)
        reads_before = _reads(base_url) if killed is not None else 0
        repeat = _sync_on_workers(conn_obj, pool) if pool else _sync(env, conn_obj)
        if killed is not None:
            # An uninterrupted run of the same tenants reads each chunk once: the repeat.
            killed["reads_uninterrupted"] = _reads(base_url) - reads_before
            killed["work_ratio"] = round(killed["reads"] / max(1, killed["reads_uninterrupted"]), 3)
        print(
            f"  repeat sync ({charged['charged']} charged): {repeat['seconds']}s "
            f"({repeat['seconds'] / floor['fetch_s']:.2f}x fetch floor), {repeat['changed']} changed, "
            f"peak RSS {repeat['peak_rss_mb']} MB",
            flush=True,
        )
    finally:
        for proc in pool:
            proc.terminate()
            proc.wait(30)
        server.terminate()
        server.wait(10)
    report = _report(args, n, workers, floor, first, repeat, charged)
    if baseline is not None:
        report["baseline"] = baseline
    if killed is not None:
        report["kill"] = killed
        report["targets"]["kill_work_le_1_1x_uninterrupted"] = killed["work_ratio"] <= 1.1
        report["targets"]["kill_every_tenant_synced_once"] = killed["every_tenant_synced_once"]
    print(json.dumps(report))


def _baseline(args: argparse.Namespace) -> dict[str, Any]:
    """The same bench at ``--baseline-children`` tenants (same database, concurrency,
    latency, listing and workers; no kill), run first in a process of its own: its peak RSS
    is the figure the large run's RSS is compared with."""
    command = [sys.executable, str(Path(__file__).resolve()), "--children", str(args.baseline_children)]
    command += ["--changed", str(args.changed), "--db", args.db, "--concurrency", str(args.concurrency)]
    command += ["--latency-ms", str(args.latency_ms), "--listing", args.listing]
    if args.workers:
        command += ["--workers", str(args.workers)]
    print(f"baseline: the same bench at {args.baseline_children} children first", flush=True)
    out = subprocess.run(command, cwd=ROOT, check=False, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the baseline bench failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  baseline peak RSS at {args.baseline_children}: {report['peak_rss_mb']} MB", flush=True)
    return {
        "children": report["children"],
        "peak_rss_mb": report["peak_rss_mb"],
        "first_s": report["first"]["seconds"],
        "repeat_s": report["repeat"]["seconds"],
    }


def _read_ms(reader: dict[str, Any]) -> float | None:
    reads = int(reader.get("reads") or 0)
    return round(1000 * float(reader["read_s"]) / reads, 1) if reads and "read_s" in reader else None


def _report(
    args: argparse.Namespace,
    n: int,
    workers: int,
    floor: dict[str, float],
    first: dict[str, Any],
    repeat: dict[str, Any],
    charged: dict[str, Any],
) -> dict[str, Any]:
    """The figures, the ratios and whether each target is met (printed, then the JSON)."""
    fetch, honest = max(floor["fetch_s"], 0.01), max(floor["total_s"], 0.01)
    peak = max(first["peak_rss_mb"], repeat["peak_rss_mb"])
    rss_ratio = round(peak / args.rss_baseline, 3) if args.rss_baseline else None
    targets = {
        "first_le_1_5x_fetch_plus_write_floor": first["seconds"] / honest <= 1.5,
        "repeat_le_1_2x_fetch_floor": repeat["seconds"] / fetch <= 1.2,
        "rss_lt_150mb": peak < 150,
        "rss_within_1_2x_of_10k": None if rss_ratio is None else rss_ratio <= 1.2,
    }
    # With a latency: the repeat against the time its reads would wait one after the other.
    serial_wait = repeat["pages"] * args.latency_ms / 1000 if args.latency_ms else None
    if serial_wait:
        targets["latency_ratio_le_1_3"] = repeat["seconds"] / fetch <= 1.3
        targets["repeat_under_40pct_of_serial_wait"] = repeat["seconds"] < 0.4 * serial_wait
    for name, met in targets.items():
        print(f"  target {name}: {'met' if met else 'NOT MET' if met is False else 'not measured (no --rss-baseline)'}")
    return {
        "bench": "sync",
        "children": n,
        "db": args.db,
        "listing": args.listing,
        "latency_ms": args.latency_ms,
        "workers": workers,
        "concurrency": args.concurrency,
        "first_sync_means": "tenants pre-created without provider data (every row new to the portal)",
        "floor": floor,
        "fetch_floor_s": floor["fetch_s"],
        "write_floor_s": floor["write_s"],
        "latency_ratio": round(repeat["seconds"] / fetch, 3),
        "latency_ratio_first": round(first["seconds"] / fetch, 3),
        # pages × latency: what the repeat's reads would wait one after the other.
        "serial_wait_s": round(serial_wait, 2) if serial_wait else None,
        "repeat_share_of_serial_wait": round(repeat["seconds"] / serial_wait, 3) if serial_wait else None,
        "first": {
            "seconds": first["seconds"],
            "ratio": round(first["seconds"] / honest, 3),
            "changed": first["changed"],
            "pages": first["pages"],
        },
        "repeat": {
            "seconds": repeat["seconds"],
            "ratio": round(repeat["seconds"] / fetch, 3),
            "changed": repeat["changed"],
            "charged": charged["charged"],
            "new": repeat["new"],
            "note": repeat["error"],
        },
        # A read's mean wall time (call and parsing): the bare floor's against the sync's; a
        # writer that starved its readers of the GIL would make the sync's much longer.
        "read_ms_floor": round(1000 * floor["fetch_s"] * args.concurrency / max(1, -(-n // PAGE)), 1),
        "read_ms_repeat": _read_ms(repeat.get("reader") or {}),
        "read_ms_first": _read_ms(first.get("reader") or {}),
        "reader_first": first.get("reader"),
        "reader_repeat": repeat.get("reader"),
        "shards": repeat.get("shards"),
        "shards_by_worker_first": first.get("shards_by_worker"),
        "shards_by_worker_repeat": repeat.get("shards_by_worker"),
        "peak_rss_mb": peak,
        "peak_rss_mb_first": first["peak_rss_mb"],
        "peak_rss_mb_repeat": repeat["peak_rss_mb"],
        "rss_baseline_mb": args.rss_baseline,
        "rss_vs_baseline": rss_ratio,
        "targets": targets,
    }


if __name__ == "__main__":
    main()
