"""Voximplant emulation: the state every method uses and who the caller of a request is."""

from __future__ import annotations

import secrets
import sqlite3

from .options import Options
from .store import Store
from .vox_auth import Caller, KeyCache, VoxError, check_password, err, verify_jwt
from .vox_params import Params
from .wsgiutil import Request


class VoxBase:
    """The store, options and key cache, and the authentication of a request's caller."""

    store: Store
    opts: Options
    keys: KeyCache

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
