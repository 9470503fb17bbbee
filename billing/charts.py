"""Server-rendered SVG charts (no JavaScript, no library). Every text is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


def _fmt(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def axis_bounds(values: Sequence[Decimal]) -> tuple[Decimal, Decimal]:
    """The value axis: the data's own range with a little room above and below (not always from
    zero, so a balance moving between 1,000 and 1,010 is not a flat line); a flat series gets a
    band around its value."""
    lo, hi = min(values), max(values)
    if hi == lo:
        pad = max(abs(lo) * Decimal("0.1"), Decimal(1))
    else:
        pad = (hi - lo) * Decimal("0.08")
    return lo - pad, hi + pad


def balance_chart_svg(
    points: Sequence[tuple[datetime, Decimal]],
    *,
    width: int = 640,
    height: int = 220,
    currency: str = "",
    markers: Sequence[tuple[datetime, str]] = (),
) -> SafeString:
    """A step chart of a balance over time (a balance holds until it changes).

    ``points`` are (time, balance) pairs in any order, every one drawn; ``markers`` are
    (time, label) pairs drawn as ticks on the time axis (the transfers). Returns an ``<svg>``
    element safe to put in a page as is."""
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
    times = [t.timestamp() for t, _ in data] + [t.timestamp() for t, _ in markers]
    t0, t1 = min(times), max(times)
    if t1 <= t0:  # one moment only: the point sits at the right, its balance held from the left
        t0 = t1 - 1
    lo, hi = axis_bounds([b for _, b in data])

    def x(ts: float) -> float:
        return left + (ts - t0) / (t1 - t0) * plot_w

    def y(v: Decimal) -> float:
        return top + float((hi - v) / (hi - lo)) * plot_h

    path = [f"M{x(t0):.1f},{y(data[0][1]):.1f}"]
    for (_, prev), (t, b) in zip(data, data[1:], strict=False):
        xt = x(t.timestamp())
        path.append(f"L{xt:.1f},{y(prev):.1f}")
        path.append(f"L{xt:.1f},{y(b):.1f}")
    path.append(f"L{left + plot_w:.1f},{y(data[-1][1]):.1f}")
    parts = [
        head,
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d9e2ec"/>',
    ]
    if lo < 0 < hi:  # the zero line, only where it falls inside the data's range
        zero = y(Decimal(0))
        parts.append(
            f'<line x1="{left}" y1="{zero:.1f}" x2="{left + plot_w}" y2="{zero:.1f}" stroke="#bcccdc" '
            'stroke-dasharray="4 3"/>'
        )
    parts += [
        f'<path d="{" ".join(path)}" fill="none" stroke="#0b6e4f" stroke-width="2"/>',
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11" fill="#616e7c">'
        f"{escape(_fmt(hi))}</text>",
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11" fill="#616e7c">'
        f"{escape(_fmt(lo))}</text>",
        f'<text x="{left}" y="{height - 8}" font-size="11" fill="#616e7c">'
        f"{escape(datetime.fromtimestamp(t0, UTC).strftime('%Y-%m-%d'))}</text>",
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" font-size="11" fill="#616e7c">'
        f"{escape(datetime.fromtimestamp(t1, UTC).strftime('%Y-%m-%d'))}</text>",
    ]
    for t, text in markers:
        xm = x(t.timestamp())
        parts.append(
            f'<g class="transfer-marker"><line x1="{xm:.1f}" y1="{top}" x2="{xm:.1f}" y2="{top + plot_h}" '
            'stroke="#8e6ab8" stroke-width="1" stroke-dasharray="2 2"/>'
            f'<path d="M{xm - 4:.1f},{top + plot_h + 7} L{xm + 4:.1f},{top + plot_h + 7} L{xm:.1f},{top + plot_h} Z" '
            f'fill="#8e6ab8"><title>{escape(t.strftime("%Y-%m-%d %H:%M"))} UTC: {escape(text)}</title></path></g>'
        )
    for t, b in data:
        parts.append(
            f'<circle cx="{x(t.timestamp()):.1f}" cy="{y(b):.1f}" r="2.5" fill="#0b6e4f">'
            f"<title>{escape(t.strftime('%Y-%m-%d %H:%M'))} UTC: {escape(_fmt(b))} {cur}</title></circle>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text above is escaped
