"""The one thing the staged close needs from billing: pulling a tenant's remaining balance back
to the parent, and the state of that transfer.

tenants sits below billing (billing imports tenants, never the reverse; docs/architecture.md),
so tenants states what it needs as a small interface and billing provides it at start-up
(billing/apps.py calls :func:`provide_balance_return`). Without a provider the close stops at the
pull-back stage and asks for a human, instead of skipping money it cannot see.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from django.contrib.auth.models import User

from tenants.models import Tenant


class BalanceReturn(Protocol):
    def transfer_state(self, ref: str) -> str | None:
        """The state of the transfer ``ref`` (None when there is none)."""

    def pull_back_started(self, *, tenant: Tenant, since: datetime) -> str | None:
        """The ref of a pull-back of this tenant started at or after ``since`` that has not
        failed, if any: what an earlier, interrupted attempt of the same close already began."""

    def pull_back(self, *, actor: User | None, tenant: Tenant, reason: str) -> str | None:
        """Start pulling the whole remaining balance back; the transfer's ref, or None when
        there is nothing to pull. Raises PortalError when the balance cannot be read."""


_provided: list[BalanceReturn] = []


def provide_balance_return(implementation: BalanceReturn) -> None:
    """Billing's start-up hands its implementation over; a second call replaces the first."""
    _provided[:] = [implementation]


def balance_return() -> BalanceReturn | None:
    return _provided[0] if _provided else None


def transfer_state(ref: str) -> str | None:
    provider = balance_return()
    if not ref or provider is None:
        return None
    return provider.transfer_state(ref)
