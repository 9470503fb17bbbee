"""Billing's seam to the provider clients: one place for every call billing makes.

Clients come from tenants.connections.client_for and are cached per connection in the
process (one connection pool per worker), so a busy worker reuses keep-alive connections.
Nothing here touches the database.
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

from providers.capabilities import Capability
from providers.errors import InvalidArgument, OutcomeUnknown, PagingError, ProviderError, Unsupported

logger = logging.getLogger("billing.provider")

# Provider transaction types (voximplant.md §4.4); the parent's side of each transfer.
TO_CHILD = "money_transfer_to_child"
FROM_CHILD = "money_acceptance_from_child"
CHILD_FROM_PARENT = "money_acceptance_from_parent"
CHILD_TO_PARENT = "money_transfer_to_parent"
PARENT_SIDE = {"to_tenant": TO_CHILD, "to_parent": FROM_CHILD}
CHILD_SIDE = {"to_tenant": CHILD_FROM_PARENT, "to_parent": CHILD_TO_PARENT}

PAGE_SIZE = 1000

_cache_lock = threading.Lock()
_clients: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_CACHE_SIZE = 8


def _key(connection: Any) -> tuple[Any, ...]:
    return (
        connection.pk,
        connection.kind,
        connection.base_url,
        connection.credentials_path,
        connection.parent_api_key_path,
        connection.voiceit_credentials_path,
    )


def client(connection: Any) -> Any:
    """The cached client of this connection (do not close it)."""
    from tenants.connections import client_for

    key = _key(connection)
    with _cache_lock:
        cached = _clients.get(key)
        if cached is not None:
            _clients.move_to_end(key)
            return cached
    built = client_for(connection)
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


def supports(connection: Any, capability: Capability) -> bool:
    from tenants.connections import capability_matrix

    return bool(capability_matrix(connection).supports(capability))


def unsupported_reason(connection: Any, capability: Capability) -> str | None:
    from tenants.connections import capability_matrix

    return capability_matrix(connection).reason(capability)


# -- transfers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    balance: Decimal | None


def send_transfer(
    connection: Any,
    *,
    direction: str,
    child_account_id: int,
    amount: Decimal,
    currency: str,
    payment_reference: str,
    dup_check_from: datetime,
) -> Sent:
    """One TransferMoneyToChildAccount in strict mode to one integer child id.

    Top-ups go through the client's guarded ``transfer_money``. A pull (negative amount,
    child → parent) has no method on the client yet, so it is sent through the client's
    transport with the same guards applied here: one positive integer id, a positive
    two-place amount negated on the wire, strict mode, the reference and the fixed window.
    """
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
    if direction == "to_tenant":
        result = c.transfer_money(
            account_id=child_account_id,
            amount=amount,
            payment_reference=payment_reference,
            check_duplicate_reference_from=dup_check_from,
            currency=currency,
        )
        return Sent(balance=getattr(result, "balance", None))
    pull = getattr(c, "transfer_money_from_child_account", None)
    if pull is not None:  # the provider client grew the call: prefer it
        result = pull(
            child_account_id=child_account_id,
            amount=amount,
            payment_reference=payment_reference,
            check_duplicate_reference_from=dup_check_from,
            currency=currency,
        )
        return Sent(balance=getattr(result, "balance", None))
    call = getattr(c, "_call", None)
    if call is None or not c.supports(Capability.TRANSFER_MONEY):
        raise Unsupported("this provider cannot pull money back from a tenant")
    body = call(
        "TransferMoneyToChildAccount",
        {
            "child_account_id": child_account_id,
            "amount": -amount,
            "currency": currency,
            "strict_mode": True,
            "payment_reference": payment_reference,
            "check_duplicate_reference_from": dup_check_from,
        },
        read=False,
    )
    result = body.get("result")
    if not (result is True or (isinstance(result, int) and not isinstance(result, bool) and result == 1)):
        raise OutcomeUnknown(
            f"unexpected result {result!r}", provider=connection.kind, method="TransferMoneyToChildAccount"
        )
    balance = body.get("balance")
    return Sent(balance=Decimal(str(balance)) if balance is not None else None)


@dataclass(frozen=True)
class Found:
    transaction_id: str
    amount: Decimal
    currency: str | None
    performed_at: datetime
    transaction_type: str
    account_id: str


def lookup_transfer(
    connection: Any, *, direction: str, payment_reference: str, dup_check_from: datetime, now: datetime
) -> list[Found]:
    """The provider's transactions of this transfer (parent side), found by reference.

    Asks in Etc/GMT from the fixed duplicate window's start to tomorrow (RELIABILITY.md §3):
    the padding makes the provider's timezone handling harmless (F12).
    """
    c = client(connection)
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


def iter_parent_transfers(connection: Any, *, from_date: datetime, to_date: datetime) -> Iterator[Any]:
    """Every child-side transfer row in the window (account_id = the child): what the provider
    moved between the parent and each child, for reconciliation."""
    c = client(connection)
    history = getattr(c, "iter_transaction_history", None)
    if history is None:
        raise Unsupported("this provider has no transaction history")
    yield from history(
        from_date=from_date,
        to_date=to_date,
        child_account_id="all",
        children_transactions_only=True,
        transaction_type=[CHILD_FROM_PARENT, CHILD_TO_PARENT],
    )


def iter_account_transactions(
    connection: Any, *, account_id: int, from_date: datetime, to_date: datetime
) -> Iterator[Any]:
    """Every transaction of one child (for statements), oldest first."""
    c = client(connection)
    history = getattr(c, "iter_transaction_history", None)
    if history is None:
        raise Unsupported("this provider has no transaction history")
    yield from history(
        from_date=from_date, to_date=to_date, child_account_id=account_id, children_transactions_only=True
    )


# -- accounts ------------------------------------------------------------------------------


def parent_balance(connection: Any) -> tuple[Decimal, str | None]:
    c = client(connection)
    info = getattr(c, "get_account_info", None)
    if info is None:
        raise Unsupported("this provider does not report the parent balance")
    account = info().account
    if account.balance is None:
        raise OutcomeUnknown("the provider did not report the parent balance", provider=connection.kind)
    return Decimal(account.balance), account.currency


def child_account(connection: Any, account_id: int) -> Any | None:
    """One child's live AccountInfo, or None when the provider does not know it."""
    c = client(connection)
    page = c.get_children_accounts(child_account_id=[account_id], ignore_invalid_accounts=True, count=1)
    for account in page.accounts:
        if account.account_id == account_id:
            return account
    return None


