"""Benchmark of top-ups through the whole portal: the REST API, the Celery worker, the sandbox.

    .venv/bin/python bench/transfers.py [--transfers 1000] [--clients 8] [--db sqlite|postgres]
                                        [--broker filesystem|redis] [--tenants 50] [--workers 2]
                                        [--redis-db 11] [--flush-redis] [--pg-db bench_transfers]

Starts, each in its own process: the sandbox (`python -m sandbox serve`) and the web tier
(gunicorn, 2 workers, as in docker-compose), and for each worker count w = 1 .. --workers a
Celery worker with w prefork processes. Then:

0. Queries: one API POST and one worker step (claim, send, settle) are run in this process,
   through Django's test client and the service, and their queries are counted
   (``queries_post``, ``queries_step``; BEGIN/COMMIT count on SQLite, not on PostgreSQL).
1. Bare provider call: TransferMoneyToChildAccount through the provider client, one at a
   time, the same amounts (median and p95 latency).
2. Latency (with one worker process): 50 top-ups one at a time, each POSTed to
   /api/v1/tenants/{uuid}/transfers (token auth, Idempotency-Key) and followed until the
   provider has it (state succeeded): the end-to-end time minus the bare call, measured in
   the same run, is the portal's added time per transfer (API, commit, queue, claim,
   record, ledger, audit). The bench waits without competing for the CPU: on PostgreSQL it
   blocks on a notification that a trigger, created in the bench's own database, sends when
   the settle commits; on SQLite it sleeps for most of the time the previous transfers took,
   then looks at the row with a growing interval (1 ms, x1.5, at most 20 ms). The stages of
   that time (``one_at_a_time_stages_ms``) come from the portal's own timestamps: POST to
   the created event, to the API's answer, to the worker's claim, to the provider's answer,
   to the settle's commit.
3. Throughput, for each worker count: --transfers top-ups POSTed by --clients threads at
   once; the clock stops when the last one has succeeded. Every transfer is then checked:
   one provider operation per payment_reference, journal sums to zero.

Redis (``--broker redis``) uses db ``--redis-db``. The bench never empties a Redis db unless
told to with ``--flush-redis``; without it, a db that holds keys is refused.

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
LATENCY_SAMPLES = 50
POLL_FIRST, POLL_GROWTH, POLL_MAX = 0.001, 1.5, 0.02


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(workdir: Path, db: str, broker: str, *, pg_db: str, redis_db: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789-abc",
            "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1maWVsZC1rZXktMDEyMzQ1Njc4OWE=",
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_COOKIES": "false",
            "PORTAL_VAR_DIR": str(workdir),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            # Limits out of the way: this measures the machinery, not the policy.
            "BILLING_TRANSFER_LIMIT": "1000000",
            "BILLING_DAILY_LIMIT_PER_STAFF": "100000000",
            "BILLING_APPROVAL_THRESHOLD": "1000000",
            "API_THROTTLE_RATE": "1000000/min",
        }
    )
    env["DATABASE_URL"] = f"{PG_SERVER}/{pg_db}" if db == "postgres" else f"sqlite:///{workdir / 'portal.sqlite3'}"
    if broker == "redis":
        env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:6379/{redis_db}"
    else:
        env["CELERY_BROKER_URL"] = "filesystem://"
        env.pop("REDIS_URL", None)
    return env


def _wait_http(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _worker(env: dict[str, str], processes: int, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--loglevel",
            "WARNING",
            "--concurrency",
            str(processes),
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


IN_PROCESS_SAMPLES = 20


def _in_process(tenant: Any, token: str) -> dict[str, Any]:
    """The queries of one API POST (after a warm-up POST) and of one worker step, and the
    median time of each over IN_PROCESS_SAMPLES, in this process (no HTTP, no queue; the
    step includes its provider call). Runs before any worker is started; the tasks these
    POSTs publish find their transfer already settled later and do nothing."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from billing.transfers import transfer_execute

    web = Client(HTTP_HOST="127.0.0.1", headers={"Authorization": f"Bearer {token}"})
    counts, ids, post_s = [], [], []
    # BENCH_PROFILE=path: the in-process POSTs' and steps' cProfile stats go to path.post
    # and path.step (the figures are then the profiler's, slower than a plain run).
    profile_to = os.environ.get("BENCH_PROFILE")
    profiler: Any = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
    for sample in range(IN_PROCESS_SAMPLES + 1):
        if sample == 1 and profiler is not None:
            profiler.enable()  # after the warm-up POST (its imports and caches)
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as ctx:
            response = web.post(
                f"/api/v1/tenants/{tenant.uuid}/transfers",
                {"amount": "0.01", "direction": "to_tenant", "reason": "bench query count"},
                content_type="application/json",
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
        if response.status_code != 201:
            raise SystemExit(f"in-process POST answered {response.status_code}: {response.content[:500]!r}")
        post_s.append(time.perf_counter() - started)
        counts.append(len(ctx.captured_queries))
        ids.append(response.json()["id"])
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile_to}.post")
    from billing.models import Transfer

    pks = [Transfer.objects.get(uuid=ident).pk for ident in ids]
    transfer_execute(transfer_id=pks[0])  # warm the provider client
    if profiler is not None:
        profiler = cProfile.Profile()
        profiler.enable()
    step_counts, step_s = [], []
    for pk in pks[1:]:
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as ctx:
            done = transfer_execute(transfer_id=pk)
        step_s.append(time.perf_counter() - started)
        step_counts.append(len(ctx.captured_queries))
        if done.state != "succeeded":
            raise SystemExit(f"the in-process step ended {done.state}")
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile_to}.step")
    return {
        "queries_post": counts[-1],
        "queries_step": step_counts[-1],
        "post_ms": round(statistics.median(post_s[1:]) * 1000, 1),
        "step_ms": round(statistics.median(step_s) * 1000, 1),
    }


