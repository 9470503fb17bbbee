"""The WSGI application: both provider APIs, fault injection and the ``/_sandbox/`` admin surface."""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import __version__, callbacks
from .callbacks import CallbackSender
from .charge import charge_account
from .faults import DropConnection, FaultError, FaultInjector, Rule
from .jsonenc import dumps
from .options import OptionError, Options
from .spend import spend_store
from .store import Store
from .voiceit import VoiceIt, not_found
from .vox_auth import MESSAGES
from .vox_plans import set_documents
from .voximplant import Voximplant
from .wsgiutil import BadRequest, Request, parse_request

Headers = list[tuple[str, str]]
Response = tuple[str, Headers, bytes]

_STATUS = {
    200: "200 OK",
    201: "201 Created",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    413: "413 Payload Too Large",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Unavailable",
}


def _status(code: int) -> str:
    return _STATUS.get(code, f"{code} Status")


def _json(status: int, obj: Any, extra: Headers | None = None) -> Response:
    body = dumps(obj).encode("utf-8")
    headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))]
    return _status(status), headers + (extra or []), body


def _html(status: int, title: str, extra: Headers | None = None) -> Response:
    body = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()
    headers = [("Content-Type", "text/html"), ("Content-Length", str(len(body)))]
    return _status(status), headers + (extra or []), body


PROXY_PAGE = (
    "<!DOCTYPE html><html><head><title>Maintenance</title></head><body><h1>We'll be back soon</h1>"
    "<p>The service is temporarily unavailable. Please try again later.</p></body></html>"
)