def set_low_balance_threshold(connection: Any, account_id: int, threshold: Decimal) -> None:
    c = client(connection)
    setter = getattr(c, "set_child_account_info", None)
    if setter is None:
        raise Unsupported("this provider has no per-account low-balance threshold")
    setter(child_account_id=account_id, min_balance_to_notify=threshold)


@dataclass(frozen=True, slots=True)
class ChildRow:
    """The part of AccountInfoType the sync keeps."""

    account_id: int
    account_name: str | None
    account_email: str | None
    balance: Decimal | None
    currency: str | None
    active: bool | None
    frozen: bool | None
    credit_limit: Decimal | None


def _money(value: Any, what: str) -> Decimal | None:
    # The client parses JSON with parse_float=Decimal: the common cases need no more work.
    kind = type(value)
    if kind is Decimal and value.is_finite():
        return value
    if kind is int:
        return Decimal(value)
    from providers.voximplant.wire import parse_decimal

    return parse_decimal(value, what, "GetChildrenAccounts")


def _row_from_json(row: Any) -> ChildRow:
    from providers.voximplant.wire import parse_bool, parse_int

    if not isinstance(row, dict) or "account_id" not in row:
        raise OutcomeUnknown(
            "malformed response: account without account_id", provider="voximplant", method="GetChildrenAccounts"
        )
    return ChildRow(
        account_id=parse_int(row["account_id"], "account_id", "GetChildrenAccounts"),
        account_name=row.get("account_name"),
        account_email=row.get("account_email"),
        balance=_money(row.get("balance"), "balance"),
        currency=row.get("currency"),
        active=parse_bool(row.get("active")),
        frozen=parse_bool(row.get("frozen")),
        credit_limit=_money(row.get("credit_limit"), "credit_limit"),
    )


