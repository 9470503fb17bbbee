"""A real Celery worker writes JSON lines, with secrets redacted and the request id of the
request that queued the task."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal.logs import request_id_var
from tests.conftest import WorkerProcess, purge_broker, start_worker
from tests.portal.worker_log_tasks import PLANTED, log_planted_secrets

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

REQUEST_ID = "req-5b1e0c7d9a2f"


@pytest.fixture
def logging_worker(transactional_db: None, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A real worker that also knows the test-only task that logs planted secrets."""
    purge_broker()
    worker = start_worker(tmp_path / "worker.log", {"DJANGO_SETTINGS_MODULE": "tests.portal.worker_log_settings"})
    try:
        yield worker
    finally:
        worker.stop()


def wait_for_log(worker: WorkerProcess, *needles: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log = worker.log()
        if any(all(needle in line for needle in needles) for line in log.splitlines()):
            return log
        time.sleep(0.2)
    raise AssertionError(f"no worker line with {needles} in 60 s:\n{worker.log()}")


def test_every_worker_line_is_json_without_secrets_and_carries_the_request_id(logging_worker) -> None:
    token = request_id_var.set(REQUEST_ID)
    try:
        task_id = log_planted_secrets.delay().id
    finally:
        request_id_var.reset(token)

    log = wait_for_log(logging_worker, task_id, "RuntimeError")

    lines = [line for line in log.splitlines() if line.strip()]
    not_json = []
    entries: list[dict[str, Any]] = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            not_json.append(line)
    assert not_json == [], log
    for secret in PLANTED:
        assert secret not in log

    # The worker's own start-up lines come through the same formatter.
    assert any(entry["message"].endswith(" ready.") for entry in entries), log
    assert any(entry["logger"].startswith("celery.") for entry in entries), log

    (task_line,) = [entry for entry in entries if entry["logger"] == "tests.worker_logs"]
    assert task_line["request_id"] == REQUEST_ID
    assert task_line["tenant"] == "acme"
    assert "Authorization: [REDACTED]" in task_line["message"]
    assert '"password": "[REDACTED]"' in task_line["message"]

    (printed,) = [entry for entry in entries if "debug: api_key=" in entry["message"]]
    assert printed["request_id"] == REQUEST_ID

    (failure,) = [entry for entry in entries if entry["logger"] == "celery.app.trace" and entry["level"] == "ERROR"]
    assert task_id in failure["message"]
    assert "RuntimeError: provider refused the call" in failure["exception"]

    # What the worker says while it shuts down, from its signal handler, is a JSON line too.
    logging_worker.stop()
    final = [line for line in logging_worker.log().splitlines() if line.strip()]
    assert [line for line in final if not _is_json(line)] == [], logging_worker.log()
    assert any("Warm shutdown" in json.loads(line)["message"] for line in final), logging_worker.log()


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
