"""The tenant re-read after a settled transfer: later than the settle, once per tenant for
the transfers settled within the delay, so it never holds up the next transfer's worker."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from billing.tasks import tenant_refresh_task
from billing.transitions import dispatch_tenant_refresh


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    calls: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        tenant_refresh_task, "apply_async", lambda args, countdown=None: calls.append((args, countdown))
    )
    cache.clear()
    yield calls
    cache.clear()


def test_the_transfers_of_one_tenant_share_one_later_refresh(settings, published) -> None:
    settings.BILLING_REFRESH_AFTER_TRANSFER_SECONDS = 5
    for _ in range(3):
        dispatch_tenant_refresh(41)
    dispatch_tenant_refresh(42)
    assert published == [((41,), 5), ((42,), 5)]


def test_a_new_window_opens_once_the_last_one_ended(settings, published) -> None:
    settings.BILLING_REFRESH_AFTER_TRANSFER_SECONDS = 5
    dispatch_tenant_refresh(43)
    cache.delete("billing:tenant-refresh:43")  # the window ran out (the key's timeout)
    dispatch_tenant_refresh(43)
    assert published == [((43,), 5), ((43,), 5)]


def test_no_delay_refreshes_after_every_transfer_at_once(settings, published) -> None:
    settings.BILLING_REFRESH_AFTER_TRANSFER_SECONDS = 0
    dispatch_tenant_refresh(44)
    dispatch_tenant_refresh(44)
    assert published == [((44,), None), ((44,), None)]
