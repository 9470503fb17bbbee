"""/metrics under gunicorn with several workers: every scrape reports the whole server's
request counts, whichever worker answers it (prometheus-client's multi-process mode)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import database_url_for_subprocess

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-multiprocess-tests-0123456789"
REQUESTS = 40
SCRAPES = 8
START_DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[str]:
    """gunicorn with two workers and the deployment's configuration; yields its base URL."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings_test",
            "DATABASE_URL": database_url_for_subprocess(),
            "METRICS_TOKEN": TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "portal.wsgi:application",
                "--workers",
                "2",
                "--config",
                "deploy/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            assert proc.poll() is None, f"gunicorn exited:\n{log_path.read_text()}"
            try:
                # Any answer from Django will do (/healthz is 503 without a Celery worker); not
                # /healthz/live, whose requests the test counts.
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"gunicorn did not answer:\n{log_path.read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def live_requests_counted(base: str) -> float:
    response = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "portal_http_requests_total" and sample.labels == {
                "view": "healthz_live",
                "status": "2xx",
            }:
                return sample.value
    return 0.0


def test_every_scrape_counts_the_requests_of_every_gunicorn_worker(gunicorn: str) -> None:
    def live(_: int) -> int:
        return httpx.get(f"{gunicorn}/healthz/live", timeout=10).status_code

    # Concurrent requests, so both workers answer some of them.
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(live, range(REQUESTS)))
    assert statuses == [200] * REQUESTS

    counts = [live_requests_counted(gunicorn) for _ in range(SCRAPES)]
    assert counts == [float(REQUESTS)] * SCRAPES
