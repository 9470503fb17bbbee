"""Account callbacks (webhooks): what the emulated Voximplant posts to an account's callback_url.

Events are written to an outbox table in the same SQLite transaction as the change that
caused them (:func:`emit`), so a rolled-back change never posts; one daemon thread per app
(:class:`CallbackSender`) drains the outbox, several callbacks per POST, retrying a few
times. Our readings where the provider's documents are silent (also in the sandbox README):

* ``callback_id`` is a per-account increasing sequence (1, 2, ...), counted per account the
  event is about, whichever URL receives it.
* A child's event goes to the child's own callback_url (hash with the child's salt and the
  child's api key) and, with the option ``callbacks_child_events_to_parent`` (default true),
  to the parent's callback_url, hashed with the parent's salt and the parent's api key
  (``md5(parent_salt + child_account_id + parent_api_key + callback_id)``): the parent's key
  is the one its receiver is sure to hold.
* Events: ``account_is_frozen`` / ``account_is_unfrozen`` when the frozen flag changes,
  ``balance_is_changed`` on a transfer to or from a child, ``min_balance`` (``is_min_credit``
  false) when a child's balance falls below its min_balance_to_notify.
* Delivery: a 2xx reply is success; 408, 429 and 5xx or a network error are retried with
  back-off up to ``callbacks_max_attempts``; any other status is final (``rejected``).
  ``callbacks_enabled`` false and ``callbacks_drop_rate`` (lost callbacks) act at delivery.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from .money import to_decimal
from .options import Options
from .store import Store

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS callback_seq (account_id INTEGER PRIMARY KEY, last_id INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS callback_outbox ("
    " id INTEGER PRIMARY KEY, url TEXT NOT NULL, account_id INTEGER NOT NULL, callback_id INTEGER NOT NULL,"
    " type TEXT NOT NULL, via_parent INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,"
    " next_ts REAL NOT NULL DEFAULT 0, created REAL NOT NULL, last_status TEXT)",
    "CREATE INDEX IF NOT EXISTS callback_outbox_due ON callback_outbox(state, next_ts)",
)

_ACCOUNT_SQL = (
    "SELECT account_id, parent_id, account_name, account_email, first_name, last_name, language_code, balance, "
    "currency, api_key, callback_url, callback_salt, min_balance_to_notify FROM accounts WHERE account_id = ?"
)

_RETRY_STATUSES = frozenset({408, 429})
# Posts go straight to the receiver, never through a proxy from the environment; the URL was
# checked to be http(s) when it was set.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the outbox tables (single statements: safe inside an open transaction)."""
    for statement in _SCHEMA:
        conn.execute(statement)


def callback_hash(salt: str, account_id: int, api_key: str, callback_id: int) -> str:
    """``md5(salt + account_id + api_key + callback_id)``, string concatenation, hex digest."""
    text = f"{salt}{account_id}{api_key}{callback_id}"
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _destinations(conn: sqlite3.Connection, row: sqlite3.Row) -> list[tuple[str, str, str, bool]]:
    """(url, salt, api_key used in the hash, via_parent) for every receiver of this account's events."""
    out: list[tuple[str, str, str, bool]] = []
    if row["callback_url"]:
        out.append((row["callback_url"], row["callback_salt"] or "", row["api_key"], False))
    if row["parent_id"] is not None:
        parent = conn.execute(
            "SELECT api_key, callback_url, callback_salt FROM accounts WHERE account_id = ?", (row["parent_id"],)
        ).fetchone()
        if parent is not None and parent["callback_url"]:
            out.append((parent["callback_url"], parent["callback_salt"] or "", parent["api_key"], True))
    return out


def _next_callback_id(conn: sqlite3.Connection, account_id: int) -> int:
    found = conn.execute(
        "INSERT INTO callback_seq(account_id, last_id) VALUES (?, 1) "
        "ON CONFLICT(account_id) DO UPDATE SET last_id = last_id + 1 RETURNING last_id",
        (account_id,),
    ).fetchone()
    return int(found[0])


