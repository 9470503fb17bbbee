"""Voximplant: the walk over every child account, the reads of given children by id, name
or email, and the fast page reader a sync uses.

GetChildrenAccounts has two readings in Voximplant's documents: the current reference says
one of ``child_account_id`` / ``child_account_name`` / ``child_account_email`` is required
(error 485 otherwise), while an older sample lists every child with only count/offset. The
unfiltered walks here turn that refusal into :class:`~providers.base.ListingNeedsFilter`;
the reads by id list (:meth:`ChildrenMixin.get_accounts`) and by name or email
(:meth:`ChildrenMixin.find_accounts`) work under both readings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from providers.base import AccountId, AccountPage, AccountSnapshot, ListingNeedsFilter
from providers.errors import InvalidArgument, OutcomeUnknown, PagingError
from providers.voximplant.accounts import AccountsMixin
from providers.voximplant.core import MAX_PAGE, _account_id, _invalid
from providers.voximplant.types import AccountInfo
from providers.voximplant.wire import PROVIDER, parse_bool, parse_decimal, parse_int

#: Error 485: a required parameter is missing (here: none of the three child filters).
_REQUIRED_MISSING = 485
#: What staff read when the provider refuses a listing of every child.
LISTING_NEEDS_FILTER = (
    "This provider only lists accounts by id, name or email (GetChildrenAccounts requires one of "
    "child_account_id, child_account_name or child_account_email)."
)
#: Pages read by one name or email lookup before giving up (a filter this wide is a typo).
_MAX_LOOKUP_PAGES = 20


@contextmanager
def _unfiltered() -> Iterator[None]:
    """An unfiltered GetChildrenAccounts call: error 485 means this provider follows the
    reading that requires a filter."""
    try:
        yield
    except InvalidArgument as exc:
        if exc.code != _REQUIRED_MISSING:
            raise
        raise ListingNeedsFilter(
            LISTING_NEEDS_FILTER, provider=PROVIDER, code=exc.code, method="GetChildrenAccounts"
        ) from None


class ChildrenMixin(AccountsMixin):
    """Every child, each once: the pages, the ids and the snapshots a sync reads; and the
    children with given ids, name or email."""

    max_ids_per_read = MAX_PAGE

    def get_children_snapshots(
        self,
        *,
        count: int,
        offset: int | None = None,
        active: bool | None = None,
        frozen: bool | None = None,
        return_live_balance: bool | None = None,
        child_account_id: Sequence[int] | None = None,
        child_account_name: str | None = None,
        child_account_email: str | None = None,
        order_by: str = "child_account_id",
    ) -> AccountPage:
        """One GetChildrenAccounts page in ``child_account_id`` order, read for a sync.

        Same call, auth, retries and error mapping as :meth:`get_children_accounts`, but
        each child becomes an :class:`AccountSnapshot` (id, name, email, flags, balance,
        currency, credit limit) instead of a full :class:`AccountInfo`: dates, the other
        money fields and the extras are not parsed, which is most of the cost of a page.

        With ``child_account_id`` (up to 1000 ids) unknown ids are left out rather than
        refused (``ignore_invalid_accounts``). Without any of the three filters a provider
        that requires one answers :class:`~providers.base.ListingNeedsFilter`.
        """
        method = "GetChildrenAccounts"
        if not 1 <= count <= MAX_PAGE:
            raise _invalid(f"count must be 1..{MAX_PAGE} for full output", "count", method)
        if offset is not None and offset < 0:
            raise _invalid("offset must be >= 0", "offset", method)
        ids = None
        if child_account_id is not None:
            ids = [_account_id(i, method) for i in child_account_id]
            if not 1 <= len(ids) <= MAX_PAGE:
                raise _invalid(f"1..{MAX_PAGE} child account ids per call", "child_account_id", method)
        params = {
            "child_account_id": ids,
            "child_account_name": child_account_name,
            "child_account_email": child_account_email,
            "ignore_invalid_accounts": True if ids is not None else None,
            "active": active,
            "frozen": frozen,
            "count": count,
            "offset": offset or None,
            "order_by": order_by,
            "return_live_balance": return_live_balance,
        }
        if ids is None and child_account_name is None and child_account_email is None:
            with _unfiltered():
                body = self._call(method, params, read=True, fast=_fast_page)
        else:
            body = self._call(method, params, read=True, fast=_fast_page)
        if isinstance(body, AccountPage):
            return body
        rows = body["result"]
        if not isinstance(rows, list):
            raise OutcomeUnknown("malformed response: result is not a list", provider=PROVIDER, method=method)
        accounts = tuple(_snapshot_from_row(row, method) for row in rows)
        total = body.get("total_count")
        return AccountPage(
            accounts=accounts,
            total_count=total if isinstance(total, int) and not isinstance(total, bool) else len(accounts),
        )

    def iter_children_ids(
        self, *, active: bool | None = None, frozen: bool | None = None, id_page_size: int | None = None
    ) -> list[int]:
        """Every child account id, ascending, each once: the walk of :meth:`iter_children_pages`
        over ``brief_output`` pages of ``id_page_size`` ids (default 1000)."""
        size = MAX_PAGE if id_page_size is None else id_page_size
        if size < 1:
            raise _invalid("id_page_size must be at least 1", "count", "GetChildrenAccounts")

        def read(count: int, offset: int) -> tuple[Sequence[AccountInfo], int | None]:
            with _unfiltered():
                page = self.get_children_accounts(
                    brief_output=True,
                    order_by="child_account_id",
                    active=active,
                    frozen=frozen,
                    count=count,
                    offset=offset or None,
                )
            return page.accounts, page.total_count

        return [a.account_id for rows, _ in _walk_by_id(read, size, _info_id) for a in rows]

    def iter_children_pages(
        self,
        *,
        page_size: int = MAX_PAGE,
        active: bool | None = None,
        frozen: bool | None = None,
        return_live_balance: bool | None = None,
    ) -> Iterator[tuple[AccountInfo, ...]]:
        """Every child (full AccountInfo), each exactly once, in ascending id order; see
        :func:`_walk_by_id` for why children added or removed during the walk cannot cause
        skips or repeats. The first page holds up to ``page_size`` children, later pages up
        to ``page_size - 1`` (each call re-reads the last child already seen)."""

        def read(count: int, offset: int) -> tuple[Sequence[AccountInfo], int | None]:
            with _unfiltered():
                page = self.get_children_accounts(
                    order_by="child_account_id",
                    active=active,
                    frozen=frozen,
                    count=count,
                    offset=offset or None,
                    return_live_balance=return_live_balance,
                )
            return page.accounts, page.total_count

        for rows, _ in _walk_by_id(read, page_size, _info_id):
            yield tuple(rows)

    def iter_children(self, **kwargs: Any) -> Iterator[AccountInfo]:
        """Every child, one at a time (see :meth:`iter_children_pages`)."""
        for page in self.iter_children_pages(**kwargs):
            yield from page

    # -- provider-neutral interface ---------------------------------------------------------

    def iter_account_pages(self, *, page_size: int = MAX_PAGE) -> Iterator[Sequence[AccountSnapshot]]:
        for page in self.iter_balance_pages(page_size=page_size):
            yield page.accounts

    def iter_balance_pages(self, *, page_size: int = MAX_PAGE) -> Iterator[AccountPage]:
        """Every child once, ascending by id, one :meth:`get_children_snapshots` call per page
        (see :func:`_walk_by_id`). Memory holds one page whatever the number of children."""

        def read(count: int, offset: int) -> tuple[Sequence[AccountSnapshot], int | None]:
            page = self.get_children_snapshots(count=count, offset=offset)
            return page.accounts, page.total_count

        for rows, total in _walk_by_id(read, page_size, _snapshot_id):
            yield AccountPage(accounts=tuple(rows), total_count=total)

    def iter_account_id_pages(self, *, page_size: int = MAX_PAGE) -> Iterator[tuple[AccountId, ...]]:
        """Every child id once, ascending, ``page_size`` per ``brief_output`` call (see
        :func:`_walk_by_id`): the cheap walk that discovers children the caller does not know."""

        def read(count: int, offset: int) -> tuple[Sequence[AccountInfo], int | None]:
            with _unfiltered():
                page = self.get_children_accounts(
                    brief_output=True, order_by="child_account_id", count=count, offset=offset or None
                )
            return page.accounts, page.total_count

        for rows, _ in _walk_by_id(read, page_size, _info_id):
            yield tuple(a.account_id for a in rows)

    def get_accounts(self, account_ids: Sequence[AccountId]) -> tuple[AccountSnapshot, ...]:
        """The children with these ids, ascending, one GetChildrenAccounts call per 1000 ids
        (``child_account_id=a;b;c``). Ids the provider does not know (removed, or never its
        children) are simply not in the answer. Works whether or not the provider requires
        a filter."""
        method = "GetChildrenAccounts"
        wanted = sorted({_account_id(i, method) for i in account_ids})
        found: list[AccountSnapshot] = []
        for start in range(0, len(wanted), MAX_PAGE):
            chunk = wanted[start : start + MAX_PAGE]
            page = self.get_children_snapshots(count=len(chunk), child_account_id=chunk)
            asked = set(chunk)
            found.extend(a for a in page.accounts if int(a.account_id) in asked)
        found.sort(key=_snapshot_id)
        return tuple(found)

    def find_accounts(self, *, name: str | None = None, email: str | None = None) -> tuple[AccountSnapshot, ...]:
        """The children whose name is exactly ``name`` (or whose email is ``email``, in any
        case). The provider's filter may match a part of the name or the whole of it (its
        documents differ); either way the answer is compared exactly here, so the caller
        types the full name or email."""
        method = "GetChildrenAccounts"
        if (name is None) == (email is None):
            raise _invalid("give exactly one of name or email", "child_account_name", method)
        text = (name if name is not None else email or "").strip()
        if not text:
            raise _invalid("the name or email is empty", "child_account_name", method)
        matches: list[AccountSnapshot] = []
        offset = 0
        for _ in range(_MAX_LOOKUP_PAGES):
            page = self.get_children_snapshots(
                count=MAX_PAGE,
                offset=offset,
                child_account_name=text if name is not None else None,
                child_account_email=text if email is not None else None,
            )
            for account in page.accounts:
                if (name is not None and account.name == text) or (
                    email is not None and (account.email or "").strip().lower() == text.lower()
                ):
                    matches.append(account)
            if len(page.accounts) < MAX_PAGE:
                break
            offset += len(page.accounts)
        matches.sort(key=_snapshot_id)
        return tuple(matches)


def _money(value: Any, name: str, method: str) -> Decimal | None:
    # Responses are parsed with parse_float=Decimal: the common cases need no more work.
    kind = type(value)
    if kind is Decimal and value.is_finite():
        return value  # type: ignore[no-any-return]
    if kind is int:
        return Decimal(value)
    return parse_decimal(value, name, method)


def _snapshot_from_row(row: Any, method: str) -> AccountSnapshot:
    """A GetChildrenAccounts row as a snapshot, converting only the fields a snapshot has."""
    if not isinstance(row, dict) or "account_id" not in row:
        raise OutcomeUnknown("malformed response: account without account_id", provider=PROVIDER, method=method)
    return AccountSnapshot(
        account_id=parse_int(row["account_id"], "account_id", method),
        name=row.get("account_name"),
        email=row.get("account_email"),
        active=parse_bool(row.get("active")),
        frozen=parse_bool(row.get("frozen")),
        balance=_money(row.get("balance"), "balance", method),
        currency=row.get("currency"),
        credit_limit=_money(row.get("credit_limit"), "credit_limit", method),
        min_balance_to_notify=_money(row.get("min_balance_to_notify"), "min_balance_to_notify", method),
    )


class _WireChild(msgspec.Struct):
    """The fields of a GetChildrenAccounts row a snapshot has, in the types the provider
    sends them; the row's other fields (some thirty) are skipped unread."""

    account_id: int
    account_name: str | None = None
    account_email: str | None = None
    active: bool | None = None
    frozen: bool | None = None
    balance: Decimal | None = None
    currency: str | None = None
    credit_limit: Decimal | None = None
    min_balance_to_notify: Decimal | None = None


