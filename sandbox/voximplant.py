"""Voximplant platform_api emulation: dispatch, parameters, and the account/money methods."""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import money
from .jsonenc import Money, RawJSON, esc
from .money import fmt
from .options import Options
from .store import ACCOUNT_COLUMNS, Store, last_row_id, utc_text
from .vox_auth import Caller, KeyCache, VoxError, check_password, err, hash_password, verify_jwt
from .wsgiutil import Request

ALL = "all"
NAME_RE = re.compile(r"[a-z][a-z0-9-]*")
EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+",
    re.ASCII,
)
DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
URL_RE = re.compile(r"https?://[^\s/?#]+[^\s]*", re.ASCII)
WEAK_PASSWORDS = {"password1!", "p@ssw0rd", "p@ssword1", "qwerty123!", "qwerty1!", "passw0rd!", "welcome1!"}

LANGUAGE_CODES = frozenset(
    "aa ab af am ar as ay az ba be bg bh bi bn bo br ca co cs cy da de dz el en eo es et eu fa fi fj fo fr fy ga gd "
    "gl gn gu ha hi he hr hu hy ia id ie ik in is it iu iw ja ji jw ka kk kl km kn ko ks ku ky la ln lo lt lv mg mi "
    "mk ml mn mo mr ms mt my na ne nl no oc om or pa pl ps pt qu rm rn ro ru rw sa sd sg sh si sk sl sm sn so sq sr "
    "ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ug uk ur uz vi vo wo xh yi yo za zh zu".split()
)

TRANSACTION_TYPES = frozenset(
    """gift_revoke resource_charge money_distribution subscription_charge subscription_installation_charge
    card_periodic_payment card_overrun_payment card_payment rub_card_periodic_payment rub_card_overrun_payment
    rub_card_payment robokassa_payment gift promo adjustment wire_transfer us_wire_transfer refund discount
    mgp_charge mgp_startup mgp_business mgp_big_business mgp_enterprise mgp_large_enterprise techsupport_charge
    tax_charge monthly_fee_charge grace_credit_payment grace_credit_provision mau_charge mau_overrun im_charge
    im_overrun fmc_charge sip_registration_charge development_fee money_transfer_to_child money_transfer_to_parent
    money_acceptance_from_child money_acceptance_from_parent phone_number_installation phone_number_charge
    toll_free_phone_number_installation toll_free_phone_number_charge services user_money_transfer paypal_payment
    paypal_overrun_payment paypal_periodic_payment periodic_charge add_money subscription_cancel""".split()
)

MIN_TRANSFER = 100  # 0.01 in units
CHILDREN_COUNT_CAP = 1000
HISTORY_COUNT_CAP = 1000
HISTORY_OFFSET_CAP = 10000

_B = ("false", "true")


# --- parameters ------------------------------------------------------------------------------


class Params:
    def __init__(self, raw: dict[str, str], opts: Options) -> None:
        self.raw = raw
        self.opts = opts

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def given(self, name: str) -> bool:
        """Present and not blank (a blank optional parameter counts as absent)."""
        value = self.raw.get(name)
        return value is not None and value.strip() != ""

    @overload
    def text(self, name: str, default: str) -> str: ...
    @overload
    def text(self, name: str, default: None = None) -> str | None: ...
    def text(self, name: str, default: str | None = None) -> str | None:
        """The raw value when given, else ``default``."""
        return self.raw[name] if self.given(name) else default

    def required(self, name: str) -> str:
        if name not in self.raw:
            raise err(485, name)
        value = self.raw[name]
        if value.strip() == "":
            raise err(134, name)
        return value

    @overload
    def flag(self, name: str, default: bool) -> bool: ...
    @overload
    def flag(self, name: str, default: None = None) -> bool | None: ...
    def flag(self, name: str, default: bool | None = None) -> bool | None:
        """``true``/``false`` (and ``1``/``0`` where the options allow numeric booleans)."""
        if not self.given(name):
            return default
        value = self.raw[name].strip().lower()
        if value == "true":
            return True
        if value == "false":
            return False
        if self.opts["numeric_booleans"] and value in ("1", "0"):
            return value == "1"
        raise err(496, name)

    @overload
    def integer(self, name: str, default: int, *, code: int = ..., minimum: int = ...) -> int: ...
    @overload
    def integer(self, name: str, default: None = None, *, code: int = ..., minimum: int = ...) -> int | None: ...
    def integer(self, name: str, default: int | None = None, *, code: int = 496, minimum: int = 0) -> int | None:
        """A base-10 ASCII integer of at least ``minimum``; ``code`` is the error for a bad one."""
        if not self.given(name):
            return default
        value = self.raw[name].strip()
        if not value.lstrip("-").isdigit() or not value.isascii():
            raise err(code, name) if code in (496, 485) else VoxError(code)
        number = int(value)
        if number < minimum:
            raise err(code, name) if code == 496 else VoxError(code)
        return number

    def intlist(self, name: str, *, allow_all: bool, code: int) -> list[int] | str | None:
        if not self.given(name):
            return None
        value = self.raw[name].strip()
        if value.lower() == ALL:
            if not allow_all:
                raise VoxError(code)
            return ALL
        out: list[int] = []
        for item in value.split(";"):
            item = item.strip()
            if not item.isascii() or not item.isdigit() or int(item) <= 0:
                raise VoxError(code)
            number = int(item)
            if number not in out:
                out.append(number)
        return out

    def strlist(self, name: str) -> list[str] | None:
        if not self.given(name):
            return None
        return [s for s in (x.strip() for x in self.raw[name].split(";")) if s]


