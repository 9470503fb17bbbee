"""Thin Celery wrappers of the reselling services: ids in, a service call, nothing else.

Bodies import their service when they run, so the services can queue these tasks."""

from celery import shared_task


@shared_task(name="reselling.invoice_run_monthly", ignore_result=True)
def invoice_run_monthly() -> int:
    """Beat, on the 1st: the invoices of the month that just ended."""
    from django.utils import timezone

    from reselling.invoices import invoice_run_start, previous_month

    return invoice_run_start(actor=None, period=previous_month(timezone.localdate())).pk


@shared_task(name="reselling.invoice_run_execute", ignore_result=True)
def invoice_run_execute(run_id: int) -> None:
    from reselling.invoices import invoice_run_execute as execute

    execute(run_id=run_id)


@shared_task(name="reselling.invoice_sweep", ignore_result=True)
def invoice_sweep() -> None:
    """Beat: resume invoice runs whose worker stopped, and issue emails left unsent."""
    from reselling.delivery import invoice_emails_sweep
    from reselling.invoices import invoice_runs_sweep

    invoice_runs_sweep()
    invoice_emails_sweep()


@shared_task(name="reselling.invoice_emails_send", ignore_result=True)
def invoice_emails_send(job_id: int) -> int:
    from reselling.delivery import invoice_emails_send as send

    return send(job_id=job_id)


@shared_task(name="reselling.dunning_daily", ignore_result=True)
def dunning_daily() -> dict[str, int]:
    from reselling.dunning import dunning_run

    return dunning_run()


@shared_task(name="reselling.topup_charges", ignore_result=True)
def topup_charges() -> int:
    """Beat, every few minutes: a charge for every succeeded top-up that has none yet."""
    from reselling.charges import topup_charges_derive

    return topup_charges_derive()


@shared_task(name="reselling.margin_totals", ignore_result=True)
def margin_totals() -> int:
    """Beat, every minute: the margin report's cached month totals, folded up to date."""
    from reselling.margin import totals_refresh

    return totals_refresh()


@shared_task(name="reselling.charges_nightly", ignore_result=True, soft_time_limit=3600, time_limit=3660)
def charges_nightly() -> None:
    """Beat, nightly and again through the night: today's run of monthly fees and usage, one
    bounded step at a time; each step queues the next until every tenant is walked. A lost
    step is picked up by the next beat, where the run's Job says it stopped."""
    from reselling.usage import charges_run_current, charges_run_step

    job = charges_run_current()
    if not charges_run_step(job_id=job.pk):
        charges_nightly.apply_async(countdown=1)
