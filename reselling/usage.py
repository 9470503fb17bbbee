"""Usage charges, derived from each child account's transaction history at the provider, and
the nightly run that derives fees and usage for every tenant.

A usage row (a call, a resource, a number's rent: ``USAGE_TYPES``) costs the reseller what the
provider charged the child; the customer owes that plus the plan's markup:
``cost × (1 + markup %)``, rounded half up to the ledger's 4 places (a call can cost less
than a cent; invoices round their totals per currency). ``source_key`` is
``usage:<tenant id>:<provider transaction id>``, so reading the same history again, or an
overlapping window, charges nothing twice.

The nightly run walks the tenants by id in batches; its position is saved on its Job after
each batch, so a run that dies resumes where it stopped, and a run that repeats writes
nothing new.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.utils import timezone

from billing import provider as prov
from portal.jobs import job_create, job_finish, job_start
from portal.models import Job
from providers.capabilities import Capability
from providers.errors import ProviderError
from reselling.charges import BATCH, LEDGER_PLACES, insert_charges, month_of, monthly_fees_for
from reselling.models import Charge, PricePlan
from reselling.plans import plans_on
from tenants.models import Tenant

logger = logging.getLogger("reselling.usage")

# Voximplant transaction types that are spending on the account's services.
USAGE_TYPES = frozenset(
    {
        "resource_charge",
        "subscription_charge",
        "subscription_installation_charge",
        "phone_number_installation",
        "phone_number_charge",
        "toll_free_phone_number_installation",
        "toll_free_phone_number_charge",
        "sip_registration_charge",
        "im_charge",
        "mau_charge",
        "fmc_charge",
    }
)
USAGE_STATES = ("active", "frozen", "closing")
RUN_KIND = "reselling.charges"


def lookback() -> timedelta:
    """How far back each nightly run reads the history: several days, so a night that failed
    for a tenant is covered by the next."""
    return timedelta(days=int(getattr(settings, "RESELLING_USAGE_LOOKBACK_DAYS", 3)))


def usage_price(plan: PricePlan | None, cost: Decimal, currency: str) -> Decimal:
    if plan is None or plan.currency != currency:
        return cost
    return (cost * (1 + plan.usage_markup_percent / 100)).quantize(LEDGER_PLACES, rounding=ROUND_HALF_UP)


def usage_derive_tenant(tenant: Tenant, *, since: datetime, until: datetime) -> int:
    """Usage charges of one tenant in [since, until]; returns how many were written."""
    if tenant.provider_account_id is None:
        return 0
    fallback = (tenant.currency or tenant.connection.currency or "USD").upper()
    found = []
    for row in prov.iter_account_transactions(
        tenant.connection, account_id=tenant.provider_account_id, from_date=since, to_date=until
    ):
        if row.transaction_type in USAGE_TYPES and row.amount < 0:
            found.append(row)
    plans: dict[date, PricePlan | None] = {}
    charges = []
    for row in found:
        day = row.performed_at.astimezone(UTC).date()
        if day not in plans:
            plans[day] = plans_on([(tenant, day)])[tenant.pk]
        currency = (row.currency or fallback).upper()
        plan = plans[day] if plans[day] is not None and plans[day].currency == currency else None  # type: ignore[union-attr]
        cost = (-row.amount).quantize(LEDGER_PLACES)
        charges.append(
            Charge(
                tenant_id=tenant.pk,
                plan=plan,
                kind=Charge.Kind.USAGE,
                period=month_of(day),
                occurred_at=row.performed_at,
                currency=currency,
                revenue=usage_price(plan, cost, currency),
                cost=cost,
                quantity=Decimal(1),
                description=(row.transaction_description or row.transaction_type)[:300],
                source_key=f"usage:{tenant.pk}:{row.transaction_id}",
            )
        )
    return insert_charges(charges)


def _history_supported(tenant: Tenant) -> bool:
    return prov.supports(tenant.connection, Capability.TRANSACTION_HISTORY)


def charges_run_current(*, day: date | None = None) -> Job:
    """Today's run of the nightly derivation: the unfinished one, else a new one."""
    day = day or timezone.now().date()
    key = day.isoformat()
    job = Job.objects.filter(kind=RUN_KIND, params__day=key).order_by("-id").first()
    if job is None:
        job = job_create(
            kind=RUN_KIND,
            title=f"Charges for {key}: monthly fees and usage",
            total=Tenant.objects.count(),
            params={"day": key, "last_tenant_id": 0, "written": 0, "failed": 0},
        )
    return job


def charges_run_step(*, job_id: int, max_tenants: int = 2000, now: datetime | None = None) -> bool:
    """Derive fees and usage for up to ``max_tenants`` more tenants of the run; True when
    the run has walked every tenant. Safe to call twice at once or after a crash: each batch
    saves its position after its charges are written, and a repeated batch writes nothing."""
    job = Job.objects.get(pk=job_id)
    if job.state in Job.FINISHED:
        return True
    job_start(job_id=job.pk)
    day = date.fromisoformat(job.params["day"])
    until = now or timezone.now()
    since = until - lookback()
    period = month_of(day)
    last = int(job.params.get("last_tenant_id", 0))
    seen = 0
    while seen < max_tenants:
        tenants = list(
            Tenant.objects.filter(pk__gt=last).select_related("connection").order_by("pk")[: min(BATCH, max_tenants)]
        )
        if not tenants:
            job_finish(job_id=job.pk, ok=True, message=_message(job))
            return True
        written = insert_charges(monthly_fees_for(tenants, period))
        failed = 0
        for tenant in tenants:
            if tenant.status not in USAGE_STATES or tenant.provider_account_id is None:
                continue
            if not _history_supported(tenant):
                continue
            try:
                written += usage_derive_tenant(tenant, since=since, until=until)
            except ProviderError as exc:
                # The next night's window covers these days again.
                failed += 1
                logger.warning("usage history unreadable for tenant %s: %s", tenant.pk, type(exc).__name__)
        last = tenants[-1].pk
        seen += len(tenants)
        params = {
            **job.params,
            "last_tenant_id": last,
            "written": int(job.params.get("written", 0)) + written,
            "failed": int(job.params.get("failed", 0)) + failed,
        }
        # Only forward: a slower twin that reached less never moves the position back.
        Job.objects.filter(pk=job.pk, params__last_tenant_id__lt=last).update(
            params=params, done=min(job.total, job.done + len(tenants)), updated_at=timezone.now()
        )
        job.params, job.done = params, job.done + len(tenants)
    return False


def _message(job: Job) -> str:
    return f"{job.params.get('written', 0)} charges written; {job.params.get('failed', 0)} tenants unreadable"
