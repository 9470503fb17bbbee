"""VoiceIt API 2 emulation: sub-accounts and the /users probe, with HTTP Basic auth."""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from typing import Any

from .options import Options
from .store import Store
from .wsgiutil import Request

EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", re.ASCII)
CONTENT_LANGUAGES = frozenset(
    "no-STT en-US en-GB en-AU en-CA en-IN es-ES es-MX es-US fr-FR fr-CA de-DE it-IT pt-BR pt-PT nl-NL ru-RU "
    "ja-JP ko-KR zh-CN zh-TW ar-SA hi-IN sv-SE da-DK fi-FI nb-NO pl-PL tr-TR cs-CZ el-GR he-IL id-ID th-TH "
    "vi-VN uk-UA hu-HU ro-RO".split()
)


def new_key() -> str:
    return "key_" + secrets.token_hex(16)


def new_token() -> str:
    return "tok_" + secrets.token_hex(16)


class Reply:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body


def envelope(status: int, code: str, message: str, started: float, **fields: Any) -> Reply:
    body: dict[str, Any] = {}
    body.update(fields)
    body["message"] = message
    body["status"] = status
    body["responseCode"] = code
    body["timeTaken"] = f"{max(time.perf_counter() - started, 0.001):.3f}s"
    body["apiCallId"] = "call_" + secrets.token_hex(16)
    return Reply(status, body)


def not_found(path: str) -> Reply:
    """A removed or unknown route: a Spring-style 404 body, no VoiceIt envelope."""
    return Reply(
        404,
        {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime()),
            "status": 404,
            "error": "Not Found",
            "path": path,
        },
    )


