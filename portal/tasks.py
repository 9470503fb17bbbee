from celery import shared_task

from portal.jobs import job_finish, job_start


@shared_task(name="portal.ping_job")
def ping_job(job_id: int) -> None:
    """Marks a job done. Used by health checks of the worker and by the worker tests."""
    job_start(job_id=job_id)
    job_finish(job_id=job_id, ok=True, message="pong")
