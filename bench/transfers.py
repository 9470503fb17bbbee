"""Benchmark of top-ups through the whole portal: the REST API, the Celery worker, the sandbox.

    .venv/bin/python bench/transfers.py [--transfers 1000] [--clients 8] [--db sqlite|postgres]
                                        [--broker filesystem|redis] [--tenants 50]

Starts, each in its own process: the sandbox (`python -m sandbox serve`), the web tier
(gunicorn, 2 workers, as in docker-compose) and a Celery worker (prefork, 2 processes). Then:

1. Bare provider call: TransferMoneyToChildAccount through the provider client, one at a
   time, the same amounts (median and p95 latency).
2. Latency: 50 top-ups one at a time, each POSTed to /api/v1/tenants/{uuid}/transfers (token
   auth, Idempotency-Key) and followed until the provider has it (state succeeded): the
   end-to-end time minus the bare call is the portal's added time per transfer (API,
   commit, queue, claim, record, ledger, audit).
3. Throughput: --transfers top-ups POSTed by --clients threads at once; the clock stops when
   the last one has succeeded. Every transfer is then checked: one provider operation per
   payment_reference, journal sums to zero.

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
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_URL = "postgres://postgres@127.0.0.1:5432/bench_transfers"
LATENCY_SAMPLES = 50


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(workdir: Path, db: str, broker: str) -> dict[str, str]:
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
    env["DATABASE_URL"] = PG_URL if db == "postgres" else f"sqlite:///{workdir / 'portal.sqlite3'}"
    if broker == "redis":
        env["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/11"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--broker", choices=["filesystem", "redis"], default="filesystem")
    args = parser.parse_args()

    workdir = ROOT / "var" / "bench" / f"transfers-{args.db}-{args.broker}"
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    env = _env(workdir, args.db, args.broker)
    os.environ.update(env)
    print(
        f"transfers bench: {args.transfers} top-ups, {args.clients} clients, {args.db}, {args.broker} broker",
        flush=True,
    )

    from sandbox.init import init_sandbox

    sandbox_db = workdir / "sandbox.sqlite3"
    creds = workdir / "sandbox-creds"
    init_sandbox(str(sandbox_db), str(creds), balance=Decimal("100000000"))
    if args.db == "postgres":
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench_transfers")
            conn.execute("CREATE DATABASE bench_transfers")
    if args.broker == "redis":
        import redis

        redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
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
        procs.append(
            subprocess.Popen(
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
                    "2",
                    "--pool",
                    "prefork",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=ROOT,
                env=env,
                stdout=logs[2],
                stderr=subprocess.STDOUT,
            )
        )
        web = f"http://127.0.0.1:{web_port}"
        _wait_http(f"{web}/healthz")
        time.sleep(3)  # the worker's start-up

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

        def state(ident: str) -> str:
            return Transfer.objects.filter(uuid=ident).values_list("state", flat=True).first() or ""

        # 2. Latency: one at a time, end to end.
        e2e: list[float] = []
        api_latency: list[float] = []
        for i in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            took, ident = post(tenants[i % len(tenants)], "0.01")
            api_latency.append(took)
            while state(ident) != "succeeded":
                time.sleep(0.002)
            e2e.append(time.perf_counter() - started)

        # 3. Throughput: many clients at once.
        idents: list[str] = []
        lock = threading.Lock()
        counter = iter(range(args.transfers))
        posted: list[float] = []

        def client_loop() -> None:
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
        while time.monotonic() < deadline:
            left = Transfer.objects.filter(uuid__in=idents).exclude(state="succeeded").count()
            if not left:
                break
            time.sleep(0.2)
        wall = time.perf_counter() - started
        states = dict(
            Transfer.objects.filter(uuid__in=idents).values_list("state").annotate(n=django.db.models.Count("id"))
        )
        http.close()

        from billing import ledger
        from sandbox.store import Store

        store = Store(str(sandbox_db))
        refs = list(Transfer.objects.filter(uuid__in=idents).values_list("payment_reference", flat=True))
        doubled = sum(1 for ref in refs if store.transfer_ops_by_reference(ref) != 1)
        store.close()
        journal_total = ledger.total()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()

    bare_ms = statistics.median(bare) * 1000
    e2e_ms = statistics.median(e2e) * 1000
    result = {
        "bench": "transfers",
        "through": "REST API (gunicorn, 2 workers) + Celery worker (prefork, 2) + sandbox",
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
    }
    print(
        f"  bare provider call p50 {bare_ms:.1f} ms; one transfer end to end p50 {e2e_ms:.1f} ms "
        f"(portal adds {e2e_ms - bare_ms:.1f} ms)"
    )
    print(
        f"  {args.transfers} top-ups in {wall:.1f} s: {args.transfers / wall:.1f}/s; states {states}; "
        f"{doubled} references not exactly once"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