class VoiceIt:
    def __init__(self, store: Store, opts: Options) -> None:
        self.store = store
        self.opts = opts

    @staticmethod
    def operation(req: Request) -> str | None:
        """Name used by fault rules for this request (None when the route does not exist)."""
        parts = [s for s in req.path.split("/") if s]
        m = req.method
        if parts[:1] == ["subaccount"]:
            if len(parts) == 2 and m == "POST" and parts[1] == "managed":
                return "CreateManagedSubAccount"
            if len(parts) == 2 and m == "POST" and parts[1] == "unmanaged":
                return "CreateUnmanagedSubAccount"
            if len(parts) == 2 and m == "POST":
                return "RegenerateSubAccountAPIToken"
            if len(parts) == 2 and m == "DELETE":
                return "DeleteSubAccount"
            if len(parts) == 3 and parts[2] == "switchType" and m == "POST":
                return "SwitchSubAccountType"
            return None
        if parts[:1] == ["users"]:
            if len(parts) == 1 and m == "POST":
                return "CreateUser"
            if len(parts) == 1 and m == "GET":
                return "GetAllUsers"
            if len(parts) == 2 and m == "GET":
                return "CheckUserExists"
            if len(parts) == 2 and m == "DELETE":
                return "DeleteUser"
        return None

    def _auth(self, conn: sqlite3.Connection, req: Request) -> sqlite3.Row | Reply:
        started = time.perf_counter()
        creds = req.basic_auth()
        unauthorized = envelope(
            401, "UNAC", "Unauthorized access. Please check your API key and token and try again.", started
        )
        if creds is None:
            return unauthorized
        key, token = creds
        row = conn.execute("SELECT * FROM vi_accounts WHERE api_key = ?", (key,)).fetchone()
        if row is None or row["deleted"] or not secrets.compare_digest(row["api_token"], token):
            return unauthorized
        if row["disabled"]:
            return envelope(401, "DAID", "Developer account has been disabled. Please contact support.", started)
        return row

    def handle(self, req: Request, op: str | None) -> Reply:
        started = time.perf_counter()
        if op is None or (op == "SwitchSubAccountType" and not self.opts["voiceit_switch_type"]):
            # Authentication is not even looked at for a route the server does not have.
            return not_found(req.path)
        parts = [s for s in req.path.split("/") if s]
        with self.store.connection() as conn:
            who = self._auth(conn, req)
        if isinstance(who, Reply):
            return who
        if op in ("CreateManagedSubAccount", "CreateUnmanagedSubAccount"):
            return self.create(who, req, "managed" if op == "CreateManagedSubAccount" else "unmanaged", started)
        if op == "RegenerateSubAccountAPIToken":
            return self.regenerate(who, parts[1], started)
        if op == "DeleteSubAccount":
            return self.delete(who, parts[1], started)
        if op == "SwitchSubAccountType":
            return self.switch(who, parts[1], started)
        if op == "CreateUser":
            return self.create_user(who, started)
        if op == "GetAllUsers":
            return self.list_users(who, started)
        if op == "CheckUserExists":
            return self.user_exists(who, parts[1], started)
        return self.delete_user(who, parts[1], started)

    # --- sub-accounts ----------------------------------------------------------------------------

    def create(self, master: sqlite3.Row, req: Request, kind: str, started: float) -> Reply:
        if master["master_key"] is not None and not self.opts["voiceit_nested_subaccounts"]:
            return envelope(403, "FBDN", "Sub-accounts cannot create sub-accounts.", started)
        form = req.params
        first = form.get("firstName") or secrets.token_hex(6)
        last = form.get("lastName") or secrets.token_hex(6)
        email = (form.get("email") or "").strip()
        password = form.get("password") or secrets.token_urlsafe(12)
        language = (form.get("contentLanguage") or "").strip() or master["content_language"]
        if email and (len(email) > 254 or not EMAIL_RE.fullmatch(email)):
            return envelope(400, "ISAE", f"Invalid sub-account email : {email}", started)
        if not email:
            email = f"{secrets.token_hex(8)}@subaccounts.voiceit.invalid"
        if language not in CONTENT_LANGUAGES:
            return envelope(400, "INCP", f"Invalid contentLanguage parameter : {language}", started)
        api_key, token = new_key(), new_token()
        with self.store.write() as conn:
            if conn.execute("SELECT 1 FROM vi_accounts WHERE email_lower = ?", (email.lower(),)).fetchone():
                return envelope(400, "EAEX", f"Email {email} already exists", started)
            conn.execute(
                "INSERT INTO vi_accounts(api_key, api_token, master_key, type, email, email_lower, password, "
                "first_name, last_name, content_language, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    api_key,
                    token,
                    master["api_key"],
                    kind,
                    email,
                    email.lower(),
                    password,
                    first,
                    last,
                    language,
                    int(time.time()),
                ),
            )
        return envelope(
            201,
            "SUCC",
            f"Created new {kind} developer sub-account with apiKey : {api_key}",
            started,
            password=password,
            apiToken=token,
            apiKey=api_key,
            emailValidationRequired=True,
            type=kind,
            contentLanguage=language,
            email=email,
        )

    def _owned(self, conn: sqlite3.Connection, master: sqlite3.Row, key: str) -> sqlite3.Row | None:
        row = conn.execute("SELECT * FROM vi_accounts WHERE api_key = ?", (key,)).fetchone()
        if row is None or row["deleted"] or row["master_key"] != master["api_key"]:
            return None
        return row

    def _sanf(self, key: str, started: float) -> Reply:
        return envelope(404, "SANF", f"Sub-account with apiKey : {key} not found", started)

    def regenerate(self, master: sqlite3.Row, key: str, started: float) -> Reply:
        token = new_token()
        with self.store.write() as conn:
            if self._owned(conn, master, key) is None:
                return self._sanf(key, started)
            conn.execute("UPDATE vi_accounts SET api_token = ? WHERE api_key = ?", (token, key))
        return envelope(
            200,
            "SUCC",
            f"Regenerated apiToken : {token} for developer sub-account with apiKey : {key}",
            started,
            apiToken=token,
        )

    def delete(self, master: sqlite3.Row, key: str, started: float) -> Reply:
        with self.store.write() as conn:
            if self._owned(conn, master, key) is None:
                return self._sanf(key, started)
            free = ", email_lower = NULL" if self.opts["voiceit_free_email_on_delete"] else ""
            conn.execute(f"UPDATE vi_accounts SET deleted = 1, api_token = ''{free} WHERE api_key = ?", (key,))
        return envelope(200, "SUCC", f"Deleted developer sub-account with apiKey : {key}", started)

    def switch(self, master: sqlite3.Row, key: str, started: float) -> Reply:
        with self.store.write() as conn:
            row = self._owned(conn, master, key)
            if row is None:
                return self._sanf(key, started)
            new_type = "unmanaged" if row["type"] == "managed" else "managed"
            conn.execute("UPDATE vi_accounts SET type = ? WHERE api_key = ?", (new_type, key))
        return envelope(
            200,
            "SUCC",
            f"Switched sub-account developer with apiKey : {key} to {new_type}",
            started,
            type=new_type,
        )

    # --- users -----------------------------------------------------------------------------------------

    def create_user(self, owner: sqlite3.Row, started: float) -> Reply:
        user_id = "usr_" + secrets.token_hex(16)
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO vi_users(user_id, api_key, created_at) VALUES (?, ?, ?)",
                (user_id, owner["api_key"], int(time.time() * 1000)),
            )
        return envelope(201, "SUCC", f"Created user with userId : {user_id}", started, userId=user_id)

    def list_users(self, owner: sqlite3.Row, started: float) -> Reply:
        with self.store.connection() as conn:
            rows = conn.execute(
                "SELECT user_id, created_at FROM vi_users WHERE api_key = ? ORDER BY created_at, user_id",
                (owner["api_key"],),
            ).fetchall()
        users = [{"userId": r[0], "createdAt": r[1]} for r in rows]
        return envelope(200, "SUCC", f"Successfully got all {len(users)} users", started, count=len(users), users=users)

    def user_exists(self, owner: sqlite3.Row, user_id: str, started: float) -> Reply:
        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM vi_users WHERE user_id = ? AND api_key = ?", (user_id, owner["api_key"])
            ).fetchone()
        exists = row is not None
        message = f"User with userId : {user_id} {'exists' if exists else 'does not exist'}"
        return envelope(200, "SUCC", message, started, exists=exists)

    def delete_user(self, owner: sqlite3.Row, user_id: str, started: float) -> Reply:
        with self.store.write() as conn:
            cur = conn.execute("DELETE FROM vi_users WHERE user_id = ? AND api_key = ?", (user_id, owner["api_key"]))
            if cur.rowcount == 0:
                return envelope(404, "UNFD", f"User with userId : {user_id} not found", started)
        return envelope(200, "SUCC", f"Deleted user with userId : {user_id}", started)


def create_master(conn: sqlite3.Connection, email: str) -> tuple[str, str]:
    """A VoiceIt master account (used by ``init``)."""
    key, token = new_key(), new_token()
    conn.execute(
        "INSERT INTO vi_accounts(api_key, api_token, master_key, type, email, email_lower, password, content_language, "
        "created) VALUES (?, ?, NULL, 'master', ?, ?, ?, 'en-US', ?)",
        (key, token, email, email.lower(), secrets.token_urlsafe(12), int(time.time())),
    )
    return key, token