# --- validation helpers -------------------------------------------------------------------------


def validate_name(name: str, opts: Options) -> None:
    if not 5 <= len(name) <= 20:
        raise VoxError(113)
    if not NAME_RE.fullmatch(name):
        raise VoxError(114)
    if name in {n.strip() for n in opts["blacklisted_names"].split(";") if n.strip()}:
        raise VoxError(173)


def validate_email(email: str, code: int = 136) -> None:
    if len(email) > 254 or not EMAIL_RE.fullmatch(email):
        raise VoxError(code)


def validate_password(password: str) -> None:
    if password == "":
        raise VoxError(463)
    if any(ch.isspace() for ch in password):
        raise VoxError(524)
    if (
        len(password) < 8
        or not any("a" <= c <= "z" for c in password)
        or not any("A" <= c <= "Z" for c in password)
        or not any("0" <= c <= "9" for c in password)
        or all(c.isalnum() for c in password)
    ):
        raise VoxError(464)
    if password.lower() in WEAK_PASSWORDS:
        raise VoxError(523)


def validate_tz(name: str, param: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise err(496, param) from exc
    return name


def parse_decimal_param(p: Params, name: str) -> int | None:
    text = p.text(name)
    if text is None:
        return None
    try:
        return money.parse(text.strip(), allow_round=True)
    except money.AmountError as exc:
        raise err(496, name) from exc


def parse_datetime(text: str, tz: ZoneInfo, code: int = 111) -> int:
    text = text.strip()
    if not DATETIME_RE.fullmatch(text):
        raise VoxError(code)
    try:
        dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
    except ValueError as exc:
        raise VoxError(code) from exc
    return int(dt.timestamp())


def parse_date(text: str, code: int = 233) -> datetime:
    text = text.strip()
    if not DATE_RE.fullmatch(text):
        raise VoxError(code)
    try:
        return datetime.strptime(text, "%Y-%m-%d")
    except ValueError as exc:
        raise VoxError(code) from exc


def rates(opts: Options) -> dict[str, Decimal]:
    return {cur: Decimal(rate) for cur, rate in opts["currency_rates"].items()}


# --- rendering ------------------------------------------------------------------------------------


def render_account(row: tuple[Any, ...], *, with_key: bool, live: bool = True) -> str:
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
        f'"active":{_B[active]},"frozen":{_B[frozen]},"balance":{b},"credit_limit":{fmt(credit)},'
        f'"currency":{esc(cur)},"support_robokassa":{_B[srk]},"support_bank_card":{_B[sbc]},'
        f'"support_invoice":{_B[sinv]},"send_js_error":false,"a2p_sms_enabled":false,"fixed_balance":{b},'
        f'"money_on_hold":0,"allow_invoice":false,"is_bank_card_auto_charge_prohibited":false,'
        f'"taxpayer_type":"default","custom_pricing":false,"live_balance":{b}'
    )
    if custom is not None:
        parts.append(f',"account_custom_data":{esc(custom)}')
    if cb_url is not None:
        parts.append(f',"callback_url":{esc(cb_url)}')
    if cb_salt is not None:
        parts.append(f',"callback_salt":{esc(cb_salt)}')
    parts.append("}")
    return "".join(parts)


# --- the API --------------------------------------------------------------------------------------


