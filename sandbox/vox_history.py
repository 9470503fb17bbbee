"""Voximplant emulation: GetTransactionHistory."""

from __future__ import annotations

import calendar
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .jsonenc import Money
from .store import USER_SIDE
from .vox_auth import VoxError, err
from .vox_base import VoxBase
from .vox_params import ALL, Params, parse_datetime, validate_tz
from .wsgiutil import Request

TRANSACTION_TYPES = frozenset(
    """gift_revoke resource_charge money_distribution subscription_charge subscription_installation_charge
    card_periodic_payment card_overrun_payment card_payment rub_card_periodic_payment rub_card_overrun_payment
    rub_card_payment robokassa_payment gift promo adjustment wire_transfer us_wire_transfer refund discount
    mgp_charge mgp_startup mgp_business mgp_big_business mgp_enterprise mgp_large_enterprise techsupport_charge
    tax_charge monthly_fee_charge grace_credit_payment grace_credit_provision mau_charge mau_overrun im_charge
    im_overrun fmc_charge sip_registration_charge development_fee money_transfer_to_child money_transfer_to_parent
    money_acceptance_from_child money_acceptance_from_parent phone_number_installation phone_number_charge
    toll_free_phone_number_installation toll_free_phone_number_charge services user_money_transfer paypal_payment
    paypal_overrun_payment paypal_periodic_payment periodic_charge add_money subscription_cancel""".split()
)

HISTORY_COUNT_CAP = 1000
HISTORY_OFFSET_CAP = 10000


class HistoryMixin(VoxBase):
    """The transaction history method."""

    def m_GetTransactionHistory(self, req: Request, p: Params) -> dict[str, Any]:
        q = self._history_params(p)
        with self.store.read() as conn:
            caller = self.require_caller(req, p, conn, "GetTransactionHistory")
            tz_name, tz = self._history_timezone(conn, p, caller.account_id)
            from_ts, to_ts = self._history_range(p, tz)
            accounts = _history_accounts(conn, q, caller.account_id)
            rows: list[Any]
            total: int | None
            # A transaction shows in the history only history_lag_seconds after it was applied.
            lag = max(0, self.opts["history_lag_seconds"])
            if lag:
                to_ts = min(to_ts, int(time.time()) - lag)
            _check_user_ids(conn, q, accounts)
            if q.uncommitted or not accounts or from_ts > to_ts:
                rows, total = [], 0
            else:
                rows, total = _history_rows(conn, q, accounts, from_ts, to_ts)
        as_string = self.opts["history_account_id_as_string"]
        with_user = self.opts["history_user_id_in_rows"]
        return _history_reply(
            rows, total, tz, tz_name, with_total=q.with_total, as_string=as_string, with_user=with_user
        )

    def _history_params(self, p: Params) -> _HistoryQuery:
        """Everything GetTransactionHistory checks before it authenticates, in order."""
        output = p.text("output", "json").strip().lower()
        if output != "json" or p.flag("is_async", False):
            raise VoxError(105)
        count = p.integer("count", 20)
        count = min(count, HISTORY_COUNT_CAP)
        offset = p.integer("offset", 0)
        if offset > HISTORY_OFFSET_CAP:
            if self.opts["history_offset_over_cap"] == "error":
                raise err(496, "offset")
            offset = HISTORY_OFFSET_CAP
        tx_ids = p.intlist("transaction_id", allow_all=False, code=197)
        types = p.strlist("transaction_type")
        if types is not None:
            for t in types:
                if t not in TRANSACTION_TYPES:
                    raise VoxError(209)
        child_ids = p.intlist("child_account_id", allow_all=True, code=194)
        children_only = p.flag("children_transactions_only", False)
        users_only = p.flag("users_transactions_only", False)
        user_ids = p.intlist("user_id", allow_all=False, code=117)
        reference = p.raw.get("payment_reference")
        desc = p.flag("desc_order", False)
        with_total = p.flag("with_total_count", True)
        uncommitted = p.flag("is_uncommitted", False)
        return _HistoryQuery(
            count=count,
            offset=offset,
            tx_ids=tx_ids,
            types=types,
            child_ids=child_ids,
            children_only=children_only,
            users_only=users_only,
            user_ids=user_ids if isinstance(user_ids, list) else None,
            reference=reference,
            desc=desc,
            with_total=with_total,
            uncommitted=uncommitted,
        )

    @staticmethod
    def _history_timezone(conn: sqlite3.Connection, p: Params, account_id: int) -> tuple[str, ZoneInfo]:
        """The ``timezone`` parameter; ``auto`` (the default) is the caller's location."""
        location = conn.execute("SELECT location FROM accounts WHERE account_id = ?", (account_id,)).fetchone()[0]
        tz_name = p.text("timezone", "auto").strip()
        if tz_name == "auto":
            tz_name = location
        return tz_name, ZoneInfo(validate_tz(tz_name, "timezone"))

    def _history_range(self, p: Params, tz: ZoneInfo) -> tuple[int, int]:
        """from_date .. to_date as timestamps; without them (unless history_dates_required) the
        documented default window: one month, up to now (to_date) and back one calendar month
        from to_date (from_date)."""
        from_text, to_text = p.text("from_date"), p.text("to_date")
        if from_text is None or to_text is None:
            if self.opts["history_dates_required"]:
                raise err(485, "from_date" if from_text is None else "to_date")
        now = int(time.time())
        to_ts = parse_datetime(to_text, tz) if to_text is not None else now
        from_ts = parse_datetime(from_text, tz) if from_text is not None else _month_before(to_ts, tz)
        if from_ts > to_ts:
            raise VoxError(123)
        return from_ts, to_ts


