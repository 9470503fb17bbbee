"""Production smoke test: the stack docker-compose.yml describes, run on this machine without Docker.

It reads the Dockerfile, docker-compose.yml and the proxy's configuration, so none of them can
drift from what it runs:

1. lays the image out in a temporary folder as the Dockerfile does (WORKDIR, COPY with
   .dockerignore, ENV, and the build's own `manage.py` steps, such as collectstatic, run with
   the Dockerfile's command and environment; installing packages and creating the user are
   left to the virtualenv and this machine);
2. runs the migrate service's command, then starts the sandbox, gunicorn, the Celery worker
   and beat with exactly the commands and environment compose gives them. Only the addresses
   change: PostgreSQL is 127.0.0.1:5432 (user postgres, a database of its own, created and
   dropped here), Redis is 127.0.0.1:6379 (databases 8 and 9), the services listen on free
   local ports, the data volume and the secrets are temporary folders (secrets passed through
   the same *_FILE variables);
3. checks what an operator and a user see: compose's health checks pass, pages and their static
   files answer, a request through the proxy is secure, the login lockout and the audit log use
   the client's address, and a task queued on a Job runs on the worker.

Every check's result is printed; every process started here is stopped on the way out (also on
failure and on Ctrl-C); the exit status is non-zero when a check failed.

    .venv/bin/python scripts/smoke.py [--keep]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
POSTGRES = "postgres://postgres@127.0.0.1:5432"
DATABASE = "portal_smoke"
REDIS_HOST = "127.0.0.1:6379"
REDIS_DATABASES = (8, 9)  # the broker's and the cache's, in the order compose names them
CLIENT_IP = "203.0.113.7"  # the client behind the proxy that gets locked out
OTHER_CLIENT_IP = "198.51.100.23"  # another client behind the same proxy
HEALTH_DEADLINE = 90.0
TASK_DEADLINE = 60.0
PASSTHROUGH = ("LANG", "LC_ALL", "TZ")


def say(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the Dockerfile ---------------------------------------------------------------------


@dataclass
class Image:
    """What the Dockerfile produces: a file tree (under `root`), its ENV, WORKDIR and USER."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = "root"
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def path(self, image_path: str) -> Path:
        absolute = image_path if image_path.startswith("/") else f"{self.workdir.rstrip('/')}/{image_path}"
        return self.root / absolute.lstrip("/")

    @property
    def app(self) -> Path:
        return self.path(self.workdir)


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, arguments = logical.partition(" ")
        yield keyword.upper(), arguments.strip()
        logical = ""


def dockerignore_patterns(context: Path) -> list[tuple[bool, str]]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a folder excludes all in it."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            hit = any(
                fnmatch.fnmatchcase("/".join(parts[i : j + 1]), tail)
                for i in range(len(parts))
                for j in range(i, len(parts))
            )
        else:
            hit = any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates)
        if hit:
            result = not negated
    return result


def copy_into_image(context: Path, source: str, destination: Path, patterns: list[tuple[bool, str]]) -> None:
    src = (context / source).resolve()
    if src.is_file():
        target = destination / src.name if destination.is_dir() or str(destination).endswith("/") else destination
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        return

    def skip(folder: str, names: list[str]) -> list[str]:
        base = Path(folder).resolve().relative_to(context)
        return [name for name in names if ignored((base / name).as_posix().removeprefix("./"), patterns)]

    shutil.copytree(src, destination, symlinks=True, ignore=skip, dirs_exist_ok=True)


def build_image(context: Path, root: Path, tool_env: dict[str, str]) -> Image:
    image = Image(root=root)
    patterns = dockerignore_patterns(context)
    for keyword, arguments in dockerfile_instructions((context / "Dockerfile").read_text()):
        if keyword == "ENV":
            pairs = re.findall(r"(\w+)=(\S+)", arguments)
            if not pairs:  # the legacy `ENV NAME value` form
                name, _, value = arguments.partition(" ")
                pairs = [(name, value.strip())]
            image.env.update(pairs)
        elif keyword == "WORKDIR":
            image.workdir = arguments if arguments.startswith("/") else f"{image.workdir.rstrip('/')}/{arguments}"
            image.app.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            words = [word for word in shlex.split(arguments) if not word.startswith("--")]
            *sources, destination = words
            for source in sources:
                copy_into_image(context, source, image.path(destination), patterns)
        elif keyword == "USER":
            image.user = arguments.split(":")[0]
        elif keyword == "RUN":
            if "manage.py" not in arguments:  # packages and the OS user: the virtualenv stands in
                image.skipped.append(arguments)
                continue
            result = subprocess.run(
                ["sh", "-c", arguments],
                cwd=image.app,
                env={**tool_env, **image.env},
                capture_output=True,
                text=True,
                timeout=300,
            )
            if result.returncode != 0:
                raise RuntimeError(f"the Dockerfile's `RUN {arguments}` failed:\n{result.stdout}{result.stderr}")
            image.built.append(arguments)
    return image