def _body(row: sqlite3.Row, callback_id: int, kind: str, sub: dict[str, Any], digest: str) -> str:
    callback: dict[str, Any] = {
        "callback_id": callback_id,
        "type": kind,
        "account_id": row["account_id"],
        "account_name": row["account_name"],
        "account_email": row["account_email"],
        "language_code": row["language_code"],
        "balance": "__BALANCE__",
        "currency": row["currency"],
        "hash": digest,
        kind: sub,
    }
    if row["first_name"] is not None:
        callback["account_first_name"] = row["first_name"]
    if row["last_name"] is not None:
        callback["account_last_name"] = row["last_name"]
    # The balance is a JSON number with the account's 4 decimals, never a float.
    text = json.dumps(callback, separators=(",", ":"))
    return text.replace('"__BALANCE__"', f"{to_decimal(row['balance'])}", 1)


def emit(conn: sqlite3.Connection, account_id: int, kind: str, sub: dict[str, Any] | None = None) -> int | None:
    """Queue one callback about ``account_id`` inside the caller's transaction; returns its
    callback_id, or None when no account concerned has a callback_url."""
    row = conn.execute(_ACCOUNT_SQL, (account_id,)).fetchone()
    if row is None:
        return None
    targets = _destinations(conn, row)
    if not targets:
        return None
    ensure_schema(conn)
    callback_id = _next_callback_id(conn, account_id)
    now = time.time()
    for url, salt, api_key, via_parent in targets:
        digest = callback_hash(salt, account_id, api_key, callback_id)
        conn.execute(
            "INSERT INTO callback_outbox(url, account_id, callback_id, type, via_parent, body, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                url,
                account_id,
                callback_id,
                kind,
                int(via_parent),
                _body(row, callback_id, kind, sub or {}, digest),
                now,
            ),
        )
    _wake(conn)
    return callback_id


def frozen_changed(conn: sqlite3.Connection, account_id: int, frozen: bool) -> None:
    emit(conn, account_id, "account_is_frozen" if frozen else "account_is_unfrozen")


def balance_moved(conn: sqlite3.Connection, account_id: int, before: int, after: int, *, transfer: bool) -> None:
    """A child's balance went from ``before`` to ``after`` (ten-thousandths): a transfer says so
    with balance_is_changed, and falling below a positive min_balance_to_notify says min_balance."""
    row = conn.execute("SELECT parent_id, min_balance_to_notify FROM accounts WHERE account_id = ?", (account_id,))
    found = row.fetchone()
    if found is None or found["parent_id"] is None:
        return
    if transfer:
        emit(conn, account_id, "balance_is_changed")
    threshold = found["min_balance_to_notify"]
    if threshold > 0 and before >= threshold > after:
        emit(conn, account_id, "min_balance", {"is_min_credit": False, "is_repeated": False})


# --- waking the sender -------------------------------------------------------------------------

_SENDERS: dict[str, CallbackSender] = {}
_SENDERS_LOCK = threading.Lock()


def _db_key(path: str) -> str:
    return os.path.realpath(path) if path and not path.startswith("file:") and path != ":memory:" else path


