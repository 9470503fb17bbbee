"""Thin Celery wrappers: ids in, a service call, nothing else (see customers.services).

The body imports the service when it runs: the services queue this task, so they import this
module, and this module stays free of theirs at import time."""

from celery import shared_task


@shared_task(name="customers.invite_deliver", ignore_result=True)
def invite_deliver(membership_id: int, attempt: int = 1) -> bool:
    """Background retry ``attempt`` of an invitation that was not delivered (viewer or owner)."""
    from customers.services import invitation_retry

    return invitation_retry(membership_id=membership_id, attempt=attempt)