# --- docker-compose.yml -----------------------------------------------------------------


@dataclass
class Local:
    """How compose's addresses and paths map onto this machine."""

    var: Path
    secrets: Path
    ports: dict[tuple[str, int], int]  # (compose host, compose port) -> local port

    def value(self, text: str) -> str:
        if text.startswith(("postgres://", "postgresql://")):
            return f"{POSTGRES}/{DATABASE}"
        if text.startswith("redis://"):
            return text  # mapped by the caller, which knows which database is which
        text = text.replace("/run/secrets/", f"{self.secrets}/")
        text = re.sub(r"/var/portal(?=/|$|\s|')", str(self.var), text)
        for (host, port), local in self.ports.items():
            text = text.replace(f"{host}:{port}", f"127.0.0.1:{local}")
        return text

    def command(self, words: list[str]) -> list[str]:
        out = [self.value(word) for word in words]
        for i, word in enumerate(out):
            for (_, port), local in self.ports.items():
                # `--port 8001` on its own or inside a `sh -c` line.
                if i and out[i - 1] == "--port" and word == str(port):
                    out[i] = str(local)
                out[i] = re.sub(rf"--port {port}\b", f"--port {local}", out[i])
            out[i] = out[i].replace("0.0.0.0", "127.0.0.1")  # noqa: S104 - bind on loopback only
        return out


def compose_ports(services: dict[str, Any]) -> dict[tuple[str, int], int]:
    """Every port a portal service listens on, under each name it is reached by."""
    ports: dict[tuple[str, int], int] = {}
    for name, service in services.items():
        command = " ".join(service.get("command") or [])
        listens = re.findall(r"--bind \S*:(\d+)", command) + re.findall(r"--port (\d+)", command)
        for port in sorted({int(number) for number in listens}):
            local = free_port()
            for host in (name, "0.0.0.0", "127.0.0.1"):  # noqa: S104 - compose's own spelling
                ports.setdefault((host, port), local)
    return ports


def runtime_env(compose_env: dict[str, Any], image: Image, local: Local) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSTHROUGH if name in os.environ}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["HOME"] = str(local.var.parent / "home")
    env.update(image.env)
    redis_databases = iter(REDIS_DATABASES)
    seen: dict[str, str] = {}
    for name, raw in compose_env.items():
        value = str(raw)
        if value.startswith("redis://"):
            parts = urlsplit(value)
            if parts.path not in seen:
                seen[parts.path] = f"/{next(redis_databases)}"
            value = urlunsplit(parts._replace(netloc=REDIS_HOST, path=seen[parts.path]))
        env[name] = local.value(value)
    return env


def smoke_secret(name: str) -> str:
    if name == "secret_key":
        return secrets.token_urlsafe(64)
    if name == "field_encryption_keys":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    if name == "database_url":
        return f"{POSTGRES}/{DATABASE}"  # this machine's PostgreSQL, in place of the db service
    if name == "db_password":
        return secrets.token_urlsafe(18)  # read by the db service only, which runs here as it is
    raise RuntimeError(f"compose declares the secret {name!r}; scripts/smoke.py has no test value for it")


# --- processes and checks -----------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Smoke:
    root: Path
    tmp: Path
    processes: list[Process] = field(default_factory=list)
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, run: Callable[[], str]) -> bool:
        try:
            detail = run()
            ok = True
        except Exception as exc:  # noqa: BLE001 - every failure is a failed check, reported with its reason
            detail = f"{type(exc).__name__}: {exc}"
            ok = False
        self.results.append((name, ok, detail))
        say(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}")
        return ok

    def start(self, name: str, command: list[str], cwd: Path, env: dict[str, str]) -> Process:
        log = self.tmp / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            popen = subprocess.Popen(  # noqa: S603 - compose's own command line
                command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes:
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group too: gunicorn's and Celery's children, whatever their parent did.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=5)


