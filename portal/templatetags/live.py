"""``{% live_attrs "part" active %}``: the attributes that make an element a live part (see
portal/live.py). Nothing at all when ``active`` is false: a finished thing is not polled."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from portal.live import PART_PARAM

register = template.Library()

# The event static/js/live.js sends when the tab becomes visible again: refresh at once.
REFRESH_EVENT = "live-refresh"


@register.simple_tag(takes_context=True)
def live_attrs(
    context: template.Context, part: str, active: Any = True, url: str = "", every: str = "2s", **params: Any
) -> SafeString:
    """``url`` defaults to the current page (its query string kept, so filters and cursors stay);
    extra keyword arguments with a true value become query parameters of the refresh."""
    if not active:
        return mark_safe("")  # noqa: S308 (a constant empty string)
    request = context["request"]
    query = request.GET.copy() if not url else type(request.GET)(mutable=True)
    query[PART_PARAM] = part
    for key, value in params.items():
        if value:  # an unset flag (False, "", None) is left out
            query[key] = "1" if value is True else str(value)
    base = url or request.path
    return format_html(
        'data-live hx-get="{}?{}" hx-trigger="every {}, {}" hx-swap="outerHTML"',
        base,
        query.urlencode(),
        every,
        REFRESH_EVENT,
    )


@register.filter
def any_live(items: Any) -> bool:
    """True when one of the things shown (transfers, runs, jobs: anything with ``is_live``) can
    still change, so the part around them keeps refreshing."""
    return any(getattr(item, "is_live", False) for item in items or ())
