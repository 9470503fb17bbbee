"""Load on the customer balance page and the customer balance API, against gunicorn on
127.0.0.1, compared with a trivial authenticated view served by the same server in the same
run (machines here are noisy: only ratios taken together mean something).

    .venv/bin/python bench/customer_load.py [--requests 600] [--concurrency 8] [--rounds 3]

Starts its own gunicorn (2 sync workers) on a fresh SQLite database under a temporary
directory (or on DATABASE_URL when set, e.g. PostgreSQL), sends a bounded number of requests
over loopback only, stops the server, prints the figures and, last, one JSON line.
Target: each customer endpoint serves at least half the trivial view's requests per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TARGET_RATIO = 0.5

# The server's entry point: the portal's own settings, with a URLconf that adds the trivial
# view in front of the portal's routes. (A settings module outside the portal package cannot
# star-import portal.settings: portal/celery.py reads settings while the package imports.)
WSGI = textwrap.dedent("""
    import django
    from django.conf import settings

    django.setup()
    settings.ROOT_URLCONF = "bench_customer_urls"

    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
""")
URLS = textwrap.dedent("""
    from django.contrib.auth.decorators import login_required
    from django.http import HttpResponse
    from django.urls import path

    from portal.urls import handler403, handler404, handler500, urlpatterns as portal_urlpatterns  # noqa: F401


    @login_required
    def trivial(request):
        return HttpResponse("ok", content_type="text/plain")


    urlpatterns = [path("bench/trivial/", trivial), *portal_urlpatterns]
""")
SETUP = textwrap.dedent("""
    from datetime import timedelta
    from decimal import Decimal

    from django.contrib.auth.models import User
    from django.utils import timezone

    from billing.models import BalanceSnapshot
    from api.tokens import api_token_create
    from portal.roles import assign_role
    from tenants.models import Membership, ProviderConnection, Tenant

    conn = ProviderConnection.objects.create(name="bench", kind="voximplant", base_url="http://127.0.0.1:9",
                                             currency="USD")
    tenant = Tenant.objects.create(company_name="Bench Co", connection=conn, provider_account_id=1,
                                   account_name="bench-co", account_email="bench@example.com", status="active",
                                   balance=Decimal("123.45"), currency="USD", low_balance_threshold=Decimal("10"),
                                   balance_synced_at=timezone.now())
    now = timezone.now()
    BalanceSnapshot.objects.bulk_create([
        BalanceSnapshot(tenant=tenant, balance=Decimal(100 + i % 17), currency="USD",
                        taken_at=now - timedelta(days=90) + timedelta(days=i))
        for i in range(90)
    ])
    user = User.objects.create_user("bench-owner", "owner@bench.example", "bench-password-long-enough")
    assign_role(user, "customer_owner")
    Membership.objects.create(user=user, tenant=tenant)
    _, raw = api_token_create(actor=user, name="bench", role="customer_viewer", tenant=tenant)
    print("TOKEN=" + raw)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PYTHONPATH": f"{workdir}{os.pathsep}{ROOT}",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789-xyz",
            "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1maWVsZC1rZXktMDEyMzQ1Njc4OWE=",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_COOKIES": "false",
            "SECURE_HSTS_SECONDS": "0",
            "PORTAL_VAR_DIR": str(workdir / "var"),
            "API_THROTTLE_RATE": "100000000/min",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    env.pop("CELERY_BROKER_URL", None)
    return env


