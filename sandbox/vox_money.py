"""Voximplant emulation: money (TransferMoneyToChildAccount, GetCurrencyRate, GetMoneyAmountToCharge)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from . import callbacks, money
from .jsonenc import Money
from .store import Store
from .vox_auth import VoxError, err
from .vox_base import VoxBase
from .vox_params import ALL, Params, parse_date, parse_datetime, rates
from .wsgiutil import Request

MIN_TRANSFER = 100  # 0.01 in units


class MoneyMixin(VoxBase):
    """The money methods: transfers between the parent and its children, rates and amounts to charge."""

    def m_TransferMoneyToChildAccount(self, req: Request, p: Params) -> dict[str, Any]:
        t = self._transfer_params(p)
        dup_from_text = p.text("check_duplicate_reference_from")
        now = int(time.time())
        with self.store.write() as conn:
            caller = self.require_caller(req, p, conn, "TransferMoneyToChildAccount")
            cur = conn.cursor()
            cur.row_factory = None
            parent = cur.execute(
                "SELECT account_id, balance, currency, location FROM accounts WHERE account_id = ?",
                (caller.account_id,),
            ).fetchone()
            parent_id, parent_balance, parent_cur, parent_loc = parent
            currency = parent_cur if t.currency is None else t.currency
            dup_from = None
            if dup_from_text is not None:
                tz = ZoneInfo(parent_loc) if self.opts["duplicate_from_timezone"] == "account" else ZoneInfo("UTC")
                dup_from = parse_datetime(dup_from_text, tz)
            targets = _transfer_targets(cur, parent_id, t.ids)
            self._check_transfer_targets(targets, currency, parent_cur)
            if t.reference is not None and dup_from is not None:
                if self._is_duplicate(cur, t.reference, dup_from, parent_id, targets):
                    return {"result": 1, "balance": Money(parent_balance)}
            _post_transfers(conn, t, targets, parent_id, parent_balance, parent_cur, currency, now)
            balance = cur.execute("SELECT balance FROM accounts WHERE account_id = ?", (parent_id,)).fetchone()[0]
        return {"result": 1, "balance": Money(balance)}

    def _transfer_params(self, p: Params) -> _Transfer:
        """Everything TransferMoneyToChildAccount checks before it looks at the database, in order."""
        opts = self.opts
        if "child_account_id" not in p.raw:
            raise err(485, "child_account_id")
        ids = p.intlist("child_account_id", allow_all=opts["transfer_allow_all"], code=194)
        if ids is None:
            raise VoxError(194)
        amount = _transfer_amount(p.required("amount"), opts["amount_max_places"], opts["amount_extra_precision"])
        strict = p.flag("strict_mode", opts["strict_mode_default"])
        parent_desc, child_desc = _transfer_descriptions(p)
        reference = _transfer_reference(p)
        currency = p.text("currency")
        rate = rates(opts)
        if currency is not None:
            currency = currency.strip().upper()
            if currency not in rate:
                raise VoxError(210)
        return _Transfer(ids, amount, bool(strict), parent_desc, child_desc, reference, currency, rate)

    def _check_transfer_targets(self, targets: list[tuple[Any, ...]], currency: str, parent_cur: str) -> None:
        """Refusals configured in the options, checked child by child."""
        opts = self.opts
        for t in targets:
            if not t[4] and opts["transfer_to_inactive_child"] == "refuse":
                raise VoxError(opts["inactive_child_error_code"])
            if t[5] and opts["transfer_to_frozen_child"] == "refuse":
                raise VoxError(opts["inactive_child_error_code"])
            if opts["cross_currency_transfers"] == "refuse" and (t[3] != currency or parent_cur != currency):
                raise VoxError(210)

    def _is_duplicate(
        self, cur: sqlite3.Cursor, reference: str, dup_from: int, parent_id: int, targets: list[tuple[Any, ...]]
    ) -> bool:
        """An earlier transfer with this payment_reference since ``dup_from``: True to answer with the
        parent's balance and move nothing, or the configured error."""
        opts = self.opts
        sql = (
            "SELECT DISTINCT op_id FROM transactions WHERE payment_reference = ? AND performed_ts >= ? "
            "AND account_id = ? AND transaction_type IN ('money_transfer_to_child', 'money_acceptance_from_child')"
        )
        args: list[Any] = [reference, dup_from, parent_id]
        if opts["duplicate_match"] == "reference_and_child":
            sql += f" AND counterpart_id IN ({','.join('?' * len(targets))})"
            args.extend(t[0] for t in targets)
        ops = cur.execute(sql, args).fetchall()
        if len(ops) > 1:
            raise VoxError(303)
        if len(ops) == 1:
            if opts["duplicate_reply"] == "error":
                raise VoxError(opts["duplicate_error_code"])
            return True
        return False

    def m_GetCurrencyRate(self, req: Request, p: Params) -> dict[str, Any]:
        with self.store.connection() as conn:
            self.require_caller(req, p, conn, "GetCurrencyRate")
        wanted = p.strlist("currency")
        if not wanted:
            raise err(485, "currency")
        if p.given("date"):
            parse_date(p.raw["date"])
        table = rates(self.opts)
        result: dict[str, Any] = {}
        for cur in wanted:
            cur = cur.upper()
            if cur not in table:
                raise VoxError(210)
            result[cur] = table[cur]
        return {"result": result}

    def m_GetMoneyAmountToCharge(self, req: Request, p: Params) -> dict[str, Any]:
        with self.store.connection() as conn:
            caller = self.require_caller(req, p, conn, "GetMoneyAmountToCharge")
            balance, acc_cur = conn.execute(
                "SELECT balance, currency FROM accounts WHERE account_id = ?", (caller.account_id,)
            ).fetchone()
        table = rates(self.opts)
        currency = (p.text("currency") or acc_cur).strip().upper()
        if currency not in table:
            raise VoxError(210)
        if p.given("charge_date"):
            parse_date(p.raw["charge_date"])
        debt = max(0, -balance)
        amount = money.convert(debt, table[acc_cur], table[currency])
        result: dict[str, Any] = {"amount": Money(amount), "min_amount": Money(amount), "subscriptions": []}
        usd = money.convert(debt, table[acc_cur], table["USD"])
        result["bank_card_amount_usd"] = Money(usd)
        result["min_bank_card_amount_usd"] = Money(max(usd, 10 * money.SCALE) if usd > 0 else 0)
        return {"result": result}


