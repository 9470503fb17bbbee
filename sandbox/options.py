"""Behaviours the provider docs leave open, each a named option with a safe default.

Set at start with ``--options JSON`` / ``SANDBOX_OPTIONS`` and at run time with
``PUT /_sandbox/options``. ``python -m sandbox options`` prints this table.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class Option:
    default: Any
    kind: str  # "bool" | "int" | "choice" | "rates" | "str" | "int_or_null" | "fraction" | "percent"
    doc: str
    choices: tuple[str, ...] = ()


DEFAULT_RATES = {"USD": "1", "EUR": "0.92", "RUR": "90.5", "KZT": "470"}

OPTIONS: dict[str, Option] = {
    # --- authentication -------------------------------------------------------------------
    "jwt_clock_skew_seconds": Option(
        10, "int", "Seconds of clock skew tolerated on JWT `iat` (future) and `exp` (past). Docs: none stated."
    ),
    "jwt_max_ttl_seconds": Option(3600, "int", "Largest accepted `exp - iat` (docs: 3600); larger gives error 454."),
    "jwt_impersonate_children": Option(
        True,
        "bool",
        "A parent's key may act on a child by putting the child's id in `iss` (or in an `account_id` form "
        "field). Docs sentence is cut off.",
    ),
    "legacy_auth": Option(
        True, "bool", "Accept deprecated `account_id|account_name|account_email` + `api_key|account_password`."
    ),
    "addaccount_requires_parent_credentials": Option(
        True,
        "bool",
        "AddAccount/CloneAccount need `parent_account_api_key|parent_account_password` even with a valid JWT "
        "(docs list them as required). Missing gives error 485.",
    ),
    "numeric_booleans": Option(False, "bool", "Accept `1`/`0` as booleans (only true/false, any case, is documented)."),
    # --- children ------------------------------------------------------------------------------
    "children_require_filter": Option(
        True,
        "bool",
        "GetChildrenAccounts without child_account_id/name/email: true = error 485 (the current reference: "
        "one of the three is required), false = list all (an older sample lists every child with only "
        "count/offset).",
    ),
    "children_filter_match": Option(
        "substring",
        "choice",
        "How GetChildrenAccounts matches child_account_name/child_account_email: `substring` (old docs: "
        "'name part'; case-insensitive for email) or `exact`.",
        ("substring", "exact"),
    ),
    "children_count_cap_applies_to_brief": Option(
        True, "bool", "An explicit `count` over 1000 is capped also for brief/medium output."
    ),
    "api_key_in_account_info": Option(
        True, "bool", "Return `api_key` in AccountInfoType to JWT callers too (docs example shows it)."
    ),
    "addaccount_accepts_currency": Option(
        False,
        "bool",
        "AddAccount honours an undocumented `currency` parameter; otherwise children inherit the parent's "
        "currency and the parameter is ignored.",
    ),
    "children_per_day_limit": Option(
        0, "int", "AddAccount/CloneAccount per parent per UTC day before error 397; 0 = unlimited."
    ),
    "blacklisted_names": Option(
        "admin;administrator;root;support;voximplant;billing;postmaster;webmaster;hostmaster;security",
        "str",
        "`;` list of account names refused with error 173 (the real list is not public).",
    ),
    # --- money ---------------------------------------------------------------------------------------
    "transfer_method": Option(
        "enabled",
        "choice",
        "TransferMoneyToChildAccount availability (gone from current docs): `enabled`, "
        "`unknown_command` (103) or `forbidden` (104).",
        ("enabled", "unknown_command", "forbidden"),
    ),
    "disabled_methods": Option(
        "",
        "str",
        "`;` list of platform_api method names answered with error 103 (Unknown command), as a provider "
        "answers a method it has withdrawn; e.g. `TransferMoneyToChildAccount;CloneAccount`. "
        "`transfer_method` is the older switch for one method and still works.",
    ),
    "strict_mode_default": Option(
        True, "bool", "strict_mode when the parameter is absent (undocumented; true refuses instead of clamping)."
    ),
    "transfer_allow_all": Option(
        False,
        "bool",
        "TransferMoneyToChildAccount accepts child_account_id=all (every child gets the amount). Docs: the "
        "parameter is a list of child ids, several ids each get the same amount; `all` is documented for other "
        "list parameters, never for this one. Default false: `all` is error 194.",
    ),
    "amount_max_places": Option(
        2,
        "int",
        "Decimal places a TransferMoneyToChildAccount amount may carry (2 to 4). Docs: the smallest transfer is "
        "0.01 and balances are shown with up to 4 decimals; how many decimals an amount may have, and how it is "
        "rounded, is not stated. Our choice: 2 (the transfer step); more places follow `amount_extra_precision`.",
    ),
    "amount_extra_precision": Option(
        "reject",
        "choice",
        "Amounts with more decimals than `amount_max_places`: `reject` (error 125) or `round` half-even to "
        "`amount_max_places` (undocumented either way).",
        ("reject", "round"),
    ),
    "cross_currency_transfers": Option(
        "convert",
        "choice",
        "Transfer whose currency differs from the parent's or child's: `convert` at GetCurrencyRate rates "
        "(half-even, 4 places) or `refuse` with error 210.",
        ("convert", "refuse"),
    ),
    "transfer_to_inactive_child": Option(
        "accept",
        "choice",
        "Transfers to a child with active=false: `accept` (new children start inactive, so funding before "
        "activation must work) or `refuse` with `inactive_child_error_code`.",
        ("accept", "refuse"),
    ),
    "transfer_to_frozen_child": Option(
        "accept",
        "choice",
        "Transfers to a frozen child: `accept` or `refuse` with `inactive_child_error_code`.",
        ("accept", "refuse"),
    ),
    "inactive_child_error_code": Option(131, "int", "Error code for refused transfers to inactive/frozen children."),
    "duplicate_match": Option(
        "reference",
        "choice",
        "What counts as a duplicate under check_duplicate_reference_from: the same payment_reference on any "
        "earlier transfer by this parent (`reference`), or only for the same child (`reference_and_child`).",
        ("reference", "reference_and_child"),
    ),
    "duplicate_reply": Option(
        "ok",
        "choice",
        "Reply to a skipped duplicate: `ok` = {result: 1, balance: <parent balance now>} and no "
        "new transaction; `error` = error `duplicate_error_code`, no new transaction.",
        ("ok", "error"),
    ),
    "duplicate_error_code": Option(515, "int", "Error code when duplicate_reply=error."),
    "duplicate_from_timezone": Option(
        "UTC",
        "choice",
        "Timezone of check_duplicate_reference_from: `UTC` or `account` (the parent's location).",
        ("UTC", "account"),
    ),
    "currency_rates": Option(
        dict(DEFAULT_RATES), "rates", "Rates per USD used by GetCurrencyRate and conversions (exact decimals)."
    ),
    # --- history -------------------------------------------------------------------------------
    "history_dates_required": Option(
        False,
        "bool",
        "GetTransactionHistory requires from_date and to_date (the OpenAPI schema marks them required; error "
        "485). Default false: the method reference says that without both dates (and is_uncommitted false) a "
        "default window of one month applies, so the sandbox answers for the month up to now.",
    ),
    "history_lag_seconds": Option(
        0,
        "int",
        "Seconds after a transaction is applied before GetTransactionHistory shows it (real providers show it "
        "some time later; the delay is not documented). The duplicate check of TransferMoneyToChildAccount "
        "sees it at once. 0 = at once.",
    ),
    "history_offset_over_cap": Option(
        "error",
        "choice",
        "GetTransactionHistory offset > 10000: `error` (496) or `clamp` to 10000.",
        ("error", "clamp"),
    ),
    "history_account_id_as_string": Option(
        True, "bool", "TransactionInfoType.account_id is a JSON string (as documented) rather than a number."
    ),
    # --- applications and app users (sandbox/vox_users.py) ---------------------------------
    "default_application_name": Option(
        "pbx",
        "str",
        "Every account has one application with this short name (full name `<name>.<account_name>.voximplant.com`), "
        "made the first time the account's applications are needed; empty = none (AddApplication makes them).",
    ),
    "application_name_accepts_short": Option(
        False,
        "bool",
        "application_name parameters also match the short name; default only the full name GetApplications shows.",
    ),
    "users_per_account_limit": Option(
        1000, "int", "Users (not deleted) one account may hold before AddUser answers 109 (docs: 1000)."
    ),
    "parent_accounting_default": Option(
        True,
        "bool",
        "AddUser without parent_accounting: true = the user spends the account's money (TransferMoneyToUser "
        "then answers 573). Docs: optional, no default stated.",
    ),
    "get_users_requires_application": Option(
        True, "bool", "GetUsers without application_id/application_name: true = error 485, false = every user."
    ),
    "users_count_default": Option(20, "int", "GetUsers `count` when absent (undocumented)."),
    "users_count_cap": Option(1000, "int", "Largest GetUsers `count`; more is capped (undocumented)."),
    "users_order_default": Option(
        "user_name",
        "choice",
        "GetUsers `order_by` when absent (undocumented).",
        ("user_id", "user_name", "user_display_name"),
    ),
    "users_filter_match": Option(
        "substring",
        "choice",
        "How GetUsers matches user_name: `substring` ('name part') or `exact`.",
        ("substring", "exact"),
    ),
    "shared_user_balance": Option(
        "zero",
        "choice",
        "balance/live_balance/fixed_balance GetUsers shows for a parent_accounting=true user: `zero` or the "
        "`account`'s balance.",
        ("zero", "account"),
    ),
    "user_balance_on_shared_switch": Option(
        "refuse",
        "choice",
        "SetUserInfo parent_accounting=true for a user holding money: `refuse` (496 'parent_accounting') or "
        "`keep` the money on the user, out of reach.",
        ("refuse", "keep"),
    ),
    "del_user_with_balance": Option(
        "refuse",
        "choice",
        "DelUser of a user holding money: `refuse` (496 'user_id') or `return` it to the account "
        "(user_money_transfer rows).",
        ("refuse", "return"),
    ),
    "transfer_all_users_shared": Option(
        "skip",
        "choice",
        "TransferMoneyToUser user_id=all and users with parent_accounting=true: `skip` them or `refuse` (573).",
        ("skip", "refuse"),
    ),
    "transfer_to_inactive_user": Option(
        "accept",
        "choice",
        "TransferMoneyToUser to a user with user_active=false: `accept` or `refuse` with 573.",
        ("accept", "refuse"),
    ),
    "history_user_id_in_rows": Option(
        True,
        "bool",
        "GetTransactionHistory rows of user transfers carry `user_id` (TransactionInfoType documents no such "
        "field; filter with the documented user_id parameter instead of relying on it).",
    ),
    # --- VoiceIt ---------------------------------------------------------------------------------
    "voiceit_switch_type": Option(
        False, "bool", "Serve the removed POST /subaccount/{key}/switchType (legacy 2020); default 404."
    ),
    "voiceit_nested_subaccounts": Option(
        False, "bool", "A sub-account may create sub-accounts itself; default 403 FBDN."
    ),
    "voiceit_free_email_on_delete": Option(
        True, "bool", "A deleted sub-account's email can be reused by a new create."
    ),
    # --- misc ------------------------------------------------------------------------------------
    "api_address": Option(
        "", "str", "GetAccountInfo.api_address; empty = this sandbox's own base URL + /platform_api."
    ),
    "spend_max_amount": Option("0.5", "str", "Largest single charge made by --spend-rate / POST /_sandbox/spend."),
    # --- plans and documents (sandbox/vox_plans.py) -----------------------------------------------
    "plan_tax_percent": Option(
        "20",
        "percent",
        "Taxes added to next month's fee that ChangeAccountPlan reserves (docs: 'fee + taxes', rate not "
        "stated). The reservation is fee * (1 + tax/100), rounded half-even to 4 places.",
    ),
    "plan_hold_in_balance": Option(
        False,
        "bool",
        "Money reserved by ChangeAccountPlan lowers `balance` too. Default false: `balance` and `fixed_balance` "
        "stay the ledger balance, `money_on_hold` holds the reservation and `live_balance` = balance - hold.",
    ),
    "documents_default_status": Option(
        "REQUIRED",
        "choice",
        "GetAccountDocuments status of a child whose verification nobody set (POST /_sandbox/documents sets it).",
        ("REQUIRED", "IN_PROGRESS", "VERIFIED"),
    ),
    "documents_hold_days": Option(
        30, "int", "An unverified child's unverified_hold_until = its creation date + this many days."
    ),
    # --- account callbacks (sandbox/callbacks.py) -------------------------------------------------
    "callbacks_enabled": Option(True, "bool", "Post account callbacks to callback_url at all."),
    "callbacks_child_events_to_parent": Option(
        True,
        "bool",
        "A child's callbacks also go to the parent's callback_url, hashed with the parent's salt and the "
        "parent's api key (docs silent on both).",
    ),
    "callbacks_drop_rate": Option(
        "0", "fraction", "Share of callbacks lost without any attempt (0..1), to simulate lost callbacks."
    ),
    "callbacks_batch_size": Option(20, "int", "Most callbacks in one POST (docs: one request may carry several)."),
    "callbacks_max_attempts": Option(
        4, "int", "Posts of one callback before it is given up (2xx ends; 408, 429, 5xx and network errors retry)."
    ),
    "callbacks_timeout_seconds": Option(5, "int", "Timeout of one callback POST."),
}


class OptionError(ValueError):
    pass


def _coerce_bool(name: str, opt: Option, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise OptionError(f"{name}: expected a boolean")


def _coerce_int(name: str, opt: Option, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise OptionError(f"{name}: expected an integer")
    try:
        return int(value)
    except ValueError as exc:
        raise OptionError(f"{name}: expected an integer") from exc


def _coerce_choice(name: str, opt: Option, value: Any) -> Any:
    if value not in opt.choices:
        raise OptionError(f"{name}: expected one of {', '.join(opt.choices)}")
    return value


def _coerce_str(name: str, opt: Option, value: Any) -> str:
    if not isinstance(value, str):
        raise OptionError(f"{name}: expected a string")
    return value


def _coerce_rates(name: str, opt: Option, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise OptionError(f"{name}: expected an object of currency -> rate")
    out = {}
    for cur, rate in value.items():
        try:
            dec = Decimal(str(rate))
        except InvalidOperation as exc:
            raise OptionError(f"{name}: bad rate for {cur}") from exc
        if not dec.is_finite() or dec <= 0 or not isinstance(cur, str) or not cur.isalpha():
            raise OptionError(f"{name}: bad rate for {cur}")
        out[cur.upper()] = str(rate)
    if out.get("USD") not in ("1", "1.0"):
        out["USD"] = "1"
    return out


def _coerce_fraction(name: str, opt: Option, value: Any) -> str:
    try:
        dec = Decimal(str(value)) if isinstance(value, str | int) and not isinstance(value, bool) else None
    except InvalidOperation:
        dec = None
    if dec is None or not dec.is_finite() or not 0 <= dec <= 1:
        raise OptionError(f"{name}: expected a number from 0 to 1 (as a string)")
    return str(dec)


def _coerce_percent(name: str, opt: Option, value: Any) -> str:
    try:
        dec = Decimal(str(value)) if isinstance(value, str | int) and not isinstance(value, bool) else None
    except InvalidOperation:
        dec = None
    if dec is None or not dec.is_finite() or not 0 <= dec <= 100:
        raise OptionError(f"{name}: expected a number from 0 to 100 (as a string)")
    return str(dec)


_COERCERS: dict[str, Callable[[str, Option, Any], Any]] = {
    "percent": _coerce_percent,
    "bool": _coerce_bool,
    "int": _coerce_int,
    "choice": _coerce_choice,
    "str": _coerce_str,
    "rates": _coerce_rates,
    "fraction": _coerce_fraction,
}


def _coerce(name: str, value: Any) -> Any:
    opt = OPTIONS[name]
    coercer = _COERCERS.get(opt.kind)
    if coercer is None:  # pragma: no cover
        raise OptionError(name)
    return coercer(name, opt, value)


class Options:
    """Thread-safe current values. Read with ``opts["name"]``."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._values = {name: copy.deepcopy(opt.default) for name, opt in OPTIONS.items()}
        if overrides:
            self.update(overrides)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise OptionError("expected a JSON object")
        coerced = {}
        for name, value in changes.items():
            if name not in OPTIONS:
                raise OptionError(f"unknown option: {name}")
            coerced[name] = _coerce(name, value)
        with self._lock:
            self._values.update(coerced)
        return self.snapshot()

    def reset(self) -> None:
        with self._lock:
            self._values = {name: copy.deepcopy(opt.default) for name, opt in OPTIONS.items()}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._values)


def parse_options_arg(text: str | None) -> dict[str, Any]:
    """``--options`` / SANDBOX_OPTIONS: a JSON object, or ``@path`` to a JSON file."""
    if not text:
        return {}
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as fh:
            text = fh.read()
    value = json.loads(text)
    if not isinstance(value, dict):
        raise OptionError("options must be a JSON object")
    return value


def describe_markdown() -> str:
    lines = ["| option | default | behaviour |", "|---|---|---|"]
    for name, opt in OPTIONS.items():
        default = json.dumps(opt.default)
        lines.append(f"| `{name}` | `{default}` | {opt.doc} |")
    return "\n".join(lines)
