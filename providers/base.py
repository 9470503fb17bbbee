"""The provider-neutral interface the portal codes against.

Each client implements the operations its provider supports and inherits, for the rest,
methods that raise :class:`~providers.errors.Unsupported` with the capability matrix's
reason. Check ``client.supports(cap)`` first; the provider's name is never the test.

Account ids are ``int`` for Voximplant (child account id) and ``str`` for VoiceIt
(the sub-account's apiKey); :data:`AccountId` covers both.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import ClassVar, NamedTuple, Self

from providers.capabilities import Capability, CapabilityMatrix
from providers.errors import Unsupported
from providers.pbx_users import PbxApplication, UserSnapshot, UserTransfer
from providers.plans import AccountPlan, AccountVerification, AvailablePlan, PlanChange
from providers.redaction import Secret

__all__ = [
    "AccountId",
    "AccountPage",
    "AccountSnapshot",
    "CreatedAccount",
    "ListingNeedsFilter",
    "MoneyTransfer",
    "ProviderClient",
    "RotatedCredentials",
    "TransferResult",
]

AccountId = int | str


@dataclass(frozen=True)
class CreatedAccount:
    """What a provider returned for a new tenant account. Secrets are :class:`Secret`."""

    account_id: AccountId
    email: str | None = None
    active: bool | None = None
    api_key: Secret | None = None
    api_token: Secret | None = None
    password: Secret | None = None


class AccountSnapshot(NamedTuple):
    """One tenant account as listed by the provider (for sync).

    ``credit_limit`` is how far the account may go below zero, where the provider has one;
    ``min_balance_to_notify`` the balance below which the provider warns the account, as the
    provider holds it (None when it does not say).

    A named tuple rather than a frozen dataclass: a sync builds one per tenant per night
    (530,000 and more), and a tuple is built in a fifth of the time a frozen dataclass's
    ``__init__`` takes; it is as immutable and compares by value the same way.
    """

    account_id: AccountId
    name: str | None
    email: str | None
    active: bool | None
    frozen: bool | None
    balance: Decimal | None
    currency: str | None
    credit_limit: Decimal | None = None
    min_balance_to_notify: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AccountPage:
    """One page of a walk over every tenant account.

    ``total_count`` is the number of accounts the provider counted when it answered this
    page (None when it does not say); accounts added or removed during a walk make the
    walk's own count differ from it.
    """

    accounts: tuple[AccountSnapshot, ...]
    total_count: int | None


class ListingNeedsFilter(Unsupported):
    """The provider refused a listing of every account: it lists accounts only when asked
    for given ids, names or emails. Reads by id (:meth:`ProviderClient.get_accounts`) and
    lookups by name or email (:meth:`ProviderClient.find_accounts`) still work."""


@dataclass(frozen=True)
class TransferResult:
    """The provider's answer to a transfer: the payer's balance afterwards, when reported."""

    balance: Decimal | None


@dataclass(frozen=True)
class MoneyTransfer:
    """One money movement from the provider's history (generic view)."""

    transaction_id: int | str
    account_id: AccountId
    performed_at: datetime
    amount: Decimal
    currency: str | None
    transaction_type: str
    payment_reference: str | None
    description: str | None


@dataclass(frozen=True)
class RotatedCredentials:
    account_id: AccountId
    api_token: Secret