@dataclass(frozen=True)
class _Transfer:
    """A checked TransferMoneyToChildAccount request."""

    ids: list[int] | str  # child ids, or ALL
    amount: int  # units in ``currency``; negative pulls money back from the children
    strict: bool
    parent_desc: str | None
    child_desc: str | None
    reference: str | None
    currency: str | None  # None: the parent's currency
    rate: dict[str, Decimal]


def _transfer_amount(text: str, max_places: int, extra: str, low_code: int = 226) -> int:
    """The amount in units: error 125 for a bad number, ``low_code`` (226) below the 0.01 minimum;
    more than ``max_places`` decimals is error 125 or, with ``extra`` = round, rounded half-even."""
    try:
        amount = money.parse(text, allow_round=extra == "round")
    except money.AmountError as exc:
        raise VoxError(125) from exc
    if abs(amount) < MIN_TRANSFER:
        raise VoxError(low_code)
    places = min(money.PLACES, max(0, max_places))
    step = Decimal(1).scaleb(-places)
    value = Decimal(text)
    if value != value.quantize(step):
        if extra != "round":
            raise VoxError(125)
        amount = money.from_decimal(value.quantize(step, rounding=ROUND_HALF_EVEN))
        if abs(amount) < MIN_TRANSFER:
            raise VoxError(low_code)
    return amount


def _transfer_descriptions(p: Params) -> tuple[str | None, str | None]:
    child_desc = p.raw.get("child_transaction_description")
    parent_desc = p.raw.get("parent_transaction_description")
    if parent_desc is not None and len(parent_desc) >= 120:
        raise VoxError(236)
    if child_desc is not None and len(child_desc) >= 120:
        raise VoxError(237)
    return parent_desc, child_desc


def _transfer_reference(p: Params) -> str | None:
    """payment_reference; an empty one counts as absent."""
    reference = p.raw.get("payment_reference")
    if reference is not None and reference == "":
        reference = None
    if reference is not None and len(reference) >= 127:
        raise VoxError(304)
    return reference