def _row_from_info(account: Any) -> ChildRow:
    return ChildRow(
        account_id=int(account.account_id),
        account_name=getattr(account, "account_name", None),
        account_email=getattr(account, "account_email", None),
        balance=account.balance,
        currency=account.currency,
        active=account.active,
        frozen=account.frozen,
        credit_limit=getattr(account, "credit_limit", None),
    )


def children_page(connection: Any, *, count: int, offset: int) -> tuple[list[ChildRow], int]:
    """One GetChildrenAccounts page in child_account_id order: (rows, total_count).

    The typed ``get_children_accounts`` builds a full AccountInfo per child (dates parsed,
    six decimals checked, extras copied): about 80 µs a row, three times what the HTTP call
    and the JSON cost. The sync reads eight fields, so when the client exposes its transport
    (``_call``: same auth, timeouts, retries and error mapping) the page is read raw and
    only those fields are converted, with the client's own parsers."""
    c = client(connection)
    call = getattr(c, "_call", None)
    if call is None:
        page = c.get_children_accounts(count=count, offset=offset or None, order_by="child_account_id")
        return [_row_from_info(a) for a in page.accounts], page.total_count
    body = call(
        "GetChildrenAccounts", {"count": count, "offset": offset or None, "order_by": "child_account_id"}, read=True
    )
    rows = body.get("result")
    if not isinstance(rows, list):
        raise OutcomeUnknown(
            "malformed response: result is not a list", provider="voximplant", method="GetChildrenAccounts"
        )
    total = body.get("total_count")
    parsed = [_row_from_json(r) for r in rows]
    return parsed, int(total) if isinstance(total, int) and not isinstance(total, bool) else len(parsed)


def iter_children_pages(connection: Any, *, page_size: int = PAGE_SIZE) -> Iterator[tuple[Sequence[ChildRow], int]]:
    """Every child once, in ascending id order, ``page_size`` per call: (rows, total_count).

    Offset paging ordered by ``child_account_id`` with a one-row overlap: each request starts
    at the last row already seen (the anchor). Children created during the walk get larger
    ids and land after the anchor, so they are picked up; if rows before the anchor vanish,
    the page no longer starts with it and the walk backs up until it finds its place again.
    (Fetching details by id chunks after a brief_output id list costs a second call per page
    and holds every id; this costs one overlapping row per page.) Memory holds one page,
    whatever the number of children (ARCHITECTURE.md, the scale path).
    """
    c = client(connection)
    if getattr(c, "get_children_accounts", None) is None:
        for snapshots in c.iter_account_pages(page_size=page_size):
            yield (
                [
                    ChildRow(
                        account_id=s.account_id,
                        account_name=s.name,
                        account_email=s.email,
                        balance=s.balance,
                        currency=s.currency,
                        active=s.active,
                        frozen=s.frozen,
                        credit_limit=None,
                    )
                    for s in snapshots
                ],
                -1,
            )
        return
    last_id: int | None = None
    next_offset = 0
    while True:
        ask = next_offset - 1 if last_id is not None else 0
        while True:
            rows, total = children_page(connection, count=page_size, offset=ask)
            ids = [a.account_id for a in rows]
            if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
                raise PagingError(
                    "GetChildrenAccounts ignored order_by=child_account_id",
                    provider=connection.kind,
                    method="GetChildrenAccounts",
                )
            if last_id is None or ask == 0 or (rows and rows[0].account_id <= last_id):
                break
            # Rows before the anchor were removed since the last page: back up and retry.
            ask = max(0, ask - page_size)
        fresh = [a for a in rows if last_id is None or a.account_id > last_id]
        if fresh:
            last_id = fresh[-1].account_id
            yield fresh, total
        next_offset = ask + len(rows)
        if len(rows) < page_size:
            return


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
    from providers.errors import (
        AuthenticationError,
        ConfigurationError,
        Duplicate,
        InsufficientFunds,
        NotSent,
        RateLimited,
    )

    if isinstance(err, OutcomeUnknown | Duplicate | NotSent | RateLimited | PagingError):
        return False
    return (
        isinstance(err, InsufficientFunds | InvalidArgument | AuthenticationError | Unsupported | ConfigurationError)
        or type(err) is ProviderError
    )
