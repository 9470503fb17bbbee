"""A real Celery worker process runs a task sent from this process, end to end."""

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