class Voximplant:
    METHODS = (
        "AddAccount",
        "CloneAccount",
        "GetAccountInfo",
        "GetChildrenAccounts",
        "SetChildAccountInfo",
        "TransferMoneyToChildAccount",
        "GetTransactionHistory",
        "GetCurrencyRate",
        "GetMoneyAmountToCharge",
    )

    def __init__(self, store: Store, opts: Options) -> None:
        self.store = store
        self.opts = opts
        self.keys = KeyCache()
        self._anchors: dict[Any, tuple[str, list[tuple[Any, ...]]]] = {}

    # --- routing -----------------------------------------------------------------------------

    @staticmethod
    def method_name(req: Request) -> str | None:
        """The method addressed by the path (``/platform_api/<Method>``) or the ``cmd`` field."""
        rest = req.path[len("/platform_api") :].strip("/")
        if rest:
            return rest.split("/", 1)[0]
        cmd = req.params.get("cmd")
        return cmd.strip() if cmd and cmd.strip() else None

    def handle(self, req: Request, method: str | None) -> dict[str, Any]:
        try:
            if method is None:
                raise VoxError(102)
            handler = getattr(self, "m_" + method, None) if method in self.METHODS else None
            if handler is None:
                raise VoxError(103)
            if method == "TransferMoneyToChildAccount":
                mode = self.opts["transfer_method"]
                if mode == "unknown_command":
                    raise VoxError(103)
                if mode == "forbidden":
                    raise VoxError(104)
            p = Params(req.params, self.opts)
            return handler(req, p)
        except VoxError as exc:
            return {"error": {"msg": exc.msg, "code": exc.code}}

    # --- authentication --------------------------------------------------------------------------

    def _account_row(self, conn: sqlite3.Connection, account_id: int) -> sqlite3.Row | None:
        return conn.execute(
            "SELECT account_id, parent_id, api_key, password_hash FROM accounts WHERE account_id = ?", (account_id,)
        ).fetchone()

    def _find_account(
        self, conn: sqlite3.Connection, p: Params, id_name: str, name_name: str, email_name: str, code: int
    ) -> sqlite3.Row | None:
        sql = "SELECT account_id, parent_id, api_key, password_hash FROM accounts WHERE "
        if p.given(id_name):
            value = p.raw[id_name].strip()
            if not value.isascii() or not value.isdigit():
                raise VoxError(code)
            return conn.execute(sql + "account_id = ?", (int(value),)).fetchone()
        if p.given(name_name):
            return conn.execute(sql + "account_name = ?", (p.raw[name_name].strip(),)).fetchone()
        if p.given(email_name):
            return conn.execute(sql + "email_lower = ?", (p.raw[email_name].strip().lower(),)).fetchone()
        return None

    def authenticate(self, req: Request, p: Params, conn: sqlite3.Connection, method: str) -> Caller | None:
        auth = req.header("authorization")
        if auth:
            return self._jwt_caller(auth, p, conn, method)
        return self._legacy_caller(p, conn, method)

    def _jwt_caller(self, auth: str, p: Params, conn: sqlite3.Connection, method: str) -> Caller:
        """A bearer JWT: the key's own account, or one of its children named by ``iss`` or ``account_id``."""
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise VoxError(100)
        key_account, iss = verify_jwt(token.strip(), conn, self.keys, self.opts)
        target = self._jwt_target(p, method, key_account, iss)
        row = self._account_row(conn, target)
        if row is None:
            raise VoxError(100)
        if target != key_account and (not self.opts["jwt_impersonate_children"] or row["parent_id"] != key_account):
            raise VoxError(100)
        return Caller(int(row["account_id"]), row["parent_id"], "jwt", key_account)

    @staticmethod
    def _jwt_target(p: Params, method: str, key_account: int, iss: int) -> int:
        """The account a JWT acts on: ``iss``, or an ``account_id`` form field sent without legacy secrets."""
        if method == "CloneAccount" or not p.given("account_id") or p.given("api_key") or p.given("account_password"):
            return iss
        field = p.raw["account_id"].strip()
        if not field.isascii() or not field.isdigit():
            raise VoxError(115)
        if iss != key_account and int(field) != iss:
            raise VoxError(100)
        return int(field)

    def _legacy_caller(self, p: Params, conn: sqlite3.Connection, method: str) -> Caller | None:
        """The deprecated account_id/name/email plus api_key or account_password; None when none is sent."""
        if method in ("AddAccount", "CloneAccount") or not self.opts["legacy_auth"]:
            return None
        if p.given("session_id"):
            raise VoxError(161)
        if not (p.given("account_id") or p.given("account_name") or p.given("account_email")):
            return None
        row = self._find_account(conn, p, "account_id", "account_name", "account_email", 100)
        if row is None:
            raise VoxError(100)
        if p.given("api_key"):
            if not secrets.compare_digest(p.raw["api_key"].strip(), row["api_key"]):
                raise VoxError(100)
            return Caller(int(row["account_id"]), row["parent_id"], "api_key")
        if p.given("account_password"):
            if not check_password(p.raw["account_password"], row["password_hash"]):
                raise VoxError(100)
            return Caller(int(row["account_id"]), row["parent_id"], "password")
        raise VoxError(100)

    def require_caller(self, req: Request, p: Params, conn: sqlite3.Connection, method: str) -> Caller:
        caller = self.authenticate(req, p, conn, method)
        if caller is None:
            raise VoxError(100)
        return caller

    def _parent_credentials(
        self, req: Request, p: Params, conn: sqlite3.Connection, method: str, source_parent: int | None = None
    ) -> Caller:
        """AddAccount / CloneAccount: a JWT and/or the parent_account_* credentials."""
        caller = self.authenticate(req, p, conn, method)
        has_secret = p.given("parent_account_api_key") or p.given("parent_account_password")
        if p.given("session_id") and not has_secret:
            raise VoxError(161)
        if not has_secret:
            if caller is None:
                raise VoxError(100)
            if self.opts["addaccount_requires_parent_credentials"]:
                raise err(485, "parent_account_api_key")
            return caller
        if method == "AddAccount":
            row = self._find_account(conn, p, "parent_account_id", "parent_account_name", "parent_account_email", 177)
            if row is None:
                if not (
                    p.given("parent_account_id") or p.given("parent_account_name") or p.given("parent_account_email")
                ):
                    if caller is None:
                        raise err(485, "parent_account_id")
                    row = self._account_row(conn, caller.account_id)
                else:
                    raise VoxError(177)
        else:
            parent_id = caller.account_id if caller is not None else source_parent
            row = self._account_row(conn, parent_id) if parent_id is not None else None
        if row is None:
            raise VoxError(100)
        if caller is not None and caller.account_id != row["account_id"]:
            raise VoxError(177)
        if p.given("parent_account_api_key"):
            if not secrets.compare_digest(p.raw["parent_account_api_key"].strip(), row["api_key"]):
                raise VoxError(100)
        elif not check_password(p.raw["parent_account_password"], row["password_hash"]):
            raise VoxError(100)
        if caller is not None:
            return caller
        return Caller(int(row["account_id"]), row["parent_id"], "api_key")

    # --- accounts --------------------------------------------------------------------------------------

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
        with_key = self.opts["api_key_in_account_info"] or caller.via != "jwt"
        address = self.opts["api_address"] or (req.base_url() + "/platform_api")
        return {"result": RawJSON(render_account(row, with_key=with_key, live=bool(live))), "api_address": address}

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
                items = [render_account(r, with_key=with_key, live=bool(live)) for r in rows]
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

    # --- money -----------------------------------------------------------------------------------------------

    def m_TransferMoneyToChildAccount(self, req: Request, p: Params) -> dict[str, Any]:
        t = self._transfer_params(p)
        dup_from_text = p.text("check_duplicate_reference_from")
        now = int(time.time())
        with self.store.write() as conn:
            caller = self.require_caller(req, p, conn, "TransferMoneyToChildAccount")
            cur = conn.cursor()
            cur.row_factory = None
            parent = cur.execute(
                "SELECT account_id, balance, currency, location FROM accounts WHERE account_id = ?",
                (caller.account_id,),
            ).fetchone()
            parent_id, parent_balance, parent_cur, parent_loc = parent
            currency = parent_cur if t.currency is None else t.currency
            dup_from = None
            if dup_from_text is not None:
                tz = ZoneInfo(parent_loc) if self.opts["duplicate_from_timezone"] == "account" else ZoneInfo("UTC")
                dup_from = parse_datetime(dup_from_text, tz)
            targets = _transfer_targets(cur, parent_id, t.ids)
            self._check_transfer_targets(targets, currency, parent_cur)
            if t.reference is not None and dup_from is not None:
                if self._is_duplicate(cur, t.reference, dup_from, parent_id, targets):
                    return {"result": 1, "balance": Money(parent_balance)}
            _post_transfers(conn, t, targets, parent_id, parent_balance, parent_cur, currency, now)
            balance = cur.execute("SELECT balance FROM accounts WHERE account_id = ?", (parent_id,)).fetchone()[0]
        return {"result": 1, "balance": Money(balance)}

    def _transfer_params(self, p: Params) -> _Transfer:
        """Everything TransferMoneyToChildAccount checks before it looks at the database, in order."""
        opts = self.opts
        if "child_account_id" not in p.raw:
            raise err(485, "child_account_id")
        ids = p.intlist("child_account_id", allow_all=opts["transfer_allow_all"], code=194)
        if ids is None:
            raise VoxError(194)
        amount_text = p.required("amount")
        try:
            amount = money.parse(amount_text, allow_round=opts["amount_extra_precision"] == "round")
        except money.AmountError as exc:
            raise VoxError(125) from exc
        if abs(amount) < MIN_TRANSFER:
            raise VoxError(226)
        strict = p.flag("strict_mode", opts["strict_mode_default"])
        parent_desc, child_desc = _transfer_descriptions(p)
        reference = _transfer_reference(p)
        currency = p.text("currency")
        rate = rates(opts)
        if currency is not None:
            currency = currency.strip().upper()
            if currency not in rate:
                raise VoxError(210)
        return _Transfer(ids, amount, bool(strict), parent_desc, child_desc, reference, currency, rate)

    def _check_transfer_targets(self, targets: list[tuple[Any, ...]], currency: str, parent_cur: str) -> None:
        """Refusals configured in the options, checked child by child."""
        opts = self.opts
        for t in targets:
            if not t[4] and opts["transfer_to_inactive_child"] == "refuse":
                raise VoxError(opts["inactive_child_error_code"])
            if t[5] and opts["transfer_to_frozen_child"] == "refuse":
                raise VoxError(opts["inactive_child_error_code"])
            if opts["cross_currency_transfers"] == "refuse" and (t[3] != currency or parent_cur != currency):
                raise VoxError(210)

    def _is_duplicate(
        self, cur: sqlite3.Cursor, reference: str, dup_from: int, parent_id: int, targets: list[tuple[Any, ...]]
    ) -> bool:
        """An earlier transfer with this payment_reference since ``dup_from``: True to answer with the
        parent's balance and move nothing, or the configured error."""
        opts = self.opts
        sql = (
            "SELECT DISTINCT op_id FROM transactions WHERE payment_reference = ? AND performed_ts >= ? "
            "AND account_id = ? AND transaction_type IN ('money_transfer_to_child', 'money_acceptance_from_child')"
        )
        args: list[Any] = [reference, dup_from, parent_id]
        if opts["duplicate_match"] == "reference_and_child":
            sql += f" AND counterpart_id IN ({','.join('?' * len(targets))})"
            args.extend(t[0] for t in targets)
        ops = cur.execute(sql, args).fetchall()
        if len(ops) > 1:
            raise VoxError(303)
        if len(ops) == 1:
            if opts["duplicate_reply"] == "error":
                raise VoxError(opts["duplicate_error_code"])
            return True
        return False

    def m_GetTransactionHistory(self, req: Request, p: Params) -> dict[str, Any]:
        q = self._history_params(p)
        with self.store.read() as conn:
            caller = self.require_caller(req, p, conn, "GetTransactionHistory")
            tz_name, tz = self._history_timezone(conn, p, caller.account_id)
            from_ts, to_ts = self._history_range(p, tz)
            accounts = _history_accounts(conn, q, caller.account_id)
            rows: list[Any]
            total: int | None
            if q.users_only or q.uncommitted or not accounts:
                rows, total = [], 0
            else:
                rows, total = _history_rows(conn, q, accounts, from_ts, to_ts)
        as_string = self.opts["history_account_id_as_string"]
        return _history_reply(rows, total, tz, tz_name, with_total=q.with_total, as_string=as_string)

    def _history_params(self, p: Params) -> _HistoryQuery:
        """Everything GetTransactionHistory checks before it authenticates, in order."""
        output = p.text("output", "json").strip().lower()
        if output != "json" or p.flag("is_async", False):
            raise VoxError(105)
        count = p.integer("count", 20)
        count = min(count, HISTORY_COUNT_CAP)
        offset = p.integer("offset", 0)
        if offset > HISTORY_OFFSET_CAP:
            if self.opts["history_offset_over_cap"] == "error":
                raise err(496, "offset")
            offset = HISTORY_OFFSET_CAP
        tx_ids = p.intlist("transaction_id", allow_all=False, code=197)
        types = p.strlist("transaction_type")
        if types is not None:
            for t in types:
                if t not in TRANSACTION_TYPES:
                    raise VoxError(209)
        child_ids = p.intlist("child_account_id", allow_all=True, code=194)
        children_only = p.flag("children_transactions_only", False)
        users_only = p.flag("users_transactions_only", False)
        p.intlist("user_id", allow_all=False, code=117)
        reference = p.raw.get("payment_reference")
        desc = p.flag("desc_order", False)
        with_total = p.flag("with_total_count", True)
        uncommitted = p.flag("is_uncommitted", False)
        return _HistoryQuery(
            count=count,
            offset=offset,
            tx_ids=tx_ids,
            types=types,
            child_ids=child_ids,
            children_only=children_only,
            users_only=users_only,
            reference=reference,
            desc=desc,
            with_total=with_total,
            uncommitted=uncommitted,
        )

    @staticmethod
    def _history_timezone(conn: sqlite3.Connection, p: Params, account_id: int) -> tuple[str, ZoneInfo]:
        """The ``timezone`` parameter; ``auto`` (the default) is the caller's location."""
        location = conn.execute("SELECT location FROM accounts WHERE account_id = ?", (account_id,)).fetchone()[0]
        tz_name = p.text("timezone", "auto").strip()
        if tz_name == "auto":
            tz_name = location
        return tz_name, ZoneInfo(validate_tz(tz_name, "timezone"))

    def _history_range(self, p: Params, tz: ZoneInfo) -> tuple[int, int]:
        """from_date .. to_date as timestamps; without them (where allowed) the last 30 days up to tomorrow."""
        from_text, to_text = p.text("from_date"), p.text("to_date")
        if from_text is None or to_text is None:
            if self.opts["history_dates_required"]:
                raise err(485, "from_date" if from_text is None else "to_date")
        now = int(time.time())
        from_ts = parse_datetime(from_text, tz) if from_text is not None else now - 30 * 86400
        to_ts = parse_datetime(to_text, tz) if to_text is not None else now + 86400
        if from_ts > to_ts:
            raise VoxError(123)
        return from_ts, to_ts

    def m_GetCurrencyRate(self, req: Request, p: Params) -> dict[str, Any]:
        with self.store.connection() as conn:
            self.require_caller(req, p, conn, "GetCurrencyRate")
        wanted = p.strlist("currency")
        if not wanted:
            raise err(485, "currency")
        if p.given("date"):
            parse_date(p.raw["date"])
        table = rates(self.opts)
        result: dict[str, Any] = {}
        for cur in wanted:
            cur = cur.upper()
            if cur not in table:
                raise VoxError(210)
            result[cur] = table[cur]
        return {"result": result}

    def m_GetMoneyAmountToCharge(self, req: Request, p: Params) -> dict[str, Any]:
        with self.store.connection() as conn:
            caller = self.require_caller(req, p, conn, "GetMoneyAmountToCharge")
            balance, acc_cur = conn.execute(
                "SELECT balance, currency FROM accounts WHERE account_id = ?", (caller.account_id,)
            ).fetchone()
        table = rates(self.opts)
        currency = (p.text("currency") or acc_cur).strip().upper()
        if currency not in table:
            raise VoxError(210)
        if p.given("charge_date"):
            parse_date(p.raw["charge_date"])
        debt = max(0, -balance)
        amount = money.convert(debt, table[acc_cur], table[currency])
        result: dict[str, Any] = {"amount": Money(amount), "min_amount": Money(amount), "subscriptions": []}
        usd = money.convert(debt, table[acc_cur], table["USD"])
        result["bank_card_amount_usd"] = Money(usd)
        result["min_bank_card_amount_usd"] = Money(max(usd, 10 * money.SCALE) if usd > 0 else 0)
        return {"result": result}