def wait_for(what: str, probe: Callable[[], bool], deadline: float) -> None:
    end = time.monotonic() + deadline
    while True:
        if probe():
            return
        if time.monotonic() > end:
            raise TimeoutError(f"{what} did not happen within {deadline:.0f} s")
        time.sleep(0.5)


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if test[0] != "CMD":
        raise ValueError(f"health check {test!r} is not an exec form")
    return list(test[1:])


def reset_services() -> None:
    """An empty database of our own and empty Redis databases."""
    import psycopg
    import redis

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    for number in REDIS_DATABASES:
        redis.Redis.from_url(f"redis://{REDIS_HOST}/{number}").flushdb()


def drop_services() -> None:
    import psycopg
    import redis

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    for number in REDIS_DATABASES:
        redis.Redis.from_url(f"redis://{REDIS_HOST}/{number}").flushdb()


# --- HTTP through the proxy ----------------------------------------------------------------


class Portal:
    """Requests to gunicorn as the proxy forwards them (or, with `client=None`, bare)."""

    def __init__(self, base_url: str, host: str) -> None:
        self.base_url = base_url
        self.host = host

    def headers(self, client: str | None, cookies: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Host": self.host}
        if client is not None:
            headers.update({"X-Forwarded-For": client, "X-Forwarded-Proto": "https"})
        if cookies:
            # Sent by hand: the cookies are Secure, and this leg is plain HTTP behind the proxy.
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return headers

    def get(self, path: str, client: str | None, cookies: dict[str, str] | None = None) -> httpx.Response:
        return httpx.get(self.base_url + path, headers=self.headers(client, cookies), timeout=30)

    def log_in(self, username: str, password: str, client: str) -> tuple[httpx.Response, dict[str, str]]:
        page = self.get("/accounts/login/", client)
        if page.status_code != 200:
            raise AssertionError(f"the login page answered {page.status_code}")
        cookies = set_cookies(page)
        if "csrftoken" not in cookies:
            raise AssertionError("the login page set no CSRF cookie")
        cookies = {"csrftoken": cookies["csrftoken"]}
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if not token:
            raise AssertionError("the login page has no CSRF token")
        headers = self.headers(client, cookies)
        headers.update({"Origin": f"https://{self.host}", "Referer": f"https://{self.host}/accounts/login/"})
        response = httpx.post(
            self.base_url + "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
            headers=headers,
            timeout=30,
        )
        return response, {**cookies, **set_cookies(response)}

    def give_code(self, code: str, client: str, cookies: dict[str, str]) -> tuple[httpx.Response, dict[str, str]]:
        """The second step of a staff sign-in: the authenticator code on the verify page."""
        path = "/accounts/two-factor/verify/"
        page = self.get(path, client, cookies)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if page.status_code != 200 or not token:
            raise AssertionError(f"the code page answered {page.status_code} without a form")
        cookies = {**cookies, **set_cookies(page)}
        headers = self.headers(client, cookies)
        headers.update({"Origin": f"https://{self.host}", "Referer": f"https://{self.host}{path}"})
        response = httpx.post(
            self.base_url + path,
            data={"code": code, "csrfmiddlewaretoken": token.group(1)},
            headers=headers,
            timeout=30,
        )
        return response, {**cookies, **set_cookies(response)}


def set_cookies(response: httpx.Response) -> dict[str, str]:
    pairs = (header.split(";", 1)[0].partition("=") for header in response.headers.get_list("set-cookie"))
    return {name.strip(): value.strip() for name, _, value in pairs}


def static_links(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/static/[^"]+\.(?:css|js))"', html)


def fetch_static(portal: Portal, html: str, kind: str) -> str:
    links = [link for link in static_links(html) if link.endswith(f".{kind}")]
    if not links:
        raise AssertionError(f"the page links no .{kind} file")
    answers = []
    for link in links:
        if not re.search(rf"\.[0-9a-f]{{12}}\.{kind}$", link):
            raise AssertionError(f"{link} is not a hashed (manifest) name")
        response = portal.get(link, CLIENT_IP)
        if response.status_code != 200 or not response.content:
            raise AssertionError(f"{link} answered {response.status_code}")
        answers.append(f"{link} 200 ({response.headers.get('content-type')}, {len(response.content)} bytes)")
    return "; ".join(answers)


# --- the run ------------------------------------------------------------------------------


def proxy_upstream(root: Path, services: dict[str, Any]) -> tuple[str, list[str]]:
    """The proxy's configuration file, as compose mounts it: its upstream and the headers it sets."""
    proxy = services["proxy"]
    mounts = [volume.split(":") for volume in proxy["volumes"] if volume.startswith("./")]
    config = (root / mounts[0][0]).read_text()
    upstream = re.search(r"reverse_proxy\s+(\S+)", config)
    headers = re.findall(r"header_up\s+(\S+)", config)
    if not upstream:
        raise AssertionError(f"{mounts[0][0]} has no reverse_proxy upstream")
    return upstream.group(1), headers


def run(smoke: Smoke) -> None:  # noqa: C901 - one straight line of checks, in order
    root = smoke.root
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    portal_services = {name: s for name, s in services.items() if s.get("build")}
    one_shot = [name for name, s in portal_services.items() if s.get("restart") == "no"]
    long_running = [name for name in portal_services if name not in one_shot]

    tool_env = {name: os.environ[name] for name in PASSTHROUGH if name in os.environ}
    tool_env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    image_holder: list[Image] = []

    def lay_out() -> str:
        image = build_image(root, smoke.tmp / "image", tool_env)
        image_holder.append(image)
        # The build may make its own var folder (the embedded broker's folders); nothing of the
        # checkout's own may come in.
        leaked = [
            name for name in (".git", ".venv", "var/secrets", "var/portal.sqlite3") if (image.app / name).exists()
        ]
        if leaked:
            raise AssertionError(f"the image holds {', '.join(leaked)} (.dockerignore lets them in)")
        return f"ran {len(image.built)} build step(s) in {image.app}; left to the virtualenv: {len(image.skipped)}"

    if not smoke.check("image: laid out as the Dockerfile does", lay_out):
        return
    image = image_holder[0]
    smoke.check(
        "image: the processes run as a non-root user",
        lambda: f"USER {image.user}" if image.user not in ("root", "0") else _fail(f"USER is {image.user}"),
    )

    local = Local(var=smoke.tmp / "volume", secrets=smoke.tmp / "secrets", ports=compose_ports(services))
    # The volume starts as a copy of the image's folder at its mount point (empty, owned by the user).
    mount = image.path(next(v.split(":")[1] for v in portal_services["web"]["volumes"]))
    if mount.exists():
        shutil.copytree(mount, local.var)
    else:
        local.var.mkdir()
    local.secrets.mkdir(mode=0o700)
    (smoke.tmp / "home").mkdir()
    for name in compose.get("secrets", {}):
        (local.secrets / name).write_text(smoke_secret(name) + "\n")
    envs = {name: runtime_env(s.get("environment") or {}, image, local) for name, s in portal_services.items()}
    web_env = envs["web"]

    def proxy_config() -> str:
        upstream, headers = proxy_upstream(root, services)
        host, _, port = upstream.rpartition(":")
        bind = next(w for w in services["web"]["command"] if re.fullmatch(r"\S+:\d+", w) and "wsgi" not in w)
        if host != "web" or port != bind.rsplit(":", 1)[1]:
            raise AssertionError(f"the proxy forwards to {upstream}, gunicorn listens on {bind}")
        missing = {"X-Forwarded-For", "X-Forwarded-Proto"} - set(headers)
        if missing:
            raise AssertionError(f"the proxy does not set {', '.join(sorted(missing))}")
        if web_env.get("PROXY_COUNT") != "1":
            raise AssertionError(f"web has PROXY_COUNT={web_env.get('PROXY_COUNT')!r} behind one proxy")
        return f"forwards to {upstream} with {', '.join(headers)}; web has PROXY_COUNT=1"

    smoke.check("proxy: forwards to gunicorn with the client's address and scheme", proxy_config)

    reset_services()
    for name in one_shot:

        def migrate(name: str = name) -> str:
            command = local.command(portal_services[name]["command"])
            result = subprocess.run(  # noqa: S603 - compose's own command line
                command, cwd=image.app, env=envs[name], capture_output=True, text=True, timeout=600
            )
            if result.returncode != 0:
                raise AssertionError(f"`{shlex.join(command)}` exited {result.returncode}:\n{result.stderr[-3000:]}")
            return f"`{shlex.join(portal_services[name]['command'])}` exited 0"

        if not smoke.check(f"{name}: the one-shot service completes", migrate):
            return

    started = {
        name: smoke.start(name, local.command(portal_services[name]["command"]), image.app, envs[name])
        for name in long_running
    }

    for name in long_running:
        if "healthcheck" not in portal_services[name]:
            continue

        def healthy(name: str = name) -> str:
            command = local.command(healthcheck_command(portal_services[name]))

            def probe() -> bool:
                if started[name].popen.poll() is not None:
                    raise AssertionError(f"{name} exited {started[name].popen.returncode}:\n{started[name].tail()}")
                result = subprocess.run(  # noqa: S603 - compose's own health check
                    command, cwd=image.app, env=envs[name], capture_output=True, timeout=30
                )
                return result.returncode == 0

            try:
                wait_for(f"{name}'s health check", probe, HEALTH_DEADLINE)
            except TimeoutError as exc:
                last = subprocess.run(
                    command, cwd=image.app, env=envs[name], capture_output=True, text=True, timeout=30
                )  # noqa: S603
                raise AssertionError(f"{exc}; last answer: {last.stderr.strip().splitlines()[-1:]}") from None
            return f"`{' '.join(healthcheck_command(portal_services[name]))}` passes"

        smoke.check(f"{name}: compose's health check", healthy)

    web_url = next(w for w in local.command(healthcheck_command(services["web"])) if "urlopen" in w)
    health_url = re.search(r"'(http[^']+)'", web_url)
    assert health_url, web_url
    base_url = urlunsplit(urlsplit(health_url.group(1))._replace(path="", query=""))
    portal = Portal(base_url, web_env["ALLOWED_HOSTS"].split(",")[0])

    def health() -> str:
        response = httpx.get(health_url.group(1), timeout=30)  # exactly the health check's request
        if response.status_code != 200:
            raise AssertionError(
                f"{urlsplit(health_url.group(1)).path} answered {response.status_code}: {response.text[:300]}"
            )
        return f"{urlsplit(health_url.group(1)).path} answered 200: {response.json().get('checks')}"

    smoke.check("web: the health check's own request answers 200", health)

    login_page: list[str] = []

    def login_renders() -> str:
        response = portal.get("/accounts/login/", CLIENT_IP)
        if response.status_code != 200:
            raise AssertionError(f"answered {response.status_code}: {response.text[:300]}")
        login_page.append(response.text)
        return "200, no redirect: the proxy's X-Forwarded-Proto: https makes the request secure"

    smoke.check("web: the login page through the proxy answers 200", login_renders)
    smoke.check(
        "web: the login page's CSS is served (whitenoise, hashed name)",
        lambda: fetch_static(portal, login_page[0], "css") if login_page else _fail("no login page"),
    )

    def plain_http_redirects() -> str:
        response = portal.get("/accounts/login/", None)
        location = response.headers.get("location", "")
        if response.status_code not in (301, 302) or not location.startswith("https://"):
            raise AssertionError(f"plain HTTP answered {response.status_code} {location!r}")
        return f"{response.status_code} to {location}"

    smoke.check("web: a request not marked secure is sent to HTTPS", plain_http_redirects)

    # The database, from here, with the same settings the services run with.
    os.environ.clear()  # nothing of the caller's environment: exactly web's
    os.environ.update(web_env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    sys.path.insert(0, str(image.app))
    import django

    django.setup()
    from django.contrib.auth.models import User

    from portal.jobs import job_create
    from portal.models import AuditEvent, Job
    from portal.roles import assign_role

    password = secrets.token_urlsafe(18)
    user = User.objects.create_user("smoke-admin", "smoke@example.com", password)
    assign_role(user, "reseller_admin")
    # Staff sign in with a second factor: an authenticator whose codes the smoke test computes.
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=user, name="smoke", confirmed=True)
    limit = int(web_env.get("AXES_FAILURE_LIMIT", "5"))
    session: dict[str, str] = {}

    def lockout() -> str:
        answers = [
            portal.log_in("smoke-admin", "not-the-password-at-all", CLIENT_IP)[0].status_code for _ in range(limit)
        ]
        locked, _ = portal.log_in("smoke-admin", password, CLIENT_IP)
        if locked.status_code == 302:
            raise AssertionError(f"after {limit} wrong passwords ({answers}) the right one still logs {CLIENT_IP} in")
        other, cookies = portal.log_in("smoke-admin", password, OTHER_CLIENT_IP)
        if other.status_code != 302:
            raise AssertionError(
                f"{OTHER_CLIENT_IP} is locked out too ({other.status_code}): the lockout does not see the client's address"
            )
        verified, cookies = portal.give_code(str(TOTP(device.bin_key).token()).zfill(6), OTHER_CLIENT_IP, cookies)
        if verified.status_code != 302 or "two-factor" in verified.headers.get("location", ""):
            raise AssertionError(f"the right code answered {verified.status_code} {verified.headers.get('location')!r}")
        session.update(cookies)
        return f"{CLIENT_IP} refused with {locked.status_code} after {limit} wrong passwords; {OTHER_CLIENT_IP} logs in (302)"

    smoke.check(f"login: {limit} wrong passwords lock out that client only", lockout)

    def audited() -> str:
        events = list(AuditEvent.objects.filter(ip=CLIENT_IP).values_list("action", flat=True))
        if not events:
            seen = sorted({str(ip) for ip in AuditEvent.objects.values_list("ip", flat=True)})
            raise AssertionError(f"no audit event records {CLIENT_IP} (addresses recorded: {seen or 'none'})")
        return f"{len(events)} event(s) record {CLIENT_IP}: {sorted(set(events))}"

    smoke.check(f"audit: the log records the client's address {CLIENT_IP}", audited)

    job_holder: list[Any] = []

    def task_runs() -> str:
        from portal.tasks import ping_job

        job = job_create(kind="portal.ping", title="Smoke test ping")
        job_holder.append(job)
        ping_job.delay(job.pk)

        def finished() -> bool:
            job.refresh_from_db()
            return bool(job.is_finished)

        wait_for("the ping job", finished, TASK_DEADLINE)
        if job.state != Job.State.SUCCEEDED:
            raise AssertionError(f"the job ended {job.state}: {job.message}")
        return f"portal.ping_job ran on the worker: job {job.state}, {job.message!r}"

    smoke.check("worker: a task queued on a Job runs", task_runs)

    def job_page_js() -> str:
        if not job_holder or not session:
            raise AssertionError("needs the job and the staff session from the checks above")
        response = portal.get(f"/console/jobs/{job_holder[0].uuid}/", OTHER_CLIENT_IP, session)
        if response.status_code != 200:
            raise AssertionError(f"the job page answered {response.status_code}")
        return fetch_static(portal, response.text, "js")

    smoke.check("web: a job page's JS is served (whitenoise, hashed name)", job_page_js)

    def still_running() -> str:
        dead = [
            f"{p.name} (exit {p.popen.returncode}):\n{p.tail()}" for p in smoke.processes if p.popen.poll() is not None
        ]
        if dead:
            raise AssertionError("; ".join(dead))
        beat = portal_services.get("beat", {}).get("command", [])
        if "--schedule" in beat:
            schedule = Path(local.value(beat[beat.index("--schedule") + 1]))
            if not any(schedule.parent.glob(schedule.name + "*")):
                raise AssertionError(f"beat wrote no schedule at {schedule}")
        return f"{', '.join(p.name for p in smoke.processes)} still running; beat keeps its schedule in the volume"

    smoke.check("processes: every service is still running", still_running)


def _fail(message: str) -> str:
    raise AssertionError(message)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to test (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, image) for a look")
    args = parser.parse_args()

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    tmp = Path(tempfile.mkdtemp(prefix="portal-smoke-"))
    smoke = Smoke(root=args.root.resolve(), tmp=tmp)
    say(f"production smoke test of {smoke.root} (work folder {tmp})")
    status = 0
    try:
        run(smoke)
    except KeyboardInterrupt:
        say("interrupted")
        status = 130
    except Exception as exc:  # noqa: BLE001 - reported as a failed run, then cleaned up
        say(f"[FAIL] the run stopped: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        failed = [p for p in smoke.processes if p.popen.poll() is not None and p.popen.returncode]
        smoke.stop_all()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        try:
            drop_services()
        except Exception as exc:  # noqa: BLE001 - reported, the run has already failed or passed
            say(f"cleanup: could not drop {DATABASE} or flush Redis {REDIS_DATABASES}: {exc}")
            status = status or 1
        if any(not ok for _, ok, _ in smoke.results) and not failed:
            failed = smoke.processes
        for process in failed:
            say(f"--- last lines of {process.name}'s log ---\n{process.tail(15)}")
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    passed = sum(ok for _, ok, _ in smoke.results)
    say(f"\n{passed} of {len(smoke.results)} checks passed")
    if status == 0 and (passed < len(smoke.results) or not smoke.results):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
