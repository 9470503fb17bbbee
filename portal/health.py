"""Health of the portal: reachability checks (database, broker, provider) for /healthz and
/healthz/ready, and the worker and beat heartbeats.

Heartbeats: every minute the beat schedules ``portal.heartbeat``; the beat process records
the time it scheduled it ("beat") and the worker that runs it records the time it ran
("worker"). They live in the cache when the cache is shared between processes (Redis), and
otherwise in one row each of portal's Job table, found by a fixed uuid (a unique index).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

HEARTBEATS = ("beat", "worker")
# Three missed beats (the task runs every 60 s) before readiness fails.
HEARTBEAT_MAX_AGE_SECONDS = 180
_HEARTBEAT_UUIDS = {name: uuid.uuid5(uuid.NAMESPACE_URL, f"portal:heartbeat:{name}") for name in HEARTBEATS}


def _cache_is_shared() -> bool:
    backend = str(settings.CACHES["default"]["BACKEND"])
    return not backend.endswith(("LocMemCache", "DummyCache"))


def _cache_key(name: str) -> str:
    return f"portal:heartbeat:{name}"


def record_heartbeat(name: str, *, at: datetime | None = None) -> None:
    """Records that ``name`` ("beat" or "worker") was alive at ``at`` (now by default)."""
    from portal.models import Job

    if name not in _HEARTBEAT_UUIDS:
        raise ValueError(f"unknown heartbeat {name!r}")
    at = at or timezone.now()
    if _cache_is_shared():
        cache.set(_cache_key(name), at.timestamp(), timeout=None)
        return
    row = Job.objects.filter(uuid=_HEARTBEAT_UUIDS[name])
    if row.update(finished_at=at, updated_at=at):
        return
    try:
        with transaction.atomic():
            Job.objects.create(
                uuid=_HEARTBEAT_UUIDS[name],
                kind="portal.heartbeat",
                title=f"{name.capitalize()} heartbeat",
                state=Job.State.SUCCEEDED,
                finished_at=at,
            )
    except IntegrityError:  # another process created it first
        row.update(finished_at=at, updated_at=at)


def heartbeat_times() -> dict[str, datetime | None]:
    """The last recorded time of each heartbeat, None for one never recorded."""
    from portal.models import Job

    if _cache_is_shared():
        stamps = cache.get_many([_cache_key(name) for name in HEARTBEATS])
        return {
            name: datetime.fromtimestamp(float(stamps[_cache_key(name)]), tz=UTC)
            if _cache_key(name) in stamps
            else None
            for name in HEARTBEATS
        }
    rows = dict(Job.objects.filter(uuid__in=_HEARTBEAT_UUIDS.values()).values_list("uuid", "finished_at"))
    return {name: rows.get(_HEARTBEAT_UUIDS[name]) for name in HEARTBEATS}


def heartbeat_ages(now: datetime | None = None) -> dict[str, float | None]:
    now = now or timezone.now()
    return {
        name: None if at is None else max(0.0, (now - at).total_seconds()) for name, at in heartbeat_times().items()
    }


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # noqa: BLE001 - any failure is a failed check, reported by kind
        detail = type(exc).__name__
        ok = False
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_broker() -> str:
    from portal.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return conn.transport_cls if isinstance(conn.transport_cls, str) else conn.transport.driver_type


def check_provider() -> str:
    # Any HTTP answer means the provider is reachable; its own auth is checked by real calls.
    response = httpx.get(settings.VOXIMPLANT_BASE_URL.rstrip("/") + "/platform_api/GetAccountInfo", timeout=3)
    return f"HTTP {response.status_code}"


def _heartbeat_checks() -> dict[str, dict[str, Any]]:
    try:
        times = heartbeat_times()
    except Exception as exc:  # noqa: BLE001 - unreadable heartbeats fail readiness, reported by kind
        return {name: {"ok": False, "detail": type(exc).__name__, "age_seconds": None} for name in HEARTBEATS}
    now = timezone.now()
    checks = {}
    for name, at in times.items():
        age = None if at is None else round(max(0.0, (now - at).total_seconds()), 1)
        checks[name] = {
            "ok": age is not None and age <= HEARTBEAT_MAX_AGE_SECONDS,
            "detail": "never recorded" if at is None else at.isoformat(),
            "age_seconds": age,
            "max_age_seconds": HEARTBEAT_MAX_AGE_SECONDS,
        }
    return checks


def readiness_report() -> dict[str, Any]:
    """/healthz/ready: not ready when the database or the broker is down or a heartbeat is
    stale. The provider is reported but does not decide: an outage at the provider is not a
    reason to take the portal's own pages out of service."""
    checks = {
        "database": _timed(check_database),
        "broker": _timed(check_broker),
        "provider": _timed(check_provider),
    }
    heartbeats = _heartbeat_checks()
    deciding = [checks["database"], checks["broker"], *heartbeats.values()]
    return {"ok": all(c["ok"] for c in deciding), "checks": checks, "heartbeats": heartbeats}


def health_report() -> dict[str, Any]:
    checks = {
        "database": _timed(check_database),
        "broker": _timed(check_broker),
        "provider": _timed(check_provider),
    }
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}
