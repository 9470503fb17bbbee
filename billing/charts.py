"""Server-rendered SVG charts (no JavaScript, no library). Every text is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


def _fmt(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def balance_chart_svg(
    points: Sequence[tuple[datetime, Decimal]], *, width: int = 640, height: int = 220, currency: str = ""
) -> SafeString:
    """A step chart of a balance over time (a balance holds until it changes).

    ``points`` are (time, balance) pairs in any order; returns an ``<svg>`` element safe to
    put in a page as is."""
    width = max(200, min(int(width), 4000))
    height = max(100, min(int(height), 2000))
    cur = escape(currency or "")
    label = f"Balance history{(' in ' + cur) if cur else ''}"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="balance-chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{label}">'
        f"<title>{label}</title>"
    )
    data = sorted(((t, Decimal(b)) for t, b in points if b is not None), key=lambda p: p[0])
    if not data:
        return mark_safe(  # noqa: S308 - built from escaped text only
            head + f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" fill="#616e7c">'
            "No balance history yet</text></svg>"
        )
    left, right, top, bottom = 70, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    t0, t1 = data[0][0].timestamp(), data[-1][0].timestamp()
    if t1 <= t0:
        t1 = t0 + 1
    values = [b for _, b in data]
    lo, hi = min(min(values), Decimal(0)), max(max(values), Decimal(0))
    if hi == lo:
        hi = lo + 1

    def x(ts: float) -> float:
        return left + (ts - t0) / (t1 - t0) * plot_w

    def y(v: Decimal) -> float:
        return top + float((hi - v) / (hi - lo)) * plot_h

    path = [f"M{x(data[0][0].timestamp()):.1f},{y(data[0][1]):.1f}"]
    for (_, prev), (t, b) in zip(data, data[1:], strict=False):
        xt = x(t.timestamp())
        path.append(f"L{xt:.1f},{y(prev):.1f}")
        path.append(f"L{xt:.1f},{y(b):.1f}")
    path.append(f"L{left + plot_w:.1f},{y(data[-1][1]):.1f}")
    zero = y(Decimal(0))
    parts = [
        head,
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d9e2ec"/>',
        f'<line x1="{left}" y1="{zero:.1f}" x2="{left + plot_w}" y2="{zero:.1f}" stroke="#bcccdc" '
        'stroke-dasharray="4 3"/>',
        f'<path d="{" ".join(path)}" fill="none" stroke="#0b6e4f" stroke-width="2"/>',
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11" fill="#616e7c">'
        f"{escape(_fmt(hi))}</text>",
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11" fill="#616e7c">'
        f"{escape(_fmt(lo))}</text>",
        f'<text x="{left}" y="{height - 8}" font-size="11" fill="#616e7c">'
        f"{escape(data[0][0].strftime('%Y-%m-%d'))}</text>",
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" font-size="11" fill="#616e7c">'
        f"{escape(data[-1][0].strftime('%Y-%m-%d'))}</text>",
    ]
    for t, b in data[-200:]:
        parts.append(
            f'<circle cx="{x(t.timestamp()):.1f}" cy="{y(b):.1f}" r="2.5" fill="#0b6e4f">'
            f"<title>{escape(t.strftime('%Y-%m-%d %H:%M'))} UTC: {escape(_fmt(b))} {cur}</title></circle>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text above is escaped
