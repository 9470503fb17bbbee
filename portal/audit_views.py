"""The audit log page: every event as a sentence, filtered by actor, tenant, action and dates,
a keyset page at a time, and the same filtered rows as a streamed CSV."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from portal.audit_log import audit_page, parse_filters, walk_sentences
from portal.audit_sentences import Sentence, registered_actions
from portal.listing import stream_csv
from portal.roles import has_perm, require

CSV_HEADER = ("time_utc", "actor", "action", "sentence", "tenant_id", "data", "ip", "request_id")


def _csv_cells(s: Sentence) -> list[Any]:
    import json

    e = s.event
    return [
        e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        e.actor_label,
        e.action,
        s.text,
        e.tenant_id if e.tenant_id is not None else "",
        json.dumps(e.data, sort_keys=True, ensure_ascii=False),
        e.ip or "",
        e.request_id,
    ]


@require("audit.view")
def _audit_list(request: HttpRequest) -> Any:
    filters = parse_filters(request.GET)
    date_errors = {k: v for k, v in filters.errors.items() if k in ("from", "to")}
    if request.GET.get("format") == "csv" and not filters.errors:
        stamp = timezone.now().strftime("%Y%m%d")
        return stream_csv(f"audit-{stamp}.csv", CSV_HEADER, walk_sentences(filters), _csv_cells)
    page = audit_page(filters) if not date_errors else None
    context = {
        "filters": filters,
        "errors": filters.errors,
        "rows": page.rows if page else [],
        "next_before": page.next_before if page else None,
        "query": filters.query(),
        "actions": registered_actions(),
    }
    return render(request, "portal/audit_list.html", context, status=400 if date_errors else 200)


def audit_list(request: HttpRequest) -> HttpResponse:
    """Staff without ``audit.view`` get 403; for a customer the page does not exist (404)."""
    if request.user.is_authenticated and not has_perm(request.user, "console.view"):
        raise Http404("No such page")
    response: HttpResponse = _audit_list(request)
    return response
