"""The beat schedule reseller admins can change.

`CELERY_BEAT_SCHEDULE` in settings names every periodic entry: its task, options and the
timing it starts with. The timing then lives in the database (`ScheduleEntry`, one row per
entry, created from the settings the first time the schedule is read), so an admin can move
the nightly sync or slow a sweeper from the console without a deploy. Entries added to the
settings later get a row on the next read; a row whose entry left the settings is ignored.

`DatabaseScheduler` is the beat's scheduler (`celery beat --scheduler
portal.schedule:DatabaseScheduler`). It keeps Celery's schedule file for the time each entry
last ran, takes the timing from the database, and notices a change within
`REFRESH_SECONDS`. It holds an exclusive lock next to its schedule file, so a second beat on
the same file refuses to start instead of sending every task twice.
"""

from __future__ import annotations

import fcntl
import logging
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from celery.beat import PersistentScheduler
from celery.schedules import ParseException, crontab
from celery.schedules import schedule as interval_schedule
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from portal.audit import audit_log
from portal.roles import check_permission

if TYPE_CHECKING:
    from portal.models import ScheduleEntry

logger = logging.getLogger(__name__)

NIGHTLY_SYNC = "billing-sync-nightly"
# Readiness counts on the heartbeat every minute (portal/health.py): not for changing.
FIXED = frozenset({"portal-heartbeat"})
PERMISSION = "tenants.manage"
REFRESH_SECONDS = 5.0
MIN_EVERY_SECONDS = 10
MAX_EVERY_SECONDS = 86400
CRONTAB_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
_FIELD_HELP = {
    "minute": "Enter a minute from 0 to 59, or a cron pattern such as */15 or 0,30.",
    "hour": "Enter an hour from 0 to 23 (UTC), or a cron pattern such as */6 or 1,13.",
}


def _fields_of(schedule: Any) -> dict[str, Any]:
    """The row fields of a settings schedule: a crontab, or an interval in seconds."""
    if isinstance(schedule, crontab):
        return {field: str(getattr(schedule, f"_orig_{field}")) for field in CRONTAB_FIELDS}
    if isinstance(schedule, interval_schedule):
        return {"every_seconds": int(schedule.run_every.total_seconds())}
    if isinstance(schedule, int | float | timedelta):
        seconds = schedule.total_seconds() if isinstance(schedule, timedelta) else schedule
        return {"every_seconds": int(seconds)}
    raise TypeError(f"unsupported beat schedule {schedule!r}")


def celery_schedule(row: ScheduleEntry) -> crontab | interval_schedule:
    if row.every_seconds is not None:
        return interval_schedule(timedelta(seconds=row.every_seconds))
    return crontab(**{field: getattr(row, field) or "*" for field in CRONTAB_FIELDS})


def seed() -> None:
    """A row for every settings entry that has none yet; existing rows are left as they are."""
    from portal.models import ScheduleEntry

    existing = set(ScheduleEntry.objects.values_list("name", flat=True))
    missing = [
        ScheduleEntry(name=name, **_fields_of(spec["schedule"]))
        for name, spec in settings.CELERY_BEAT_SCHEDULE.items()
        if name not in existing and name not in FIXED
    ]
    if missing:
        ScheduleEntry.objects.bulk_create(missing, ignore_conflicts=True)


def rows() -> dict[str, ScheduleEntry]:
    from portal.models import ScheduleEntry

    seed()
    return {row.name: row for row in ScheduleEntry.objects.filter(name__in=list(settings.CELERY_BEAT_SCHEDULE))}


def effective_schedule() -> dict[str, dict[str, Any]]:
    """The settings schedule with each entry's timing taken from the database."""
    timed = rows()
    result = {}
    for name, spec in settings.CELERY_BEAT_SCHEDULE.items():
        spec = dict(spec)
        if name in timed:
            spec["schedule"] = celery_schedule(timed[name])
        result[name] = spec
    return result


def version() -> tuple[int, datetime | None]:
    """Changes whenever a row is added, removed or retimed."""
    from django.db.models import Count, Max

    from portal.models import ScheduleEntry

    agg = ScheduleEntry.objects.aggregate(n=Count("id"), at=Max("changed_at"))
    return agg["n"], agg["at"]


def next_run(name: str, *, now: datetime | None = None) -> datetime | None:
    """When the entry next runs after `now`, by its current timing; None for an unknown entry."""
    now = now or timezone.now()
    row = rows().get(name)
    if row is None:
        return None
    return _next_at(celery_schedule(row), now, now)


def _next_at(sched: Any, last_run_at: datetime, now: datetime) -> datetime:
    """`now` plus Celery's estimate of the time left; a crontab's estimate ignores the seconds of
    `now`, so its result is rounded to the whole minute the crontab names."""
    remaining = sched.remaining_estimate(last_run_at)
    if remaining <= timedelta(0):
        return now
    at = now + remaining
    if isinstance(sched, crontab):
        at = (at + timedelta(seconds=30)).replace(second=0, microsecond=0)
    return at