class _WirePage(msgspec.Struct):
    result: list[_WireChild]
    total_count: int | None = None
    # Present and not null only in an error answer: then the typed decode fails.
    error: None = None
    errors: None = None


_PAGE = msgspec.json.Decoder(_WirePage)


def _fast_page(content: bytes) -> AccountPage | None:
    """A GetChildrenAccounts answer decoded straight into snapshots, for the common answer
    only: ids as integers, flags as true/false, amounts as JSON numbers or numeric strings
    (read exactly, as Decimals, never through a float), no ``error``. Anything else (an
    error, a flag sent as "1", an amount that is not finite, a body that is not JSON) is
    None, and the general parser reads it as :func:`_snapshot_from_row` does. About four
    times faster than the standard library's decoder on a 1,000-account page, which is most
    of what a sync's reads cost in Python."""
    try:
        page = _PAGE.decode(content)
    except msgspec.DecodeError:
        return None
    accounts = []
    for row in page.result:
        balance, credit, notify = row.balance, row.credit_limit, row.min_balance_to_notify
        if (
            (balance is not None and not balance.is_finite())
            or (credit is not None and not credit.is_finite())
            or (notify is not None and not notify.is_finite())
        ):
            return None
        accounts.append(
            AccountSnapshot(
                row.account_id,
                row.account_name,
                row.account_email,
                row.active,
                row.frozen,
                balance,
                row.currency,
                credit,
                notify,
            )
        )
    return AccountPage(
        accounts=tuple(accounts), total_count=page.total_count if page.total_count is not None else len(accounts)
    )


