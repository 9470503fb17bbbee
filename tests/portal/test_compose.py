"""No Docker engine runs here: check the compose file's shape and that every command exists."""

import importlib
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_service_is_wired_and_runs_a_command_the_project_has() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"db", "redis", "web", "worker", "beat", "sandbox"} <= set(services)
    for name in ("db", "redis", "web", "worker", "sandbox"):
        assert "healthcheck" in services[name], name
    for name in ("web", "worker", "beat", "migrate", "sandbox"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["CELERY_BROKER_URL"].startswith("redis://")
        command = " ".join(services[name]["command"])
        if "manage.py" in command:
            assert (ROOT / "manage.py").exists()
        if "python -m sandbox" in command:
            assert importlib.util.find_spec("sandbox.__main__") is not None
        if command.startswith("gunicorn"):
            assert importlib.util.find_spec("portal.wsgi") is not None
            assert importlib.util.find_spec("gunicorn") is not None
        if command.startswith("celery"):
            assert "-A portal" in command
            assert importlib.util.find_spec("portal.celery") is not None
    requirements = (ROOT / "requirements.txt").read_text()
    for package in ("gunicorn", "whitenoise", "psycopg", "redis", "celery"):
        assert package in requirements
    assert (ROOT / "Dockerfile").exists()
    assert shutil.which("sh") is not None