@dataclass(frozen=True)
class _Transfer:
    """A checked TransferMoneyToChildAccount request."""

    ids: list[int] | str  # child ids, or ALL
    amount: int  # units in ``currency``; negative pulls money back from the children
    strict: bool
    parent_desc: str | None
    child_desc: str | None
    reference: str | None
    currency: str | None  # None: the parent's currency
    rate: dict[str, Decimal]


def _transfer_descriptions(p: Params) -> tuple[str | None, str | None]:
    child_desc = p.raw.get("child_transaction_description")
    parent_desc = p.raw.get("parent_transaction_description")
    if parent_desc is not None and len(parent_desc) >= 120:
        raise VoxError(236)
    if child_desc is not None and len(child_desc) >= 120:
        raise VoxError(237)
    return parent_desc, child_desc


def _transfer_reference(p: Params) -> str | None:
    """payment_reference; an empty one counts as absent."""
    reference = p.raw.get("payment_reference")
    if reference is not None and reference == "":
        reference = None
    if reference is not None and len(reference) >= 127:
        raise VoxError(304)
    return reference


def _transfer_targets(cur: sqlite3.Cursor, parent_id: int, ids: list[int] | str) -> list[tuple[Any, ...]]:
    """(account_id, account_name, balance, currency, active, frozen) of each child, in request order
    (by id for ALL); error 194 when there is none or an id is not the parent's child."""
    if ids == ALL:
        targets = cur.execute(
            "SELECT account_id, account_name, balance, currency, active, frozen FROM accounts "
            "WHERE parent_id = ? ORDER BY account_id",
            (parent_id,),
        ).fetchall()
        if not targets:
            raise VoxError(194)
        return targets
    assert isinstance(ids, list)
    found = {
        r[0]: r
        for r in cur.execute(
            "SELECT account_id, account_name, balance, currency, active, frozen FROM accounts "
            f"WHERE parent_id = ? AND account_id IN ({','.join('?' * len(ids))})",
            [parent_id, *ids],
        )
    }
    if len(found) != len(ids):
        raise VoxError(194)
    return [found[i] for i in ids]


