import contextvars
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import celery.apps.worker as celery_worker_program
from celery import Celery, signals

from portal.errortracking import init_error_tracking
from portal.logs import redact, request_id_var

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Celery's own run of Django's system checks at worker start imports every URL conf and view
# (the URL check), some 10 MB a worker keeps and never uses, and ignores what the checks find:
# the worker runs the checks it needs itself (_report_bad_settings, below).
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    task_ignore_result=True,
    timezone="UTC",
    worker_prefetch_multiplier=1,
    # Shorter than the broker's visibility timeout (3600 s), longer than any provider timeout.
    task_soft_time_limit=900,
    task_time_limit=1200,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_connection_retry_on_startup=True,
)
app.autodiscover_tasks()


def ensure_broker_folders() -> None:
    """The filesystem transport needs its folders before the first message."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        folder = options.get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


# --- logs -------------------------------------------------------------------------------
#
# Worker and beat log exactly like the web process: Django's LOGGING (JSON lines, secrets
# redacted, the request id) instead of Celery's plain-text handlers, for Celery's own loggers
# (celery.*, kombu.*) as much as for the portal's.


def apply_portal_logging(loglevel: int | str | None = None) -> None:
    """Configure logging from Django's LOGGING setting, warnings included; a more verbose ``loglevel`` (the
    worker's ``--loglevel``) lowers the root level below LOG_LEVEL."""
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    logging.captureWarnings(True)
    if isinstance(loglevel, int) and loglevel:
        root = logging.getLogger()
        root.setLevel(min(root.level, loglevel))


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **kwargs: Any) -> None:
    # Connecting here stops Celery from installing its own handlers (and from redirecting
    # the standard streams), so both are done here: anything a task prints becomes a log line.
    apply_portal_logging(loglevel)
    if app.conf.worker_redirect_stdouts:
        app.log.redirect_stdouts_to_logger(
            logging.getLogger("celery.redirected"), loglevel=app.conf.worker_redirect_stdouts_level
        )


def json_say(msg: str, f: Any = sys.__stderr__) -> None:
    """What Celery's worker says from its signal handlers ("worker: Warm shutdown ..."), as one
    JSON line, redacted. Like Celery's own safe_say it takes no lock and makes one os.write,
    since it runs inside a signal handler, where logging could deadlock."""
    line = json.dumps(
        {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "WARNING",
            "logger": "celery.apps.worker",
            "message": redact(str(msg)).strip(),
        }
    )
    try:
        os.write(f.fileno(), (line + "\n").encode())
    except (AttributeError, OSError, ValueError):
        pass  # a closed stream must never abort a shutdown


@signals.celeryd_init.connect
def _worker_init_logging(instance: Any = None, **kwargs: Any) -> None:
    # Early, so that warnings raised while the worker starts are log lines too.
    apply_portal_logging()
    celery_worker_program.safe_say = json_say
    # And error tracking (when SENTRY_DSN is set) before the pool starts, so every child has it.
    init_error_tracking()
    if instance is not None and not instance.quiet:
        # The start-up banner is printed straight to the terminal; log it instead.
        instance.quiet = True
        instance.portal_log_banner = True


@signals.celeryd_after_setup.connect
def _log_banner(instance: Any = None, **kwargs: Any) -> None:
    if instance is not None and getattr(instance, "portal_log_banner", False):
        logging.getLogger("celery.apps.worker").info("%s", instance.startup_info(artlines=False))


# --- the request id ---------------------------------------------------------------------
#
# A task queued while a request is handled carries the request's id in its message headers,
# and the worker's log lines (and audit rows) of that task carry it too.

REQUEST_ID_HEADER = "request_id"
_request_id_tokens: dict[str, contextvars.Token[str]] = {}


@signals.before_task_publish.connect
def _publish_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@signals.task_prerun.connect
def _enter_request_id(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if task_id is None:
        return
    # A task run in the calling process (eagerly) keeps the caller's id.
    request_id = getattr(getattr(task, "request", None), REQUEST_ID_HEADER, None) or request_id_var.get()
    _request_id_tokens[task_id] = request_id_var.set(str(request_id))


@signals.task_postrun.connect
def _leave_request_id(task_id: str | None = None, **kwargs: Any) -> None:
    token = _request_id_tokens.pop(task_id or "", None)
    if token is None:
        return
    try:
        request_id_var.reset(token)
    except ValueError:  # set in another context (another thread or greenlet)
        request_id_var.set("")


# --- the system checks a worker runs ----------------------------------------------------
#
# Celery's Django fixup runs every system check at start-up and ignores what they find; the
# environment skips that (above) and this runs them instead, without the URL conf's check,
# which would import every view. A serious finding (a bad BILLING_* value, say) is an error
# line in the worker's own log at start, whatever the web's migrate step found with its own
# environment. The worker still starts, as before: the test suite's workers run with a lease
# shorter than the provider timeouts on purpose, which the billing check reports.


@signals.worker_init.connect
def _report_bad_settings(**kwargs: Any) -> None:
    import django
    from django.apps import apps
    from django.core import checks

    if not apps.ready:
        django.setup()
    tags = sorted(set(checks.registry.registry.tags_available()) - {checks.Tags.urls})
    serious = [m for m in checks.run_checks(tags=tags) if m.is_serious() and not m.is_silenced()]
    for message in serious:
        logging.getLogger("portal.celery").error("system check failed: %s", message)


# --- heartbeats at start-up -------------------------------------------------------------
#
# The heartbeat task comes one interval after beat starts; recording both at start-up keeps a
# freshly started stack from reporting "never recorded" on /healthz/ready for that first minute.


@signals.worker_ready.connect
def _worker_started(**kwargs: Any) -> None:
    from portal.health import record_heartbeat  # models are loaded by now, not at import time

    try:
        record_heartbeat("worker")
    except Exception:  # noqa: BLE001 - a database not reachable yet must not stop the worker
        logging.getLogger("portal.health").warning("could not record the worker's start", exc_info=True)


@signals.beat_init.connect
def _beat_started(**kwargs: Any) -> None:
    from portal.health import record_heartbeat  # models are loaded by now, not at import time

    try:
        record_heartbeat("beat")
    except Exception:  # noqa: BLE001 - a database not reachable yet must not stop beat
        logging.getLogger("portal.health").warning("could not record beat's start", exc_info=True)
