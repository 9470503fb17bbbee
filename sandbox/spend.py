"""Simulated call charges: ``resource_charge`` rows that move children's balances between syncs.

Rule (docs: "balance can go negative if a call is in progress when money hits zero"; credit_limit
lets the balance go below zero): a child is charged only while it is active, not frozen and has
``balance + credit_limit > 0``; the charge (a call already in progress) is taken in full, so the
balance may end below zero, by at most one charge beyond the credit limit.
Money is conserved: each charge is a ledger row, so balances + charged stays constant.
"""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal
from typing import Any

from . import callbacks, money
from .store import CHARGE_TYPE, Store


def _charge(store: Store, *, children: int, max_units: int, rng: random.Random) -> dict[str, Any]:
    if max_units < 1:
        raise ValueError("max amount must be at least 0.0001")
    charged = 0
    total = 0
    skipped = 0
    now = int(time.time())
    with store.write() as conn:
        lo, hi, total_children = conn.execute(
            "SELECT min(account_id), max(account_id), count(*) FROM accounts WHERE parent_id IS NOT NULL"
        ).fetchone()
        if not total_children:
            return {"charged": 0, "skipped": 0, "total": Decimal(0)}
        if children * 20 < total_children:
            # Few picks among many children: probe random ids instead of loading every id.
            picks = []
            for _ in range(children):
                row = conn.execute(
                    "SELECT account_id FROM accounts WHERE account_id >= ? AND parent_id IS NOT NULL AND active = 1 "
                    "AND frozen = 0 ORDER BY account_id LIMIT 1",
                    (rng.randint(lo, hi),),
                ).fetchone()
                if row is not None:
                    picks.append(row[0])
        else:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT account_id FROM accounts WHERE parent_id IS NOT NULL AND active = 1 AND frozen = 0"
                )
            ]
            if not ids:
                return {"charged": 0, "skipped": 0, "total": Decimal(0)}
            picks = rng.sample(ids, children) if children <= len(ids) else [rng.choice(ids) for _ in range(children)]
        for account_id in picks:
            balance, credit, currency = conn.execute(
                "SELECT balance, credit_limit, currency FROM accounts WHERE account_id = ?", (account_id,)
            ).fetchone()
            if balance + credit <= 0:
                skipped += 1
                continue
            amount = rng.randint(1, max_units)
            Store.add_transaction(
                conn,
                account_id=account_id,
                amount=-amount,
                currency=currency,
                transaction_type=CHARGE_TYPE,
                ts=now,
                description="Sandbox simulated call",
            )
            callbacks.balance_moved(conn, account_id, balance, balance - amount, transfer=False)
            charged += 1
            total += amount
    return {"charged": charged, "skipped": skipped, "total": money.to_decimal(total)}


def spend(db_path: str, *, children: int, max_amount: Decimal | str, seed: int | None = 0) -> dict[str, Any]:
    """Charge ``children`` random active children up to ``max_amount`` each (one transaction)."""
    store = Store(db_path)
    try:
        return spend_store(store, children=children, max_amount=max_amount, seed=seed)
    finally:
        store.close()


def spend_store(store: Store, *, children: int, max_amount: Decimal | str, seed: int | None = 0) -> dict[str, Any]:
    max_units = money.parse(str(max_amount), allow_round=True)
    rng = random.Random(seed)
    return _charge(store, children=int(children), max_units=max_units, rng=rng)


class Spender:
    """Background charges at ``rate`` per second (``serve --spend-rate``)."""

    def __init__(self, store: Store, rate: float, max_amount: str, seed: int | None = None) -> None:
        self.store = store
        self.rate = rate
        self.max_amount = max_amount
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sandbox-spender", daemon=True)

    def start(self) -> Spender:
        self.thread.start()
        return self

    def _run(self) -> None:
        interval = max(0.1, 1.0 / self.rate) if self.rate > 0 else 1.0
        carry = 0.0
        max_units = money.parse(self.max_amount, allow_round=True)
        while not self._stop.wait(interval):
            carry += self.rate * interval
            n = int(carry)
            carry -= n
            if n:
                try:
                    _charge(self.store, children=n, max_units=max_units, rng=self.rng)
                except Exception:  # keep charging after a transient lock error
                    time.sleep(interval)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