class SandboxApp:
    """WSGI app serving Voximplant (``/platform_api``, ``/platform_api/<Method>``) and VoiceIt
    (``/subaccount...``, ``/users...``) on one root, plus the admin surface under ``/_sandbox/``.

    ``admin_token=None`` falls back to the token ``init`` stored in the database; with neither,
    every admin endpoint except health answers 403.
    """

    def __init__(
        self,
        db_path: str,
        *,
        admin_token: str | None = None,
        faults: dict[str, Any] | list[Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.db_path = str(db_path)
        self.store = Store(self.db_path)
        self.options = Options(options)
        self.faults = FaultInjector()
        if faults:
            self.faults.set(faults)
        self.admin_token = admin_token or self.store.meta_get("admin_token")
        self.vox = Voximplant(self.store, self.options)
        self.voiceit = VoiceIt(self.store, self.options)
        self.callbacks = CallbackSender(self.store, self.options)
        self.sleep: Callable[[float], None] = time.sleep
        # One request's method runs at a time (the latency faults wait outside): the GIL lets
        # only one compute anyway, and threads that each give it up on every SQLite row step
        # hand it back and forth, which took nearly twice the CPU per page at 4 reads at once.
        self._computing = threading.Lock()
        self.started = time.time()

    # --- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, headers, body = self.respond(environ)  # DropConnection propagates to the server
        start_response(status, headers)
        return [body]

    def respond(self, environ: dict[str, Any]) -> Response:
        try:
            req = parse_request(environ)
        except BadRequest as exc:
            return _json(exc.status, {"error": exc.message})
        path = req.path
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            return self.admin(req)
        if path == "/platform_api" or path.startswith("/platform_api/"):
            method = Voximplant.method_name(req)
            return self._provider(req, "vox", method or "")
        first = path.strip("/").split("/", 1)[0]
        if first in ("subaccount", "users"):
            op = VoiceIt.operation(req)
            if op is None:
                return _json(404, not_found(path).body)
            return self._provider(req, "voiceit", op)
        return _json(404, not_found(path).body)

    def _provider(self, req: Request, api: str, method: str) -> Response:
        decision = self.faults.decide(method)
        if decision.latency_before:
            self.sleep(decision.latency_before)
        kind = decision.kind
        if kind is not None and not decision.applies:
            return self._fault_response(kind, api, decision.rule)
        with self._computing:
            response = self._dispatch(req, api, method)
        if decision.latency_after:
            self.sleep(decision.latency_after)
        if kind == "apply_then_drop":
            raise DropConnection(applied=True)
        if kind == "apply_then_500":
            return _html(500, "500 Internal Server Error")
        return response

    def _dispatch(self, req: Request, api: str, method: str) -> Response:
        if api == "vox":
            result = self.vox.handle(req, method or None)
            return _json(200, result)
        reply = self.voiceit.handle(req, method)
        return _json(reply.status, reply.body)

    def _fault_response(self, kind: str, api: str, rule: Rule | None) -> Response:
        if kind == "reset":
            raise DropConnection(applied=False)
        if kind == "http_500":
            return _html(500, "500 Internal Server Error")
        if kind == "http_502":
            return _html(502, "502 Bad Gateway")
        if kind == "http_429":
            retry = rule.retry_after if rule and rule.retry_after is not None else 1
            return _html(429, "429 Too Many Requests", [("Retry-After", str(retry))])
        if kind == "html":
            body = PROXY_PAGE.encode()
            return (
                _status(200),
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
                body,
            )
        if kind == "empty":
            return _status(200), [("Content-Type", "application/json"), ("Content-Length", "0")], b""
        # error_code
        code = rule.code if rule else 340
        if api == "vox":
            try:
                number = int(code)
            except (TypeError, ValueError):
                number = 2
            return _json(200, {"error": {"msg": MESSAGES.get(number, "Error"), "code": number}})
        response_code = (rule.response_code if rule else None) or (code if isinstance(code, str) else "GERR")
        status = (rule.status if rule else None) or (429 if response_code == "ACLR" else 500)
        return _json(
            status,
            {
                "message": "Injected error",
                "status": status,
                "responseCode": response_code,
                "timeTaken": "0.001s",
            },
        )

    # --- admin -----------------------------------------------------------------------------------------

    def _authorized(self, req: Request) -> bool:
        given = req.header("x-sandbox-token")
        if not self.admin_token or not given:
            return False
        return hmac.compare_digest(given.encode("utf-8"), self.admin_token.encode("utf-8"))

    @staticmethod
    def _body_json(req: Request) -> Any:
        if not req.body:
            return {}
        try:
            return json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(400, f"invalid JSON: {exc}") from exc

    def admin(self, req: Request) -> Response:
        name = req.path[len("/_sandbox") :].strip("/")
        if name == "health" and req.method == "GET":
            parent = self.store.parent_account()
            return _json(
                200,
                {
                    "ok": True,
                    "version": __version__,
                    "initialized": parent is not None,
                    "uptime_seconds": round(time.time() - self.started, 3),
                },
            )
        if not self._authorized(req):
            return _json(403, {"error": "missing or wrong X-Sandbox-Token"})
        try:
            return self._admin(name, req)
        except (BadRequest, FaultError, OptionError, ValueError, TypeError) as exc:
            status = exc.status if isinstance(exc, BadRequest) else 400
            return _json(status, {"error": str(exc)})

    def _admin(self, name: str, req: Request) -> Response:
        handler = self._ADMIN_ENDPOINTS.get((name, req.method))
        if handler is None:
            return _json(404, {"error": f"no admin endpoint {req.method} /_sandbox/{name}"})
        return handler(self, req)

    def _get_faults(self, req: Request) -> Response:
        return _json(200, self.faults.to_json())

    def _put_faults(self, req: Request) -> Response:
        self.faults.set(self._body_json(req))
        return _json(200, self.faults.to_json())

    def _delete_faults(self, req: Request) -> Response:
        self.faults.clear()
        return _json(200, self.faults.to_json())

    def _get_options(self, req: Request) -> Response:
        return _json(200, self.options.snapshot())

    def _put_options(self, req: Request) -> Response:
        return _json(200, self.options.update(self._body_json(req)))

    def _delete_options(self, req: Request) -> Response:
        self.options.reset()
        return _json(200, self.options.snapshot())

    def _post_spend(self, req: Request) -> Response:
        body = self._body_json(req)
        children = body.get("children", 10)
        if isinstance(children, bool) or not isinstance(children, int) or children < 0:
            raise BadRequest(400, "children must be a non-negative integer")
        max_amount = str(body.get("max_amount", self.options["spend_max_amount"]))
        return _json(200, spend_store(self.store, children=children, max_amount=max_amount, seed=body.get("seed")))

    def _post_charge(self, req: Request) -> Response:
        body = self._body_json(req)
        if not isinstance(body, dict):
            raise BadRequest(400, "expected a JSON object")
        return _json(
            200,
            charge_account(
                self.store,
                account_id=body.get("account_id"),
                amount=body.get("amount"),
                description=body.get("description"),
                performed_ts=body.get("performed_ts"),
            ),
        )

    def _get_money(self, req: Request) -> Response:
        totals = self.store.money_totals()
        totals["invariants"] = self.store.check_invariants()
        return _json(200, totals)

    def _post_freeze(self, req: Request) -> Response:
        body = self._body_json(req)
        account_id, frozen = body.get("account_id"), body.get("frozen", True)
        if not isinstance(account_id, int) or not isinstance(frozen, bool):
            raise BadRequest(400, "expected {account_id: int, frozen: bool}")
        with self.store.write() as conn:
            before = conn.execute("SELECT frozen FROM accounts WHERE account_id = ?", (account_id,)).fetchone()
            cur = conn.execute("UPDATE accounts SET frozen = ? WHERE account_id = ?", (int(frozen), account_id))
            Store.bump_accounts_version(conn)
            if before is not None and bool(before[0]) != frozen:
                callbacks.frozen_changed(conn, account_id, frozen)
        if cur.rowcount == 0:
            return _json(404, {"error": "no such account"})
        return _json(200, {"account_id": account_id, "frozen": frozen})

    def _post_voiceit_disable(self, req: Request) -> Response:
        body = self._body_json(req)
        key, disabled = body.get("api_key"), body.get("disabled", True)
        if not isinstance(key, str) or not isinstance(disabled, bool):
            raise BadRequest(400, "expected {api_key: str, disabled: bool}")
        with self.store.write() as conn:
            cur = conn.execute("UPDATE vi_accounts SET disabled = ? WHERE api_key = ?", (int(disabled), key))
        if cur.rowcount == 0:
            return _json(404, {"error": "no such VoiceIt account"})
        return _json(200, {"api_key": key, "disabled": disabled})

    def _post_documents(self, req: Request) -> Response:
        body = self._body_json(req)
        try:
            with self.store.write() as conn:
                return _json(200, set_documents(conn, body))
        except LookupError as exc:
            return _json(404, {"error": str(exc)})

    # (endpoint name, HTTP method) -> handler; any other pair answers 404.
    _ADMIN_ENDPOINTS: dict[tuple[str, str], Callable[[SandboxApp, Request], Response]] = {
        ("faults", "GET"): _get_faults,
        ("faults", "PUT"): _put_faults,
        ("faults", "DELETE"): _delete_faults,
        ("options", "GET"): _get_options,
        ("options", "PUT"): _put_options,
        ("options", "DELETE"): _delete_options,
        ("spend", "POST"): _post_spend,
        ("charge", "POST"): _post_charge,
        ("money", "GET"): _get_money,
        ("freeze", "POST"): _post_freeze,
        ("voiceit_disable", "POST"): _post_voiceit_disable,
        ("documents", "POST"): _post_documents,
    }

    def close(self) -> None:
        self.callbacks.stop()
        self.store.close()
