from typing import Any

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_healthz_reports_each_dependency(client, sandbox) -> None:
    with override_settings(VOXIMPLANT_BASE_URL=sandbox.base_url):
        response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ok"] is True
    assert set(body["checks"]) == {"database", "broker", "provider"}
    assert all(check["ok"] for check in body["checks"].values())


def test_healthz_is_503_when_the_provider_is_unreachable(client) -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with override_settings(VOXIMPLANT_BASE_URL=f"http://127.0.0.1:{port}"):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["provider"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_liveness_answers_while_the_database_is_unreachable_and_readiness_does_not() -> None:
    """In a process whose database is a closed port: /healthz/live is 200, /healthz/ready 503."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, django; django.setup()\n"
        "from django.test import Client\n"
        "c = Client()\n"
        "live, ready = c.get('/healthz/live'), c.get('/healthz/ready')\n"
        "print(json.dumps({'live': live.status_code, 'ready': ready.status_code, 'body': ready.json()}))\n"
    )
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="portal.settings_test",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{_closed_port()}/portal_unreachable",
        VOXIMPLANT_BASE_URL=f"http://127.0.0.1:{_closed_port()}",
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["live"] == 200
    assert answer["ready"] == 503
    assert answer["body"]["checks"]["database"]["ok"] is False


def test_readiness_reports_fresh_heartbeat_ages_and_ignores_the_provider(client) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from portal.health import record_heartbeat

    now = timezone.now()
    record_heartbeat("beat", at=now - timedelta(seconds=40))
    record_heartbeat("worker", at=now - timedelta(seconds=15))
    with override_settings(VOXIMPLANT_BASE_URL=f"http://127.0.0.1:{_closed_port()}"):
        response = client.get("/healthz/ready")
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["provider"]["ok"] is False
    assert 40 <= body["heartbeats"]["beat"]["age_seconds"] < 100
    assert 15 <= body["heartbeats"]["worker"]["age_seconds"] < 75
    assert all(beat["ok"] for beat in body["heartbeats"].values())


def test_readiness_is_503_when_the_worker_heartbeat_is_stale(client, sandbox) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from portal.health import HEARTBEAT_MAX_AGE_SECONDS, record_heartbeat

    now = timezone.now()
    record_heartbeat("beat", at=now - timedelta(seconds=10))
    record_heartbeat("worker", at=now - timedelta(seconds=HEARTBEAT_MAX_AGE_SECONDS + 60))
    with override_settings(VOXIMPLANT_BASE_URL=sandbox.base_url):
        response = client.get("/healthz/ready")
        # /healthz itself answers as before: database, broker and provider only.
        assert client.get("/healthz").status_code == 200
    body = response.json()
    assert response.status_code == 503, body
    assert body["heartbeats"]["worker"]["ok"] is False
    assert body["heartbeats"]["worker"]["age_seconds"] >= HEARTBEAT_MAX_AGE_SECONDS + 60
    assert body["heartbeats"]["beat"]["ok"] is True
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_running_the_heartbeat_task_makes_the_worker_heartbeat_fresh(client, celery_worker) -> None:
    import time
    from datetime import timedelta

    from django.utils import timezone

    from portal.health import record_heartbeat
    from portal.tasks import heartbeat

    record_heartbeat("worker", at=timezone.now() - timedelta(hours=1))
    assert client.get("/healthz/ready").json()["heartbeats"]["worker"]["ok"] is False
    heartbeat.delay()
    deadline = time.monotonic() + 60
    worker = None
    while time.monotonic() < deadline:
        worker = client.get("/healthz/ready").json()["heartbeats"]["worker"]
        if worker["age_seconds"] is not None and worker["age_seconds"] < 60:
            break
        time.sleep(0.2)
    assert worker is not None and worker["ok"] is True, (worker, celery_worker.log())
    assert worker["age_seconds"] < 60
    assert "portal.heartbeat" in celery_worker.log()


def _run_beat(client: Any, tmp_path: Any, *, every_seconds: int, make_stale_first: bool) -> dict[str, Any]:
    """Start a real beat (HEARTBEAT_SECONDS=``every_seconds``), and wait until /healthz/ready
    reports its heartbeat fresh. With ``make_stale_first``, once it is fresh the heartbeat is
    set an hour back, so only a heartbeat the beat schedules afterwards can make it fresh."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from datetime import timedelta

    from django.utils import timezone

    from portal.health import record_heartbeat
    from tests.conftest import database_url_for_subprocess, purge_broker

    record_heartbeat("beat", at=timezone.now() - timedelta(hours=1))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="portal.settings_test",
        DATABASE_URL=database_url_for_subprocess(),
        HEARTBEAT_SECONDS=str(every_seconds),
    )
    log_path = tmp_path / "beat.log"
    with open(log_path, "w") as log:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO"]
            + ["--schedule", str(tmp_path / "schedule")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_fresh() -> dict[str, Any]:
        deadline = time.monotonic() + 60
        state: dict[str, Any] = {}
        while time.monotonic() < deadline and beat.poll() is None:
            state = client.get("/healthz/ready").json()["heartbeats"]["beat"]
            if state["age_seconds"] is not None and state["age_seconds"] < 30:
                return state
            time.sleep(0.3)
        raise AssertionError((state, log_path.read_text()))

    try:
        state = wait_fresh()
        if make_stale_first:
            record_heartbeat("beat", at=timezone.now() - timedelta(hours=1))
            state = wait_fresh()
        return state
    finally:
        if beat.poll() is None:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(timeout=10)
        purge_broker()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_beat_scheduling_the_heartbeat_makes_the_beat_heartbeat_fresh(client, tmp_path) -> None:
    """The beat records its heartbeat each time it schedules the task, whether or not a worker
    runs it: set back an hour, it is fresh again one interval later."""
    assert _run_beat(client, tmp_path, every_seconds=2, make_stale_first=True)["ok"] is True


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_beat_that_just_started_is_reported_alive_before_its_first_heartbeat(client, tmp_path) -> None:
    """The first scheduled heartbeat comes one interval after start (an hour here): the beat
    records itself at start-up, so a fresh stack is not "never recorded" for that interval."""
    assert _run_beat(client, tmp_path, every_seconds=3600, make_stale_first=False)["ok"] is True
