"""Voximplant emulation: applications and app users (AddApplication, GetApplications, AddUser,
SetUserInfo, GetUsers, DelUser, TransferMoneyToUser).

Users live inside an account (the caller, or the child a parent acts for, as for every other
child-scoped method) and belong to one of its applications. A user either spends the account's
money (``parent_accounting=true``) or has a balance of its own, funded by TransferMoneyToUser.
Each transfer writes two ``user_money_transfer`` rows linked to the user in ``user_tx``: the
account's side (moves the account's balance) and the user's side (moves the user's balance).
TransferMoneyToUser has no payment reference and no duplicate check: a resend pays again.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import money
from .jsonenc import Money
from .store import Store, utc_text
from .vox_accounts import _like_escape
from .vox_auth import VoxError, err, hash_password
from .vox_base import VoxBase
from .vox_money import _capped, _macro, _transfer_amount
from .vox_params import ALL, Params, rates, validate_password
from .wsgiutil import Request

USER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{2,49}", re.ASCII)
APP_NAME_RE = re.compile(r"[a-z][a-z0-9-]{1,64}", re.ASCII)
TRANSFER_TYPE = "user_money_transfer"
DESCRIPTION_MAX = 120
CUSTOM_DATA_MAX = 8192
DISPLAY_NAME_MAX = 256

USER_COLUMNS = (
    "u.user_id, u.account_id, u.application_id, a.application_name, u.user_name, u.display_name, "
    "u.parent_accounting, u.active, u.frozen, u.custom_data, u.balance, u.created, u.modified"
)
_ORDERS = {
    "user_id": "u.user_id",
    "user_name": "u.user_name, u.user_id",
    "user_display_name": "u.display_name, u.user_id",
}


@dataclass(frozen=True)
class _UserTransfer:
    """A checked TransferMoneyToUser request."""

    ids: list[int] | str | None  # user ids, ALL, or None when by name
    names: list[str] | None
    amount: int  # units in ``currency``; negative: the users pay the account
    strict: bool
    user_desc: str | None
    account_desc: str | None
    currency: str | None
    rate: dict[str, Decimal]


class UsersMixin(VoxBase):
    """Applications and the users inside them."""

    # --- applications -------------------------------------------------------------------------

    def _ensure_default_application(self, conn: sqlite3.Connection, account_id: int) -> None:
        short = self.opts["default_application_name"].strip()
        if not short:
            return
        if conn.execute("SELECT 1 FROM applications WHERE account_id = ? LIMIT 1", (account_id,)).fetchone():
            return
        self._insert_application(conn, account_id, short)

    @staticmethod
    def _insert_application(conn: sqlite3.Connection, account_id: int, short: str) -> tuple[int, str]:
        account_name = conn.execute("SELECT account_name FROM accounts WHERE account_id = ?", (account_id,)).fetchone()[
            0
        ]
        full = f"{short}.{account_name}.voximplant.com"
        if conn.execute("SELECT 1 FROM applications WHERE application_name = ?", (full,)).fetchone():
            raise err(496, "application_name")
        cur = conn.execute(
            "INSERT INTO applications(account_id, application_name, created) VALUES (?, ?, ?)",
            (account_id, full, utc_text()),
        )
        return int(cur.lastrowid or 0), full

    def _caller_account(self, req: Request, p: Params, conn: sqlite3.Connection, method: str) -> int:
        """The account the request acts in (the caller or the child it acts for), with its
        default application made on first use."""
        account_id = self.require_caller(req, p, conn, method).account_id
        self._ensure_default_application(conn, account_id)
        return account_id

    def _application(self, conn: sqlite3.Connection, p: Params, account_id: int, *, required: bool) -> Any:
        """(application_id, application_name) named by the request, or None when neither is given."""
        by_id, by_name = p.given("application_id"), p.given("application_name")
        if by_id and by_name:
            raise err(458, "application_id, application_name")
        sql = "SELECT application_id, application_name FROM applications WHERE account_id = ? AND "
        if by_id:
            app_id = p.integer("application_id", code=116, minimum=1)
            row = conn.execute(sql + "application_id = ?", (account_id, app_id)).fetchone()
            if row is None:
                raise VoxError(116)
            return row
        if by_name:
            name = p.raw["application_name"].strip()
            row = conn.execute(sql + "application_name = ?", (account_id, name)).fetchone()
            if row is None and self.opts["application_name_accepts_short"]:
                row = conn.execute(
                    sql + "application_name LIKE ? ESCAPE '\\'", (account_id, _like_escape(name) + ".%")
                ).fetchone()
            if row is None:
                raise err(496, "application_name")
            return row
        if required:
            raise err(485, "application_id")
        return None

    def m_AddApplication(self, req: Request, p: Params) -> dict[str, Any]:
        short = p.required("application_name").strip()
        if not APP_NAME_RE.fullmatch(short):
            raise err(496, "application_name")
        with self.store.write() as conn:
            account_id = self.require_caller(req, p, conn, "AddApplication").account_id
            app_id, full = self._insert_application(conn, account_id, short)
        return {"result": 1, "application_id": app_id, "application_name": full}

    def m_GetApplications(self, req: Request, p: Params) -> dict[str, Any]:
        count = p.integer("count", self.opts["users_count_default"])
        offset = p.integer("offset", 0)
        with self.store.write() as conn:
            account_id = self._caller_account(req, p, conn, "GetApplications")
            app = self._application(conn, p, account_id, required=False)
            where, args = "account_id = ?", [account_id]
            if app is not None:
                where += " AND application_id = ?"
                args.append(app[0])
            total = conn.execute(f"SELECT count(*) FROM applications WHERE {where}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT application_id, application_name, created FROM applications WHERE {where} "
                "ORDER BY application_id LIMIT ? OFFSET ?",
                [*args, count, offset],
            ).fetchall()
        result = [{"application_id": r[0], "application_name": r[1], "modified": r[2]} for r in rows]
        return {"result": result, "total_count": total, "count": len(result)}

    # --- users ------------------------------------------------------------------------------

    def m_AddUser(self, req: Request, p: Params) -> dict[str, Any]:
        name = p.required("user_name").strip()
        if not USER_NAME_RE.fullmatch(name):
            raise VoxError(122)
        display = p.required("user_display_name")
        if len(display) >= DISPLAY_NAME_MAX:
            raise err(496, "user_display_name")
        if "user_password" not in p.raw:
            raise err(485, "user_password")
        password = p.raw["user_password"]
        validate_password(password)
        if not (p.given("application_id") or p.given("application_name")):
            raise err(485, "application_id")
        shared = p.flag("parent_accounting", self.opts["parent_accounting_default"])
        active = p.flag("user_active", True)
        custom = _custom_data(p)
        with self.store.write() as conn:
            account_id = self._caller_account(req, p, conn, "AddUser")
            app = self._application(conn, p, account_id, required=True)
            held = conn.execute(
                "SELECT count(*) FROM app_users WHERE account_id = ? AND deleted = 0", (account_id,)
            ).fetchone()[0]
            if held >= self.opts["users_per_account_limit"]:
                raise VoxError(109)
            _check_name_free(conn, app[0], name, None)
            now = utc_text()
            cur = conn.execute(
                "INSERT INTO app_users(account_id, application_id, user_name, display_name, password_hash, "
                "parent_accounting, active, custom_data, created, modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account_id,
                    app[0],
                    name,
                    display,
                    hash_password(password),
                    int(bool(shared)),
                    int(bool(active)),
                    custom or None,
                    now,
                    now,
                ),
            )
        return {"result": 1, "user_id": int(cur.lastrowid or 0)}

    def m_SetUserInfo(self, req: Request, p: Params) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        new_name = p.text("new_user_name")
        if new_name is not None:
            new_name = new_name.strip()
            if not USER_NAME_RE.fullmatch(new_name):
                raise VoxError(122)
            changes["user_name"] = new_name
        display = p.text("user_display_name")
        if display is not None:
            if len(display) >= DISPLAY_NAME_MAX:
                raise err(496, "user_display_name")
            changes["display_name"] = display
        if "user_password" in p.raw:
            validate_password(p.raw["user_password"])
            changes["password_hash"] = hash_password(p.raw["user_password"])
        shared = p.flag("parent_accounting")
        if shared is not None:
            changes["parent_accounting"] = int(shared)
        active = p.flag("user_active")
        if active is not None:
            changes["active"] = int(active)
        if "user_custom_data" in p.raw:
            changes["custom_data"] = _custom_data(p) or None
        with self.store.write() as conn:
            account_id = self._caller_account(req, p, conn, "SetUserInfo")
            users = self._target_users(conn, p, account_id, allow_many=False)
            user = users[0]
            if new_name is not None:
                _check_name_free(conn, user["application_id"], new_name, user["user_id"])
            if shared and not user["parent_accounting"] and user["balance"] != 0:
                if self.opts["user_balance_on_shared_switch"] == "refuse":
                    raise err(496, "parent_accounting")
            if changes:
                changes["modified"] = utc_text()
                sets = ", ".join(f"{k} = ?" for k in changes)
                conn.execute(f"UPDATE app_users SET {sets} WHERE user_id = ?", [*changes.values(), user["user_id"]])
        return {"result": 1}

    def m_GetUsers(self, req: Request, p: Params) -> dict[str, Any]:
        opts = self.opts
        order_by = p.text("order_by", opts["users_order_default"]).strip()
        if order_by not in _ORDERS:
            raise err(496, "order_by")
        desc = p.flag("desc_order", False)
        count = min(p.integer("count", opts["users_count_default"]), max(1, opts["users_count_cap"]))
        offset = p.integer("offset", 0)
        ids = p.intlist("user_id", allow_all=False, code=117)
        name = p.text("user_name")
        active = p.flag("user_active")
        if opts["get_users_requires_application"] and not (p.given("application_id") or p.given("application_name")):
            raise err(485, "application_id")
        with self.store.write() as conn:
            account_id = self._caller_account(req, p, conn, "GetUsers")
            app = self._application(conn, p, account_id, required=False)
            where = ["u.account_id = ?", "u.deleted = 0"]
            args: list[Any] = [account_id]
            if app is not None:
                where.append("u.application_id = ?")
                args.append(app[0])
            if isinstance(ids, list):
                where.append(f"u.user_id IN ({','.join('?' * len(ids))})")
                args.extend(ids)
            if name is not None:
                if opts["users_filter_match"] == "exact":
                    where.append("u.user_name = ?")
                    args.append(name.strip())
                else:
                    where.append("u.user_name LIKE ? ESCAPE '\\'")
                    args.append("%" + _like_escape(name.strip()) + "%")
            if active is not None:
                where.append("u.active = ?")
                args.append(int(active))
            where_sql = " AND ".join(where)
            base = "FROM app_users u JOIN applications a ON a.application_id = u.application_id"
            total = conn.execute(f"SELECT count(*) {base} WHERE {where_sql}", args).fetchone()[0]
            order = _ORDERS[order_by]
            if desc:
                order = ", ".join(f"{col} DESC" for col in order.split(", "))
            rows = conn.execute(
                f"SELECT {USER_COLUMNS} {base} WHERE {where_sql} ORDER BY {order} LIMIT ? OFFSET ?",
                [*args, count, offset],
            ).fetchall()
            account_balance = conn.execute(
                "SELECT balance FROM accounts WHERE account_id = ?", (account_id,)
            ).fetchone()[0]
        result = [self._render_user(r, account_balance) for r in rows]
        return {"result": result, "total_count": total, "count": len(result)}

    def _render_user(self, row: sqlite3.Row, account_balance: int) -> dict[str, Any]:
        balance = row["balance"]
        if row["parent_accounting"]:
            balance = account_balance if self.opts["shared_user_balance"] == "account" else 0
        out: dict[str, Any] = {
            "user_id": row["user_id"],
            "user_name": row["user_name"],
            "user_display_name": row["display_name"],
            "user_active": bool(row["active"]),
            "parent_accounting": bool(row["parent_accounting"]),
            "frozen": bool(row["frozen"]),
            "two_factor_auth_required": False,
            "balance": Money(balance),
            "live_balance": Money(balance),
            "fixed_balance": Money(balance),
            "application_id": row["application_id"],
            "application_name": row["application_name"],
            "created": row["created"],
            "modified": row["modified"],
        }
        if row["custom_data"] is not None:
            out["user_custom_data"] = row["custom_data"]
        return out

    def m_DelUser(self, req: Request, p: Params) -> dict[str, Any]:
        now = int(time.time())
        with self.store.write() as conn:
            account_id = self._caller_account(req, p, conn, "DelUser")
            users = self._target_users(conn, p, account_id, allow_many=True)
            currency = conn.execute("SELECT currency FROM accounts WHERE account_id = ?", (account_id,)).fetchone()[0]
            for user in users:
                if user["balance"] != 0:
                    if self.opts["del_user_with_balance"] == "refuse":
                        raise err(496, "user_id")
                    _post_user_legs(conn, account_id, currency, user, -user["balance"], now, None, None)
            stamp = utc_text()
            conn.executemany(
                "UPDATE app_users SET deleted = 1, modified = ? WHERE user_id = ?",
                [(stamp, u["user_id"]) for u in users],
            )
        return {"result": 1}

    def _target_users(
        self, conn: sqlite3.Connection, p: Params, account_id: int, *, allow_many: bool
    ) -> list[sqlite3.Row]:
        """The users a request names: ``user_id`` (a list or ``all`` where ``allow_many``) or
        ``user_name`` within the named application. 117 for an id that is not a user here."""
        by_id, by_name = p.given("user_id"), p.given("user_name")
        if by_id and by_name:
            raise err(458, "user_id, user_name")
        if not (by_id or by_name):
            raise err(485, "user_id")
        app = self._application(conn, p, account_id, required=by_name)
        base = f"SELECT {USER_COLUMNS} FROM app_users u JOIN applications a ON a.application_id = u.application_id "
        where = "WHERE u.account_id = ? AND u.deleted = 0"
        args: list[Any] = [account_id]
        if app is not None:
            where += " AND u.application_id = ?"
            args.append(app[0])
        if by_name:
            names = p.strlist("user_name") or []
            if not allow_many and len(names) > 1:
                raise err(496, "user_name")
            out: list[sqlite3.Row] = []
            for name in names:
                row = conn.execute(base + where + " AND u.user_name = ?", [*args, name]).fetchone()
                if row is None:
                    raise VoxError(117)
                if all(r["user_id"] != row["user_id"] for r in out):
                    out.append(row)
            return out
        if not allow_many:
            return self._users_by_ids(conn, base + where, args, [p.integer("user_id", 0, code=117, minimum=1)])
        ids = p.intlist("user_id", allow_all=True, code=117)
        if ids == ALL:
            return conn.execute(base + where + " ORDER BY u.user_id", args).fetchall()
        assert isinstance(ids, list)
        return self._users_by_ids(conn, base + where, args, ids)

    @staticmethod
    def _users_by_ids(conn: sqlite3.Connection, sql: str, args: list[Any], ids: list[int]) -> list[sqlite3.Row]:
        found = {
            r["user_id"]: r
            for r in conn.execute(sql + f" AND u.user_id IN ({','.join('?' * len(ids))})", [*args, *ids]).fetchall()
        }
        if len(found) != len(ids):
            raise VoxError(117)
        return [found[i] for i in ids]

    # --- money ------------------------------------------------------------------------------

    def m_TransferMoneyToUser(self, req: Request, p: Params) -> dict[str, Any]:
        t = self._user_transfer_params(p)
        now = int(time.time())
        with self.store.write() as conn:
            account_id = self._caller_account(req, p, conn, "TransferMoneyToUser")
            balance, acc_cur = conn.execute(
                "SELECT balance, currency FROM accounts WHERE account_id = ?", (account_id,)
            ).fetchone()
            currency = t.currency or acc_cur
            if self.opts["cross_currency_transfers"] == "refuse" and currency != acc_cur:
                raise VoxError(210)
            users = self._transfer_users(conn, p, account_id, t)
            remaining = balance
            for user in users:
                want = money.convert(abs(t.amount), t.rate[currency], t.rate[acc_cur])
                if t.amount > 0:
                    leg = _capped(want, remaining, t.strict)
                    remaining -= leg
                else:
                    leg = -_capped(want, user["balance"], t.strict)
                if leg == 0:
                    continue
                _post_user_legs(conn, account_id, acc_cur, user, leg, now, t.user_desc, t.account_desc)
            after = conn.execute("SELECT balance FROM accounts WHERE account_id = ?", (account_id,)).fetchone()[0]
        return {"result": 1, "balance": Money(after)}

    def _user_transfer_params(self, p: Params) -> _UserTransfer:
        """Everything TransferMoneyToUser checks before it looks at the database, in order."""
        opts = self.opts
        by_id, by_name = p.given("user_id"), p.given("user_name")
        if by_id and by_name:
            raise err(458, "user_id, user_name")
        if not (by_id or by_name):
            raise err(485, "user_id")
        ids = p.intlist("user_id", allow_all=True, code=117) if by_id else None
        names = p.strlist("user_name") if by_name else None
        if by_name and not (p.given("application_id") or p.given("application_name")):
            raise err(485, "application_id")
        amount = _transfer_amount(
            p.required("amount"), opts["amount_max_places"], opts["amount_extra_precision"], low_code=225
        )
        strict = p.flag("strict_mode", opts["strict_mode_default"])
        user_desc = p.raw.get("user_transaction_description")
        account_desc = p.raw.get("account_transaction_description")
        if user_desc is not None and len(user_desc) >= DESCRIPTION_MAX:
            raise VoxError(234)
        if account_desc is not None and len(account_desc) >= DESCRIPTION_MAX:
            raise VoxError(235)
        rate = rates(opts)
        currency = p.text("currency")
        if currency is not None:
            currency = currency.strip().upper()
            if currency not in rate:
                raise VoxError(210)
        return _UserTransfer(ids, names, amount, bool(strict), user_desc or None, account_desc or None, currency, rate)

    def _transfer_users(
        self, conn: sqlite3.Connection, p: Params, account_id: int, t: _UserTransfer
    ) -> list[sqlite3.Row]:
        """The users to pay: 117 for one that is not a user here, 573 for one without a balance of
        its own (``all`` skips those unless transfer_all_users_shared=refuse)."""
        users = self._target_users(conn, p, account_id, allow_many=True)
        if t.ids == ALL and self.opts["transfer_all_users_shared"] == "skip":
            users = [u for u in users if not u["parent_accounting"]]
        if not users:
            raise VoxError(117)
        for user in users:
            if user["parent_accounting"]:
                raise VoxError(573)
            if not user["active"] and self.opts["transfer_to_inactive_user"] == "refuse":
                raise VoxError(573)
        return users


def _post_user_legs(
    conn: sqlite3.Connection,
    account_id: int,
    currency: str,
    user: sqlite3.Row,
    leg: int,
    now: int,
    user_desc: str | None,
    account_desc: str | None,
) -> None:
    """The account's row (-leg) and the user's row (+leg), one operation; ``leg`` > 0 pays the user."""
    macros = {"${user_id}": str(user["user_id"]), "${user_name}": user["user_name"]}
    to_user = leg > 0
    ad = (
        _macro(account_desc, macros)
        if account_desc
        else (
            f"Money transfer to the user {user['user_name']}" if to_user else f"Money from the user {user['user_name']}"
        )
    )
    ud = (
        _macro(user_desc, macros)
        if user_desc
        else (f"Money from the account {account_id}" if to_user else f"Money transfer to the account {account_id}")
    )
    common: dict[str, Any] = {
        "account_id": account_id,
        "currency": currency,
        "transaction_type": TRANSFER_TYPE,
        "ts": now,
    }
    first = Store.add_transaction(conn, amount=-leg, description=ad, user_id=user["user_id"], **common)
    conn.execute("UPDATE transactions SET op_id = ? WHERE transaction_id = ?", (first, first))
    Store.add_transaction(
        conn, amount=leg, description=ud, user_id=user["user_id"], user_side=True, op_id=first, **common
    )


def _custom_data(p: Params) -> str:
    custom = p.raw.get("user_custom_data") or ""
    if len(custom) >= CUSTOM_DATA_MAX:
        raise VoxError(212)
    return custom


def _check_name_free(conn: sqlite3.Connection, application_id: int, name: str, user_id: int | None) -> None:
    row = conn.execute(
        "SELECT user_id FROM app_users WHERE application_id = ? AND user_name = ? AND deleted = 0",
        (application_id, name),
    ).fetchone()
    if row is not None and row[0] != user_id:
        raise VoxError(118)
