"""Column headers that sort a long list (portal/listing.py, docs/lists.md).

``{% sort_th "Company" "company" current %}`` renders a ``<th>`` whose link orders the list by
that column (ascending first, then descending), keeping the page's filters and starting again
from the first page; ``aria-sort`` tells assistive technology the order in force. Only columns
an index can sort are given a key; the others stay plain headers.
``{% query_with name=value %}`` is the current query string with some parameters changed."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext

register = template.Library()

# Parameters a sort or an export link never carries over: the position and the live part.
_DROPPED = ("cursor", "after", "part")


def _query(context: template.Context, **changes: Any) -> str:
    query = context["request"].GET.copy()
    for name in _DROPPED:
        query.pop(name, None)
    for key, value in changes.items():
        if value in (None, ""):
            query.pop(key, None)
        else:
            query[key] = str(value)
    return str(query.urlencode())


@register.simple_tag(takes_context=True)
def query_with(context: template.Context, **changes: Any) -> str:
    return _query(context, **changes)


@register.simple_tag(takes_context=True)
def sort_th(context: template.Context, label: str, key: str, current: str, css: str = "") -> SafeString:
    ascending_now = current == key
    descending_now = current == f"-{key}"
    target = f"-{key}" if ascending_now else key
    state = "ascending" if ascending_now else "descending" if descending_now else "none"
    arrow = " ▲" if ascending_now else " ▼" if descending_now else ""
    order = gettext("Sort descending") if ascending_now else gettext("Sort ascending")
    return format_html(
        '<th scope="col" class="{}" aria-sort="{}" data-sort="{}"><a href="?{}" title="{}">{}{}</a></th>',
        f"sortable {css}".strip(),
        state,
        key,
        _query(context, sort=target),
        order,
        label,
        arrow,
    )
