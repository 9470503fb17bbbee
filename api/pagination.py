"""Cursor pagination, one envelope for every list: ``{"results": [...], "next": url | null}``.

Cursors are opaque to clients. Ours (keyset over the primary key, newest first) narrow an
already tenant- or role-scoped queryset, so a forged cursor can skip rows but never reach
rows outside the scope. Lists whose selector pages itself (tenants, transfers) hand us their
own next cursor, which we pass through the same envelope."""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.utils.urls import remove_query_param, replace_query_param

from portal.errors import PortalError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

PAGE_PARAMETERS = [
    OpenApiParameter("cursor", str, description="The `next` value's cursor from the previous page."),
    OpenApiParameter("limit", int, description=f"Rows per page, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})."),
]


def parse_limit(request: Request, default: int = DEFAULT_LIMIT) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_LIMIT:
        raise serializers.ValidationError({"limit": [f"Must be a whole number from 1 to {MAX_LIMIT}."]})
    return int(raw)


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


# The shape every cursor the API issues has (the schema documents it). A cursor of this shape
# that the API never issued names no page: 404. Anything else is malformed input: 400.
CURSOR_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")


def refuse_cursor(raw: str) -> NoReturn:
    if CURSOR_RE.fullmatch(raw):
        raise PortalError(
            "No such page: this cursor was not issued by the API; start from the first page.",
            field="cursor",
            code="not_found",
            status=404,
        )
    raise serializers.ValidationError({"cursor": ["This cursor is not valid."]})


def decode_cursor(raw: str) -> int:
    if len(raw) > 40:
        refuse_cursor(raw)
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        refuse_cursor(raw)
    if not text.isdigit() or len(text) > 19:
        refuse_cursor(raw)
    return int(text)


def next_url(request: Request, cursor: str | None) -> str | None:
    if not cursor:
        return None
    url = request.build_absolute_uri()
    return replace_query_param(url, "cursor", cursor)


def page_body(request: Request, results: Sequence[Any], cursor: str | None) -> dict[str, Any]:
    return {"results": list(results), "next": next_url(request, cursor)}


def keyset_page(queryset: QuerySet[Any], request: Request) -> tuple[list[Any], str | None]:
    """Newest first by primary key; one extra row tells whether there is a next page."""
    limit = parse_limit(request)
    raw = request.query_params.get("cursor")
    if raw:
        queryset = queryset.filter(pk__lt=decode_cursor(raw))
    rows = list(queryset.order_by("-pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].pk) if more and rows else None)


@functools.cache
def page_serializer(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The envelope as a serializer class, for the schema: one class per name, however many
    operations answer it (two classes of one name would be two schema components)."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "results": item(many=True),
            "next": serializers.URLField(allow_null=True),
        },
    )


__all__ = [
    "PAGE_PARAMETERS",
    "keyset_page",
    "next_url",
    "page_body",
    "page_serializer",
    "parse_limit",
    "refuse_cursor",
    "remove_query_param",
]
