"""Billing's seam to the provider clients: one place for every call billing makes.

Clients come from tenants.connections.client_for and are cached per connection in the
process (one connection pool per worker), so a busy worker reuses keep-alive connections.
Every call goes through the provider-neutral interface (providers.base.ProviderClient);
an operation the provider lacks raises Unsupported with the capability's reason. Nothing
here touches the database.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from providers.base import AccountSnapshot, ListingNeedsFilter, MoneyTransfer, ProviderClient
from providers.capabilities import Capability, CapabilityMatrix
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    Duplicate,
    InsufficientFunds,
    InvalidArgument,
    NotSent,
    OutcomeUnknown,
    PagingError,
    ProviderError,
    RateLimited,
    Unsupported,
)
from tenants.connections import client_for, effective_matrix
from tenants.models import ProviderConnection

logger = logging.getLogger("billing.provider")

# Provider transaction types (Voximplant's names); the parent's side of each transfer.
TO_CHILD = "money_transfer_to_child"
FROM_CHILD = "money_acceptance_from_child"
CHILD_FROM_PARENT = "money_acceptance_from_parent"
CHILD_TO_PARENT = "money_transfer_to_parent"
PARENT_SIDE = {"to_tenant": TO_CHILD, "to_parent": FROM_CHILD}
CHILD_SIDE = {"to_tenant": CHILD_FROM_PARENT, "to_parent": CHILD_TO_PARENT}
#: Money between a tenant's account and one of its PBX users (Transfer.USER_DIRECTIONS).
USER_DIRECTIONS = frozenset({"to_user", "from_user"})
#: Voximplant's error for a user that spends the account's money (no balance of its own).
NO_OWN_BALANCE = 573
NO_OWN_BALANCE_TEXT = "the user spends the account's money and has no balance of its own"

PAGE_SIZE = 1000

_cache_lock = threading.Lock()
_clients: OrderedDict[tuple[Any, ...], ProviderClient] = OrderedDict()
_CACHE_SIZE = 8


def _key(connection: ProviderConnection) -> tuple[Any, ...]:
    return (
        connection.pk,
        connection.kind,
        connection.base_url,
        connection.credentials_path,
        connection.parent_api_key_path,
        connection.voiceit_credentials_path,
    )


def client(connection: ProviderConnection) -> ProviderClient:
    """The cached client of this connection (do not close it)."""

    key = _key(connection)
    with _cache_lock:
        cached = _clients.get(key)
        if cached is not None:
            _clients.move_to_end(key)
            return cached
    built: ProviderClient = client_for(connection)
    with _cache_lock:
        _clients[key] = built
        while len(_clients) > _CACHE_SIZE:
            _, old = _clients.popitem(last=False)
            try:
                old.close()
            except Exception:  # noqa: BLE001 - closing a pool must not break the caller
                logger.debug("closing an evicted provider client failed", exc_info=True)
    return built


def forget_clients() -> None:
    with _cache_lock:
        items = list(_clients.values())
        _clients.clear()
    for item in items:
        try:
            item.close()
        except Exception:  # noqa: BLE001 - closing pools at shutdown; nothing to do about a failure
            logger.debug("closing a provider client failed", exc_info=True)


def _matrix(connection: ProviderConnection) -> CapabilityMatrix:
    # The static matrix as the connection's last probe leaves it: a provider method probed
    # missing makes the capabilities that need it unsupported, with the reason.
    matrix: CapabilityMatrix = effective_matrix(connection)
    return matrix


def supports(connection: ProviderConnection, capability: Capability) -> bool:
    """Whether billing may use ``capability`` on this connection: the static matrix and the
    probed methods (tenants.capability_probe) both allow it."""
    return _matrix(connection).supports(capability)


def unsupported_reason(connection: ProviderConnection, capability: Capability) -> str | None:
    """Why not, e.g. "The provider no longer answers TransferMoneyToChildAccount (checked ...)"."""
    return _matrix(connection).reason(capability)


# -- transfers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    balance: Decimal | None


def send_transfer(
    connection: ProviderConnection,
    *,
    direction: str,
    child_account_id: int,
    amount: Decimal,
    currency: str,
    payment_reference: str,
    dup_check_from: datetime,
    user_id: int | None = None,
) -> Sent:
    """One transfer in strict mode to one integer child id: a top-up (``to_tenant``) through
    the client's ``transfer_money``, a pull back (``to_parent``) through ``withdraw_money``;
    inside the child, account → user (``to_user``) and user → account (``from_user``) through
    ``transfer_money_to_user`` / ``transfer_money_from_user`` with the payment reference
    written in both descriptions (that method has no reference and no duplicate check: the
    lookup finds an attempt by the description). All are guarded by the client too; the shape
    is checked here first so a bad request is refused the same way whatever the provider."""
    c = client(connection)
    if type(child_account_id) is not int or child_account_id <= 0:
        raise InvalidArgument("exactly one positive integer child account id is required", field="child_account_id")
    if (
        not isinstance(amount, Decimal)
        or not amount.is_finite()
        or amount < Decimal("0.01")
        or amount != amount.quantize(Decimal("0.01"))
    ):
        raise InvalidArgument("amount must be a positive Decimal with at most 2 places", field="amount")
    if direction in USER_DIRECTIONS:
        if type(user_id) is not int or user_id <= 0:
            raise InvalidArgument("exactly one positive integer user id is required", field="user_id")
        move = c.transfer_money_to_user if direction == "to_user" else c.transfer_money_from_user
        try:
            balance = move(
                account_id=child_account_id,
                user_id=user_id,
                amount=amount,
                user_transaction_description=payment_reference,
                account_transaction_description=payment_reference,
                currency=currency,
            )
        except InvalidArgument as exc:
            if exc.code == NO_OWN_BALANCE:
                raise InvalidArgument(
                    NO_OWN_BALANCE_TEXT, provider=exc.provider, code=exc.code, field="user_id"
                ) from exc
            raise
        return Sent(balance=balance)
    send = c.transfer_money if direction == "to_tenant" else c.withdraw_money
    result = send(
        account_id=child_account_id,
        amount=amount,
        payment_reference=payment_reference,
        check_duplicate_reference_from=dup_check_from,
        currency=currency,
    )
    return Sent(balance=result.balance)


@dataclass(frozen=True)
class Found:
    transaction_id: str
    amount: Decimal
    currency: str | None
    performed_at: datetime
    transaction_type: str
    account_id: str


def lookup_transfer(
    connection: ProviderConnection,
    *,
    direction: str,
    payment_reference: str,
    dup_check_from: datetime,
    now: datetime,
    child_account_id: int | None = None,
    user_id: int | None = None,
) -> list[Found]:
    """The provider's transactions of this transfer, found by reference: the parent's side
    of a transfer with a child, the user's side of a transfer inside the child (its
    description carries the reference; ``amount`` is signed so that a movement the other
    way reads negative and never passes for this transfer).

    Asks in Etc/GMT from the fixed duplicate window's start to tomorrow: the padding makes
    the provider's timezone handling harmless (see docs/money.md).
    """
    c = client(connection)
    if direction in USER_DIRECTIONS:
        if child_account_id is None or user_id is None:
            raise InvalidArgument("a user transfer's lookup needs the account and the user", field="user_id")
        sign = 1 if direction == "to_user" else -1
        return [
            Found(
                transaction_id=str(row.transaction_id),
                amount=sign * Decimal(row.amount),
                currency=row.currency,
                performed_at=row.performed_at,
                transaction_type=row.transaction_type,
                account_id=str(row.account_id),
            )
            for row in c.find_user_transfers(
                account_id=child_account_id,
                user_id=user_id,
                reference=payment_reference,
                from_date=dup_check_from,
                to_date=now + timedelta(days=1),
            )
        ]
    rows = c.iter_transactions(
        from_date=dup_check_from, to_date=now + timedelta(days=1), payment_reference=payment_reference
    )
    wanted = PARENT_SIDE[direction]
    found = []
    for row in rows:
        if row.payment_reference != payment_reference or row.transaction_type != wanted:
            continue
        found.append(
            Found(
                transaction_id=str(row.transaction_id),
                amount=abs(Decimal(row.amount)),
                currency=row.currency,
                performed_at=row.performed_at,
                transaction_type=row.transaction_type,
                account_id=str(row.account_id),
            )
        )
    return found


def iter_user_transfers(
    connection: ProviderConnection,
    *,
    child_account_id: int,
    user_id: int,
    reference: str,
    from_date: datetime,
    to_date: datetime,
) -> tuple[Any, ...]:
    """The user's side of every transfer inside the child whose description holds ``reference``
    (a prefix the portal writes, for reconciliation)."""
    return tuple(
        client(connection).find_user_transfers(
            account_id=child_account_id, user_id=user_id, reference=reference, from_date=from_date, to_date=to_date
        )
    )


def iter_parent_transfers(
    connection: ProviderConnection, *, from_date: datetime, to_date: datetime
) -> Iterator[MoneyTransfer]:
    """Every child-side transfer row in the window (account_id = the child): what the provider
    moved between the parent and each child, for reconciliation."""
    yield from client(connection).iter_transactions(
        from_date=from_date,
        to_date=to_date,
        tenant_side=True,
        transaction_types=[CHILD_FROM_PARENT, CHILD_TO_PARENT],
    )


@dataclass(frozen=True, slots=True)
class AccountTransaction:
    """One money movement of a child account, as a statement shows it."""

    transaction_id: int | str
    performed_at: datetime
    amount: Decimal
    currency: str | None
    transaction_type: str
    transaction_description: str | None
    payment_reference: str | None


def iter_account_transactions(
    connection: ProviderConnection, *, account_id: int, from_date: datetime, to_date: datetime
) -> Iterator[AccountTransaction]:
    """Every transaction of one child (for statements), oldest first."""
    for row in client(connection).iter_transactions(
        from_date=from_date, to_date=to_date, account_id=account_id, tenant_side=True
    ):
        yield AccountTransaction(
            transaction_id=row.transaction_id,
            performed_at=row.performed_at,
            amount=row.amount,
            currency=row.currency,
            transaction_type=row.transaction_type,
            transaction_description=row.description,
            payment_reference=row.payment_reference,
        )


# -- accounts ------------------------------------------------------------------------------


def parent_balance(connection: ProviderConnection) -> tuple[Decimal, str | None]:
    account = client(connection).get_own_account()
    if account.balance is None:
        raise OutcomeUnknown("the provider did not report the parent balance", provider=connection.kind)
    return account.balance, account.currency


def child_account(connection: ProviderConnection, account_id: int) -> AccountSnapshot | None:
    """One child's live snapshot, or None when the provider does not know it."""
    return client(connection).get_account(account_id)


