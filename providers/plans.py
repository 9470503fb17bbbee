"""Provider-neutral results of the account plan and verification calls.

Money is ``Decimal`` beside its currency; dates are ``date``. A client that has no plans or
no verification (Capability.ACCOUNT_PLANS, Capability.ACCOUNT_VERIFICATION) raises
:class:`~providers.errors.Unsupported` from the base methods instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from providers.errors import ProviderError

__all__ = [
    "PLAN_TYPES",
    "VERIFICATION_STATUSES",
    "AccountPlan",
    "AccountVerification",
    "AvailablePlan",
    "PlanChange",
    "PlanChangeForbidden",
    "PlanPackage",
]

#: The plan types the provider documents (instant messaging, monthly active users).
PLAN_TYPES = ("IM", "MAU")
VERIFICATION_STATUSES = ("REQUIRED", "IN_PROGRESS", "VERIFIED")


class PlanChangeForbidden(ProviderError):
    """The provider refused the plan change through the API (a downgrade: its support does it)."""


@dataclass(frozen=True)
class PlanPackage:
    name: str
    price: Decimal | None
    amount: int | None
    remaining_amount: int | None
    unit: str | None = None


@dataclass(frozen=True)
class AccountPlan:
    """One of the account's current plans and its packages (AccountPlanType)."""

    plan_type: str
    plan_id: int
    name: str
    price: Decimal | None
    currency: str | None
    next_charge: date | None
    packages: tuple[PlanPackage, ...] = ()


@dataclass(frozen=True)
class AvailablePlan:
    """A plan the account may move to (PlanType)."""

    plan_type: str
    plan_id: int
    name: str
    price: Decimal | None
    currency: str | None


@dataclass(frozen=True)
class PlanChange:
    """ChangeAccountPlan's answer: the account's money right after (ShortAccountInfoType)."""

    account_id: int
    balance: Decimal | None
    live_balance: Decimal | None
    money_on_hold: Decimal | None
    currency: str | None


@dataclass(frozen=True)
class AccountVerification:
    """GetAccountDocuments for one account: its status, the date after which an unverified
    account is held, and the documents as the provider lists them (names only)."""

    account_id: int
    status: str
    hold_until: date | None
    documents: tuple[str, ...] = ()
