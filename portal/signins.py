"""Sign-in events in the audit log: each failed password and each lockout, with the client's
address (portal.clientip, through audit_log's request), so an operator can see who was
guessing and from where. The password itself is never recorded."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from portal.audit import audit_log


def record_login_failed(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username", ""))[:150]
    audit_log(actor=None, action="portal.login.failed", data={"username": username}, request=request)


def record_locked_out(sender: object, request: HttpRequest | None = None, username: str = "", **kwargs: Any) -> None:
    audit_log(
        actor=None, action="portal.login.locked_out", data={"username": str(username or "")[:150]}, request=request
    )
