"""The production stack in docker-compose.yml, the Dockerfile and .dockerignore, checked without a
Docker engine: every service runs a command the project really has, with the arguments the rest
of the stack expects, a health check that asks the right port and path, and an environment the
settings accept; the proxy forwards to gunicorn; the image runs as a non-root user and leaves the
checkout's private files out. (`make smoke` runs the stack's processes themselves.)"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("sandbox", "migrate", "web", "worker", "beat")
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
VAR_MOUNT = "/var/portal"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def env(services: dict[str, Any]) -> dict[str, str]:
    """The environment every portal process gets (one shared block)."""
    return services["web"]["environment"]


def healthcheck(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return test[1:]


def python_probe_url(service: dict[str, Any]) -> str:
    """The URL a `python -c "urllib.request.urlopen(...)"` health check opens."""
    args = healthcheck(service)
    assert args[:2] == ["python", "-c"], args
    found = re.fullmatch(r"import urllib\.request; urllib\.request\.urlopen\('([^']+)'\)", args[2])
    assert found, args[2]
    return found.group(1)


def sandbox_commands(services: dict[str, Any]) -> tuple[Any, Any]:
    """The sandbox service's `init` and `serve` command lines, parsed by the sandbox's own CLI."""
    from sandbox.cli import build_parser

    command = services["sandbox"]["command"]
    assert command[:2] == ["sh", "-c"], command
    steps = [shlex.split(part) for part in command[2].split("&&")]
    assert [step[:3] for step in steps] == [["python", "-m", "sandbox"]] * 2, steps
    init, serve = (build_parser().parse_args(step[3:]) for step in steps)
    assert (init.command, serve.command) == ("init", "serve")
    return init, serve


def test_the_stack_has_exactly_its_services_and_volumes(compose, services) -> None:
    assert set(services) == {"db", "redis", "sandbox", "migrate", "web", "worker", "beat", "proxy"}
    assert set(compose["volumes"]) == {"pg-data", "portal-var", "caddy-data", "caddy-config"}
    assert services["db"]["volumes"] == ["pg-data:/var/lib/postgresql/data"]
    assert set(compose["secrets"]) == {"secret_key", "field_encryption_keys", "database_url", "db_password"}


def test_every_portal_process_runs_the_one_image_with_the_shared_volume_and_secrets(services) -> None:
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["image"] == "reseller-portal", name
        assert service["volumes"] == [f"portal-var:{VAR_MOUNT}"], name
        assert set(service["secrets"]) == {"secret_key", "field_encryption_keys", "database_url"}, name
        assert service["environment"] == services["web"]["environment"], name


def test_secrets_are_read_from_the_mounted_secret_files(compose, env) -> None:
    assert not {"SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DATABASE_URL"} & set(env)  # never inline
    assert env["SECRET_KEY_FILE"] == "/run/secrets/secret_key"
    assert env["FIELD_ENCRYPTION_KEYS_FILE"] == "/run/secrets/field_encryption_keys"
    assert env["DATABASE_URL_FILE"] == "/run/secrets/database_url"
    postgres = compose["services"]["db"]
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert postgres["secrets"] == ["db_password"]
    for name, secret in compose["secrets"].items():
        assert secret["file"] == f"./var/secrets/{name}"


def test_the_database_and_broker_urls_point_at_the_db_and_redis_services(services, env) -> None:
    from portal.env import parse_database_url

    # The database URL is a secret file; its documented shape sits beside the variable.
    documented = COMPOSE_TEXT.split("DATABASE_URL_FILE:", 1)[1].split("\n", 1)[0].split("#", 1)[1].strip()
    db = parse_database_url(documented.replace("<the db_password>", "secret"))
    postgres = services["db"]["environment"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], int(db["PORT"])) == ("db", 5432)
    assert (db["NAME"], db["USER"]) == (postgres["POSTGRES_DB"], postgres["POSTGRES_USER"])
    assert healthcheck(services["db"]) == ["pg_isready", "-U", postgres["POSTGRES_USER"]]
    broker, cache = urlsplit(env["CELERY_BROKER_URL"]), urlsplit(env["REDIS_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    assert (cache.scheme, cache.hostname, cache.port) == ("redis", "redis", 6379)
    assert broker.path != cache.path  # the cache never shares the broker's database
    assert healthcheck(services["redis"]) == ["redis-cli", "ping"]
    # The broker must keep what it was given: no eviction, written to disk.
    command = services["redis"]["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_every_variable_is_one_the_settings_read(env) -> None:
    source = (ROOT / "portal" / "settings.py").read_text()
    read = set(re.findall(r"""\.(?:str|bool|int|list|decimal|url|database)\(\s*["'](\w+)["']""", source))
    for name in env:
        assert name.removesuffix("_FILE") in read, f"{name} is set but the settings never read it"


def test_the_settings_accept_the_compose_environment_for_a_deployment(env, tmp_path) -> None:
    """`manage.py check --deploy` in a fresh process with exactly this environment (the secret
    files and the data directory moved to a temporary directory) finds nothing to warn about."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "secret_key").write_text("a-real-looking-production-secret-key-with-plenty-of-entropy-8c1f0e2d9b\n")
    (secrets / "field_encryption_keys").write_text("dGVzdC1vbmx5LWZpZWxkLWtleS0wMTIzNDU2Nzg5YWI=\n")
    (secrets / "database_url").write_text("postgres://portal:secret@db:5432/portal\n")

    def local(value: str) -> str:
        value = value.replace("/run/secrets", str(secrets))
        return value.replace(VAR_MOUNT, str(tmp_path / "var"))

    process_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    process_env.update({name: local(str(value)) for name, value in env.items()})
    process_env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_run_once_before_the_web_worker_and_beat_start(services) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["restart"] == "no"
    assert (ROOT / "manage.py").exists()
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
    # Migrations wait for a healthy database and broker, so everything after them does too.
    assert migrate["depends_on"]["db"] == {"condition": "service_healthy"}
    assert migrate["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_the_sandbox_writes_its_credentials_where_the_portal_reads_them(services, env) -> None:
    init, serve = sandbox_commands(services)
    assert init.db == serve.db and init.db.startswith(VAR_MOUNT + "/")  # kept in the shared volume
    assert init.out == env["PROVIDER_CREDENTIALS_DIR"]
    provider = urlsplit(env["PROVIDER_BASE_URL"])
    assert (provider.hostname, provider.port) == ("sandbox", serve.port)
    assert serve.host == "0.0.0.0"  # noqa: S104 - reachable from the other containers
    assert services["sandbox"]["depends_on"] == []


def test_the_sandbox_health_check_asks_a_path_the_sandbox_answers(services, sandbox) -> None:
    import httpx

    _, serve = sandbox_commands(services)
    probe = urlsplit(python_probe_url(services["sandbox"]))
    assert (probe.hostname, probe.port) == ("127.0.0.1", serve.port)
    response = httpx.get(f"{sandbox.base_url}{probe.path}", timeout=10)
    assert response.status_code == 200 and response.json()["initialized"] is True


def test_the_web_service_serves_the_wsgi_app_on_the_port_its_health_check_asks(services) -> None:
    from django.urls import resolve

    from portal.views import healthz

    web = services["web"]
    command = web["command"]
    assert command[0] == "gunicorn"
    module, _, attribute = command[1].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    bind = command[command.index("--bind") + 1]
    port = int(bind.rsplit(":", 1)[1])
    assert bind.startswith("0.0.0.0:")
    # Reachable by the proxy only: published, it would let anyone forge X-Forwarded-For.
    assert web["expose"] == [str(port)]
    assert "ports" not in web
    probe = urlsplit(python_probe_url(web))
    assert (probe.hostname, probe.port) == ("127.0.0.1", port)
    assert resolve(probe.path).func is healthz
    assert web["depends_on"]["sandbox"] == {"condition": "service_healthy"}
    assert importlib.util.find_spec("gunicorn") is not None


def test_the_worker_and_beat_run_the_projects_celery_app(services) -> None:
    from celery import Celery

    app = importlib.import_module("portal.celery").app
    assert isinstance(app, Celery)
    worker, beat = services["worker"]["command"], services["beat"]["command"]
    assert worker[:4] == ["celery", "-A", "portal", "worker"]
    # "-q" keeps beat's start-up banner (plain text) out of the JSON log stream.
    assert beat[:5] == ["celery", "-A", "portal", "-q", "beat"]
    assert healthcheck(services["worker"])[:5] == ["celery", "-A", "portal", "inspect", "ping"]
    # Beat's schedule file must survive a restart: it lives in the shared volume.
    assert beat[beat.index("--schedule") + 1].startswith(VAR_MOUNT + "/")


def test_the_static_files_collected_in_the_image_are_where_the_running_app_reads_them(env) -> None:
    """Whitenoise serves from STATIC_ROOT with a manifest; a STATIC_ROOT without the collected
    files makes every page that links a static file fail. Compare STATIC_ROOT as the image's
    build step computes it with STATIC_ROOT under the compose environment."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    build = next(line for line in dockerfile.splitlines() if "collectstatic" in line)
    build_env = dict(re.findall(r"(\w+)=(\S+)", build.removeprefix("RUN ").split("python", 1)[0]))
    build_env.update(dict(re.findall(r"^ENV (\w+)[= ](\S+)", dockerfile, re.MULTILINE)))
    workdir = re.findall(r"^WORKDIR (\S+)", dockerfile, re.MULTILINE)[-1]

    def static_root(extra: dict[str, str]) -> str:
        process_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        process_env.update(extra, DJANGO_SETTINGS_MODULE="portal.settings", SECRET_KEY="x" * 60)
        process_env.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZpZWxkLWtleS0wMTIzNDU2Nzg5YWI=")
        for secret in ("SECRET_KEY_FILE", "FIELD_ENCRYPTION_KEYS_FILE", "DATABASE_URL_FILE"):
            process_env.pop(secret, None)  # the secret files exist only inside the stack
        code = "import django; django.setup(); from django.conf import settings; print(settings.STATIC_ROOT)"
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=process_env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        # Paths under the checkout stand for the same paths under the image's WORKDIR.
        return result.stdout.strip().replace(str(ROOT), workdir)

    at_build = static_root(build_env)
    at_run = static_root({k: str(v) for k, v in env.items()})
    assert at_run == at_build
    assert not at_run.startswith(VAR_MOUNT + "/"), "a volume mounted over the image hides its static files"


def test_migrations_are_a_one_shot_service_and_the_rest_restart(services) -> None:
    assert services["migrate"]["restart"] == "no"
    assert "healthcheck" not in services["migrate"] and "ports" not in services["migrate"]
    for name in ("db", "redis", "sandbox", "web", "worker", "beat", "proxy"):
        assert services[name]["restart"] == "unless-stopped", name


def proxy_config(services: dict[str, Any]) -> tuple[str, str]:
    """The proxy service's configuration file (mounted from the checkout) and where it goes."""
    mounts = [volume.split(":") for volume in services["proxy"]["volumes"] if volume.startswith("./")]
    assert len(mounts) == 1, services["proxy"]["volumes"]
    source, target, *mode = mounts[0]
    assert mode == ["ro"]
    return (ROOT / source).read_text(), target


def test_the_proxy_forwards_to_gunicorn_with_the_clients_address_and_scheme(services, env) -> None:
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert proxy["ports"] == ["80:80", "443:443"]
    assert proxy["depends_on"]["web"] == {"condition": "service_healthy"}
    config, target = proxy_config(services)
    assert target == "/etc/caddy/Caddyfile"  # where the caddy image reads its configuration
    bind = services["web"]["command"][services["web"]["command"].index("--bind") + 1]
    upstreams = re.findall(r"^\s*reverse_proxy\s+(\S+)", config, re.MULTILINE)
    assert upstreams == [f"web:{bind.rsplit(':', 1)[1]}"]
    # Set, not appended: the one address in X-Forwarded-For is the one the proxy saw.
    header_up = dict(re.findall(r"^\s*header_up\s+(\S+)\s+(\S+)\s*$", config, re.MULTILINE))
    assert header_up == {"X-Forwarded-For": "{remote_host}", "X-Forwarded-Proto": "{scheme}"}
    assert env["PROXY_COUNT"] == "1"  # exactly this one proxy in front
    site = re.search(r"^\{\$SITE_ADDRESS:([^}]+)\}\s*\{", config, re.MULTILINE)
    assert site and proxy["environment"]["SITE_ADDRESS"] in env["ALLOWED_HOSTS"].split(",")
    assert f"https://{proxy['environment']['SITE_ADDRESS']}" in env["CSRF_TRUSTED_ORIGINS"].split(",")
    assert env["SITE_URL"] == f"https://{proxy['environment']['SITE_ADDRESS']}"


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def test_the_image_runs_as_a_non_root_user_who_owns_the_data_volume() -> None:
    instructions = dockerfile_instructions()
    users = [(i, rest) for i, (keyword, rest) in enumerate(instructions) if keyword == "USER"]
    assert users, "the image runs as root"
    last, user = users[-1]
    assert user.split(":")[0] not in ("root", "0")
    # Every build step before the switch; the processes after it.
    assert all(keyword != "RUN" for keyword, _ in instructions[last:])
    setup = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert re.search(rf"useradd\b[^&]*\s{re.escape(user)}(\s|$)", setup), setup
    # A new named volume takes the owner of its mount point in the image.
    assert re.search(rf"chown {re.escape(user)}(:\S+)? {re.escape(VAR_MOUNT)}(\s|$)", setup), setup


def test_the_image_leaves_out_the_checkouts_private_and_local_files() -> None:
    """.dockerignore, read by the same matcher `make smoke` lays the image out with."""
    spec = importlib.util.spec_from_file_location("smoke_script", ROOT / "scripts" / "smoke.py")
    assert spec and spec.loader
    smoke = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = smoke  # its dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(smoke)
    finally:
        del sys.modules[spec.name]
    patterns = smoke.dockerignore_patterns(ROOT)
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "var/secrets/secret_key",
        "var/portal.sqlite3",
        "node_modules/x/index.js",
        "portal/__pycache__/settings.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        ".pytest_cache/v/x",
        "staticfiles/css/portal.css",
    ):
        assert smoke.ignored(path, patterns), f"{path} would go into the image"
    for path in ("manage.py", "requirements.txt", "portal/settings.py", "static/css/portal.css", "templates/base.html"):
        assert (ROOT / path).exists() and not smoke.ignored(path, patterns), f"{path} would be missing from the image"