def prepare(workdir: Path, env: dict[str, str]) -> str:
    (workdir / "bench_customer_wsgi.py").write_text(WSGI)
    (workdir / "bench_customer_urls.py").write_text(URLS)
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    # As deployed: hashed static files served by whitenoise (DEBUG is off).
    subprocess.run([*manage, "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    if env["DATABASE_URL"].startswith("sqlite"):
        # WAL lets the workers read while another writes a session; what a deployment would set.
        import sqlite3

        sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")).execute("PRAGMA journal_mode=WAL").close()
    out = subprocess.run(
        [*manage, "shell", "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    return next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("TOKEN="))


def start_server(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "bench_customer_wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--access-logfile",
            "/dev/null",
            "--error-logfile",
            str(log),
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited early:\n" + log.read_text(errors="replace"))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("gunicorn did not answer within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def logged_in_client(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={
            "username": "bench-owner",
            "password": "bench-password-long-enough",
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/accounts/login/"},
    )
    if response.status_code != 302:
        raise RuntimeError(f"login failed: {response.status_code}")
    return client


def drive(clients: list[httpx.Client], path: str, total: int, headers: dict[str, str], expect: str) -> dict[str, Any]:
    """``total`` requests spread over the clients, each client in its own thread."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = [total // len(clients) + (1 if i < total % len(clients) else 0) for i in range(len(clients))]

    def worker(client: httpx.Client, count: int) -> None:
        mine = []
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            mine.append(time.perf_counter() - started)
            if response.status_code != 200 or expect not in response.text:
                with lock:
                    errors.append(f"{path}: {response.status_code}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(c, n)) for c, n in zip(clients, per_client, strict=True)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} bad responses, first: {errors[0]}")
    latencies.sort()
    return {
        "rps": len(latencies) / wall,
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "p50_ms": statistics.median(latencies) * 1000,
        "requests": len(latencies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 1 <= args.requests <= 20000 or not 1 <= args.concurrency <= 64 or not 1 <= args.rounds <= 10:
        parser.error("requests 1-20000, concurrency 1-64, rounds 1-10")

    workdir = Path(tempfile.mkdtemp(prefix="customer-load-"))
    env = environment(workdir)
    print(f"database: {env['DATABASE_URL'].split('@')[-1]}  workdir: {workdir}")
    token = prepare(workdir, env)
    port = free_port()
    server = start_server(env, port, args.workers, workdir / "gunicorn.log")
    base = f"http://127.0.0.1:{port}"
    targets = {
        "trivial": ("/bench/trivial/", {}, "ok"),
        "balance_page": ("/me/", {}, "123.45 USD"),
        "balance_api": ("/api/v1/customer/balance", {"Authorization": f"Bearer {token}"}, "123.4500"),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    try:
        clients = [logged_in_client(base) for _ in range(args.concurrency)]
        api_clients = [httpx.Client(base_url=base, timeout=30) for _ in range(args.concurrency)]
        for name, (path, headers, expect) in targets.items():  # warm-up: imports, caches, connections
            drive(api_clients if name == "balance_api" else clients, path, 4 * args.concurrency, headers, expect)
        for round_no in range(args.rounds):
            # Interleaved rounds, so a noisy moment hurts every endpoint alike.
            for name, (path, headers, expect) in targets.items():
                result = drive(api_clients if name == "balance_api" else clients, path, args.requests, headers, expect)
                runs[name].append(result)
                print(
                    f"round {round_no + 1} {name:13s} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.1f} ms"
                    f"  p95 {result['p95_ms']:6.1f} ms"
                )
        for c in clients + api_clients:
            c.close()
    finally:
        stop_server(server)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    summary: dict[str, Any] = {
        "server": f"gunicorn {args.workers} sync workers, 127.0.0.1",
        "concurrency": args.concurrency,
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "database": env["DATABASE_URL"].split(":", 1)[0],
    }
    # Ratios are taken round by round (each round runs the three endpoints back to back), and
    # the median over rounds is reported: a noisy neighbour slows one round, not one endpoint.
    medians: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        rps_ratios = [r["rps"] / base["rps"] for r, base in zip(rs, runs["trivial"], strict=True)]
        p95_ratios = [r["p95_ms"] / base["p95_ms"] for r, base in zip(rs, runs["trivial"], strict=True)]
        medians[name] = {
            "rps": round(statistics.median(r["rps"] for r in rs), 1),
            "p95_ms": round(statistics.median(r["p95_ms"] for r in rs), 2),
            "rps_ratio": round(statistics.median(rps_ratios), 3),
            "p95_ratio": round(statistics.median(p95_ratios), 3),
            "rps_ratio_worst_round": round(min(rps_ratios), 3),
        }
    print()
    print(f"{'endpoint':14s} {'req/s':>8s} {'p95 ms':>8s} {'rps ratio':>10s} {'p95 ratio':>10s} {'worst round':>12s}")
    ok = True
    for name, m in medians.items():
        if name != "trivial":
            ok = ok and m["rps_ratio"] >= TARGET_RATIO
        print(
            f"{name:14s} {m['rps']:8.1f} {m['p95_ms']:8.2f} {m['rps_ratio']:10.3f} {m['p95_ratio']:10.3f}"
            f" {m['rps_ratio_worst_round']:12.3f}"
        )
    summary.update(medians)
    summary["target"] = f"rps ratio >= {TARGET_RATIO} for balance_page and balance_api"
    summary["target_met"] = ok
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