def _info_id(account: AccountInfo) -> int:
    return account.account_id


def _snapshot_id(account: AccountSnapshot) -> int:
    return int(account.account_id)


_Row = TypeVar("_Row")
_MAX_STALLED_PAGES = 10


def _walk_by_id(
    read: Callable[[int, int], tuple[Sequence[_Row], int | None]], page_size: int, ident: Callable[[_Row], int]
) -> Iterator[tuple[list[_Row], int | None]]:
    """The one walk over every child: each child once, in ascending id order, ``page_size``
    per call. ``read(count, offset)`` returns one page ordered by ``child_account_id`` and
    the provider's total count; yields (the children not yet seen, that count).

    Offset paging ordered by id, with a one-row overlap: each request starts at the last
    child already seen (the anchor). Children created during the walk get larger ids and
    land after the anchor, so they are picked up in the same walk; if children before the
    anchor vanish, the page no longer starts at or before the anchor and the walk backs up
    until it finds its place again. One call per page, no id list held: memory holds one
    page whatever the number of children. A page out of id order, or pages that stop
    moving forward, raise :class:`PagingError` rather than skip or repeat children.
    """
    method = "GetChildrenAccounts"
    if not 1 <= page_size <= MAX_PAGE:
        raise _invalid(f"page_size must be 1..{MAX_PAGE}", "count", method)
    last_id: int | None = None
    next_offset = 0
    stalled = 0
    while True:
        ask = next_offset - 1 if last_id is not None else 0
        while True:
            rows, total = read(page_size, ask)
            ids = [ident(row) for row in rows]
            if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
                raise PagingError(
                    "GetChildrenAccounts ignored order_by=child_account_id", provider=PROVIDER, method=method
                )
            if last_id is None or ask == 0 or (ids and ids[0] <= last_id):
                break
            # Children before the anchor were removed since the last page: back up and retry.
            ask = max(0, ask - page_size)
        fresh = [row for row, i in zip(rows, ids, strict=True) if last_id is None or i > last_id]
        if fresh:
            stalled = 0
            last_id = ident(fresh[-1])
            yield fresh, total
        else:
            # Only when the anchor ended up as the last child of a full page, which takes a
            # removal timed just so; page after page of it means the offset is not honoured.
            stalled += 1
            if stalled >= _MAX_STALLED_PAGES:
                raise PagingError("GetChildrenAccounts pages stopped moving forward", provider=PROVIDER, method=method)
        next_offset = ask + len(rows)
        if len(rows) < page_size:
            return
