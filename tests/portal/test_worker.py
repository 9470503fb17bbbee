"""A real Celery worker process runs a task sent from this process, end to end."""

import os
import time

import pytest

from portal.jobs import job_create
from portal.models import Job
from portal.tasks import ping_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_runs_a_task_end_to_end(celery_worker) -> None:
    job = job_create(kind="portal.ping", title="Ping the worker")
    ping_job.delay(job.pk)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_finished:
            break
        time.sleep(0.2)
    assert job.state == Job.State.SUCCEEDED, celery_worker.log()
    assert job.message == "pong"
    assert "portal.ping_job" in celery_worker.log()


def test_a_worker_with_a_bad_billing_setting_says_so_in_its_log_at_start(tmp_path) -> None:
    from tests.conftest import start_worker

    worker = start_worker(tmp_path / "worker.log", {"BILLING_TRANSFER_LIMIT": "lots"})
    try:
        lines = [line for line in worker.log().splitlines() if "system check failed" in line]
        assert lines and "BILLING_TRANSFER_LIMIT" in lines[0] and '"level": "ERROR"' in lines[0], worker.log()
    finally:
        worker.stop()


def test_what_a_worker_loads_at_start_leaves_out_the_views_and_the_pdf_library() -> None:
    """The worker's start (its task modules, its system checks) imports neither every view
    (Celery's own run of the URL check would) nor ReportLab, which only an invoice PDF loads."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import database_url_for_subprocess

    script = (
        "import sys, portal.celery as c; from celery import signals; "
        "c.app.loader.import_default_modules(); signals.worker_init.send(sender=None); "
        "print(sorted(m for m in ('portal.urls', 'api.urls', 'reselling.views_invoices', 'reportlab') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings_test"}
    env["DATABASE_URL"] = database_url_for_subprocess()
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]
