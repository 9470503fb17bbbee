"""Provider transaction types and transfer directions in words: the one table.

Customers read customer words; staff read staff words, which may speak of the parent account
and the reseller. A type missing from the table reads as its name in words for staff; for a
customer it reads as "Adjustment" whenever its name speaks of the parent, a child account or
the reseller, so staff-only words never reach a customer.
"""

from __future__ import annotations

from billing.models import Transfer
from billing.provider import CHILD_FROM_PARENT, CHILD_TO_PARENT, FROM_CHILD, TO_CHILD

D = Transfer.Direction

#: kind -> (customer words, staff words)
WORDS: dict[str, tuple[str, str]] = {
    CHILD_FROM_PARENT: ("Top-up", "Top-up from the parent account"),
    CHILD_TO_PARENT: ("Adjustment", "Pulled back to the parent account"),
    TO_CHILD: ("Top-up", "Sent to the tenant (parent side)"),
    FROM_CHILD: ("Adjustment", "Received from the tenant (parent side)"),
    D.TO_TENANT: ("Top-up", "Top-up from the parent account"),
    D.TO_PARENT: ("Adjustment", "Pulled back to the parent account"),
    D.TO_USER: ("Moved to a user's balance", "Moved to a PBX user"),
    D.FROM_USER: ("Moved from a user's balance", "Moved from a PBX user"),
    "resource_charge": ("Usage charge", "Usage charge"),
    "adjustment": ("Adjustment", "Adjustment"),
    "money_on_hold": ("Money on hold", "Money on hold"),
}

#: Words that belong to the reseller's side of an account; never shown to a customer.
STAFF_ONLY = ("parent", "child", "reseller", "pull")


def _plain(kind: str) -> str:
    text = kind.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else "Transaction"


def kind_for_staff(kind: str) -> str:
    return WORDS[kind][1] if kind in WORDS else _plain(kind)


def kind_for_customer(kind: str) -> str:
    if kind in WORDS:
        return WORDS[kind][0]
    text = _plain(kind)
    return "Adjustment" if any(w in text.lower() for w in STAFF_ONLY) else text