def _capped(want: int, balance: int, strict: bool) -> int:
    """``want`` limited to the non-negative ``balance``; error 127 instead in strict mode."""
    available = max(0, balance)
    if want > available:
        if strict:
            raise VoxError(127)
        want = available
    return want


def _transfer_legs(
    t: _Transfer, remaining: int, child: tuple[Any, ...], parent_cur: str, currency: str
) -> tuple[int, int] | None:
    """(parent leg in the parent's currency, child leg in the child's) for one child, or None when
    nothing moves. Sending is limited by the parent's ``remaining`` balance, pulling back by the child's."""
    rate, child_balance, child_cur = t.rate, child[2], child[3]
    if t.amount > 0:
        want = _capped(money.convert(t.amount, rate[currency], rate[parent_cur]), remaining, t.strict)
        if want <= 0:
            return None
        return -want, money.convert(want, rate[parent_cur], rate[child_cur])
    want = _capped(money.convert(-t.amount, rate[currency], rate[child_cur]), child_balance, t.strict)
    if want <= 0:
        return None
    return money.convert(want, rate[child_cur], rate[parent_cur]), -want


def _post_transfers(
    conn: sqlite3.Connection,
    t: _Transfer,
    targets: list[tuple[Any, ...]],
    parent_id: int,
    parent_balance: int,
    parent_cur: str,
    currency: str,
    now: int,
) -> None:
    """Two transactions per child that receives or gives money, all under the op_id of the first."""
    to_child = t.amount > 0
    if to_child:
        p_type, c_type = "money_transfer_to_child", "money_acceptance_from_parent"
    else:
        p_type, c_type = "money_acceptance_from_child", "money_transfer_to_parent"
    op_id = None
    remaining = parent_balance
    for child in targets:
        legs = _transfer_legs(t, remaining, child, parent_cur, currency)
        if legs is None:
            continue
        parent_leg, child_leg = legs
        remaining += parent_leg
        child_id, child_name, child_cur = child[0], child[1], child[3]
        macros = {"${child_account_id}": str(child_id), "${child_account_name}": child_name}
        pd = _macro(t.parent_desc, macros) if t.parent_desc else _default_parent_desc(to_child, child_id)
        cd = _macro(t.child_desc, macros) if t.child_desc else _default_child_desc(to_child, parent_id)
        first = Store.add_transaction(
            conn,
            account_id=parent_id,
            amount=parent_leg,
            currency=parent_cur,
            transaction_type=p_type,
            ts=now,
            description=pd,
            payment_reference=t.reference,
            counterpart_id=child_id,
            op_id=op_id,
        )
        if op_id is None:
            op_id = first
            conn.execute("UPDATE transactions SET op_id = ? WHERE transaction_id = ?", (op_id, first))
        Store.add_transaction(
            conn,
            account_id=child_id,
            amount=child_leg,
            currency=child_cur,
            transaction_type=c_type,
            ts=now,
            description=cd,
            payment_reference=t.reference,
            counterpart_id=parent_id,
            op_id=op_id,
        )


