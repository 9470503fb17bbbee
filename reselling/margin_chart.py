"""The margin report's chart: revenue and cost bars per month, one chart per currency (sums in
two currencies never share an axis). Server-rendered SVG like billing/charts.py: no
JavaScript, every text escaped."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from reselling.margin import Total

REVENUE, COST = "#0b6e4f", "#c2410c"


def _fmt(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def _one(currency: str, totals: Sequence[Total], width: int, height: int) -> str:
    cur = escape(currency)
    label = f"Revenue and cost per month in {cur}"
    left, right, top, bottom = 80, 12, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    hi = max([max(t.revenue, t.cost) for t in totals] + [Decimal(1)])
    lo = min([min(t.revenue, t.cost) for t in totals] + [Decimal(0)])
    span = hi - lo

    def y(v: Decimal) -> float:
        return top + float((hi - v) / span) * plot_h

    slot = plot_w / max(len(totals), 1)
    bar = max(2.0, slot * 0.38)
    zero = y(Decimal(0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="margin-chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{label}"><title>{label}</title>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d9e2ec"/>',
        f'<line x1="{left}" y1="{zero:.1f}" x2="{left + plot_w}" y2="{zero:.1f}" stroke="#bcccdc"/>',
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11" fill="#616e7c">{escape(_fmt(hi))}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11" fill="#616e7c">'
        f"{escape(_fmt(lo))}</text>",
    ]
    for i, t in enumerate(totals):
        x0 = left + i * slot + slot * 0.1
        month = escape(t.period.strftime("%Y-%m"))
        for j, (value, colour, what) in enumerate(((t.revenue, REVENUE, "revenue"), (t.cost, COST, "cost"))):
            y0, y1 = sorted((y(value), zero))
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{y0:.1f}" width="{bar:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                f'fill="{colour}"><title>{month} {what}: {escape(_fmt(value))} {cur}</title></rect>'
            )
        if len(totals) <= 12 or i % max(len(totals) // 12, 1) == 0:
            parts.append(
                f'<text x="{x0 + bar:.1f}" y="{height - 10}" text-anchor="middle" font-size="10" fill="#616e7c">'
                f"{month}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def margin_chart_svg(totals: Sequence[Total], *, width: int = 720, height: int = 220) -> SafeString:
    """One bar chart per currency over the given months (oldest first)."""
    if not totals:
        return mark_safe('<p class="muted">No charges yet.</p>')
    currencies = sorted({t.currency for t in totals})
    charts = [_one(c, [t for t in totals if t.currency == c], width, height) for c in currencies]
    return mark_safe("".join(charts))  # noqa: S308 - every interpolated text above is escaped
