"""Idempotency-Key for API writes, in the manner of Stripe and Brandur Leach's write-up.

The first request with a key claims it (a row committed *before* the work starts, so a
concurrent duplicate sees it); when the work ends its status and body are stored, and every
later request with the same key and the same body gets that stored response back. The same
key with a different body is 409, and so is a duplicate that arrives while the first is still
running. Keys are per token owner (the user), so two clients never share a namespace.

Not stored (the key is released, a retry runs again): input that failed validation, in the
serializer or as a service's field-level 400 (nothing started, as Stripe does) and unexpected 5xx errors (Brandur: an internal error unlocks the
key). That is safe for money because billing's transfer_create also dedupes on the same key
in its own table, in the transaction that writes the transfer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import nullcontext
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


def _stored(response: Response) -> Any:
    return json.loads(JSONRenderer().render(response.data)) if response.data is not None else None


def _claim(owner: Any, key: str, fingerprint: str) -> IdempotencyRecord | Response:
    now = timezone.now()
    try:
        # Outside a transaction the INSERT commits on its own (one round trip, no BEGIN and
        # COMMIT); inside one, a savepoint keeps a duplicate key from breaking it.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            return IdempotencyRecord.objects.create(
                owner=owner, key=key, request_hash=fingerprint, locked_until=now + LEASE
            )
    except IntegrityError:
        pass
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


def run_idempotent(
    request: Request, view: Any, handler: Callable[[str | None, str | None], Response], *, required: bool
) -> Response:
    """Runs ``handler(key, fingerprint)`` at most once per key and owner; see the module docstring."""
    key = request.headers.get(HEADER)
    if key is None or key == "":
        if required:
            raise exceptions.ValidationError({HEADER: ["This header is required for this operation."]})
        return handler(None, None)
    if not _valid_key(key):
        raise exceptions.ValidationError({HEADER: ["Use 1-255 printable ASCII characters."]})
    fingerprint = request_fingerprint(request)
    claimed = _claim(request.user, key, fingerprint)
    if isinstance(claimed, Response):
        return claimed
    record = claimed
    try:
        response = handler(key, fingerprint)
    except exceptions.ValidationError:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        raise
    except PortalError as exc:
        if exc.status == 400 and exc.field:
            # A service's input validation (a field-level 400): nothing started, as above.
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            raise
        response = exception_handler(exc, {"view": view, "request": request})
    except Exception as exc:  # noqa: BLE001 - rendered (and logged) by the one error handler
        response = exception_handler(exc, {"view": view, "request": request})
    if response.status_code >= 500:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return response
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.DONE, status_code=response.status_code, body=_stored(response)
    )
    return response


def idempotency_reap(*, older_than: timedelta = RETENTION) -> int:
    """Drops keys past retention; meant for a periodic task."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