def _wake(conn: sqlite3.Connection) -> None:
    path = next((r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"), "")
    with _SENDERS_LOCK:
        sender = _SENDERS.get(_db_key(path))
    if sender is not None:
        sender.wake()


def outbox(store: Store, account_id: int | None = None) -> list[dict[str, Any]]:
    """Every queued callback (tests and tools): id, url, account_id, callback_id, type, state,
    attempts, body (parsed)."""
    with store.connection() as conn:
        ensure_schema(conn)
        sql = "SELECT id, url, account_id, callback_id, type, via_parent, state, attempts, body FROM callback_outbox"
        args: tuple[Any, ...] = ()
        if account_id is not None:
            sql += " WHERE account_id = ?"
            args = (account_id,)
        rows = conn.execute(sql + " ORDER BY id", args).fetchall()
    return [{**dict(r), "body": json.loads(r["body"])} for r in rows]


class CallbackSender:
    """One daemon thread that posts the outbox of one sandbox database. Started on the first
    event (or at start when the outbox holds undelivered callbacks)."""

    def __init__(self, store: Store, opts: Options, *, poll_seconds: float = 0.25) -> None:
        self.store = store
        self.opts = opts
        self.poll_seconds = poll_seconds
        self.rng = random.Random(0)
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        with _SENDERS_LOCK:
            _SENDERS[_db_key(store.db_path)] = self
        if self._has_pending():
            self.wake()

    def _has_pending(self) -> bool:
        try:
            with self.store.connection() as conn:
                return (
                    conn.execute("SELECT 1 FROM callback_outbox WHERE state = 'pending' LIMIT 1").fetchone() is not None
                )
        except sqlite3.OperationalError:  # no outbox yet
            return False

    def wake(self) -> None:
        if self._stop.is_set():
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sandbox-callbacks", daemon=True)
                self._thread.start()
        self._event.set()

    def stop(self) -> None:
        self._stop.set()
        self._event.set()
        with _SENDERS_LOCK:
            if _SENDERS.get(_db_key(self.store.db_path)) is self:
                del _SENDERS[_db_key(self.store.db_path)]
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._event.wait(self.poll_seconds)
            self._event.clear()
            if woken:
                time.sleep(0.02)  # let the emitting transaction commit
            try:
                while self.deliver_due() and not self._stop.is_set():
                    pass
            except Exception:  # noqa: BLE001 - a locked or closed db: try again on the next tick
                time.sleep(self.poll_seconds)

    # --- delivery ------------------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Post every due callback once; returns how many were handled."""
        now = time.time()
        with self.store.connection() as conn:
            try:
                rows = conn.execute(
                    "SELECT id, url, via_parent, attempts, body FROM callback_outbox "
                    "WHERE state = 'pending' AND next_ts <= ? ORDER BY id LIMIT 500",
                    (now,),
                ).fetchall()
            except sqlite3.OperationalError:
                return 0
        if not rows:
            return 0
        by_url: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            state = self._filtered_state(row)
            if state is not None:
                self._mark([row["id"]], state, None, attempt=False)
                continue
            by_url.setdefault(row["url"], []).append(row)
        size = max(1, int(self.opts["callbacks_batch_size"]))
        for url, batch in by_url.items():
            for start in range(0, len(batch), size):
                self._post(url, batch[start : start + size])
        return len(rows)

    def _filtered_state(self, row: sqlite3.Row) -> str | None:
        """The final state of a callback never to be posted, or None to post it."""
        if not self.opts["callbacks_enabled"]:
            return "disabled"
        if row["via_parent"] and not self.opts["callbacks_child_events_to_parent"]:
            return "skipped"
        rate = float(Decimal(self.opts["callbacks_drop_rate"]))
        if rate > 0 and self.rng.random() < rate:
            return "dropped"
        return None

    def _post(self, url: str, batch: list[sqlite3.Row]) -> None:
        payload = ('{"callbacks":[' + ",".join(r["body"] for r in batch) + "]}").encode("utf-8")
        request = urllib.request.Request(
            url, data=payload, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        status: int | None
        try:
            with _OPENER.open(request, timeout=float(self.opts["callbacks_timeout_seconds"])) as reply:
                status = reply.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError):
            status = None
        ids = [r["id"] for r in batch]
        if status is not None and 200 <= status < 300:
            self._mark(ids, "delivered", str(status))
            return
        if status is not None and status < 500 and status not in _RETRY_STATUSES:
            self._mark(ids, "rejected", str(status))
            return
        self._retry(batch, "network error" if status is None else str(status))

    def _retry(self, batch: Iterable[sqlite3.Row], status: str) -> None:
        limit = max(1, int(self.opts["callbacks_max_attempts"]))
        with self.store.write() as conn:
            for row in batch:
                attempts = row["attempts"] + 1
                if attempts >= limit:
                    conn.execute(
                        "UPDATE callback_outbox SET state = 'failed', attempts = ?, last_status = ? WHERE id = ?",
                        (attempts, status, row["id"]),
                    )
                else:
                    conn.execute(
                        "UPDATE callback_outbox SET attempts = ?, next_ts = ?, last_status = ? WHERE id = ?",
                        (attempts, time.time() + min(5.0, 0.2 * 2**attempts), status, row["id"]),
                    )

    def _mark(self, ids: list[int], state: str, status: str | None, *, attempt: bool = True) -> None:
        with self.store.write() as conn:
            conn.executemany(
                "UPDATE callback_outbox SET state = ?, attempts = attempts + ?, last_status = ? WHERE id = ?",
                [(state, int(attempt), status, i) for i in ids],
            )
