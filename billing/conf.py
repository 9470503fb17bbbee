"""Billing settings, read from django.conf.settings with safe defaults and validated loudly.

The values live in portal/settings.py (read from the environment through portal.env);
money limits are decimal strings there because portal.env has no decimal reader.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from portal import money_format

# Minor units per currency: one table, in portal/money_format.py (display uses it too).
# Voximplant moves money in steps of 0.01 whatever the currency (docs/providers.md), so no
# currency gets more than two places there.
CURRENCY_PLACES = money_format.CURRENCY_PLACES
DEFAULT_PLACES = money_format.DEFAULT_PLACES


def _decimal(name: str, default: str) -> Decimal:
    raw = getattr(settings, name, default)
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name}={raw!r} must be a finite, non-negative number")
    return value


def _int(name: str, default: int) -> int:
    value = getattr(settings, name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImproperlyConfigured(f"{name}={value!r} must be a non-negative whole number")
    return value


def transfer_limit() -> Decimal:
    """The largest amount one staff transfer may move."""
    return _decimal("BILLING_TRANSFER_LIMIT", "5000")


def daily_limit_per_staff() -> Decimal:
    """What one staff member may move per UTC day, all tenants together."""
    return _decimal("BILLING_DAILY_LIMIT_PER_STAFF", "20000")


def approval_threshold() -> Decimal:
    """Transfers above this need a second staff member's approval (maker-checker)."""
    return _decimal("BILLING_APPROVAL_THRESHOLD", "1000")


def lease() -> timedelta:
    """How long a claimed transfer belongs to its worker. Longer than connect + read timeout."""
    return timedelta(seconds=_int("BILLING_TRANSFER_LEASE_SECONDS", 120))


def settle() -> timedelta:
    """How long after a send an empty history lookup is believed (provider history lag)."""
    return timedelta(seconds=_int("BILLING_SETTLE_SECONDS", 30))


def pending_grace() -> timedelta:
    """A pending transfer older than this was probably never dispatched: the sweeper re-sends it."""
    return timedelta(seconds=_int("BILLING_PENDING_GRACE_SECONDS", 60))


def max_attempts() -> int:
    """Provider calls per transfer before a human has to look (a cap against message loops)."""
    return max(1, _int("BILLING_TRANSFER_MAX_ATTEMPTS", 8))


def unknown_review_after() -> timedelta:
    return timedelta(seconds=_int("BILLING_UNKNOWN_REVIEW_AFTER_SECONDS", 86400))


def sync_stale_after() -> timedelta:
    """A running sync whose heartbeat is older than this is considered dead."""
    return timedelta(seconds=_int("BILLING_SYNC_STALE_SECONDS", 600))


def sync_page_size() -> int:
    """Accounts per GetChildrenAccounts call (the API's cap is 1000; tests use small pages)."""
    return max(1, min(_int("BILLING_SYNC_PAGE_SIZE", 1000), 1000))


def sync_concurrency() -> int:
    """Chunks of ids read from the provider at once by one sync worker (docs/sync.md)."""
    return max(1, min(_int("BILLING_SYNC_CONCURRENCY", 4), 64))


def provider_rate_per_second() -> int:
    """Provider reads per second for one connection, all workers together (0: no limit)."""
    return _int("BILLING_PROVIDER_RATE_PER_SECOND", 40)


def sync_publish_seconds() -> float:
    """How often a worker writing a run's chunks publishes the run's counters, heartbeat and
    progress bar (the shards' own rows hold every chunk's counters meanwhile); well inside
    BILLING_SYNC_STALE_SECONDS, after which the sweeper takes a silent run over."""
    return _int("BILLING_SYNC_PUBLISH_MS", 500) / 1000


def sync_shard_chunks() -> int:
    """Chunks per shard: a run is split into id ranges of about this many chunks, each a
    Celery task any worker can take."""
    return max(1, _int("BILLING_SYNC_SHARD_CHUNKS", 25))


def sync_max_resumes() -> int:
    """How often the sweeper resumes a run whose workers died before it gives the run up."""
    return _int("BILLING_SYNC_MAX_RESUMES", 5)


def parent_alert_days() -> int:
    return _int("BILLING_PARENT_ALERT_DAYS", 7)


def spend_window_days() -> int:
    return max(1, _int("BILLING_SPEND_WINDOW_DAYS", 7))


def runway_min_window() -> timedelta:
    """The shortest span between the two balance syncs the runway's spending is measured
    over: BILLING_RUNWAY_WINDOW_HOURS, never less than 24 hours (a day's pattern)."""
    return timedelta(hours=max(24, _int("BILLING_RUNWAY_WINDOW_HOURS", 24)))


def reconcile_days() -> int:
    return max(1, _int("BILLING_RECONCILE_DAYS", 2))


def budget_max_age() -> timedelta:
    return timedelta(seconds=_int("BILLING_BUDGET_MAX_AGE_SECONDS", 300))


def refresh_after_transfer() -> bool:
    return bool(getattr(settings, "BILLING_REFRESH_AFTER_TRANSFER", True))


def refresh_after_transfer_delay() -> int:
    """Seconds between a settled transfer and the re-read of its tenant: the re-read stays
    off the transfer path, and the transfers of one tenant within that time share one."""
    return _int("BILLING_REFRESH_AFTER_TRANSFER_SECONDS", 5)


def places(currency: str) -> int:
    return money_format.places(currency)


def validate_all() -> list[str]:
    """Every problem with the billing settings (used by the system check)."""
    problems = []
    for reader in (
        transfer_limit,
        daily_limit_per_staff,
        approval_threshold,
        lease,
        settle,
        pending_grace,
        max_attempts,
        unknown_review_after,
        sync_stale_after,
        sync_concurrency,
        provider_rate_per_second,
        sync_shard_chunks,
        sync_publish_seconds,
        sync_max_resumes,
        parent_alert_days,
        spend_window_days,
        runway_min_window,
        reconcile_days,
        budget_max_age,
    ):
        try:
            reader()
        except ImproperlyConfigured as exc:
            problems.append(str(exc))
    timeout = getattr(settings, "PROVIDER_CONNECT_TIMEOUT", 5) + getattr(settings, "PROVIDER_READ_TIMEOUT", 30)
    if not problems and lease().total_seconds() <= timeout:
        problems.append(
            f"BILLING_TRANSFER_LEASE_SECONDS must exceed the provider connect + read timeout ({timeout} s), "
            "or a live call can be taken over by the sweeper"
        )
    return problems
