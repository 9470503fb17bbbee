import logging
from typing import Any

from celery import shared_task
from celery.signals import beat_init, before_task_publish

from portal.health import record_heartbeat
from portal.jobs import job_finish, job_start

logger = logging.getLogger(__name__)

HEARTBEAT_TASK = "portal.heartbeat"
_in_beat = False


@shared_task(name="portal.ping_job")
def ping_job(job_id: int) -> None:
    """Marks a job done. Used by health checks of the worker and by the worker tests."""
    job_start(job_id=job_id)
    job_finish(job_id=job_id, ok=True, message="pong")


@shared_task(name=HEARTBEAT_TASK)
def heartbeat() -> None:
    """Scheduled every minute by the beat: "a worker ran it" is the time it runs."""
    record_heartbeat("worker")


@beat_init.connect
def _mark_beat_process(sender: Any = None, **kwargs: Any) -> None:
    global _in_beat
    _in_beat = True


@before_task_publish.connect
def _record_beat_heartbeat(sender: str | None = None, **kwargs: Any) -> None:
    """In the beat process, "beat is alive" is the time it schedules the heartbeat task,
    whether or not any worker is there to run it."""
    if not _in_beat or sender != HEARTBEAT_TASK:
        return
    try:
        record_heartbeat("beat")
    except Exception:  # the beat goes on scheduling; readiness reports the stale heartbeat
        logger.warning("could not record the beat heartbeat", exc_info=True)