def _transfer_targets(cur: sqlite3.Cursor, parent_id: int, ids: list[int] | str) -> list[tuple[Any, ...]]:
    """(account_id, account_name, balance, currency, active, frozen) of each child, in request order
    (by id for ALL); error 194 when there is none or an id is not the parent's child."""
    if ids == ALL:
        targets = cur.execute(
            "SELECT account_id, account_name, balance, currency, active, frozen FROM accounts "
            "WHERE parent_id = ? ORDER BY account_id",
            (parent_id,),
        ).fetchall()
        if not targets:
            raise VoxError(194)
        return targets
    assert isinstance(ids, list)
    found = {
        r[0]: r
        for r in cur.execute(
            "SELECT account_id, account_name, balance, currency, active, frozen FROM accounts "
            f"WHERE parent_id = ? AND account_id IN ({','.join('?' * len(ids))})",
            [parent_id, *ids],
        )
    }
    if len(found) != len(ids):
        raise VoxError(194)
    return [found[i] for i in ids]


def _capped(want: int, balance: int, strict: bool) -> int:
    """``want`` limited to the non-negative ``balance``; error 127 instead in strict mode."""
    available = max(0, balance)
    if want > available:
        if strict:
            raise VoxError(127)
        want = available
    return want


def _transfer_legs(
    t: _Transfer, remaining: int, child: tuple[Any, ...], parent_cur: str, currency: str
) -> tuple[int, int] | None:
    """(parent leg in the parent's currency, child leg in the child's) for one child, or None when
    nothing moves. Sending is limited by the parent's ``remaining`` balance, pulling back by the child's."""
    rate, child_balance, child_cur = t.rate, child[2], child[3]
    if t.amount > 0:
        want = _capped(money.convert(t.amount, rate[currency], rate[parent_cur]), remaining, t.strict)
        if want <= 0:
            return None
        return -want, money.convert(want, rate[parent_cur], rate[child_cur])
    want = _capped(money.convert(-t.amount, rate[currency], rate[child_cur]), child_balance, t.strict)
    if want <= 0:
        return None
    return money.convert(want, rate[child_cur], rate[parent_cur]), -want


def _post_transfers(
    conn: sqlite3.Connection,
    t: _Transfer,
    targets: list[tuple[Any, ...]],
    parent_id: int,
    parent_balance: int,
    parent_cur: str,
    currency: str,
    now: int,
) -> None:
    """Two transactions per child that receives or gives money, all under the op_id of the first."""
    to_child = t.amount > 0
    if to_child:
        p_type, c_type = "money_transfer_to_child", "money_acceptance_from_parent"
    else:
        p_type, c_type = "money_acceptance_from_child", "money_transfer_to_parent"
    op_id = None
    remaining = parent_balance
    for child in targets:
        legs = _transfer_legs(t, remaining, child, parent_cur, currency)
        if legs is None:
            continue
        parent_leg, child_leg = legs
        remaining += parent_leg
        child_id, child_name, child_cur = child[0], child[1], child[3]
        macros = {"${child_account_id}": str(child_id), "${child_account_name}": child_name}
        pd = _macro(t.parent_desc, macros) if t.parent_desc else _default_parent_desc(to_child, child_id)
        cd = _macro(t.child_desc, macros) if t.child_desc else _default_child_desc(to_child, parent_id)
        first = Store.add_transaction(
            conn,
            account_id=parent_id,
            amount=parent_leg,
            currency=parent_cur,
            transaction_type=p_type,
            ts=now,
            description=pd,
            payment_reference=t.reference,
            counterpart_id=child_id,
            op_id=op_id,
        )
        if op_id is None:
            op_id = first
            conn.execute("UPDATE transactions SET op_id = ? WHERE transaction_id = ?", (op_id, first))
        Store.add_transaction(
            conn,
            account_id=child_id,
            amount=child_leg,
            currency=child_cur,
            transaction_type=c_type,
            ts=now,
            description=cd,
            payment_reference=t.reference,
            counterpart_id=parent_id,
            op_id=op_id,
        )
        callbacks.balance_moved(conn, child_id, child[2], child[2] + child_leg, transfer=True)


def _macro(text: str, macros: dict[str, str]) -> str:
    for key, value in macros.items():
        text = text.replace(key, value)
    return text


def _default_parent_desc(to_child: bool, child_id: int) -> str:
    return f"Money transfer to the child account {child_id}" if to_child else f"Money from the child account {child_id}"


def _default_child_desc(to_child: bool, parent_id: int) -> str:
    return (
        f"Money from the parent account {parent_id}"
        if to_child
        else f"Money transfer to the parent account {parent_id}"
    )
