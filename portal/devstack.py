"""`make run`: the web server, a Celery worker, Celery beat and the sandbox in one foreground.

One Ctrl-C (or SIGTERM) stops them all; if any of them dies, the others are stopped too.
`PORT` (default 8000) moves the portal and `SANDBOX_PORT` (default 8001) the sandbox; the
portal's `SITE_URL` follows `PORT` (see `portal/settings.py`), the demo connections follow
`SANDBOX_PORT` (`manage.py demo_setup` reads `sandbox_url()`), and the web server, worker and
beat get `PROVIDER_BASE_URL` pointed at this sandbox unless it is set already.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from portal.env import Env


def _port(environ: Mapping[str, str] | None, name: str, default: int) -> int:
    number = Env(environ).int(name, default, minimum=1)
    if number > 65535:
        raise ImproperlyConfigured(f"{name}={number} must be at most 65535")
    return number


def ports(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The portal's and the sandbox's ports: `PORT` (8000) and `SANDBOX_PORT` (8001)."""
    return _port(environ, "PORT", 8000), _port(environ, "SANDBOX_PORT", 8001)


def sandbox_url(environ: Mapping[str, str] | None = None) -> str:
    """Where `make run` serves the sandbox, and so the base URL of the demo connections."""
    return f"http://127.0.0.1:{ports(environ)[1]}"


def _commands(python: str, var_dir: Path, port: int, sandbox_port: int) -> dict[str, list[str]]:
    return {
        "sandbox": [
            python,
            "-m",
            "sandbox",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(sandbox_port),
            "--db",
            str(var_dir / "sandbox" / "sandbox.sqlite3"),
            "--admin-token",
            (var_dir / "sandbox" / "sandbox_admin_token").read_text().strip(),
        ],
        "web": [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--pool",
            "prefork",
        ],
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "portal",
            "beat",
            "--loglevel",
            "INFO",
            "--scheduler",
            "portal.schedule:DatabaseScheduler",
            "--schedule",
            str(var_dir / "celerybeat-schedule"),
        ],
    }


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    var_dir = Path(settings.VAR_DIR)
    port, sandbox_port = ports()
    child_env = dict(os.environ)
    # The health check and any connection made from settings reach this sandbox, not a default port.
    child_env.setdefault("PROVIDER_BASE_URL", sandbox_url())
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    base = Path(settings.BASE_DIR)
    for name, cmd in _commands(sys.executable, var_dir, port, sandbox_port).items():
        # Own process groups, so the terminal's Ctrl-C reaches us once and we stop them in order.
        procs[name] = subprocess.Popen(cmd, cwd=base, env=child_env, start_new_session=True)
        print(f"[devstack] started {name} (pid {procs[name].pid})", flush=True)
    print(
        f"[devstack] portal at http://127.0.0.1:{port}/  sandbox at {sandbox_url()}/  (Ctrl-C stops everything)",
        flush=True,
    )
    exit_code = 0
    try:
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"[devstack] {name} exited with {proc.returncode}; stopping the rest", flush=True)
                    exit_code = proc.returncode or 1
                    stopping = True
                    break
            time.sleep(0.3)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        print("[devstack] stopped", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
