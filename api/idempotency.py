"""Idempotency-Key for API writes, in the manner of Stripe and Brandur Leach's write-up.

The first request with a key claims it (a row committed *before* the work starts, so a
concurrent duplicate sees it); when the work ends its status and body are stored, and every
later request with the same key and the same body gets that stored response back. The same
key with a different body is 409, and so is a duplicate that arrives while the first is still
running. Keys are per token owner (the user), so two clients never share a namespace.

Not stored (the key is released, a retry runs again): input that failed validation, in the
serializer or as a service's field-level 400 (nothing started, as Stripe does) and unexpected 5xx errors (Brandur: an internal error unlocks the
key). That is safe for money because billing's transfer_create also dedupes on the same key
in its own table, in the transaction that writes the transfer.

A handler whose work is one database transaction may claim the key inside it
(``run_idempotent(..., inline=True)``): no claim is committed first; the handler writes the
key together with its final response (``InlineClaim.store``) in its own transaction, so a
first request commits once. A concurrent duplicate waits on the unique key (PostgreSQL) or
the write lock (SQLite) and then finds the stored response. Whenever the handler's outcome
was not stored that way (an error, a replay, the key already held), the key's record decides
as on the ordinary path: an existing record replays or refuses; with none, a field-level 400
stores nothing and any other response is stored on its own."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import exception_handler
from portal.errors import PortalError, error_body
from portal.models import IdempotencyRecord

HEADER = "Idempotency-Key"
# A request still marked in progress after this long died mid-way; a retry may take over.
LEASE = timedelta(minutes=5)
# Stripe keeps keys at least 24 hours; idempotency_reap drops older ones.
RETENTION = timedelta(hours=72)


def idempotency_parameter(required: bool) -> OpenApiParameter:
    return OpenApiParameter(
        HEADER,
        str,
        OpenApiParameter.HEADER,
        required=required,
        description="A unique value per logical operation (1-255 printable ASCII characters). "
        "Retries with the same key and body replay the first response.",
    )


def request_fingerprint(request: Request) -> str:
    """sha256 over method, path and the parsed body in canonical form (key order and
    whitespace do not make two bodies different)."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method}\n{request.path}\n{body}".encode()).hexdigest()


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= 255 and key.isascii() and key.isprintable()


def _rendered(data: Any) -> Any:
    return json.loads(JSONRenderer().render(data)) if data is not None else None


def _stored(response: Response) -> Any:
    return _rendered(response.data)


def _insert_record(owner: Any, key: str, fingerprint: str, **fields: Any) -> IdempotencyRecord | None:
    """The key's record, or None when another request holds the key."""
    try:
        # Outside a transaction the INSERT commits on its own (one round trip, no BEGIN and
        # COMMIT); inside one, a savepoint keeps a duplicate key from breaking it.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            return IdempotencyRecord.objects.create(owner=owner, key=key, request_hash=fingerprint, **fields)
    except IntegrityError:
        return None


def _claim(owner: Any, key: str, fingerprint: str) -> IdempotencyRecord | Response:
    now = timezone.now()
    fresh = _insert_record(owner, key, fingerprint, locked_until=now + LEASE)
    if fresh is not None:
        fresh.first_claim = True  # type: ignore[attr-defined]
        return fresh
    with transaction.atomic():
        record = IdempotencyRecord.objects.select_for_update().filter(owner=owner, key=key).first()
        if record is None:  # reaped between the two statements: a fresh claim next time
            return Response(error_body(409, "idempotency_in_progress", "Retry this request."), status=409)
        if record.request_hash != fingerprint:
            return Response(
                error_body(409, "idempotency_key_reused", "This Idempotency-Key was used with a different request."),
                status=409,
            )
        if record.state == IdempotencyRecord.State.DONE:
            replay = Response(record.body, status=record.status_code)
            replay["Idempotent-Replayed"] = "true"
            return replay
        if record.locked_until > now:
            return Response(
                error_body(
                    409, "idempotency_in_progress", "A request with this Idempotency-Key is still being processed."
                ),
                status=409,
            )
        # The first attempt died mid-way: take the lease over.
        record.locked_until = now + LEASE
        record.save(update_fields=["locked_until"])
        return record


class KeyTaken(Exception):  # noqa: N818 - a signal to the caller, not a failure
    """Raised by ``InlineClaim.store``: a record already holds the key. Let it leave the
    transaction, which rolls back whole; the key's record then decides."""