class ProviderClient(abc.ABC):
    """Base of every provider client. Subclasses set ``kind`` and ``capability_matrix``."""

    kind: ClassVar[str]
    capability_matrix: ClassVar[CapabilityMatrix]
    #: The most account ids one :meth:`get_accounts` call sends to the provider at once.
    max_ids_per_read: ClassVar[int] = 1000

    # -- capabilities -------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.capability_matrix.supported

    def supports(self, capability: Capability) -> bool:
        return self.capability_matrix.supports(capability)

    def unsupported_reason(self, capability: Capability) -> str | None:
        return self.capability_matrix.reason(capability)

    def _unsupported(self, capability: Capability) -> Unsupported:
        reason = self.capability_matrix.reason(capability) or f"{capability.name} is not implemented"
        return Unsupported(reason, provider=self.kind, method=capability.value)

    #: The provider methods :meth:`probe_methods` asks about (none: the matrix stands as is).
    probe_method_names: ClassVar[tuple[str, ...]] = ()

    def probe_methods(self) -> dict[str, str]:
        """Ask the provider which of :attr:`probe_method_names` it still answers, with calls that
        cannot change anything: {method: "available" | "missing" | "unknown"} ("unknown": no
        verdict this time, e.g. the provider was unreachable). Never raises a ProviderError.
        A provider whose matrix is its documented, fixed API has nothing to probe: ``{}``."""
        return {}

    # -- lifecycle ------------------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Release the HTTP connection pool."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- provider-neutral operations (default: Unsupported) ------------------------------

    def create_account(
        self,
        *,
        name: str,
        email: str,
        password: str,
        first_name: str | None = None,
        last_name: str | None = None,
        active: bool = True,
        managed: bool = True,
    ) -> CreatedAccount:
        """Capability.CREATE. ``managed`` matters to VoiceIt only (reseller pays)."""
        raise self._unsupported(Capability.CREATE)

    def find_account(self, *, name: str) -> AccountSnapshot | None:
        """Capability.RECOVERABLE_CREATE: find an account created earlier, by its unique name."""
        raise self._unsupported(Capability.RECOVERABLE_CREATE)

    def clone_account(self, *, source_account_id: AccountId, name: str, email: str, password: str) -> CreatedAccount:
        """Capability.CLONE."""
        raise self._unsupported(Capability.CLONE)

    def freeze_account(self, account_id: AccountId) -> None:
        """Capability.FREEZE."""
        raise self._unsupported(Capability.FREEZE)

    def unfreeze_account(self, account_id: AccountId) -> None:
        """Capability.UNFREEZE."""
        raise self._unsupported(Capability.UNFREEZE)

    def update_account(self, account_id: AccountId, *, email: str | None = None, password: str | None = None) -> None:
        """Capability.UPDATE_PROFILE: change the account's login email and/or password."""
        raise self._unsupported(Capability.UPDATE_PROFILE)

    def set_low_balance_threshold(self, account_id: AccountId, threshold: Decimal) -> None:
        """Capability.UPDATE_PROFILE: the balance below which the provider warns the tenant
        (0 turns the warning off)."""
        raise self._unsupported(Capability.UPDATE_PROFILE)

    def get_account(self, account_id: AccountId) -> AccountSnapshot | None:
        """Capability.LIST_ACCOUNTS: one tenant account as the provider sees it now, or None
        when the provider does not know that id."""
        raise self._unsupported(Capability.LIST_ACCOUNTS)

    def get_accounts(self, account_ids: Sequence[AccountId]) -> tuple[AccountSnapshot, ...]:
        """Capability.LIST_BALANCES: the accounts with these ids as the provider sees them now,
        in ascending id order; ids the provider does not know are left out (the caller
        compares). Sends at most :attr:`max_ids_per_read` ids per provider call."""
        raise self._unsupported(Capability.LIST_BALANCES)

    def find_accounts(self, *, name: str | None = None, email: str | None = None) -> tuple[AccountSnapshot, ...]:
        """Capability.LIST_ACCOUNTS: the accounts whose name (or email, case-insensitively) is
        exactly this, whatever matching the provider applies to its filter."""
        raise self._unsupported(Capability.LIST_ACCOUNTS)

    def get_own_account(self) -> AccountSnapshot:
        """Capability.LIST_BALANCES: the reseller's own account (its balance funds the tenants)."""
        raise self._unsupported(Capability.LIST_BALANCES)

    def iter_account_pages(self, *, page_size: int = 1000) -> Iterator[Sequence[AccountSnapshot]]:
        """Capability.LIST_ACCOUNTS / LIST_BALANCES: every account, page by page.
        :class:`ListingNeedsFilter` when the provider lists accounts only by id, name or email."""
        raise self._unsupported(Capability.LIST_ACCOUNTS)

    def iter_accounts(self) -> Iterator[AccountSnapshot]:
        for page in self.iter_account_pages():
            yield from page

    def iter_account_id_pages(self, *, page_size: int = 1000) -> Iterator[tuple[AccountId, ...]]:
        """Capability.LIST_ACCOUNTS: every account id once, ascending, page by page (a cheap walk
        for discovering accounts; read the details with :meth:`get_accounts`).
        :class:`ListingNeedsFilter` when the provider lists accounts only by id, name or email."""
        for page in self.iter_balance_pages(page_size=page_size):
            yield tuple(a.account_id for a in page.accounts)

    def iter_balance_pages(self, *, page_size: int = 1000) -> Iterator[AccountPage]:
        """Capability.LIST_BALANCES: every account with its balance, once each, in ascending id
        order, at most ``page_size`` per page, each page with the provider's count."""
        raise self._unsupported(Capability.LIST_BALANCES)

    def transfer_money(
        self,
        *,
        account_id: AccountId,
        amount: Decimal,
        payment_reference: str,
        check_duplicate_reference_from: datetime,
        currency: str | None = None,
    ) -> TransferResult:
        """Capability.TRANSFER_MONEY: reseller -> tenant, one account, positive amount."""
        raise self._unsupported(Capability.TRANSFER_MONEY)

    def withdraw_money(
        self,
        *,
        account_id: AccountId,
        amount: Decimal,
        payment_reference: str,
        check_duplicate_reference_from: datetime,
        currency: str | None = None,
    ) -> TransferResult:
        """Capability.TRANSFER_MONEY: tenant -> reseller, one account. ``amount`` is positive
        (the method gives the direction); a tenant holding less is refused, never emptied."""
        raise self._unsupported(Capability.TRANSFER_MONEY)

    def iter_transactions(
        self,
        *,
        from_date: datetime,
        to_date: datetime,
        account_id: AccountId | None = None,
        payment_reference: str | None = None,
        transaction_types: Sequence[str] | None = None,
        tenant_side: bool = False,
    ) -> Iterator[MoneyTransfer]:
        """Capability.TRANSACTION_HISTORY: money movements in ``[from_date, to_date]``, oldest
        first. ``tenant_side``: the tenants' own rows (of ``account_id``, or of every tenant
        when it is None) instead of the reseller's."""
        raise self._unsupported(Capability.TRANSACTION_HISTORY)

    def close_account(self, account_id: AccountId) -> None:
        """Capability.CLOSE_DELETE. Irreversible where supported."""
        raise self._unsupported(Capability.CLOSE_DELETE)

    def rotate_credentials(self, account_id: AccountId) -> RotatedCredentials:
        """Capability.ROTATE_CREDENTIALS."""
        raise self._unsupported(Capability.ROTATE_CREDENTIALS)

    def check_credentials(self, *, api_key: str, api_token: Secret | str) -> bool:
        """Capability.CHECK_CREDENTIALS: True if the tenant's own credentials work."""
        raise self._unsupported(Capability.CHECK_CREDENTIALS)

    def set_account_callbacks(self, *, url: str, salt: Secret | str | None) -> None:
        """Capability.ACCOUNT_CALLBACKS: where the provider posts the reseller's account events
        (its own and, where it forwards them, its tenants'), and the salt that signs them.
        An empty ``url`` stops the posts."""
        raise self._unsupported(Capability.ACCOUNT_CALLBACKS)

    def get_account_plans(self, account_id: AccountId) -> tuple[AccountPlan, ...]:
        """Capability.ACCOUNT_PLANS: the account's current plans and their packages."""
        raise self._unsupported(Capability.ACCOUNT_PLANS)

    def get_available_plans(self, account_id: AccountId) -> tuple[AvailablePlan, ...]:
        """Capability.ACCOUNT_PLANS: the plans the account may move to."""
        raise self._unsupported(Capability.ACCOUNT_PLANS)

    def change_account_plan(self, account_id: AccountId, *, plan_type: str, plan_id: int) -> PlanChange:
        """Capability.ACCOUNT_PLANS: move the account to a dearer plan (the provider reserves
        the next month's fee at once). Not idempotent: read the plans back on OutcomeUnknown."""
        raise self._unsupported(Capability.ACCOUNT_PLANS)

    def get_account_documents(self, account_id: AccountId) -> AccountVerification:
        """Capability.ACCOUNT_VERIFICATION: the account's document verification."""
        raise self._unsupported(Capability.ACCOUNT_VERIFICATION)

    # -- PBX users of a tenant account (see providers/pbx_users.py) -----------------------------

    def get_applications(self, *, account_id: AccountId) -> tuple[PbxApplication, ...]:
        """Capability.PBX_USERS: the tenant account's applications (users belong to one)."""
        raise self._unsupported(Capability.PBX_USERS)

    def add_user(
        self,
        *,
        account_id: AccountId,
        user_name: str,
        user_display_name: str,
        user_password: Secret | str,
        parent_accounting: bool,
        application_id: int | None = None,
        application_name: str | None = None,
        user_active: bool | None = None,
        user_custom_data: str | None = None,
    ) -> int:
        """Capability.PBX_USERS: a new user in the tenant account; returns its id. Names are
        unique per application, so a create whose answer was lost is found with ``find_user``."""
        raise self._unsupported(Capability.PBX_USERS)

    def set_user_info(
        self,
        *,
        account_id: AccountId,
        user_id: int,
        new_user_name: str | None = None,
        user_display_name: str | None = None,
        user_password: Secret | str | None = None,
        parent_accounting: bool | None = None,
        user_active: bool | None = None,
        user_custom_data: str | None = None,
    ) -> None:
        """Capability.PBX_USERS: change the given fields of one user (None: unchanged)."""
        raise self._unsupported(Capability.PBX_USERS)

    def get_users(
        self,
        *,
        account_id: AccountId,
        application_id: int | None = None,
        application_name: str | None = None,
        user_id: int | Sequence[int] | None = None,
        user_name: str | None = None,
        page_size: int = 1000,
    ) -> tuple[UserSnapshot, ...]:
        """Capability.PBX_USERS: every user of the tenant account (of one application when
        given), ascending by id, read page by page."""
        raise self._unsupported(Capability.PBX_USERS)

    def find_user(
        self,
        *,
        account_id: AccountId,
        user_name: str,
        application_id: int | None = None,
        application_name: str | None = None,
    ) -> UserSnapshot | None:
        """Capability.PBX_USERS: the user with exactly this name, or None."""
        raise self._unsupported(Capability.PBX_USERS)

    def del_user(self, *, account_id: AccountId, user_id: int) -> None:
        """Capability.PBX_USERS: delete one user."""
        raise self._unsupported(Capability.PBX_USERS)

    def transfer_money_to_user(
        self,
        *,
        account_id: AccountId,
        user_id: int,
        amount: Decimal,
        user_transaction_description: str,
        account_transaction_description: str | None = None,
        currency: str | None = None,
    ) -> Decimal:
        """Capability.PBX_USER_TRANSFERS: tenant account -> one user with its own balance;
        returns the account's balance afterwards. NOT deduplicated by the provider: on
        OutcomeUnknown look the reference (put it in ``user_transaction_description``) up
        with ``find_user_transfers`` and never resend blindly."""
        raise self._unsupported(Capability.PBX_USER_TRANSFERS)

    def transfer_money_from_user(
        self,
        *,
        account_id: AccountId,
        user_id: int,
        amount: Decimal,
        user_transaction_description: str,
        account_transaction_description: str | None = None,
        currency: str | None = None,
    ) -> Decimal:
        """Capability.PBX_USER_TRANSFERS: one user -> the tenant account (``amount`` positive;
        the method gives the direction); returns the account's balance afterwards."""
        raise self._unsupported(Capability.PBX_USER_TRANSFERS)

    def find_user_transfers(
        self,
        *,
        account_id: AccountId,
        user_id: int,
        reference: str,
        from_date: datetime,
        to_date: datetime,
    ) -> tuple[UserTransfer, ...]:
        """Capability.PBX_USER_TRANSFERS: the movements of the user's own balance in
        ``[from_date, to_date]`` whose description contains ``reference``, oldest first."""
        raise self._unsupported(Capability.PBX_USER_TRANSFERS)
