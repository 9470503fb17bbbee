"""Voximplant emulation: child accounts (AddAccount, CloneAccount, GetAccountInfo,
GetChildrenAccounts, SetChildAccountInfo)."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from .jsonenc import RawJSON, esc
from .money import fmt
from .store import ACCOUNT_COLUMNS, Store, last_row_id, utc_text
from .vox_auth import VoxError, err, hash_password
from .vox_base import VoxBase
from .vox_params import (
    ALL,
    LANGUAGE_CODES,
    URL_RE,
    Params,
    parse_decimal_param,
    validate_email,
    validate_name,
    validate_password,
    validate_tz,
)
from .vox_plans import account_hold, holds_for
from .wsgiutil import Request

CHILDREN_COUNT_CAP = 1000

_B = ("false", "true")


# --- rendering ------------------------------------------------------------------------------------


def render_account(
    row: tuple[Any, ...], *, with_key: bool, live: bool = True, hold: int = 0, hold_in_balance: bool = False
) -> str:
    """AccountInfoType. ``hold`` is the money reserved by plan changes (sandbox/vox_plans.py): it
    shows as ``money_on_hold``, lowers ``live_balance`` and, with ``hold_in_balance``, ``balance``."""
    (
        aid,
        _parent,
        name,
        email,
        api_key,
        first,
        last,
        custom,
        created,
        lang,
        loc,
        mbn,
        an,
        tcn,
        nn,
        active,
        frozen,
        bal,
        credit,
        cur,
        srk,
        sbc,
        sinv,
        _restricted,
        cb_url,
        cb_salt,
    ) = row
    b = fmt(bal)
    available = fmt(bal - hold) if hold else b  # most accounts hold nothing: one rendering less
    shown = available if hold_in_balance else b
    parts = [f'{{"account_id":{aid},"account_name":{esc(name)},"account_email":{esc(email)}']
    if with_key:
        parts.append(f',"api_key":{esc(api_key)}')
    if first is not None:
        parts.append(f',"account_first_name":{esc(first)}')
    if last is not None:
        parts.append(f',"account_last_name":{esc(last)}')
    parts.append(
        f',"created":{esc(created)},"language_code":{esc(lang)},"location":{esc(loc)},'
        f'"min_balance_to_notify":{fmt(mbn)},"account_notifications":{_B[an]},'
        f'"tariff_changing_notifications":{_B[tcn]},"news_notifications":{_B[nn]},'
        f'"active":{_B[active]},"frozen":{_B[frozen]},"balance":{shown},"credit_limit":{fmt(credit)},'
        f'"currency":{esc(cur)},"support_robokassa":{_B[srk]},"support_bank_card":{_B[sbc]},'
        f'"support_invoice":{_B[sinv]},"send_js_error":false,"a2p_sms_enabled":false,"fixed_balance":{b},'
        f'"money_on_hold":{fmt(hold) if hold else "0"},"allow_invoice":false,"is_bank_card_auto_charge_prohibited":false,'
        f'"taxpayer_type":"default","custom_pricing":false,"live_balance":{available}'
    )
    if custom is not None:
        parts.append(f',"account_custom_data":{esc(custom)}')
    if cb_url is not None:
        parts.append(f',"callback_url":{esc(cb_url)}')
    if cb_salt is not None:
        parts.append(f',"callback_salt":{esc(cb_salt)}')
    parts.append("}")
    return "".join(parts)


class AccountsMixin(VoxBase):
    """The child-account methods."""

    _anchors: dict[Any, tuple[str, list[tuple[Any, ...]]]]

    def _account_settings(self, p: Params, *, name_prefix: str = "account_") -> dict[str, Any]:
        s: dict[str, Any] = {}
        first = p.text(name_prefix + "first_name")
        last = p.text(name_prefix + "last_name")
        if first is not None:
            if len(first) >= 50:
                raise VoxError(163)
            s["first_name"] = first
        if last is not None:
            if len(last) >= 50:
                raise VoxError(164)
            s["last_name"] = last
        custom = p.raw.get("account_custom_data")
        if custom is not None and custom != "":
            if len(custom) >= 8192:
                raise VoxError(211)
            s["custom_data"] = custom
        lang = p.text("language_code")
        if lang is not None:
            if lang.strip() not in LANGUAGE_CODES:
                raise VoxError(202)
            s["language_code"] = lang.strip()
        loc = p.text("location")
        if loc is not None:
            s["location"] = validate_tz(loc.strip(), "location")
        mbn = parse_decimal_param(p, "min_balance_to_notify")
        if mbn is not None:
            s["min_balance_to_notify"] = mbn
        for flag in ("account_notifications", "tariff_changing_notifications", "news_notifications"):
            value = p.flag(flag)
            if value is not None:
                s[flag] = int(value)
        return s

    def _check_day_limit(self, conn: sqlite3.Connection, parent_id: int) -> None:
        limit = self.opts["children_per_day_limit"]
        if limit > 0:
            today = utc_text()[:10]
            made = conn.execute(
                "SELECT count(*) FROM accounts WHERE parent_id = ? AND created >= ?", (parent_id, today + " 00:00:00")
            ).fetchone()[0]
            if made >= limit:
                raise VoxError(397)

    def _insert_child(
        self, conn: sqlite3.Connection, parent: sqlite3.Row, name: str, email: str, password: str, s: dict[str, Any]
    ) -> tuple[int, str]:
        if conn.execute("SELECT 1 FROM accounts WHERE account_name = ?", (name,)).fetchone():
            raise VoxError(106)
        if conn.execute("SELECT 1 FROM accounts WHERE email_lower = ?", (email.lower(),)).fetchone():
            raise VoxError(128)
        api_key = str(uuid.uuid4())
        cols = {
            "parent_id": parent["account_id"],
            "account_name": name,
            "account_email": email,
            "email_lower": email.lower(),
            "password_hash": hash_password(password),
            "api_key": api_key,
            "created": utc_text(),
            "currency": parent["currency"],
            "min_balance_to_notify": 50000,
        }
        cols.update(s)
        keys = ", ".join(cols)
        marks = ", ".join("?" for _ in cols)
        try:
            cur = conn.execute(f"INSERT INTO accounts({keys}) VALUES ({marks})", tuple(cols.values()))
        except sqlite3.IntegrityError as exc:  # pragma: no cover - guarded by the selects above
            raise VoxError(106) from exc
        Store.bump_accounts_version(conn)
        return last_row_id(cur), api_key

    def m_AddAccount(self, req: Request, p: Params) -> dict[str, Any]:
        with self.store.connection() as conn:
            caller = self._parent_credentials(req, p, conn, "AddAccount")
        name = p.required("account_name")
        validate_name(name, self.opts)
        email = p.required("account_email").strip()
        validate_email(email)
        password = p.raw.get("account_password")
        if password is None:
            raise err(485, "account_password")
        validate_password(password)
        s = self._account_settings(p)
        active = p.flag("active", False)
        s["active"] = int(bool(active))
        if self.opts["addaccount_accepts_currency"] and p.given("currency"):
            cur = p.raw["currency"].strip().upper()
            if cur not in self.opts["currency_rates"]:
                raise VoxError(210)
            s["currency"] = cur
        with self.store.write() as conn:
            parent = conn.execute(
                "SELECT account_id, currency FROM accounts WHERE account_id = ?", (caller.account_id,)
            ).fetchone()
            if caller.parent_id is not None:
                raise VoxError(104)
            self._check_day_limit(conn, parent["account_id"])
            account_id, api_key = self._insert_child(conn, parent, name, email, password, s)
        return {"result": 1, "account_id": account_id, "api_key": api_key, "active": bool(active)}

    def m_CloneAccount(self, req: Request, p: Params) -> dict[str, Any]:
        given = [n for n in ("account_id", "account_name", "account_email") if p.given(n)]
        if not given:
            raise err(485, "account_id")
        if len(given) > 1:
            raise err(458, "account_id, account_name, account_email")
        with self.store.connection() as conn:
            source = self._find_account(conn, p, "account_id", "account_name", "account_email", 115)
            codes = {"account_id": 115, "account_name": 198, "account_email": 199}
            source_parent = source["parent_id"] if source is not None else None
            caller = self._parent_credentials(req, p, conn, "CloneAccount", source_parent)
            if source is None or source["parent_id"] != caller.account_id:
                raise VoxError(codes[given[0]])
        name = p.required("new_account_name")
        validate_name(name, self.opts)
        email = p.required("new_account_email").strip()
        validate_email(email)
        password = p.raw.get("new_account_password")
        if password is None:
            raise err(485, "new_account_password")
        validate_password(password)
        s = self._account_settings(p)
        with self.store.write() as conn:
            src = conn.execute("SELECT * FROM accounts WHERE account_id = ?", (source["account_id"],)).fetchone()
            parent = conn.execute(
                "SELECT account_id, currency FROM accounts WHERE account_id = ?", (caller.account_id,)
            ).fetchone()
            self._check_day_limit(conn, parent["account_id"])
            inherited = {
                k: src[k]
                for k in (
                    "language_code",
                    "location",
                    "min_balance_to_notify",
                    "account_notifications",
                    "tariff_changing_notifications",
                    "news_notifications",
                    "credit_limit",
                    "support_robokassa",
                    "support_bank_card",
                    "support_invoice",
                    "can_use_restricted",
                    "currency",
                )
            }
            inherited.update(s)
            inherited["active"] = 0
            account_id, api_key = self._insert_child(conn, parent, name, email, password, inherited)
        return {
            "result": {
                "account_id": account_id,
                "account_name": name,
                "account_email": email,
                "api_key": api_key,
                "active": False,
                "users": [],
                "scenarios": [],
                "applications": [],
                "acd_queues": [],
                "acd_skills": [],
                "admin_roles": [],
                "admin_users": [],
            }
        }

    def m_GetAccountInfo(self, req: Request, p: Params) -> dict[str, Any]:
        with self.store.connection() as conn:
            caller = self.require_caller(req, p, conn, "GetAccountInfo")
            live = p.flag("return_live_balance", True)
            cur = conn.cursor()
            cur.row_factory = None
            row = cur.execute(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?", (caller.account_id,)
            ).fetchone()
            hold = account_hold(conn, caller.account_id)
        with_key = self.opts["api_key_in_account_info"] or caller.via != "jwt"
        address = self.opts["api_address"] or (req.base_url() + "/platform_api")
        account = render_account(
            row, with_key=with_key, live=bool(live), hold=hold, hold_in_balance=self.opts["plan_hold_in_balance"]
        )
        return {"result": RawJSON(account), "api_address": address}

    def m_SetAccountInfo(self, req: Request, p: Params) -> dict[str, Any]:
        """Edit the caller's own account: profile settings and the callback URL and salt."""
        changes = self._account_settings(p)
        changes.update(_callback_settings(p))
        with self.store.write() as conn:
            caller = self.require_caller(req, p, conn, "SetAccountInfo")
            if changes:
                _update_accounts(conn, [caller.account_id], changes)
        return {"result": 1}

    def m_GetChildrenAccounts(self, req: Request, p: Params) -> dict[str, Any]:
        brief = p.flag("brief_output", False)
        medium = p.flag("medium_output", False)
        active = p.flag("active")
        frozen = p.flag("frozen")
        ignore_invalid = p.flag("ignore_invalid_accounts", False)
        live = p.flag("return_live_balance", True)
        order_by = p.text("order_by", "child_account_name").strip()
        orders = {
            "child_account_name": "account_name",
            "child_account_id": "account_id",
            "child_account_email": "account_email, account_id",
        }
        if order_by not in orders:
            raise err(496, "order_by")
        count = p.integer("count")
        offset = p.integer("offset", 0)
        ids = p.intlist("child_account_id", allow_all=True, code=194)
        name = p.text("child_account_name")
        email = p.text("child_account_email")
        if self.opts["children_require_filter"] and ids is None and name is None and email is None:
            raise err(485, "child_account_id")
        with self.store.read() as conn:
            caller = self.require_caller(req, p, conn, "GetChildrenAccounts")
            where = ["parent_id = ?"]
            args: list[Any] = [caller.account_id]
            if isinstance(ids, list):
                if len(ids) > 0 and not ignore_invalid:
                    found = conn.execute(
                        f"SELECT count(*) FROM accounts WHERE parent_id = ? AND account_id IN ({','.join('?' * len(ids))})",
                        [caller.account_id, *ids],
                    ).fetchone()[0]
                    if found != len(ids):
                        raise VoxError(194)
                where.append(f"account_id IN ({','.join('?' * len(ids))})")
                args.extend(ids)
            exact = self.opts["children_filter_match"] == "exact"
            if name is not None:
                if exact:
                    where.append("account_name = ?")
                    args.append(name)
                else:
                    where.append("account_name LIKE ? ESCAPE '\\'")
                    args.append("%" + _like_escape(name) + "%")
            if email is not None:
                if exact:
                    where.append("email_lower = ?")
                    args.append(email.strip().lower())
                else:
                    where.append("email_lower LIKE ? ESCAPE '\\'")
                    args.append("%" + _like_escape(email.strip().lower()) + "%")
            if active is not None:
                where.append("active = ?")
                args.append(int(active))
            if frozen is not None:
                where.append("frozen = ?")
                args.append(int(frozen))
            where_sql = " AND ".join(where)
            total = self.store.cached_count(
                conn,
                ("children", where_sql, tuple(args)),
                f"SELECT count(*) FROM accounts WHERE {where_sql}",
                args,
            )
            limit: int
            if count is None:
                limit = -1 if (brief or medium) else 20
            else:
                cap = (
                    CHILDREN_COUNT_CAP
                    if (not (brief or medium) or self.opts["children_count_cap_applies_to_brief"])
                    else count
                )
                limit = min(count, cap)
            cur = conn.cursor()
            cur.row_factory = None
            order_sql = orders[order_by]
            if brief or medium:
                cols = "account_id" if brief else "account_id, account_name, account_email"
                rows = cur.execute(
                    f"SELECT {cols} FROM accounts WHERE {where_sql} ORDER BY {order_sql} LIMIT ? OFFSET ?",
                    [*args, limit, offset],
                ).fetchall()
                if brief:
                    items = [f'{{"account_id":{r[0]}}}' for r in rows]
                else:
                    items = [
                        f'{{"account_id":{r[0]},"account_name":{esc(r[1])},"account_email":{esc(r[2])}}}' for r in rows
                    ]
            else:
                # Pick the page through the covering index (seeking from a cached anchor key on deep
                # offsets), then fetch the rows.
                page_where, page_args, page_offset = self._seek(conn, where_sql, args, order_by, offset)
                rows = cur.execute(
                    f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id IN (SELECT account_id FROM accounts "
                    f"WHERE {page_where} ORDER BY {order_sql} LIMIT ? OFFSET ?) ORDER BY {order_sql}",
                    [*page_args, limit, page_offset],
                ).fetchall()
                with_key = self.opts["api_key_in_account_info"] or caller.via != "jwt"
                holds = holds_for(conn, [int(r[0]) for r in rows])
                in_balance = self.opts["plan_hold_in_balance"]
                items = [
                    render_account(
                        r, with_key=with_key, live=bool(live), hold=holds.get(int(r[0]), 0), hold_in_balance=in_balance
                    )
                    for r in rows
                ]
        return {"result": RawJSON("[" + ",".join(items) + "]"), "total_count": total, "count": len(items)}

    SKIP = 10000
    _SEEK_COLS = {
        "child_account_name": ("account_name", "account_name > ?"),
        "child_account_id": ("account_id", "account_id > ?"),
        "child_account_email": ("account_email, account_id", "(account_email, account_id) > (?, ?)"),
    }

    def _seek(
        self, conn: sqlite3.Connection, where_sql: str, args: list[Any], order_by: str, offset: int
    ) -> tuple[str, list[Any], int]:
        """Deep offsets: start from the key at the last multiple of SKIP rows before ``offset``.

        The anchor keys (every SKIP-th row in this order) are cached until the set of accounts,
        their emails or active/frozen flags change (meta accounts_version)."""
        if offset < 2 * self.SKIP:
            return where_sql, args, offset
        cols, cond = self._SEEK_COLS[order_by]
        version = conn.execute("SELECT value FROM meta WHERE key = 'accounts_version'").fetchone()[0]
        key = (where_sql, tuple(args), order_by)
        hit = self._anchors.get(key)
        if hit is None or hit[0] != version:
            anchors: list[tuple[Any, ...]] = []
            while True:
                w, a = (where_sql, list(args)) if not anchors else (f"{where_sql} AND {cond}", [*args, *anchors[-1]])
                row = conn.execute(
                    f"SELECT {cols} FROM accounts WHERE {w} ORDER BY {cols} LIMIT 1 OFFSET ?", [*a, self.SKIP - 1]
                ).fetchone()
                if row is None:
                    break
                anchors.append(tuple(row))
            if len(self._anchors) > 64:
                self._anchors.clear()
            hit = (version, anchors)
            self._anchors[key] = hit
        anchors = hit[1]
        blocks = min(offset // self.SKIP, len(anchors))
        if blocks == 0:
            return where_sql, args, offset
        return f"{where_sql} AND {cond}", [*args, *anchors[blocks - 1]], offset - blocks * self.SKIP

    def m_SetChildAccountInfo(self, req: Request, p: Params) -> dict[str, Any]:
        given = [n for n in ("child_account_id", "child_account_name", "child_account_email") if p.given(n)]
        if not given:
            raise err(485, "child_account_id")
        if len(given) > 1:
            raise err(458, "child_account_id, child_account_name, child_account_email")
        changes = self._child_changes(p)
        new_email = p.text("new_child_account_email")
        if new_email is not None:
            new_email = new_email.strip()
            validate_email(new_email, code=201)
        changes.update(_child_secrets(p))
        with self.store.write() as conn:
            caller = self.require_caller(req, p, conn, "SetChildAccountInfo")
            target_ids = self._resolve_children(conn, p, caller.account_id, given[0])
            if new_email is not None:
                changes.update(_new_child_email(conn, target_ids, new_email))
            if changes and target_ids:
                _update_accounts(conn, target_ids, changes)
        return {"result": 1}

    def _child_changes(self, p: Params) -> dict[str, Any]:
        """The settings and flags SetChildAccountInfo may change (names and custom data are not among them)."""
        changes: dict[str, Any] = {}
        s = self._account_settings(p, name_prefix="child_account_")
        s.pop("first_name", None)
        s.pop("last_name", None)
        s.pop("custom_data", None)
        changes.update(s)
        for flag in ("active", "support_robokassa", "support_bank_card", "support_invoice", "can_use_restricted"):
            value = p.flag(flag)
            if value is not None:
                changes[flag] = int(value)
        return changes

    def _resolve_children(self, conn: sqlite3.Connection, p: Params, parent_id: int, by: str) -> list[int]:
        if by == "child_account_id":
            ids = p.intlist("child_account_id", allow_all=True, code=194)
            if ids == ALL:
                return [r[0] for r in conn.execute("SELECT account_id FROM accounts WHERE parent_id = ?", (parent_id,))]
            assert isinstance(ids, list)
            found = {
                r[0]
                for r in conn.execute(
                    f"SELECT account_id FROM accounts WHERE parent_id = ? AND account_id IN ({','.join('?' * len(ids))})",
                    [parent_id, *ids],
                )
            }
            if len(found) != len(ids):
                raise VoxError(194)
            return ids
        values = p.strlist(by) or []
        column, code = ("account_name", 198) if by == "child_account_name" else ("email_lower", 199)
        if column == "email_lower":
            values = [v.lower() for v in values]
        out = []
        for value in values:
            row = conn.execute(
                f"SELECT account_id FROM accounts WHERE parent_id = ? AND {column} = ?", (parent_id, value)
            ).fetchone()
            if row is None:
                raise VoxError(code)
            if row[0] not in out:
                out.append(row[0])
        return out


def _child_secrets(p: Params) -> dict[str, Any]:
    """SetChildAccountInfo: a new password, callback URL and callback salt, each checked in that order."""
    changes: dict[str, Any] = {}
    new_password = p.raw.get("new_child_account_password")
    if new_password is not None:
        validate_password(new_password)
        changes["password_hash"] = hash_password(new_password)
    changes.update(_callback_settings(p))
    return changes


def _callback_settings(p: Params) -> dict[str, Any]:
    """callback_url (398 when not an http(s) URL) and callback_salt (399 unless under 40 chars);
    an empty value clears the setting."""
    changes: dict[str, Any] = {}
    if "callback_url" in p.raw:
        url = p.raw["callback_url"].strip()
        if url and not URL_RE.fullmatch(url):
            raise VoxError(398)
        changes["callback_url"] = url or None
    if "callback_salt" in p.raw:
        salt = p.raw["callback_salt"]
        if len(salt) >= 40:
            raise VoxError(399)
        changes["callback_salt"] = salt or None
    return changes


def _new_child_email(conn: sqlite3.Connection, target_ids: list[int], new_email: str) -> dict[str, Any]:
    """A new email may go to exactly one child and must not belong to any other account."""
    if len(target_ids) != 1:
        raise VoxError(128)
    clash = conn.execute("SELECT account_id FROM accounts WHERE email_lower = ?", (new_email.lower(),)).fetchone()
    if clash is not None and clash[0] != target_ids[0]:
        raise VoxError(128)
    return {"account_email": new_email, "email_lower": new_email.lower()}


def _update_accounts(conn: sqlite3.Connection, account_ids: list[int], changes: dict[str, Any]) -> None:
    sets = ", ".join(f"{k} = ?" for k in changes)
    values = list(changes.values())
    for start in range(0, len(account_ids), 500):
        chunk = account_ids[start : start + 500]
        conn.execute(
            f"UPDATE accounts SET {sets} WHERE account_id IN ({','.join('?' * len(chunk))})",
            [*values, *chunk],
        )
    Store.bump_accounts_version(conn)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