@dataclass
class InlineClaim:
    """The key of a request run with ``inline=True``, to be stored with its response."""

    owner: Any
    key: str
    fingerprint: str
    stored: bool = False

    def store(self, status_code: int, data: Any) -> Any:
        """Inside the handler's own transaction, once its response is known: the key and that
        response, one INSERT, committed with the work. Returns the body as stored, for the
        response to carry. Raises KeyTaken when the key is held (see the class)."""
        body = _rendered(data)
        try:
            IdempotencyRecord.objects.create(
                owner=self.owner,
                key=self.key,
                request_hash=self.fingerprint,
                state=IdempotencyRecord.State.DONE,
                status_code=status_code,
                body=body,
                locked_until=timezone.now(),
            )
        except IntegrityError as exc:
            raise KeyTaken from exc
        self.stored = True
        return body


def _releases_key(exc: Exception) -> bool:
    """Input that failed validation, in the serializer or as a service's field-level 400:
    nothing started, nothing is stored."""
    if isinstance(exc, exceptions.ValidationError):
        return True
    return isinstance(exc, PortalError) and exc.status == 400 and bool(exc.field)


def _run_inline(
    request: Request, view: Any, handler: Callable[[str | None, str | None], Response], key: str, fingerprint: str
) -> Response | None:
    """The handler with the key claimed in its own transaction (the module docstring).
    None: the key's record decides, as on the ordinary path."""
    claim = InlineClaim(request.user, key, fingerprint)
    request._idempotency_inline = claim  # type: ignore[attr-defined]
    error: Exception | None = None
    try:
        response = handler(key, fingerprint)
    except KeyTaken:
        return None
    except Exception as exc:  # noqa: BLE001 - decided below, as on the ordinary path
        error = exc
    finally:
        request._idempotency_inline = None  # type: ignore[attr-defined]
    if error is None and claim.stored:
        return response
    # Not stored with the work: an earlier or concurrent request may hold the key (the handler
    # then replayed its work, or refused what that request's work changed).
    if IdempotencyRecord.objects.filter(owner=request.user, key=key).exists():
        return None
    if error is not None:
        if _releases_key(error):
            raise error
        response = exception_handler(error, {"view": view, "request": request})
    if response.status_code >= 500:
        return response
    stored = _insert_record(
        request.user,
        key,
        fingerprint,
        state=IdempotencyRecord.State.DONE,
        status_code=response.status_code,
        body=_stored(response),
        locked_until=timezone.now(),
    )
    return response if stored is not None else None


def inline_claim(request: Request) -> InlineClaim | None:
    """Inside a ``run_idempotent(..., inline=True)`` handler: the key to store with the
    response in the handler's transaction; None on the ordinary path (the key is claimed)."""
    return getattr(request, "_idempotency_inline", None)


def run_idempotent(
    request: Request,
    view: Any,
    handler: Callable[[str | None, str | None], Response],
    *,
    required: bool,
    inline: bool = False,
) -> Response:
    """Runs ``handler(key, fingerprint)`` at most once per key and owner; see the module
    docstring. ``inline``: the handler stores the key with its response itself
    (``inline_claim``); whenever it did not, the ordinary path runs."""
    key = request.headers.get(HEADER)
    if key is None or key == "":
        if required:
            raise exceptions.ValidationError({HEADER: ["This header is required for this operation."]})
        return handler(None, None)
    if not _valid_key(key):
        raise exceptions.ValidationError({HEADER: ["Use 1-255 printable ASCII characters."]})
    fingerprint = request_fingerprint(request)
    if inline:
        answered = _run_inline(request, view, handler, key, fingerprint)
        if answered is not None:
            return answered
    claimed = _claim(request.user, key, fingerprint)
    if isinstance(claimed, Response):
        return claimed
    record = claimed
    # The handler may ask whether no earlier request ever ran under this key (no takeover of
    # a dead attempt): see is_first_claim.
    request._idempotency_first_claim = getattr(record, "first_claim", False)  # type: ignore[attr-defined]
    try:
        response = handler(key, fingerprint)
    except Exception as exc:  # noqa: BLE001 - rendered (and logged) by the one error handler
        if _releases_key(exc):
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            raise
        response = exception_handler(exc, {"view": view, "request": request})
    if response.status_code >= 500:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return response
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.DONE, status_code=response.status_code, body=_stored(response)
    )
    return response


def is_first_claim(request: Request) -> bool:
    """Inside a ``run_idempotent`` handler: the key was claimed by this request's INSERT, so
    no earlier request ran under it since it was last reaped."""
    return bool(getattr(request, "_idempotency_first_claim", False))


def idempotency_reap(*, older_than: timedelta = RETENTION) -> int:
    """Drops keys past retention; meant for a periodic task."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