@dataclass(frozen=True)
class _HistoryQuery:
    """A checked GetTransactionHistory request (the parts that do not need the database)."""

    count: int
    offset: int
    tx_ids: list[int] | str | None
    types: list[str] | None
    child_ids: list[int] | str | None
    children_only: bool
    users_only: bool
    reference: str | None
    desc: bool
    with_total: bool
    uncommitted: bool


def _history_accounts(conn: sqlite3.Connection, q: _HistoryQuery, caller_id: int) -> list[int]:
    """The caller (unless children_transactions_only) and the children asked for: the listed ones
    (error 194 unless all are the caller's), all of them for ALL, or all under children_transactions_only."""
    accounts: list[int] = []
    if not q.children_only:
        accounts.append(caller_id)
    child_ids = q.child_ids
    if child_ids == ALL:
        accounts.extend(r[0] for r in conn.execute("SELECT account_id FROM accounts WHERE parent_id = ?", (caller_id,)))
    elif isinstance(child_ids, list):
        found = conn.execute(
            f"SELECT count(*) FROM accounts WHERE parent_id = ? AND account_id IN ({','.join('?' * len(child_ids))})",
            [caller_id, *child_ids],
        ).fetchone()[0]
        if found != len(child_ids):
            raise VoxError(194)
        accounts.extend(child_ids)
    elif q.children_only:
        accounts.extend(r[0] for r in conn.execute("SELECT account_id FROM accounts WHERE parent_id = ?", (caller_id,)))
    return accounts


