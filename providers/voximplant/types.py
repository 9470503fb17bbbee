"""Typed results of the Voximplant calls.

Money is ``Decimal`` (responses are parsed with ``parse_float=Decimal``; integers are
converted exactly). Timestamps are aware ``datetime``s. Secret fields are
:class:`~providers.redaction.Secret`. ``extra`` keeps undocumented fields (minus secrets)
out of ``repr`` and comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from providers.base import TransferResult as BaseTransferResult
from providers.redaction import Secret

__all__ = [
    "AccountInfo",
    "AccountInfoResponse",
    "AddedAccount",
    "ChildrenPage",
    "ClonedAccount",
    "ClonedItem",
    "CurrencyRates",
    "MoneyAmountToCharge",
    "SubscriptionCharge",
    "Transaction",
    "TransactionHistoryPage",
    "TransferMoneyResult",
]


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AccountInfo:
    """AccountInfoType. In brief output only ``account_id`` is set; medium adds name and email."""

    account_id: int
    account_name: str | None = None
    account_email: str | None = None
    api_key: Secret | None = None
    active: bool | None = None
    frozen: bool | None = None
    balance: Decimal | None = None
    live_balance: Decimal | None = None
    fixed_balance: Decimal | None = None
    money_on_hold: Decimal | None = None
    credit_limit: Decimal | None = None
    currency: str | None = None
    created: datetime | None = None
    language_code: str | None = None
    location: str | None = None
    min_balance_to_notify: Decimal | None = None
    account_first_name: str | None = None
    account_last_name: str | None = None
    account_custom_data: str | None = None
    callback_url: str | None = None
    extra: Mapping[str, Any] = field(default_factory=_empty, repr=False, compare=False, hash=False)


@dataclass(frozen=True)
class AccountInfoResponse:
    """GetAccountInfo: the caller's own account plus the preferred API host."""

    account: AccountInfo
    api_address: str | None


@dataclass(frozen=True)
class ChildrenPage:
    """One GetChildrenAccounts answer."""

    accounts: tuple[AccountInfo, ...]
    total_count: int
    count: int


@dataclass(frozen=True)
class AddedAccount:
    """AddAccount: the new child's id and api key (a secret)."""

    account_id: int
    api_key: Secret
    active: bool | None


@dataclass(frozen=True)
class ClonedItem:
    """One cloned object (user, scenario, application, rule, queue, skill, role)."""

    id: int
    name: str


@dataclass(frozen=True)
class ClonedAccount:
    """ClonedAccountType."""

    account_id: int
    account_name: str | None
    account_email: str | None
    api_key: Secret | None
    active: bool | None
    users: tuple[ClonedItem, ...] = ()
    scenarios: tuple[ClonedItem, ...] = ()
    applications: tuple[ClonedItem, ...] = ()
    acd_queues: tuple[ClonedItem, ...] = ()
    acd_skills: tuple[ClonedItem, ...] = ()
    admin_roles: tuple[ClonedItem, ...] = ()
    admin_users: tuple[ClonedItem, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=_empty, repr=False, compare=False, hash=False)


@dataclass(frozen=True)
class TransferMoneyResult(BaseTransferResult):
    """TransferMoneyToChildAccount: ``balance`` is the parent's balance afterwards.

    ``extra`` holds any other top-level keys of the answer (e.g. a marker the provider
    adds when it skipped a duplicate reference).
    """

    extra: Mapping[str, Any] = field(default_factory=_empty, repr=False, compare=False, hash=False)


@dataclass(frozen=True)
class Transaction:
    """TransactionInfoType."""

    transaction_id: int
    account_id: int
    performed_at: datetime
    amount: Decimal
    currency: str | None
    transaction_type: str
    transaction_description: str | None = None
    payment_reference: str | None = None
    extra: Mapping[str, Any] = field(default_factory=_empty, repr=False, compare=False, hash=False)


@dataclass(frozen=True)
class TransactionHistoryPage:
    """One GetTransactionHistory answer; ``total_count`` is None when not requested."""

    transactions: tuple[Transaction, ...]
    total_count: int | None
    count: int
    timezone: str


@dataclass(frozen=True)
class CurrencyRates:
    """GetCurrencyRate: units of each currency per 1 USD on ``on_date`` (None = today)."""

    rates: Mapping[str, Decimal] = field(hash=False)
    on_date: date | None = None

    def __getitem__(self, currency: str) -> Decimal:
        return self.rates[currency]


@dataclass(frozen=True)
class SubscriptionCharge:
    amount: Decimal
    subscription_type: str | None
    description: str | None
    auto_charge: bool | None
    next_renewal: date | None


@dataclass(frozen=True)
class MoneyAmountToCharge:
    """GetMoneyAmountToCharge result."""

    amount: Decimal
    min_amount: Decimal
    bank_card_amount_usd: Decimal | None = None
    min_bank_card_amount_usd: Decimal | None = None
    robokassa_amount_rub: Decimal | None = None
    min_robokassa_amount_rub: Decimal | None = None
    subscriptions: tuple[SubscriptionCharge, ...] = ()
