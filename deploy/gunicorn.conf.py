"""gunicorn's configuration for the web service (the command line gives the bind and workers).

With PROMETHEUS_MULTIPROC_DIR set, every worker writes its request metrics to files in that
folder and /metrics adds them up (see portal/metrics.py). The folder is emptied when gunicorn
starts, so a restart does not add the previous run's counts to the new one, and a worker that
exits is marked dead, so its live-only gauges leave the next scrape.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def _multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def on_starting(server: Any) -> None:
    path = _multiprocess_dir()
    if not path:
        return
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if not _multiprocess_dir():
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
