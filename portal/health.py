"""Reachability checks for /healthz: database, broker, provider."""

from __future__ import annotations

import time
from typing import Any

import httpx
from django.conf import settings
from django.db import connection


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


def health_report() -> dict[str, Any]:
    checks = {
        "database": _timed(check_database),
        "broker": _timed(check_broker),
        "provider": _timed(check_provider),
    }
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}
