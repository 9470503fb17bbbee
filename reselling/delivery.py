"""Issue emails: each invoice and credit note goes to its tenant's owners once issued, text and
HTML with the PDF attached.

Delivery state lives in a Job per batch of work (a run's invoices, or one credit note):
``params["after"]`` is the id of the last invoice whose email went out, committed after each
send. A worker holds the job with a lease (``updated_at`` refreshed at every send); the
sweeper restarts a job whose worker stopped, from its position, so a crash loses nothing and
re-sends at most the one email that was in flight.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from portal.audit import audit_log
from portal.events import publish_on_commit
from portal.jobs import job_create
from portal.mail import site_link, templated_email
from portal.models import Job
from reselling.models import Invoice
from tenants.mail import owner_messages
from tenants.selectors import owner_emails

logger = logging.getLogger("reselling.delivery")

JOB_KIND = "reselling.invoice_emails"
LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 5


def deliveries_start(*, run_id: int | None = None, invoice_id: int | None = None) -> Job:
    """The job that emails a run's invoices (or one invoice), and its task after the commit."""
    params = {"run_id": run_id, "invoice_id": invoice_id, "after": 0, "attempts": 0}
    scope = f"run {run_id}" if run_id else f"invoice {invoice_id}"
    existing = Job.objects.filter(kind=JOB_KIND, params__run_id=run_id, params__invoice_id=invoice_id).first()
    if existing is not None:
        return existing
    job = job_create(kind=JOB_KIND, title=f"Invoice emails ({scope})", params=params)
    publish_on_commit(lambda: _enqueue(job.pk), what=f"invoice emails {scope}")
    return job


def _enqueue(job_id: int) -> None:
    from reselling.tasks import invoice_emails_send

    invoice_emails_send.delay(job_id)


def _invoices(job: Job) -> list[Invoice]:
    params = job.params
    qs = Invoice.objects.filter(pk__gt=int(params.get("after") or 0))
    qs = qs.filter(run_id=params["run_id"]) if params.get("run_id") else qs.filter(pk=params.get("invoice_id"))
    return list(qs.select_related("tenant", "corrects").order_by("pk")[:200])


def issue_email(invoice: Invoice, recipients: list[str]) -> EmailMultiAlternatives:
    """The issue email in the active language (tenants.mail.owner_messages picks each owner's)."""
    from reselling.invoices import places_for, reseller_profile
    from reselling.pdf import TITLES, filename, invoice_pdf, money

    places = places_for(reseller_profile(), invoice.currency)
    title = gettext(TITLES[invoice.kind])
    context = {
        "title": title,
        "invoice": invoice,
        "company": invoice.buyer.get("company_name") or invoice.tenant.company_name,
        "seller": invoice.seller.get("company_name", ""),
        "total": money(invoice.total, places),
        "link": site_link(reverse("customer:invoice", args=[invoice.uuid])),
    }
    return templated_email(
        "emails/invoice_issued",
        context,
        subject=gettext("%(title)s %(number)s from %(seller)s")
        % {"title": title, "number": invoice.number, "seller": context["seller"]},
        to=recipients,
        attachments=[(filename(invoice, "pdf"), invoice_pdf(invoice, places=places), "application/pdf")],
    )


def _claim(job_id: int, now: datetime) -> bool:
    return bool(
        Job.objects.filter(pk=job_id, kind=JOB_KIND)
        .exclude(state__in=Job.FINISHED)
        .filter(Q(state=Job.State.QUEUED) | Q(updated_at__lt=now - LEASE))
        .update(state=Job.State.RUNNING, updated_at=now)
    )


def invoice_emails_send(*, job_id: int, now: datetime | None = None) -> int:
    """Send the job's emails from its position on. Returns how many went out."""
    now = now or timezone.now()
    if not _claim(job_id, now):
        return 0
    job = Job.objects.get(pk=job_id)
    sent = 0
    while batch := _invoices(job):
        for invoice in batch:
            recipients = owner_emails(invoice.tenant_id)
            if recipients:
                try:
                    for message in owner_messages(invoice.tenant_id, partial(issue_email, invoice)):
                        message.send()
                except Exception:  # noqa: BLE001 - released: the sweeper retries from here
                    logger.warning("issue email of invoice %s failed", invoice.number, exc_info=True)
                    attempts = int(job.params.get("attempts") or 0) + 1
                    job.params = {**job.params, "attempts": attempts}
                    give_up = attempts >= MAX_ATTEMPTS
                    Job.objects.filter(pk=job.pk).update(
                        params=job.params,
                        state=Job.State.FAILED if give_up else Job.State.QUEUED,
                        message=f"Sending {invoice.number} failed ({attempts} attempts)",
                        updated_at=timezone.now(),
                    )
                    return sent
                sent += 1
                audit_log(
                    actor=None,
                    action="reselling.invoice.emailed",
                    tenant_id=invoice.tenant_id,
                    data={"invoice": invoice.number, "recipients": len(recipients)},
                )
            job.params = {**job.params, "after": invoice.pk, "attempts": 0}
            Job.objects.filter(pk=job.pk).update(params=job.params, done=job.done + 1, updated_at=timezone.now())
            job.done += 1
    Job.objects.filter(pk=job.pk).update(
        state=Job.State.SUCCEEDED, finished_at=timezone.now(), message=f"{job.done} invoices emailed"
    )
    return sent


def invoice_emails_sweep(*, now: datetime | None = None) -> list[int]:
    """Email jobs waiting for a retry, or whose worker stopped: queue them again."""
    now = now or timezone.now()
    due = list(
        Job.objects.filter(kind=JOB_KIND)
        .exclude(state__in=Job.FINISHED)
        .filter(updated_at__lt=now - timedelta(minutes=1))
        .filter(Q(state=Job.State.QUEUED) | Q(updated_at__lt=now - LEASE))
        .values_list("pk", flat=True)
    )
    for job_id in due:
        _enqueue(job_id)
    return due
