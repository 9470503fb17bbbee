"""`make run`: the web server, a Celery worker, Celery beat and the sandbox in one foreground.

One Ctrl-C (or SIGTERM) stops them all; if any of them dies, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings


def _commands(python: str, var_dir: Path, port: str, sandbox_port: str) -> dict[str, list[str]]:
    return {
        "sandbox": [
            python,
            "-m",
            "sandbox",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            sandbox_port,
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
            "--schedule",
            str(var_dir / "celerybeat-schedule"),
        ],
    }


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    var_dir = Path(settings.VAR_DIR)
    port = os.environ.get("PORT", "8000")
    sandbox_port = os.environ.get("SANDBOX_PORT", "8001")
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
        procs[name] = subprocess.Popen(cmd, cwd=base, start_new_session=True)
        print(f"[devstack] started {name} (pid {procs[name].pid})", flush=True)
    print(
        f"[devstack] portal at http://127.0.0.1:{port}/  sandbox at http://127.0.0.1:{sandbox_port}/"
        "  (Ctrl-C stops everything)",
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
