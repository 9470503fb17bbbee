"""SQLite state of the sandbox: schema, a per-thread connection pool, and read helpers.

Money columns are INTEGER ten-thousandths (see :mod:`sandbox.money`). Every money
movement is a row in ``transactions`` and every balance equals the sum of its
account's rows, so conservation can be checked from the ledger alone
(:meth:`Store.money_totals`, :meth:`Store.check_invariants`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from .money import to_decimal

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    account_id INTEGER PRIMARY KEY,
    parent_id INTEGER,
    account_name TEXT NOT NULL,
    account_email TEXT NOT NULL,
    email_lower TEXT NOT NULL,
    password_hash TEXT,
    api_key TEXT NOT NULL,
    first_name TEXT,
    last_name TEXT,
    custom_data TEXT,
    created TEXT NOT NULL,
    language_code TEXT NOT NULL DEFAULT 'en',
    location TEXT NOT NULL DEFAULT 'Etc/GMT',
    min_balance_to_notify INTEGER NOT NULL DEFAULT 50000,
    account_notifications INTEGER NOT NULL DEFAULT 0,
    tariff_changing_notifications INTEGER NOT NULL DEFAULT 0,
    news_notifications INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 0,
    frozen INTEGER NOT NULL DEFAULT 0,
    balance INTEGER NOT NULL DEFAULT 0,
    credit_limit INTEGER NOT NULL DEFAULT 0,
    currency TEXT NOT NULL DEFAULT 'USD',
    support_robokassa INTEGER NOT NULL DEFAULT 0,
    support_bank_card INTEGER NOT NULL DEFAULT 1,
    support_invoice INTEGER NOT NULL DEFAULT 1,
    can_use_restricted INTEGER NOT NULL DEFAULT 0,
    callback_url TEXT,
    callback_salt TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS accounts_name ON accounts(account_name);
CREATE UNIQUE INDEX IF NOT EXISTS accounts_email ON accounts(email_lower);
CREATE INDEX IF NOT EXISTS accounts_parent ON accounts(parent_id);
CREATE INDEX IF NOT EXISTS accounts_parent_name ON accounts(parent_id, account_name);
CREATE INDEX IF NOT EXISTS accounts_parent_email ON accounts(parent_id, account_email);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL,
    public_key TEXT NOT NULL,
    private_key TEXT,
    roles TEXT NOT NULL DEFAULT 'Owner',
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    transaction_id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    performed_ts INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    transaction_type TEXT NOT NULL,
    description TEXT,
    payment_reference TEXT,
    counterpart_id INTEGER,
    op_id INTEGER
);
CREATE INDEX IF NOT EXISTS tx_account_ts ON transactions(account_id, performed_ts);
CREATE INDEX IF NOT EXISTS tx_reference ON transactions(payment_reference, performed_ts)
    WHERE payment_reference IS NOT NULL;
CREATE TABLE IF NOT EXISTS vi_accounts (
    api_key TEXT PRIMARY KEY,
    api_token TEXT NOT NULL,
    master_key TEXT,
    type TEXT,
    email TEXT,
    email_lower TEXT UNIQUE,
    password TEXT,
    first_name TEXT,
    last_name TEXT,
    content_language TEXT NOT NULL DEFAULT 'en-US',
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS vi_users (
    user_id TEXT PRIMARY KEY,
    api_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vi_users_owner ON vi_users(api_key, created_at);
CREATE TABLE IF NOT EXISTS applications (
    application_id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    application_name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_account ON applications(account_id);
CREATE TABLE IF NOT EXISTS app_users (
    user_id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    application_id INTEGER NOT NULL,
    user_name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    parent_accounting INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    frozen INTEGER NOT NULL DEFAULT 0,
    custom_data TEXT,
    balance INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS app_users_account ON app_users(account_id, deleted);
CREATE UNIQUE INDEX IF NOT EXISTS app_users_name ON app_users(application_id, user_name) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS user_tx (
    transaction_id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    side TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS user_tx_user ON user_tx(user_id, side);
"""