def describe(row: ScheduleEntry) -> str:
    if row.every_seconds is not None:
        return f"every {row.every_seconds} s"
    days = [
        f"{label} {getattr(row, field)}"
        for field, label in (("day_of_week", "weekday"), ("day_of_month", "day"), ("month_of_year", "month"))
        if getattr(row, field) not in ("", "*")
    ]
    return " ".join([f"minute {row.minute}, hour {row.hour} UTC", *(["on " + ", ".join(days)] if days else [])])


def clean_timing(row: ScheduleEntry, data: dict[str, Any]) -> dict[str, Any]:
    """The new timing of `row` from submitted values; ValidationError naming the bad field."""
    if row.every_seconds is not None:
        raw = str(data.get("every_seconds", "")).strip()
        try:
            seconds = int(raw)
        except ValueError:
            seconds = -1
        if not MIN_EVERY_SECONDS <= seconds <= MAX_EVERY_SECONDS:
            raise ValidationError(
                {"every_seconds": (f"Enter a whole number of seconds from {MIN_EVERY_SECONDS} to {MAX_EVERY_SECONDS}.")}
            )
        return {"every_seconds": seconds}
    cleaned: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in ("minute", "hour"):
        value = str(data.get(field, "")).strip().replace(" ", "")
        try:
            crontab(**{field: value})
            if not value or len(value) > 64:
                raise ValueError(value)
        except (ValueError, ParseException):
            errors[field] = _FIELD_HELP[field]
        cleaned[field] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


def change_timing(*, actor: Any, name: str, data: dict[str, Any], request: HttpRequest | None = None) -> ScheduleEntry:
    """Retime one entry: admins only, validated, audited. The beat picks it up on its own."""
    from portal.models import ScheduleEntry

    check_permission(actor, PERMISSION, doing="change the schedule")
    if name in FIXED or name not in settings.CELERY_BEAT_SCHEDULE:
        raise ValidationError({"__all__": f"{name} is not an entry you can change."})
    seed()
    with transaction.atomic():
        row = ScheduleEntry.objects.select_for_update().get(name=name)
        changes = clean_timing(row, data)
        before = {field: getattr(row, field) for field in changes}
        if before == changes:
            return row
        for field, value in changes.items():
            setattr(row, field, value)
        row.save()
        audit_log(
            actor=actor,
            action="portal.schedule.changed",
            data={"entry": name, "before": before, "after": changes},
            request=request,
        )
    return row


class DatabaseScheduler(PersistentScheduler):
    """Celery beat's persistent scheduler with each entry's timing read from the database."""

    max_interval: float = REFRESH_SECONDS
    _lock_file: IO[str] | None = None
    _version: tuple[int, datetime | None] | None = None
    _checked_at = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_interval = min(self.max_interval, REFRESH_SECONDS)

    def setup_schedule(self) -> None:
        self._lock()
        super().setup_schedule()

    def _lock(self) -> None:
        if self._lock_file is not None:
            return
        handle = open(f"{self.schedule_filename}.lock", "a")  # noqa: SIM115 - held while beat runs
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RuntimeError(
                f"another beat is running with the schedule {self.schedule_filename}; only one may run"
            ) from None
        self._lock_file = handle

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    def merge_inplace(self, b: dict[str, Any]) -> None:
        """Merge the settings entries, timed from the database. An entry whose timing changed
        counts from now, so moving the sync hour never fires it at once."""
        wanted = effective_schedule()
        self._version = version()
        schedule = self.schedule
        for key in set(schedule) - set(wanted) - set(b):
            schedule.pop(key, None)
        for key, spec in wanted.items():
            entry = self.Entry(**dict(spec, name=key, app=self.app))
            current = schedule.get(key)
            if current is not None and current.schedule == entry.schedule:
                current.update(entry)
            else:
                if current is not None:
                    logger.info("beat: %s now runs %s", key, entry.schedule)
                schedule[key] = entry
        self._heap = None

    def refresh(self) -> None:
        """Re-read the timing when the database says it changed."""
        try:
            if version() != self._version:
                self.merge_inplace(self.app.conf.beat_schedule)
                self.install_default_entries(self.schedule)
                self.sync()
        except Exception:  # the beat keeps its current schedule while the database is away
            logger.warning("beat: could not read the schedule from the database", exc_info=True)
            connection.close()  # reconnect on the next tick

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self.refresh()
        return float(super().tick(*args, **kwargs))

    def next_run_at(self, name: str) -> datetime:
        """When this scheduler sends the entry next, by its current timing and last run."""
        self.refresh()
        entry = self.schedule[name]
        return _next_at(entry.schedule, entry.last_run_at, self.app.now())
