"""Provider-neutral views of a tenant's telephony (PBX) users and the money moved to them.

A PBX user lives inside a tenant account and belongs to one of its applications. It either
spends the account's money (``parent_accounting``) or has a balance of its own, which the
reseller funds from the account. Money is ``Decimal``; a user without a balance of its own
has ``balance = None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

__all__ = ["PbxApplication", "UserSnapshot", "UserTransfer"]


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PbxApplication:
    """An application of a tenant account (users belong to one)."""

    application_id: int
    application_name: str


@dataclass(frozen=True)
class UserSnapshot:
    """One PBX user as the provider lists it.

    ``balance``, ``live_balance`` and ``fixed_balance`` are the user's own money; all three
    are None for a user that spends the account's money (``parent_accounting``), whatever
    the provider shows for it.
    """

    user_id: int
    user_name: str
    display_name: str | None
    application_id: int | None
    application_name: str | None
    active: bool | None
    parent_accounting: bool | None
    balance: Decimal | None
    live_balance: Decimal | None = None
    fixed_balance: Decimal | None = None
    frozen: bool | None = None
    two_factor_auth_required: bool | None = None
    custom_data: str | None = None
    extra: Mapping[str, Any] = field(default_factory=_empty, repr=False, compare=False, hash=False)

    @property
    def has_own_balance(self) -> bool:
        return self.parent_accounting is False


@dataclass(frozen=True, slots=True)
class UserTransfer:
    """One movement of a user's own balance, read from the provider's history.

    ``amount`` is signed from the user's side: positive = money the account gave the user,
    negative = money the user gave back. ``description`` carries the reference the portal
    wrote into the transfer.
    """

    transaction_id: int
    account_id: int
    user_id: int
    performed_at: datetime
    amount: Decimal
    currency: str | None
    transaction_type: str
    description: str | None
