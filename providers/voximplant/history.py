"""Voximplant transaction history: one page, and every transaction of a time window."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

from providers.base import AccountId, MoneyTransfer
from providers.errors import InvalidArgument, OutcomeUnknown, PagingError
from providers.voximplant.core import HISTORY_OFFSET_CAP, MAX_PAGE, VoximplantCore, _account_id, _child_ids, _invalid
from providers.voximplant.types import Transaction, TransactionHistoryPage
from providers.voximplant.wire import PROVIDER, encode_params, parse_decimal, parse_int, parse_timestamp, zone

logger = logging.getLogger("providers.voximplant")


class HistoryMixin(VoximplantCore):
    """GetTransactionHistory, and the iterators that walk a whole window of it."""

    # Docs: https://voximplant.com/docs/references/httpapi/history (GetTransactionHistory)
    def get_transaction_history(
        self,
        *,
        from_date: datetime,
        to_date: datetime,
        timezone: str = "Etc/GMT",
        count: int | None = None,
        offset: int | None = None,
        transaction_id: int | Sequence[int] | None = None,
        transaction_type: str | Sequence[str] | None = None,
        user_id: int | Sequence[int] | None = None,
        child_account_id: int | Sequence[int] | Literal["all"] | None = None,
        children_transactions_only: bool | None = None,
        users_transactions_only: bool | None = None,
        payment_reference: str | None = None,
        desc_order: bool | None = None,
        with_total_count: bool | None = True,
        is_uncommitted: bool | None = None,
    ) -> TransactionHistoryPage:
        """One page of history. Dates are sent in ``timezone`` (default ``Etc/GMT``, never
        ``auto``); ``count`` <= 1000 and ``offset`` <= 10000 are enforced here."""
        method = "GetTransactionHistory"
        if count is not None and not 1 <= count <= MAX_PAGE:
            raise _invalid(f"count must be 1..{MAX_PAGE}", "count", method)
        if offset is not None and not 0 <= offset <= HISTORY_OFFSET_CAP:
            raise _invalid(f"offset must be 0..{HISTORY_OFFSET_CAP}", "offset", method)
        if timezone == "auto":
            # Never "auto": the dates would be read in the account's
            # location, which this client does not know when it formats them.
            raise _invalid("timezone='auto' is not supported; pass a zone name", "timezone", method)
        tz = zone(timezone)
        children: object = child_account_id
        if child_account_id is not None and child_account_id != "all":
            children = _child_ids(child_account_id, method)
        params = encode_params(
            {
                "from_date": from_date,
                "to_date": to_date,
                "timezone": timezone,
                "count": count,
                "offset": offset,
                "transaction_id": transaction_id,
                "transaction_type": transaction_type,
                "user_id": user_id,
                "child_account_id": children,
                "children_transactions_only": children_transactions_only,
                "users_transactions_only": users_transactions_only,
                "payment_reference": payment_reference,
                "desc_order": desc_order,
                "with_total_count": with_total_count,
                "is_uncommitted": is_uncommitted,
            },
            tz=tz,
        )
        body = self._call(method, params, read=True)
        rows = body["result"]
        if not isinstance(rows, list):
            raise OutcomeUnknown("malformed response: result is not a list", provider=PROVIDER, method=method)
        answered = body.get("timezone")
        answered_tz: str = answered if isinstance(answered, str) and answered else timezone
        row_tz = zone(answered_tz)
        total = body.get("total_count")
        count_back = body.get("count")
        return TransactionHistoryPage(
            transactions=tuple(_transaction(row, row_tz, method) for row in rows),
            total_count=parse_int(total, "total_count", method) if total is not None else None,
            count=parse_int(count_back, "count", method) if count_back is not None else len(rows),
            timezone=answered_tz,
        )

    def iter_transaction_history(
        self,
        *,
        from_date: datetime,
        to_date: datetime,
        page_size: int = MAX_PAGE,
        offset_cap: int = HISTORY_OFFSET_CAP,
        transaction_type: str | Sequence[str] | None = None,
        child_account_id: int | Sequence[int] | Literal["all"] | None = None,
        children_transactions_only: bool | None = None,
        payment_reference: str | None = None,
        user_id: int | Sequence[int] | None = None,
        transaction_id: int | Sequence[int] | None = None,
        users_transactions_only: bool | None = None,
    ) -> Iterator[Transaction]:
        """Every transaction in ``[from_date, to_date]``, oldest first, each once.

        The API refuses offsets past 10,000, so a window holding more
        rows than ``offset_cap`` is split in two by time and each half walked separately;
        halves share their boundary second and rows are de-duplicated by transaction id,
        which is correct whether the server treats ``to_date`` as inclusive or exclusive.
        Pages are read in ascending order, so rows arriving during the walk land after the
        current offset. Raises :class:`PagingError` when more than ``offset_cap`` rows fall
        within two seconds (use the async CSV report then).
        """
        method = "GetTransactionHistory"
        if not 1 <= page_size <= MAX_PAGE:
            raise _invalid(f"page_size must be 1..{MAX_PAGE}", "count", method)
        if not 1 <= offset_cap <= HISTORY_OFFSET_CAP:
            raise _invalid(f"offset_cap must be 1..{HISTORY_OFFSET_CAP}", "offset", method)
        start = _floor_second(from_date)
        end = _ceil_second(to_date)
        if end < start:
            raise _invalid("to_date is before from_date", "to_date", method)
        filters: dict[str, Any] = {
            "transaction_type": transaction_type,
            "child_account_id": child_account_id,
            "children_transactions_only": children_transactions_only,
            "payment_reference": payment_reference,
            "user_id": user_id,
            "transaction_id": transaction_id,
            "users_transactions_only": users_transactions_only,
        }
        seen: set[int] = set()
        windows: list[tuple[datetime, datetime]] = [(start, end)]
        while windows:
            lo, hi = windows.pop()
            page = self.get_transaction_history(
                from_date=lo, to_date=hi, count=page_size, offset=0, desc_order=False, with_total_count=True, **filters
            )
            if page.total_count is None:
                raise PagingError("history answered without total_count", provider=PROVIDER, method=method)
            if page.total_count > offset_cap:
                if hi - lo < timedelta(seconds=2):
                    raise PagingError(
                        f"more than {offset_cap} transactions between {lo.isoformat()} and {hi.isoformat()}; "
                        "use the asynchronous history report",
                        provider=PROVIDER,
                        method=method,
                    )
                mid = lo + timedelta(seconds=(hi - lo).total_seconds() // 2)
                # LIFO: push the later half first so rows come out oldest first.
                windows.append((mid, hi))
                windows.append((lo, mid))
                logger.debug("GetTransactionHistory: window of %d rows split in two", page.total_count)
                continue
            offset = 0
            last: datetime | None = None
            while True:
                for row in page.transactions:
                    last = row.performed_at
                    if row.transaction_id not in seen:
                        seen.add(row.transaction_id)
                        yield row
                offset += len(page.transactions)
                total = page.total_count or 0
                if not page.transactions or offset >= total:
                    break
                if offset > offset_cap:
                    # Rows kept arriving and pushed this window past the cap: walk the rest
                    # of it as a new window starting at the last row seen.
                    if last is not None:
                        windows.append((_floor_second(last), hi))
                    break
                page = self.get_transaction_history(
                    from_date=lo,
                    to_date=hi,
                    count=page_size,
                    offset=offset,
                    desc_order=False,
                    with_total_count=True,
                    **filters,
                )

    # -- provider-neutral interface ---------------------------------------------------------

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
        child: int | Literal["all"] | None = (
            _account_id(account_id, "GetTransactionHistory") if account_id is not None else None
        )
        if tenant_side and child is None:
            child = "all"
        for row in self.iter_transaction_history(
            from_date=from_date,
            to_date=to_date,
            child_account_id=child,
            children_transactions_only=True if tenant_side else None,
            payment_reference=payment_reference,
            transaction_type=transaction_types,
        ):
            yield MoneyTransfer(
                transaction_id=row.transaction_id,
                account_id=row.account_id,
                performed_at=row.performed_at,
                amount=row.amount,
                currency=row.currency,
                transaction_type=row.transaction_type,
                payment_reference=row.payment_reference,
                description=row.transaction_description,
            )


def _floor_second(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidArgument("naive datetime: pass an aware datetime", provider=PROVIDER)
    return value.astimezone(UTC).replace(microsecond=0)


def _ceil_second(value: datetime) -> datetime:
    floor = _floor_second(value)
    return floor if floor == value else floor + timedelta(seconds=1)


def _transaction(row: Any, tz: Any, method: str) -> Transaction:
    if not isinstance(row, dict) or "transaction_id" not in row:
        raise OutcomeUnknown("malformed response: transaction without id", provider=PROVIDER, method=method)
    performed_at = parse_timestamp(row.get("performed_at"), tz, "performed_at", method)
    amount = parse_decimal(row.get("amount"), "amount", method)
    if performed_at is None or amount is None:
        raise OutcomeUnknown("malformed response: transaction without time/amount", provider=PROVIDER, method=method)
    known = {
        "transaction_id",
        "account_id",
        "performed_at",
        "amount",
        "currency",
        "transaction_type",
        "transaction_description",
        "payment_reference",
    }
    return Transaction(
        transaction_id=parse_int(row["transaction_id"], "transaction_id", method),
        account_id=parse_int(row.get("account_id"), "account_id", method),
        performed_at=performed_at.astimezone(UTC),
        amount=amount,
        currency=row.get("currency"),
        transaction_type=str(row.get("transaction_type") or ""),
        transaction_description=row.get("transaction_description"),
        payment_reference=row.get("payment_reference"),
        extra=MappingProxyType({k: v for k, v in row.items() if k not in known}),
    )
