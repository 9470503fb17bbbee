"""Voximplant: the walk over every child account and the fast page reader it uses for a sync."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from providers.base import AccountPage, AccountSnapshot
from providers.errors import OutcomeUnknown, PagingError
from providers.voximplant.accounts import AccountsMixin
from providers.voximplant.core import MAX_PAGE, _invalid
from providers.voximplant.types import AccountInfo
from providers.voximplant.wire import PROVIDER, parse_bool, parse_decimal, parse_int


class ChildrenMixin(AccountsMixin):
    """Every child, each once: the pages, the ids and the snapshots a sync reads."""

    def get_children_snapshots(
        self,
        *,
        count: int,
        offset: int | None = None,
        active: bool | None = None,
        frozen: bool | None = None,
        return_live_balance: bool | None = None,
    ) -> AccountPage:
        """One GetChildrenAccounts page in ``child_account_id`` order, read for a sync.

        Same call, auth, retries and error mapping as :meth:`get_children_accounts`, but
        each child becomes an :class:`AccountSnapshot` (id, name, email, flags, balance,
        currency, credit limit) instead of a full :class:`AccountInfo`: dates, the other
        money fields and the extras are not parsed, which is most of the cost of a page.
        """
        method = "GetChildrenAccounts"
        if not 1 <= count <= MAX_PAGE:
            raise _invalid(f"count must be 1..{MAX_PAGE} for full output", "count", method)
        if offset is not None and offset < 0:
            raise _invalid("offset must be >= 0", "offset", method)
        params = {
            "active": active,
            "frozen": frozen,
            "count": count,
            "offset": offset or None,
            "order_by": "child_account_id",
            "return_live_balance": return_live_balance,
        }
        body = self._call(method, params, read=True)
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
