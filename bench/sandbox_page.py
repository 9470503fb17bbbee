"""Sandbox benchmark: seed N children (default 530,350) into a temp db, then time 1,000-row
GetChildrenAccounts pages over HTTP against `python -m sandbox serve` in a subprocess.

Prints figures; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from jwt.api_jws import PyJWS  # noqa: E402

from sandbox.init import init_sandbox  # noqa: E402
from sandbox.seed import seed_children  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--children", type=int, default=530_350)
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per (order, offset)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        db, out = os.path.join(tmp, "db.sqlite3"), os.path.join(tmp, "out")
        init_sandbox(db, out)
        started = time.perf_counter()
        seed_children(db, args.children, seed=1)
        seed_seconds = time.perf_counter() - started
        print(f"seed: {args.children} children in {seed_seconds:.2f} s")

        creds = json.loads(Path(out, "credentials.json").read_text())
        key = serialization.load_pem_private_key(creds["private_key"].encode(), password=None)
        now = int(time.time())
        token = PyJWS().encode(
            json.dumps({"iss": creds["account_id"], "iat": now - 5, "exp": now + 3000}).encode(),
            key,
            algorithm="RS256",
            headers={"kid": creds["key_id"], "typ": "JWT"},
        )
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen(
            # This bench pages the listing of every child, which the sandbox refuses by default.
            [
                sys.executable,
                "-m",
                "sandbox",
                "serve",
                "--db",
                db,
                "--port",
                str(port),
                "--options",
                '{"children_require_filter": false}',
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        results: dict[str, dict[str, float]] = {}
        try:
            for _ in range(200):
                try:
                    httpx.get(f"{base}/_sandbox/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=60) as client:

                def page(order: str, offset: int) -> tuple[float, int]:
                    t = time.perf_counter()
                    r = client.post(
                        "/platform_api/GetChildrenAccounts",
                        data={"count": "1000", "offset": str(offset), "order_by": order},
                    )
                    elapsed = (time.perf_counter() - t) * 1000
                    body = r.json()
                    assert body["count"] == 1000 and body["total_count"] == args.children, body.get("error")
                    return elapsed, len(r.content)

                cold, size = page("child_account_name", 0)
                print(f"first page (cold: count + caches): {cold:.1f} ms, {size} bytes")
                offsets = [0, args.children // 4, args.children // 2, args.children - 1000]
                for order in ("child_account_name", "child_account_id", "child_account_email"):
                    first_deep, _ = page(order, offsets[2])  # builds the deep-offset anchors once
                    times = []
                    for offset in offsets:
                        for _ in range(args.repeat):
                            times.append(page(order, offset)[0])
                    results[order] = {
                        "anchor_build_ms": round(first_deep, 1),
                        "median_ms": round(statistics.median(times), 1),
                        "p95_ms": round(sorted(times)[int(len(times) * 0.95) - 1], 1),
                        "max_ms": round(max(times), 1),
                    }
                    r = results[order]
                    print(
                        f"{order}: median {r['median_ms']} ms, p95 {r['p95_ms']} ms, max {r['max_ms']} ms "
                        f"(offsets {offsets}; first deep page incl. anchor build {r['anchor_build_ms']} ms)"
                    )
                t = time.perf_counter()
                brief = client.post("/platform_api/GetChildrenAccounts", data={"brief_output": "true"}).json()
                brief_ms = (time.perf_counter() - t) * 1000
                print(f"brief_output, all {brief['count']} ids: {brief_ms:.0f} ms")
        finally:
            server.terminate()
            server.wait(timeout=10)
        summary = {
            "children": args.children,
            "seed_seconds": round(seed_seconds, 2),
            "cold_first_page_ms": round(cold, 1),
            "page_1000": results,
            "brief_all_ms": round(brief_ms, 1),
        }
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