NOTIFY_CHANNEL = "bench_transfer_settled"


def _listen(database_url: str) -> Any:
    """A connection that hears every transfer's settle commit: a trigger (in the bench's own
    database only) notifies NOTIFY_CHANNEL with the transfer's uuid, delivered at commit."""
    import psycopg

    listener = psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True)
    listener.execute(
        "CREATE OR REPLACE FUNCTION bench_transfer_settled() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', NEW.uuid::text); RETURN NULL; END $$"
    )
    listener.execute(
        "CREATE OR REPLACE TRIGGER bench_transfer_settled AFTER UPDATE OF state ON billing_transfer "
        "FOR EACH ROW WHEN (NEW.state = 'succeeded') EXECUTE FUNCTION bench_transfer_settled()"
    )
    listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
    return listener


def _await_notify(listener: Any, ident: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for note in listener.notifies(timeout=deadline - time.monotonic(), stop_after=1):
            if note.payload == ident:
                return
    raise SystemExit(f"transfer {ident} did not settle within {timeout} s")


def _stages(walls: list[tuple[str, float, float, float]]) -> dict[str, float]:
    """Where the time of a one-at-a-time transfer goes (medians, ms), from the bench's clock
    and the timestamps the portal wrote: the created and claim audit events (written just
    before their commits) and completed_at (the provider's answer)."""
    from billing.models import Transfer
    from portal.models import AuditEvent

    parts: dict[str, list[float]] = {
        "post_to_created": [],
        "created_to_answered": [],
        "answered_to_claim": [],
        "claim_to_provider_answer": [],
        "answer_to_settle_seen": [],
    }
    for ident, sent, answered, settled in walls:
        events = dict(
            AuditEvent.objects.filter(
                action__in=["billing.transfer.created", "billing.transfer.sending"], data__transfer=ident
            ).values_list("action", "created_at")
        )
        done = Transfer.objects.values_list("completed_at", flat=True).get(uuid=ident)
        created, claim = events["billing.transfer.created"].timestamp(), events["billing.transfer.sending"].timestamp()
        parts["post_to_created"].append(created - sent)
        parts["created_to_answered"].append(answered - created)
        parts["answered_to_claim"].append(claim - answered)
        parts["claim_to_provider_answer"].append(done.timestamp() - claim)
        parts["answer_to_settle_seen"].append(settled - done.timestamp())
    return {name: round(statistics.median(values) * 1000, 1) for name, values in parts.items()}


def _prepare_redis(url: str, flush: bool) -> None:
    import redis

    db = redis.Redis.from_url(url)
    if flush:
        db.flushdb()
    elif db.dbsize():
        raise SystemExit(f"{url} holds keys: pass --flush-redis to empty it, or choose another --redis-db")
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--broker", choices=["filesystem", "redis"], default="filesystem")
    parser.add_argument("--workers", type=int, default=2, help="throughput with 1 .. W worker processes")
    parser.add_argument("--redis-db", type=int, default=11, help="the Redis db of the broker")
    parser.add_argument("--flush-redis", action="store_true", help="empty --redis-db first")
    parser.add_argument("--pg-db", default="bench_transfers", help="the PostgreSQL database (dropped and created)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not args.pg_db.replace("_", "").isalnum():
        parser.error("--pg-db: letters, digits and underscores only")

    # Under PORTAL_VAR_DIR when it is set, so two benches on one checkout never share files.
    workdir = Path(os.environ.get("PORTAL_VAR_DIR") or ROOT / "var") / "bench" / f"transfers-{args.db}-{args.broker}"
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    env = _env(workdir, args.db, args.broker, pg_db=args.pg_db, redis_db=args.redis_db)
    os.environ.update(env)
    print(
        f"transfers bench: {args.transfers} top-ups, {args.clients} clients, {args.db}, {args.broker} broker, "
        f"1..{args.workers} worker processes",
        flush=True,
    )

    from sandbox.init import init_sandbox

    sandbox_db = workdir / "sandbox.sqlite3"
    creds = workdir / "sandbox-creds"
    init_sandbox(str(sandbox_db), str(creds), balance=Decimal("100000000"))
    if args.db == "postgres":
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.pg_db}"')
            conn.execute(f'CREATE DATABASE "{args.pg_db}"')
    if args.broker == "redis":
        _prepare_redis(env["CELERY_BROKER_URL"], args.flush_redis)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    (workdir / "celery" / "queue").mkdir(parents=True, exist_ok=True)
    (workdir / "celery" / "processed").mkdir(parents=True, exist_ok=True)

    sandbox_port, web_port = _free_port(), _free_port()
    procs: list[subprocess.Popen[bytes]] = []
    logs = [open(workdir / f"{name}.log", "w") for name in ("sandbox", "web", "worker")]  # noqa: SIM115
    try:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sandbox",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(sandbox_port),
                    "--db",
                    str(sandbox_db),
                ],
                cwd=ROOT,
                env=env,
                stdout=logs[0],
                stderr=subprocess.STDOUT,
            )
        )
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        _wait_http(f"{sandbox_url}/_sandbox/health")

        import django

        django.setup()
        from api.tokens import api_token_create
        from billing.models import Transfer
        from providers import build_client
        from tenants.models import ProviderConnection, Tenant
        from tests.factories import UserFactory

        conn_obj = ProviderConnection.objects.create(
            name="bench",
            kind="voximplant",
            base_url=sandbox_url,
            credentials_path=str(creds / "credentials.json"),
            parent_api_key_path=str(creds / "parent_api_key"),
            currency="USD",
        )
        client = build_client(
            "voximplant",
            base_url=sandbox_url,
            credentials_path=creds / "credentials.json",
            parent_api_key_path=creds / "parent_api_key",
        )
        tenants = []
        for i in range(args.tenants):
            tag = uuid.uuid4().hex[:8]
            added = client.add_account(
                account_name=f"bt{tag}",
                account_email=f"bt{tag}@bench.example",
                account_password="Sandbox-Pass-1!",
                active=True,
            )
            tenants.append(
                Tenant.objects.create(
                    company_name=f"Bench {i}",
                    connection=conn_obj,
                    provider_account_id=added.account_id,
                    account_name=f"bt{tag}",
                    account_email=f"bt{tag}@bench.example",
                    status="active",
                    currency="USD",
                )
            )
        admin = UserFactory(username="bench-admin", role="reseller_admin")
        _, token = api_token_create(actor=admin, name="bench", role="reseller_billing")

        # 0. Queries and in-process times of a POST and a worker step, before any worker runs.
        in_process = _in_process(tenants[0], token)
        queries_post, queries_step = in_process["queries_post"], in_process["queries_step"]

        # 1. The bare provider call.
        bare: list[float] = []
        since = django.utils.timezone.now().replace(microsecond=0)
        for i in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            client.transfer_money(
                account_id=tenants[i % len(tenants)].provider_account_id,
                amount=Decimal("0.01"),
                payment_reference=f"bare-{uuid.uuid4()}",
                check_duplicate_reference_from=since,
            )
            bare.append(time.perf_counter() - started)
        client.close()

        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "portal.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{web_port}",
                    "--workers",
                    "2",
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
                stdout=logs[1],
                stderr=subprocess.STDOUT,
            )
        )
        web = f"http://127.0.0.1:{web_port}"
        _wait_http(f"{web}/healthz")

        import httpx

        http = httpx.Client(base_url=web, timeout=60, headers={"Authorization": f"Bearer {token}"})

        def post(tenant: Any, amount: str) -> tuple[float, str]:
            started = time.perf_counter()
            response = http.post(
                f"/api/v1/tenants/{tenant.uuid}/transfers",
                json={"amount": amount, "direction": "to_tenant", "reason": "bench top-up"},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            if response.status_code != 201:
                raise SystemExit(f"API answered {response.status_code}: {response.text[:500]}")
            return time.perf_counter() - started, response.json()["id"]

        def succeeded(ident: str) -> bool:
            return Transfer.objects.filter(uuid=ident, state="succeeded").exists()

        def start_worker(processes: int) -> subprocess.Popen[bytes]:
            proc = _worker(env, processes, logs[2])
            worker_procs.append(proc)
            # Ready when a transfer goes through (the worker consumes its queue).
            warm = post(tenants[0], "0.01")[1]
            deadline = time.monotonic() + 60
            while not succeeded(warm):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the worker ({processes} processes) did not start")
                time.sleep(0.05)
            return proc

        worker_procs: list[subprocess.Popen[bytes]] = []
        worker = start_worker(1)

        # 2. Latency: one at a time, end to end, with one worker process. On PostgreSQL the
        # bench blocks on a notification sent when the settle commits (no polling, no CPU
        # taken from what it measures); on SQLite it sleeps through most of the expected
        # time, then looks with a growing interval.
        e2e: list[float] = []
        api_latency: list[float] = []
        walls: list[tuple[str, float, float, float]] = []  # id, POST sent, answered, settled (epoch s)
        polls = 0
        listener = _listen(env["DATABASE_URL"]) if args.db == "postgres" else None
        for i in range(LATENCY_SAMPLES):
            started, sent_at = time.perf_counter(), time.time()
            took, ident = post(tenants[i % len(tenants)], "0.01")
            api_latency.append(took)
            if listener is not None:
                _await_notify(listener, ident)
            else:
                if e2e:
                    time.sleep(max(0.0, 0.7 * statistics.median(e2e) - took))
                interval = POLL_FIRST
                while True:
                    polls += 1
                    if succeeded(ident):
                        break
                    time.sleep(interval)
                    interval = min(POLL_MAX, interval * POLL_GROWTH)
            e2e.append(time.perf_counter() - started)
            walls.append((ident, sent_at, sent_at + took, sent_at + e2e[-1]))
        if listener is not None:
            listener.close()
        stages = _stages(walls)

        # 3. Throughput: many clients at once, for each worker count.
        by_workers: dict[int, dict[str, Any]] = {}
        all_idents: list[str] = []
        for processes in range(1, args.workers + 1):
            if processes > 1:
                _stop(worker)
                worker = start_worker(processes)
            idents: list[str] = []
            lock = threading.Lock()
            counter = iter(range(args.transfers))
            posted: list[float] = []

            def client_loop(
                idents: list[str] = idents, posted: list[float] = posted, counter: Any = counter, lock: Any = lock
            ) -> None:
                while True:
                    with lock:
                        n = next(counter, None)
                    if n is None:
                        return
                    took, ident = post(tenants[n % len(tenants)], f"{(n % 100 + 1) / 100:.2f}")
                    with lock:
                        idents.append(ident)
                        posted.append(took)

            started = time.perf_counter()
            threads = [threading.Thread(target=client_loop) for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            api_done = time.perf_counter() - started
            deadline = time.monotonic() + 600
            interval = 0.05
            while time.monotonic() < deadline:
                if not Transfer.objects.filter(uuid__in=idents).exclude(state="succeeded").exists():
                    break
                time.sleep(interval)
                interval = min(0.5, interval * 1.5)
            wall = time.perf_counter() - started
            by_workers[processes] = {
                "wall": wall,
                "api_done": api_done,
                "posted": posted,
                "states": dict(
                    Transfer.objects.filter(uuid__in=idents)
                    .values_list("state")
                    .annotate(n=django.db.models.Count("id"))
                ),
            }
            all_idents += idents
            # The workers alone: --transfers top-ups queued with no worker running, then the
            # clock runs from the first to the last one settled (the API is not in the way).
            _stop(worker)
            with ThreadPoolExecutor(args.clients) as pool:
                queued = list(pool.map(lambda n: post(tenants[n % len(tenants)], "0.01")[1], range(args.transfers)))
            worker = _worker(env, processes, logs[2])
            worker_procs.append(worker)
            deadline = time.monotonic() + 600
            first: float | None = None
            first_n = 0
            while time.monotonic() < deadline:
                done_n = Transfer.objects.filter(uuid__in=queued, state="succeeded").count()
                if done_n and first is None:
                    first, first_n = time.perf_counter(), done_n
                if done_n == len(queued):
                    break
                time.sleep(0.05)
            drained = time.perf_counter() - (first or time.perf_counter())
            by_workers[processes]["drain_per_s"] = round((len(queued) - first_n) / drained, 1) if drained else None
            all_idents += queued
            print(
                f"  {processes} worker process(es): {args.transfers} top-ups in {wall:.1f} s, "
                f"{args.transfers / wall:.1f}/s; states {by_workers[processes]['states']}; "
                f"workers alone drain {by_workers[processes]['drain_per_s']}/s",
                flush=True,
            )
        http.close()

        from billing import ledger
        from sandbox.store import Store

        store = Store(str(sandbox_db))
        refs = list(Transfer.objects.filter(uuid__in=all_idents).values_list("payment_reference", flat=True))
        doubled = sum(1 for ref in refs if store.transfer_ops_by_reference(ref) != 1)
        store.close()
        journal_total = ledger.total()
    finally:
        for proc in [*reversed(procs), *worker_procs]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*procs, *worker_procs]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()

    bare_ms = statistics.median(bare) * 1000
    e2e_ms = statistics.median(e2e) * 1000
    top = by_workers[args.workers]
    wall, api_done, posted, states = top["wall"], top["api_done"], top["posted"], top["states"]
    result = {
        "bench": "transfers",
        "through": f"REST API (gunicorn, 2 workers) + Celery worker (prefork, {args.workers}) + sandbox",
        "db": args.db,
        "broker": args.broker,
        "transfers": args.transfers,
        "clients": args.clients,
        "throughput_per_s": round(args.transfers / wall, 1),
        "wall_s": round(wall, 2),
        "api_accept_s": round(api_done, 2),
        "api_post_ms": {
            "p50": round(statistics.median(posted) * 1000, 1),
            "p95": round(_percentile(posted, 0.95) * 1000, 1),
        },
        "bare_provider_call_ms": {"p50": round(bare_ms, 1), "p95": round(_percentile(bare, 0.95) * 1000, 1)},
        "end_to_end_one_at_a_time_ms": {
            "p50": round(e2e_ms, 1),
            "p95": round(_percentile(e2e, 0.95) * 1000, 1),
            "api_p50": round(statistics.median(api_latency) * 1000, 1),
        },
        "portal_added_ms_per_transfer": round(e2e_ms - bare_ms, 1),
        "states": states,
        "references_not_applied_exactly_once": doubled,
        "journal_total": str(journal_total),
        "portal_added_ms": round(e2e_ms - bare_ms, 1),
        "bare_call_ms": round(bare_ms, 1),
        "workers": args.workers,
        "throughput_per_s_by_workers": {str(w): round(args.transfers / r["wall"], 1) for w, r in by_workers.items()},
        "drain_per_s_by_workers": {str(w): r["drain_per_s"] for w, r in by_workers.items()},
        "latency_polls_per_transfer": round(polls / LATENCY_SAMPLES, 1),
        "latency_wait": "notify" if args.db == "postgres" else "poll",
        "one_at_a_time_stages_ms": stages,
        "in_process_post_ms": in_process["post_ms"],
        "in_process_step_ms": in_process["step_ms"],
        "queries_post": queries_post,
        "queries_step": queries_step,
    }
    print(
        f"  bare provider call p50 {bare_ms:.1f} ms; one transfer end to end p50 {e2e_ms:.1f} ms "
        f"(portal adds {e2e_ms - bare_ms:.1f} ms; {polls / LATENCY_SAMPLES:.1f} looks per transfer)"
    )
    print(f"  one at a time, stages (median ms): {stages}")
    print(
        f"  in process: API POST {in_process['post_ms']} ms, {queries_post} queries; "
        f"worker step {in_process['step_ms']} ms (with its provider call), {queries_step} queries"
    )
    print(
        f"  throughput by worker processes: {result['throughput_per_s_by_workers']}; "
        f"workers alone: {result['drain_per_s_by_workers']}; "
        f"{doubled} references not exactly once; journal total {journal_total}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