def set_low_balance_threshold(connection: ProviderConnection, account_id: int, threshold: Decimal) -> None:
    client(connection).set_low_balance_threshold(account_id, threshold)


def set_account_callbacks(connection: ProviderConnection, *, url: str, salt: str) -> None:
    """Where the provider posts the parent account's callbacks, and their salt."""
    client(connection).set_account_callbacks(url=url, salt=salt)


def iter_children_pages(
    connection: ProviderConnection, *, page_size: int = PAGE_SIZE
) -> Iterator[tuple[Sequence[AccountSnapshot], int]]:
    """Every child once, in ascending id order, ``page_size`` per call: (accounts, the
    provider's total count, or -1 when it gives none). The walk is the client's
    (``iter_balance_pages``): children added during it are picked up, removals cannot make
    it skip or repeat, and memory holds one page whatever the number of children.

    A provider that lists children only by id, name or email raises
    :class:`~providers.base.ListingNeedsFilter` on the first page (see
    :func:`listing_refused`); read known children with :func:`read_children` instead."""
    for page in client(connection).iter_balance_pages(page_size=page_size):
        yield page.accounts, -1 if page.total_count is None else page.total_count


def iter_children_id_pages(connection: ProviderConnection, *, page_size: int = PAGE_SIZE) -> Iterator[list[int]]:
    """Every child id once, ascending, page by page: the cheap walk that discovers accounts no
    tenant stands for. :class:`~providers.base.ListingNeedsFilter` where the provider lists
    children only by id, name or email."""
    for page in client(connection).iter_account_id_pages(page_size=page_size):
        yield [int(i) for i in page]


