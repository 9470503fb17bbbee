"""``seed``: many child accounts with varied names, balances, currencies and states, fast.

Opening balances are recorded as deposits: one ``adjustment`` row per child with a non-zero
balance (description "Sandbox seed: opening balance"), so every balance equals its ledger and
:meth:`sandbox.store.Store.money_totals` stays conserved. The parent's balance is not touched.
"""

from __future__ import annotations

import random
import time
from typing import Any

from .store import DEPOSIT_TYPE, Store

WORDS = (
    "acme alpha atlas aurora beacon birch bolt cedar cobalt comet coral delta ember falcon fern fjord flint galaxy "
    "garnet harbor hazel helix indigo iris jade juniper karma kestrel lagoon lark lotus lumen maple meadow mercury "
    "nebula nimbus north oasis onyx orbit pearl pine pixel prism quartz quill raven ridge river sable sierra slate "
    "solar spruce summit tango terra tide topaz tundra umber vapor velvet vista willow zenith zephyr"
).split()
DOMAINS = ("example.com", "example.org", "example.net", "mail.test", "pbx.test", "corp.example")
LANGS = ("en", "en", "en", "ru", "de", "es", "fr")
LOCATIONS = ("Etc/GMT", "Etc/GMT", "Europe/Moscow", "America/New_York", "Europe/Berlin", "Asia/Almaty", "Etc/GMT-3")
OTHER_CURRENCIES = ("EUR", "RUR", "KZT")


def seed_children(db_path: str, n: int, *, seed: int = 0, parent_id: int | None = None) -> dict[str, Any]:
    """Add ``n`` children under the parent (default: the first top-level account) in one transaction."""
    if n < 0:
        raise ValueError("n must be >= 0")
    started = time.perf_counter()
    rng = random.Random(seed)
    store = Store(db_path)
    try:
        with store.write() as conn:
            conn.execute("PRAGMA cache_size = -262144")
            if parent_id is None:
                row = conn.execute(
                    "SELECT account_id, currency FROM accounts WHERE parent_id IS NULL ORDER BY account_id LIMIT 1"
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT account_id, currency FROM accounts WHERE account_id = ? AND parent_id IS NULL", (parent_id,)
                ).fetchone()
            if row is None:
                raise RuntimeError("no parent account: run `python -m sandbox init` first")
            pid, parent_cur = int(row[0]), row[1]
            start = (conn.execute("SELECT coalesce(max(account_id), 0) FROM accounts").fetchone()[0] or 0) + 1
            now = int(time.time())
            base = 1451606400  # 2016-01-01
            created_pool = [
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + rng.randrange(now - base))) for _ in range(8192)
            ]
            accounts = []
            deposits = []
            getbits = rng.getrandbits
            n_words = len(WORDS)
            for i in range(n):
                aid = start + i
                r = getbits(64)
                word = WORDS[r % n_words]
                r //= n_words
                name = f"{word}-{aid}"
                if len(name) > 20:  # pragma: no cover - ids beyond 10**13
                    name = f"c{aid}"[:20]
                domain = DOMAINS[r % 6]
                r //= 6
                shape = r % 10
                r //= 10
                if shape == 0:
                    email = f"Billing.{name}@{domain.upper()}"
                elif shape < 4:
                    email = f"admin+{aid}@{word}.{domain}"
                else:
                    email = f"{name}@{domain}"
                state = r % 100
                r //= 100
                active = 0 if state < 10 else 1
                frozen = 1 if state >= 98 else 0
                credit = (500000, 1000000, 5000000)[r % 3] if state % 10 == 5 else 0
                r //= 3
                kind = r % 20
                r //= 20
                if kind == 0:
                    balance = 0
                elif kind == 1 and credit:
                    balance = -(r % credit) - 1
                elif kind < 6:
                    balance = r % 1000000  # < 100.0000, with 4 decimals
                else:
                    balance = (r % 50000000) // 100 * 100  # < 5000.00, 2 decimals
                r = getbits(32)
                cur = OTHER_CURRENCIES[r % 3] if r % 100 < 15 else parent_cur
                r //= 100
                accounts.append(
                    (
                        aid,
                        pid,
                        name,
                        email,
                        email.lower(),
                        f"{getbits(128):032x}",
                        created_pool[r % 8192],
                        LANGS[r % 7],
                        LOCATIONS[(r >> 3) % 7],
                        ((r >> 6) % 100) * 10000,
                        active,
                        frozen,
                        balance,
                        credit,
                        cur,
                    )
                )
                if balance:
                    deposits.append((aid, now, balance, cur, DEPOSIT_TYPE, "Sandbox seed: opening balance"))
            accounts = [
                a[:5] + (f"{a[5][:8]}-{a[5][8:12]}-{a[5][12:16]}-{a[5][16:20]}-{a[5][20:]}",) + a[6:] for a in accounts
            ]
            conn.executemany(
                "INSERT INTO accounts(account_id, parent_id, account_name, account_email, email_lower, api_key, created, "
                "language_code, location, min_balance_to_notify, active, frozen, balance, credit_limit, currency) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                accounts,
            )
            conn.executemany(
                "INSERT INTO transactions(account_id, performed_ts, amount, currency, transaction_type, description) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                deposits,
            )
            Store.bump_accounts_version(conn)
        with store.connection() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA optimize")
    finally:
        store.close()
    return {
        "parent_id": pid,
        "children_added": n,
        "first_account_id": start,
        "last_account_id": start + n - 1,
        "seconds": round(time.perf_counter() - started, 3),
    }
