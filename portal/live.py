"""Live parts of pages: a fragment of a page that refreshes itself while what it shows can still
change (a transfer being sent, a running job or sync run, the console counts, a balance).

One template partial renders the fragment, for the page's first render and for every refresh: the
page's own view answers ``?part=<name>`` with that partial alone (same permissions, same scoping,
same context), and the partial carries the polling attributes (``{% live_attrs %}``,
portal/templatetags/live.py) only while the thing can change, so polling stops by itself once it
is finished. htmx does the requests; static/js/live.js pauses them while the tab is hidden.
See docs/CONVENTIONS.md ("Live parts")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers, patch_vary_headers

PART_PARAM = "part"


def requested_part(request: HttpRequest, *names: str) -> str | None:
    """The live part ``?part=`` asks for, None for the whole page; 404 for a name not in ``names``."""
    part = request.GET.get(PART_PARAM)
    if part is not None and part not in names:
        raise Http404("No such part")
    return part


def part_response(
    request: HttpRequest, template: str, context: Mapping[str, Any], *, reload: bool = False
) -> HttpResponse:
    """The partial alone, never cached. ``reload`` asks htmx to reload the whole page (the part
    finished and the page around it shows more than the part, such as the Retry buttons)."""
    response = render(request, template, dict(context))
    add_never_cache_headers(response)
    patch_vary_headers(response, ("HX-Request",))
    if reload:
        response["HX-Refresh"] = "true"
    return response


def render_live(
    request: HttpRequest,
    template: str,
    context: Mapping[str, Any],
    *,
    parts: Mapping[str, str],
    status: int = 200,
) -> HttpResponse:
    """The page, or the live part ``?part=<name>`` names (404 for a name the page does not have)."""
    part = requested_part(request, *parts)
    if part is None:
        return render(request, template, dict(context), status=status)
    return part_response(request, parts[part], context)