def _month_before(ts: int, tz: ZoneInfo) -> int:
    """The same wall-clock moment one calendar month earlier in ``tz`` (the day clamped to the
    month's length: 31 March gives 28 or 29 February)."""
    moment = datetime.fromtimestamp(ts, tz)
    year, month = (moment.year, moment.month - 1) if moment.month > 1 else (moment.year - 1, 12)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


@dataclass(frozen=True)
class _HistoryQuery:
    """A checked GetTransactionHistory request (the parts that do not need the database)."""

    count: int
    offset: int
    tx_ids: list[int] | str | None
    types: list[str] | None
    child_ids: list[int] | str | None
    children_only: bool
    users_only: bool
    user_ids: list[int] | None
    reference: str | None
    desc: bool
    with_total: bool
    uncommitted: bool


def _history_accounts(conn: sqlite3.Connection, q: _HistoryQuery, caller_id: int) -> list[int]:
    """The caller (unless children_transactions_only) and the children asked for: the listed ones
    (error 194 unless all are the caller's), all of them for ALL, or all under children_transactions_only."""
    accounts: list[int] = []
    if not q.children_only:
        accounts.append(caller_id)
    child_ids = q.child_ids
    if child_ids == ALL:
        accounts.extend(r[0] for r in conn.execute("SELECT account_id FROM accounts WHERE parent_id = ?", (caller_id,)))
    elif isinstance(child_ids, list):
        found = conn.execute(
            f"SELECT count(*) FROM accounts WHERE parent_id = ? AND account_id IN ({','.join('?' * len(child_ids))})",
            [caller_id, *child_ids],
        ).fetchone()[0]
        if found != len(child_ids):
            raise VoxError(194)
        accounts.extend(child_ids)
    elif q.children_only:
        accounts.extend(r[0] for r in conn.execute("SELECT account_id FROM accounts WHERE parent_id = ?", (caller_id,)))
    return accounts


def _history_rows(
    conn: sqlite3.Connection, q: _HistoryQuery, accounts: list[int], from_ts: int, to_ts: int
) -> tuple[list[Any], int | None]:
    """One page of the accounts' transactions in the range, and the total (None without with_total_count)."""
    where = ["performed_ts >= ?", "performed_ts <= ?"]
    args: list[Any] = [from_ts, to_ts]
    if len(accounts) == 1:
        where.append("account_id = ?")
        args.append(accounts[0])
    else:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _hist_accounts(id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM _hist_accounts")
        conn.executemany("INSERT OR IGNORE INTO _hist_accounts(id) VALUES (?)", [(a,) for a in accounts])
        where.append("account_id IN (SELECT id FROM _hist_accounts)")
    if q.tx_ids is not None:
        assert isinstance(q.tx_ids, list)
        where.append(f"transaction_id IN ({','.join('?' * len(q.tx_ids))})")
        args.extend(q.tx_ids)
    if q.types is not None:
        where.append(f"transaction_type IN ({','.join('?' * len(q.types))})")
        args.extend(q.types)
    if q.reference is not None and q.reference != "":
        where.append("payment_reference = ?")
        args.append(q.reference)
    if q.users_only:
        where.append(f"transaction_id IN (SELECT transaction_id FROM user_tx WHERE side = '{USER_SIDE}')")
    if q.user_ids:
        where.append(
            f"transaction_id IN (SELECT transaction_id FROM user_tx WHERE user_id IN ({','.join('?' * len(q.user_ids))}))"
        )
        args.extend(q.user_ids)
    where_sql = " AND ".join(where)
    order = "DESC" if q.desc else "ASC"
    cur = conn.cursor()
    cur.row_factory = None
    rows = cur.execute(
        "SELECT transaction_id, account_id, performed_ts, amount, currency, transaction_type, description, "
        "payment_reference, (SELECT user_id FROM user_tx x WHERE x.transaction_id = transactions.transaction_id) "
        f"FROM transactions WHERE {where_sql} ORDER BY performed_ts {order}, "
        f"transaction_id {order} LIMIT ? OFFSET ?",
        [*args, q.count, q.offset],
    ).fetchall()
    total = (
        conn.execute(f"SELECT count(*) FROM transactions WHERE {where_sql}", args).fetchone()[0]
        if q.with_total
        else None
    )
    return rows, total


def _check_user_ids(conn: sqlite3.Connection, q: _HistoryQuery, accounts: list[int]) -> None:
    """Error 117 unless every ``user_id`` is (or was, before DelUser) a user of the accounts asked for."""
    if not q.user_ids:
        return
    marks = ",".join("?" * len(q.user_ids))
    found = conn.execute(f"SELECT user_id, account_id FROM app_users WHERE user_id IN ({marks})", q.user_ids).fetchall()
    wanted = set(accounts)
    if len(found) != len(q.user_ids) or any(row[1] not in wanted for row in found):
        raise VoxError(117)


def _history_reply(
    rows: list[Any],
    total: int | None,
    tz: ZoneInfo,
    tz_name: str,
    *,
    with_total: bool,
    as_string: bool,
    with_user: bool = True,
) -> dict[str, Any]:
    result = []
    for tid, aid, ts, amount, cur_code, ttype, description, ref, user_id in rows:
        item: dict[str, Any] = {
            "transaction_id": tid,
            "account_id": str(aid) if as_string else aid,
            "performed_at": datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S"),
            "amount": Money(amount),
            "currency": cur_code,
            "transaction_type": ttype,
        }
        if description is not None:
            item["transaction_description"] = description
        if ref is not None:
            item["payment_reference"] = ref
        if user_id is not None and with_user:
            item["user_id"] = user_id
        result.append(item)
    out: dict[str, Any] = {"result": result}
    if with_total:
        out["total_count"] = total
    out["count"] = len(result)
    out["timezone"] = tz_name
    return out
