"""One resource charge on one chosen child (the admin surface's ``POST /_sandbox/charge``).

``spend`` charges random children; a test of usage billing needs a known charge on a known
child, with a known amount and time, as the provider's transaction history then shows it.
The charge is taken whole, as a call in progress would be (the balance may go below zero).
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

from . import callbacks, money
from .store import CHARGE_TYPE, Store


def charge_account(
    store: Store, *, account_id: object, amount: object, description: object = None, performed_ts: object = None
) -> dict[str, Any]:
    """Charge ``amount`` (a decimal string, at most 4 places, above zero) to child ``account_id``.

    ``performed_ts`` (Unix seconds) backdates the row; by default it is now. ValueError for bad
    input or an account that is not a child."""
    if isinstance(account_id, bool) or not isinstance(account_id, int):
        raise ValueError("account_id must be an integer")
    if not isinstance(amount, str):
        raise ValueError('amount must be a decimal string such as "0.1234"')
    try:
        units = money.from_decimal(Decimal(amount))
    except (InvalidOperation, money.AmountError) as exc:
        raise ValueError(f"amount: {exc}") from None
    if units <= 0:
        raise ValueError("amount must be above zero")
    if description is not None and not isinstance(description, str):
        raise ValueError("description must be a string")
    if performed_ts is None:
        ts = int(time.time())
    elif isinstance(performed_ts, bool) or not isinstance(performed_ts, int) or performed_ts < 0:
        raise ValueError("performed_ts must be a non-negative integer (Unix seconds)")
    else:
        ts = performed_ts
    with store.write() as conn:
        row = conn.execute(
            "SELECT balance, currency FROM accounts WHERE account_id = ? AND parent_id IS NOT NULL", (account_id,)
        ).fetchone()
        if row is None:
            raise ValueError("no such child account")
        balance, currency = row
        transaction_id = Store.add_transaction(
            conn,
            account_id=account_id,
            amount=-units,
            currency=currency,
            transaction_type=CHARGE_TYPE,
            ts=ts,
            description=description or "Sandbox call charge",
        )
        callbacks.balance_moved(conn, account_id, balance, balance - units, transfer=False)
    return {
        "transaction_id": transaction_id,
        "account_id": account_id,
        "amount": money.to_decimal(units),
        "currency": currency,
        "performed_ts": ts,
    }