TRANSFER_TYPES = (
    "money_transfer_to_child",
    "money_acceptance_from_parent",
    "money_transfer_to_parent",
    "money_acceptance_from_child",
    "user_money_transfer",
)
#: user_tx.side of the row that moves an app user's own balance (the other side is "account").
USER_SIDE = "user"
DEPOSIT_TYPE = "adjustment"
CHARGE_TYPE = "resource_charge"

ACCOUNT_COLUMNS = (
    "account_id, parent_id, account_name, account_email, api_key, first_name, last_name, custom_data, created, "
    "language_code, location, min_balance_to_notify, account_notifications, tariff_changing_notifications, "
    "news_notifications, active, frozen, balance, credit_limit, currency, support_robokassa, support_bank_card, "
    "support_invoice, can_use_restricted, callback_url, callback_salt"
)


def last_row_id(cur: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT on ``cur`` just wrote."""
    rowid = cur.lastrowid
    if rowid is None:  # pragma: no cover - sqlite sets it after every INSERT
        raise RuntimeError("the INSERT wrote no row")
    return int(rowid)


def utc_text(ts: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() if ts is None else ts))


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA temp_store = MEMORY")


class Store:
    """The sandbox database. Safe to share between threads: each thread borrows its own connection."""

    def __init__(self, db_path: str, *, max_idle: int = 16) -> None:
        self.db_path = str(db_path)
        if self.db_path != ":memory:" and not self.db_path.startswith("file:"):
            os.makedirs(os.path.dirname(os.path.abspath(self.db_path)), exist_ok=True)
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._max_idle = max_idle
        self._closed = False
        self._count_cache: dict[Any, tuple[str, int]] = {}
        with self.connection() as conn:
            conn.executescript(SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('accounts_version', '0')")

    # --- connections -----------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        _configure(conn)
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection for the current thread (autocommit mode)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            if conn.in_transaction:  # pragma: no cover - defensive
                conn.execute("ROLLBACK")
            with self._lock:
                if not self._closed and len(self._idle) < self._max_idle:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so two money
        operations can never read the same balance and both spend it."""
        with self._write_lock, self.connection() as conn:
            # The in-process lock spares threads SQLite's busy-wait back-off; BEGIN IMMEDIATE (with
            # busy_timeout) still serialises against other processes (e.g. `sandbox spend`).
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several statements."""
        with self.connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # --- meta ------------------------------------------------------------------------------------

    def meta_get(self, key: str, conn: sqlite3.Connection | None = None) -> str | None:
        if conn is None:
            with self.connection() as c:
                return self.meta_get(key, c)
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @staticmethod
    def meta_set(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @staticmethod
    def bump_accounts_version(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'accounts_version'")

    def cached_count(self, conn: sqlite3.Connection, key: Any, sql: str, args: list[Any]) -> int:
        """``count(*)`` cached until the set of accounts (or their active/frozen flags) changes."""
        version = conn.execute("SELECT value FROM meta WHERE key = 'accounts_version'").fetchone()[0]
        hit = self._count_cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        count = conn.execute(sql, args).fetchone()[0]
        if len(self._count_cache) > 256:
            self._count_cache.clear()
        self._count_cache[key] = (version, count)
        return count

    # --- ledger writes (caller holds a write transaction) --------------------------------------------------

    @staticmethod
    def add_transaction(
        conn: sqlite3.Connection,
        *,
        account_id: int,
        amount: int,
        currency: str,
        transaction_type: str,
        ts: int,
        description: str | None = None,
        payment_reference: str | None = None,
        counterpart_id: int | None = None,
        op_id: int | None = None,
        user_id: int | None = None,
        user_side: bool = False,
    ) -> int:
        """One ledger row. With ``user_id`` the row is linked to that app user (``user_tx``);
        ``user_side`` makes it move the user's own balance instead of the account's."""
        cur = conn.execute(
            "INSERT INTO transactions(account_id, performed_ts, amount, currency, transaction_type, description, "
            "payment_reference, counterpart_id, op_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (account_id, ts, amount, currency, transaction_type, description, payment_reference, counterpart_id, op_id),
        )
        tx_id = last_row_id(cur)
        if user_id is not None:
            side = USER_SIDE if user_side else "account"
            conn.execute("INSERT INTO user_tx(transaction_id, user_id, side) VALUES (?, ?, ?)", (tx_id, user_id, side))
        if user_side:
            conn.execute("UPDATE app_users SET balance = balance + ? WHERE user_id = ?", (amount, user_id))
        else:
            conn.execute("UPDATE accounts SET balance = balance + ? WHERE account_id = ?", (amount, account_id))
        return tx_id

    # --- read helpers (for tests and tools) --------------------------------------------------------

    def _one(self, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        with self.connection() as conn:
            row = conn.execute(sql, args).fetchone()
        return None if row is None else _account_dict(row)

    def account(self, account_id: int) -> dict[str, Any] | None:
        return self._one(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?", (account_id,))

    def parent_account(self) -> dict[str, Any] | None:
        """The first top-level (parent) account, as made by ``init``."""
        return self._one(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE parent_id IS NULL ORDER BY account_id LIMIT 1", ()
        )

    def child_by_name(self, name: str) -> dict[str, Any] | None:
        return self._one(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_name = ? AND parent_id IS NOT NULL", (name,)
        )

    def child_by_email(self, email: str) -> dict[str, Any] | None:
        return self._one(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email_lower = ? AND parent_id IS NOT NULL",
            (email.lower(),),
        )

    def children_count(self, parent_id: int | None = None) -> int:
        with self.connection() as conn:
            if parent_id is None:
                return conn.execute("SELECT count(*) FROM accounts WHERE parent_id IS NOT NULL").fetchone()[0]
            return conn.execute("SELECT count(*) FROM accounts WHERE parent_id = ?", (parent_id,)).fetchone()[0]

    def transactions_by_reference(self, reference: str) -> list[dict[str, Any]]:
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT * FROM transactions WHERE payment_reference = ? ORDER BY transaction_id", (reference,)
            ).fetchall()
        return [_tx_dict(r) for r in rows]

    def transactions(self, account_id: int | None = None, transaction_type: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM transactions WHERE 1=1"
        args: list[Any] = []
        if account_id is not None:
            sql += " AND account_id = ?"
            args.append(account_id)
        if transaction_type is not None:
            sql += " AND transaction_type = ?"
            args.append(transaction_type)
        with self.connection() as conn:
            rows = conn.execute(sql + " ORDER BY transaction_id", args).fetchall()
        return [_tx_dict(r) for r in rows]

    def transfer_ops_by_reference(self, reference: str) -> int:
        """How many distinct transfer calls wrote rows with this reference (at most 1)."""
        with self.connection() as conn:
            return conn.execute(
                "SELECT count(DISTINCT op_id) FROM transactions WHERE payment_reference = ?", (reference,)
            ).fetchone()[0]

    def money_totals(self) -> dict[str, Any]:
        """Per-currency totals from one snapshot.

        ``put_in`` = deposits (``adjustment`` rows written by init/seed), ``charged`` = money spent on
        simulated calls (``resource_charge``), ``transfers_net`` = the sum of all transfer legs (0 when
        no transfer converted currency), ``balances`` = sum of balances. ``conserved`` holds when every
        currency satisfies ``balances + charged == put_in + transfers_net`` and every account's
        balance equals the sum of its ledger rows.
        """
        with self.read() as conn:
            bal = {r[0]: r[1] for r in conn.execute("SELECT currency, sum(balance) FROM accounts GROUP BY currency")}
            # App users with their own balance hold money of their account's currency.
            for cur_code, total in conn.execute(
                "SELECT a.currency, sum(u.balance) FROM app_users u JOIN accounts a ON a.account_id = u.account_id "
                "GROUP BY a.currency"
            ):
                bal[cur_code] = (bal.get(cur_code) or 0) + (total or 0)
            rows = conn.execute(
                "SELECT currency, transaction_type, sum(amount) FROM transactions GROUP BY currency, transaction_type"
            ).fetchall()
            ledger_mismatch = conn.execute(
                "SELECT count(*) FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) s FROM transactions "
                "WHERE transaction_id NOT IN (SELECT transaction_id FROM user_tx WHERE side = ?) "
                "GROUP BY account_id) t ON t.account_id = a.account_id WHERE a.balance != coalesce(t.s, 0)",
                (USER_SIDE,),
            ).fetchone()[0]
            ledger_mismatch += conn.execute(
                "SELECT count(*) FROM app_users u LEFT JOIN (SELECT x.user_id, sum(t.amount) s FROM user_tx x "
                "JOIN transactions t ON t.transaction_id = x.transaction_id WHERE x.side = ? GROUP BY x.user_id) l "
                "ON l.user_id = u.user_id WHERE u.balance != coalesce(l.s, 0)",
                (USER_SIDE,),
            ).fetchone()[0]
        per: dict[str, dict[str, int]] = {}
        for cur, total in bal.items():
            per.setdefault(cur, {"put_in": 0, "charged": 0, "transfers_net": 0, "other": 0, "balances": 0})
            per[cur]["balances"] = total or 0
        for cur, ttype, total in rows:
            entry = per.setdefault(cur, {"put_in": 0, "charged": 0, "transfers_net": 0, "other": 0, "balances": 0})
            if ttype == DEPOSIT_TYPE:
                entry["put_in"] += total
            elif ttype == CHARGE_TYPE:
                entry["charged"] -= total
            elif ttype in TRANSFER_TYPES:
                entry["transfers_net"] += total
            else:
                entry["other"] += total
        out: dict[str, Any] = {"currencies": {}, "ledger_mismatched_accounts": ledger_mismatch}
        ok = ledger_mismatch == 0
        for cur, e in sorted(per.items()):
            conserved = e["balances"] + e["charged"] == e["put_in"] + e["transfers_net"] + e["other"]
            ok = ok and conserved
            out["currencies"][cur] = {k: to_decimal(v) for k, v in e.items()} | {"conserved": conserved}
        out["conserved"] = ok
        return out

    def check_invariants(self) -> list[str]:
        """Return a list of violated invariants (empty when all hold)."""
        problems = []
        totals = self.money_totals()
        if totals["ledger_mismatched_accounts"]:
            problems.append(f"{totals['ledger_mismatched_accounts']} account balance(s) differ from their ledger")
        for cur, entry in totals["currencies"].items():
            if not entry["conserved"]:
                problems.append(f"money not conserved in {cur}: {entry}")
        with self.connection() as conn:
            # Same-currency transfer legs of one call sum to zero per (op, child).
            bad = conn.execute(
                "SELECT op_id FROM (SELECT op_id, sum(amount) s, count(DISTINCT currency) c FROM transactions "
                "WHERE op_id IS NOT NULL GROUP BY op_id) WHERE c = 1 AND s != 0"
            ).fetchall()
            if bad:
                problems.append(f"transfer operations not netting to zero: {[b[0] for b in bad]}")
        return problems

    def total_money(self) -> Decimal:
        """Sum of all balances plus everything charged (single-currency setups: constant)."""
        with self.read() as conn:
            bal = conn.execute("SELECT coalesce(sum(balance), 0) FROM accounts").fetchone()[0]
            charged = conn.execute(
                "SELECT coalesce(sum(amount), 0) FROM transactions WHERE transaction_type = ?", (CHARGE_TYPE,)
            ).fetchone()[0]
        return to_decimal(bal - charged)


def _account_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("balance", "credit_limit", "min_balance_to_notify"):
        d[key] = to_decimal(d[key])
    for key in (
        "active",
        "frozen",
        "account_notifications",
        "tariff_changing_notifications",
        "news_notifications",
        "support_robokassa",
        "support_bank_card",
        "support_invoice",
        "can_use_restricted",
    ):
        d[key] = bool(d[key])
    return d


def _tx_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["amount"] = to_decimal(d["amount"])
    d["performed_at"] = utc_text(d["performed_ts"])
    return d
