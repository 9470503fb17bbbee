from celery import shared_task

from api.idempotency import idempotency_reap as reap


@shared_task(name="portal.idempotency_reap")  # the name beat schedules (portal/settings.py)
def idempotency_reap() -> int:
    """Drops stored API idempotency records past their retention."""
    return reap()