def _history_rows(
    conn: sqlite3.Connection, q: _HistoryQuery, accounts: list[int], from_ts: int, to_ts: int
) -> tuple[list[Any], int | None]:
    """One page of the accounts' transactions in the range, and the total (None without with_total_count)."""
    where = ["performed_ts >= ?", "performed_ts <= ?"]
    args: list[Any] = [from_ts, to_ts]
    if len(accounts) == 1:
        where.append("account_id = ?")
        args.append(accounts[0])
    else:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _hist_accounts(id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM _hist_accounts")
        conn.executemany("INSERT OR IGNORE INTO _hist_accounts(id) VALUES (?)", [(a,) for a in accounts])
        where.append("account_id IN (SELECT id FROM _hist_accounts)")
    if q.tx_ids is not None:
        assert isinstance(q.tx_ids, list)
        where.append(f"transaction_id IN ({','.join('?' * len(q.tx_ids))})")
        args.extend(q.tx_ids)
    if q.types is not None:
        where.append(f"transaction_type IN ({','.join('?' * len(q.types))})")
        args.extend(q.types)
    if q.reference is not None and q.reference != "":
        where.append("payment_reference = ?")
        args.append(q.reference)
    where_sql = " AND ".join(where)
    order = "DESC" if q.desc else "ASC"
    cur = conn.cursor()
    cur.row_factory = None
    rows = cur.execute(
        "SELECT transaction_id, account_id, performed_ts, amount, currency, transaction_type, description, "
        f"payment_reference FROM transactions WHERE {where_sql} ORDER BY performed_ts {order}, "
        f"transaction_id {order} LIMIT ? OFFSET ?",
        [*args, q.count, q.offset],
    ).fetchall()
    total = (
        conn.execute(f"SELECT count(*) FROM transactions WHERE {where_sql}", args).fetchone()[0]
        if q.with_total
        else None
    )
    return rows, total


def _history_reply(
    rows: list[Any], total: int | None, tz: ZoneInfo, tz_name: str, *, with_total: bool, as_string: bool
) -> dict[str, Any]:
    result = []
    for tid, aid, ts, amount, cur_code, ttype, description, ref in rows:
        item: dict[str, Any] = {
            "transaction_id": tid,
            "account_id": str(aid) if as_string else aid,
            "performed_at": datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S"),
            "amount": Money(amount),
            "currency": cur_code,
            "transaction_type": ttype,
        }
        if description is not None:
            item["transaction_description"] = description
        if ref is not None:
            item["payment_reference"] = ref
        result.append(item)
    out: dict[str, Any] = {"result": result}
    if with_total:
        out["total_count"] = total
    out["count"] = len(result)
    out["timezone"] = tz_name
    return out


def _child_secrets(p: Params) -> dict[str, Any]:
    """SetChildAccountInfo: a new password, callback URL and callback salt, each checked in that order."""
    changes: dict[str, Any] = {}
    new_password = p.raw.get("new_child_account_password")
    if new_password is not None:
        validate_password(new_password)
        changes["password_hash"] = hash_password(new_password)
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


def _macro(text: str, macros: dict[str, str]) -> str:
    for key, value in macros.items():
        text = text.replace(key, value)
    return text


def _default_parent_desc(to_child: bool, child_id: int) -> str:
    return f"Money transfer to the child account {child_id}" if to_child else f"Money from the child account {child_id}"


def _default_child_desc(to_child: bool, parent_id: int) -> str:
    return (
        f"Money from the parent account {parent_id}"
        if to_child
        else f"Money transfer to the parent account {parent_id}"
    )


__all__ = ["Voximplant", "VoxError", "Params", "render_account"]