def ids_per_read(connection: ProviderConnection, wanted: int = PAGE_SIZE) -> int:
    """How many ids one :func:`read_children` chunk should hold: ``wanted`` (a setting), never
    more than the provider accepts in one call."""
    return max(1, min(wanted, client(connection).max_ids_per_read))


def read_children(connection: ProviderConnection, account_ids: Sequence[int]) -> tuple[AccountSnapshot, ...]:
    """The children with these ids as the provider sees them now, ascending; ids it does not
    return are gone at the provider. One chunk, no database, no shared state: chunks may be
    read in any order or side by side."""
    if not account_ids:
        return ()
    return client(connection).get_accounts(list(account_ids))


def listing_refused(err: BaseException) -> bool:
    """Did the provider refuse to list every child because it wants an id, name or email?"""
    return isinstance(err, ListingNeedsFilter)


def prefetch(iterator: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``iterator`` in a thread, ``depth`` items ahead: the next page is on the wire while
    this one is written to the database. Exceptions surface in the consumer."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(("item", item), timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(("done", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            items.put(("error", exc))

    thread = threading.Thread(target=produce, name="billing-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        try:
            while True:
                items.get_nowait()
        except queue.Empty:
            pass


def is_definite_refusal(err: ProviderError) -> bool:
    """The provider answered and did nothing (see providers.errors)."""

    if isinstance(err, OutcomeUnknown | Duplicate | NotSent | RateLimited | PagingError):
        return False
    return (
        isinstance(err, InsufficientFunds | InvalidArgument | AuthenticationError | Unsupported | ConfigurationError)
        or type(err) is ProviderError
    )
