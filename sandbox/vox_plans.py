"""Voximplant emulation: account plans (GetAccountPlans, GetAvailablePlans, ChangeAccountPlan)
and the account's document verification (GetAccountDocuments).

The documents give the method names, their parameters, the result types and that changing a
plan reserves next month's subscription fee plus taxes at once; the catalogue, the prices, the
taxes, how the reservation shows in AccountInfoType and the verification each child starts with
are our choices (see sandbox/README.md, "Plans and documents").

State: ``vox_plans`` (the current plan per account and plan type; an account without a row is
on the cheapest plan of each type), ``vox_holds`` (money reserved per account: the fee plus
taxes of every plan change; never released, the sandbox has no billing cycle) and
``vox_documents`` (verification per account; an account without a row gets the defaults of the
``documents_*`` options). All three are created by :data:`SCHEMA` (Store runs it at start).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from . import money
from .store import utc_text
from .vox_auth import VoxError, err
from .vox_base import VoxBase
from .vox_params import ALL, Params, parse_date, rates
from .wsgiutil import Request

SCHEMA = """
CREATE TABLE IF NOT EXISTS vox_plans (
    account_id INTEGER NOT NULL,
    plan_type TEXT NOT NULL,
    template_id INTEGER NOT NULL,
    changed_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, plan_type)
);
CREATE TABLE IF NOT EXISTS vox_holds (
    hold_id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vox_holds_account ON vox_holds(account_id);
CREATE TABLE IF NOT EXISTS vox_documents (
    account_id INTEGER PRIMARY KEY,
    verification_status TEXT NOT NULL,
    unverified_hold_until TEXT,
    documents TEXT NOT NULL DEFAULT '[]'
);
"""

PLAN_TYPES = ("IM", "MAU")
VERIFICATION_STATUSES = ("REQUIRED", "IN_PROGRESS", "VERIFIED")

# Errors of these methods (the codes are documented; the texts are ours).
MESSAGES = {
    110: "The plan is invalid",
    244: "Not enough money to reserve the subscription fee",
    379: "The plan change is forbidden",
    426: "The 'plan_type' parameter is invalid",
}


@dataclass(frozen=True)
class Package:
    name: str
    price: str  # USD
    amount: int  # included units per month
    unit: str


@dataclass(frozen=True)
class Plan:
    template_id: int
    plan_type: str
    name: str
    price: str  # USD per month
    packages: tuple[Package, ...]


CATALOGUE: tuple[Plan, ...] = (
    Plan(101, "IM", "IM Start", "10", (Package("Messages", "0", 1000, "message"),)),
    Plan(102, "IM", "IM Business", "25", (Package("Messages", "0", 10000, "message"),)),
    Plan(103, "IM", "IM Enterprise", "60", (Package("Messages", "0", 100000, "message"),)),
    Plan(201, "MAU", "MAU 1000", "20", (Package("Monthly active users", "0", 1000, "user"),)),
    Plan(202, "MAU", "MAU 5000", "75", (Package("Monthly active users", "0", 5000, "user"),)),
    Plan(203, "MAU", "MAU 20000", "250", (Package("Monthly active users", "0", 20000, "user"),)),
)
BY_ID = {plan.template_id: plan for plan in CATALOGUE}


def _error(code: int) -> VoxError:
    return VoxError(code, MESSAGES.get(code))


def _cheapest(plan_type: str) -> Plan:
    return min((p for p in CATALOGUE if p.plan_type == plan_type), key=lambda p: Decimal(p.price))


def _next_month(ts: float) -> str:
    """The first day of the next calendar month (UTC): when the next fee is charged."""
    day = datetime.fromtimestamp(ts, UTC).date().replace(day=1)
    return (day + timedelta(days=32)).replace(day=1).isoformat()


def account_hold(conn: sqlite3.Connection, account_id: int) -> int:
    """Money on hold for ``account_id`` (ten-thousandths)."""
    row = conn.execute("SELECT coalesce(sum(amount), 0) FROM vox_holds WHERE account_id = ?", (account_id,)).fetchone()
    return int(row[0])


def holds_for(conn: sqlite3.Connection, account_ids: list[int]) -> dict[int, int]:
    if not account_ids:
        return {}
    marks = ",".join("?" * len(account_ids))
    rows = conn.execute(
        f"SELECT account_id, sum(amount) FROM vox_holds WHERE account_id IN ({marks}) GROUP BY account_id",
        account_ids,
    ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


class PlansMixin(VoxBase):
    """Plans and documents of the caller's account (a parent acts on a child through the JWT)."""

    # --- helpers -----------------------------------------------------------------------------

    def _price(self, usd: str, currency: str) -> int:
        """A USD catalogue price in the account's currency, at the ``currency_rates``."""
        table = rates(self.opts)
        units = money.from_decimal(Decimal(usd))
        return money.convert(units, table["USD"], table.get(currency, Decimal(1)))

    def _current(self, conn: sqlite3.Connection, account_id: int) -> dict[str, tuple[Plan, int]]:
        rows = conn.execute(
            "SELECT plan_type, template_id, changed_ts FROM vox_plans WHERE account_id = ?", (account_id,)
        ).fetchall()
        stored = {r[0]: (BY_ID[int(r[1])], int(r[2])) for r in rows}
        created = int(time.time())
        return {t: stored.get(t, (_cheapest(t), created)) for t in PLAN_TYPES}

    @staticmethod
    def _type_filter(p: Params) -> list[str]:
        wanted = p.strlist("plan_type")
        if wanted is None:
            return list(PLAN_TYPES)
        for item in wanted:
            if item not in PLAN_TYPES:
                raise _error(426)
        return [t for t in PLAN_TYPES if t in wanted]

    @staticmethod
    def _id_filter(p: Params) -> list[int] | None:
        ids = p.intlist("plan_subscription_template_id", allow_all=False, code=110)
        return None if ids is None or isinstance(ids, str) else ids

    def _plan_json(self, plan: Plan, currency: str) -> dict[str, Any]:
        return {
            "plan_type": plan.plan_type,
            "plan_subscription_template_id": plan.template_id,
            "plan_name": plan.name,
            "price": money.to_decimal(self._price(plan.price, currency)),
            "currency": currency,
        }

    def _account_currency(self, conn: sqlite3.Connection, account_id: int) -> tuple[str, int, int]:
        row = conn.execute(
            "SELECT currency, balance, credit_limit FROM accounts WHERE account_id = ?", (account_id,)
        ).fetchone()
        return str(row[0]), int(row[1]), int(row[2])

    # --- plans -------------------------------------------------------------------------------

    def m_GetAccountPlans(self, req: Request, p: Params) -> dict[str, Any]:
        types, ids = self._type_filter(p), self._id_filter(p)
        with self.store.read() as conn:
            caller = self.require_caller(req, p, conn, "GetAccountPlans")
            currency, _, _ = self._account_currency(conn, caller.account_id)
            current = self._current(conn, caller.account_id)
        out = []
        for plan_type in types:
            plan, changed = current[plan_type]
            if ids is not None and plan.template_id not in ids:
                continue
            item = self._plan_json(plan, currency)
            item["next_charge"] = _next_month(time.time())
            item["plan_changed"] = utc_text(changed)
            item["packages"] = [
                {
                    "package_name": pkg.name,
                    "price": money.to_decimal(self._price(pkg.price, currency)),
                    "amount": pkg.amount,
                    "remaining_amount": pkg.amount,
                    "unit": pkg.unit,
                }
                for pkg in plan.packages
            ]
            out.append(item)
        return {"result": out}

    def m_GetAvailablePlans(self, req: Request, p: Params) -> dict[str, Any]:
        types, ids = self._type_filter(p), self._id_filter(p)
        with self.store.read() as conn:
            caller = self.require_caller(req, p, conn, "GetAvailablePlans")
            currency, _, _ = self._account_currency(conn, caller.account_id)
            current = self._current(conn, caller.account_id)
        out = []
        for plan in CATALOGUE:
            if plan.plan_type not in types or (ids is not None and plan.template_id not in ids):
                continue
            if Decimal(plan.price) > Decimal(current[plan.plan_type][0].price):
                out.append(self._plan_json(plan, currency))
        return {"result": out}

    def _reserve(self, price: int) -> int:
        tax = Decimal(self.opts["plan_tax_percent"])
        total = (Decimal(price) * (1 + tax / 100)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
        return int(total)

    def m_ChangeAccountPlan(self, req: Request, p: Params) -> dict[str, Any]:
        plan_type = p.required("plan_type").strip()
        if plan_type not in PLAN_TYPES:
            raise _error(426)
        raw_id = p.required("plan_subscription_template_id").strip()
        if not raw_id.isascii() or not raw_id.isdigit() or int(raw_id) not in BY_ID:
            raise _error(110)
        new = BY_ID[int(raw_id)]
        if new.plan_type != plan_type:
            raise _error(110)
        with self.store.write() as conn:
            caller = self.require_caller(req, p, conn, "ChangeAccountPlan")
            account_id = caller.account_id
            currency, balance, credit = self._account_currency(conn, account_id)
            old = self._current(conn, account_id)[plan_type][0]
            if Decimal(new.price) <= Decimal(old.price):
                # Downgrades (and "changing" to the same plan) go through the provider's support.
                raise _error(379)
            reserved = self._reserve(self._price(new.price, currency))
            available = balance + credit - account_hold(conn, account_id)
            if available < reserved:
                raise _error(244)
            now = int(time.time())
            conn.execute(
                "INSERT INTO vox_plans(account_id, plan_type, template_id, changed_ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(account_id, plan_type) DO UPDATE SET template_id = excluded.template_id, "
                "changed_ts = excluded.changed_ts",
                (account_id, plan_type, new.template_id, now),
            )
            conn.execute(
                "INSERT INTO vox_holds(account_id, amount, reason, created_ts) VALUES (?, ?, ?, ?)",
                (account_id, reserved, f"{plan_type}:{new.template_id}", now),
            )
            hold = account_hold(conn, account_id)
            name = conn.execute("SELECT account_name FROM accounts WHERE account_id = ?", (account_id,)).fetchone()[0]
        shown = balance - hold if self.opts["plan_hold_in_balance"] else balance
        return {
            "result": 1,
            "account_info": {
                "account_id": account_id,
                "account_name": name,
                "balance": money.to_decimal(shown),
                "live_balance": money.to_decimal(balance - hold),
                "money_on_hold": money.to_decimal(hold),
                "currency": currency,
            },
        }

    # --- documents ---------------------------------------------------------------------------

    def _verification(self, conn: sqlite3.Connection, account_id: int, parent_id: int | None) -> dict[str, Any]:
        row = conn.execute(
            "SELECT verification_status, unverified_hold_until, documents FROM vox_documents WHERE account_id = ?",
            (account_id,),
        ).fetchone()
        if row is not None:
            return {"status": row[0], "hold": row[1], "documents": json.loads(row[2])}
        if parent_id is None:
            return {"status": "VERIFIED", "hold": None, "documents": []}
        created = conn.execute("SELECT created FROM accounts WHERE account_id = ?", (account_id,)).fetchone()[0]
        status = self.opts["documents_default_status"]
        hold = None
        if status != "VERIFIED":
            start = date.fromisoformat(str(created)[:10])
            hold = (start + timedelta(days=int(self.opts["documents_hold_days"]))).isoformat()
        return {"status": status, "hold": hold, "documents": []}

    def m_GetAccountDocuments(self, req: Request, p: Params) -> dict[str, Any]:
        with_details = p.flag("with_details", False)
        statuses = p.strlist("verification_status")
        for item in statuses or ():
            if item not in VERIFICATION_STATUSES:
                raise err(496, "verification_status")
        from_hold = (
            parse_date(p.raw["from_unverified_hold_until"], 233) if p.given("from_unverified_hold_until") else None
        )
        to_hold = parse_date(p.raw["to_unverified_hold_until"], 233) if p.given("to_unverified_hold_until") else None
        children = p.intlist("child_account_id", allow_all=True, code=194)
        children_only = p.flag("children_verifications_only", False)
        with self.store.read() as conn:
            caller = self.require_caller(req, p, conn, "GetAccountDocuments")
            ids: list[tuple[int, int | None]] = [] if children_only else [(caller.account_id, caller.parent_id)]
            if children == ALL:
                rows = conn.execute(
                    "SELECT account_id FROM accounts WHERE parent_id = ? ORDER BY account_id", (caller.account_id,)
                ).fetchall()
                ids += [(int(r[0]), caller.account_id) for r in rows]
                with_details = False  # documented: the flag is ignored with child_account_id=all
            elif children:
                marks = ",".join("?" * len(children))
                found = {
                    int(r[0])
                    for r in conn.execute(
                        f"SELECT account_id FROM accounts WHERE parent_id = ? AND account_id IN ({marks})",
                        [caller.account_id, *children],
                    )
                }
                if found != set(children):
                    raise VoxError(194)
                ids += [(int(cid), caller.account_id) for cid in children]
            out = []
            for account_id, parent_id in ids:
                v = self._verification(conn, account_id, parent_id)
                if statuses and v["status"] not in statuses:
                    continue
                hold = v["hold"]
                if (from_hold or to_hold) and hold is None:
                    continue
                if from_hold and hold < from_hold.date().isoformat():
                    continue
                if to_hold and hold > to_hold.date().isoformat():
                    continue
                entry: dict[str, Any] = {"verification_name": "default", "verification_status": v["status"]}
                if hold is not None:
                    entry["unverified_hold_until"] = hold
                if with_details:
                    entry["documents"] = v["documents"]
                out.append({"account_id": account_id, "verifications": [entry]})
        return {"result": out}


def set_documents(conn: sqlite3.Connection, body: Any) -> dict[str, Any]:
    """The admin endpoint ``POST /_sandbox/documents``: set an account's verification, as the
    provider's reviewers do. Body ``{"account_id": N, "verification_status": "REQUIRED",
    "unverified_hold_until": "YYYY-MM-DD" | null, "documents": [...]}``."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    account_id, status = body.get("account_id"), body.get("verification_status")
    hold, documents = body.get("unverified_hold_until"), body.get("documents", [])
    if isinstance(account_id, bool) or not isinstance(account_id, int):
        raise ValueError("account_id must be an integer")
    if status not in VERIFICATION_STATUSES:
        raise ValueError(f"verification_status must be one of {', '.join(VERIFICATION_STATUSES)}")
    if hold is not None:
        if not isinstance(hold, str):
            raise ValueError("unverified_hold_until must be YYYY-MM-DD or null")
        date.fromisoformat(hold)
    if not isinstance(documents, list):
        raise ValueError("documents must be a list")
    if conn.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)).fetchone() is None:
        raise LookupError("no such account")
    conn.execute(
        "INSERT INTO vox_documents(account_id, verification_status, unverified_hold_until, documents) "
        "VALUES (?, ?, ?, ?) ON CONFLICT(account_id) DO UPDATE SET verification_status = excluded.verification_status, "
        "unverified_hold_until = excluded.unverified_hold_until, documents = excluded.documents",
        (account_id, status, hold, json.dumps(documents)),
    )
    return {"account_id": account_id, "verification_status": status, "unverified_hold_until": hold}
