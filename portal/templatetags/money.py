"""``{% load money %}``: ``{{ tenant.balance|money:tenant.currency }}`` renders
``1,234.56 USD`` in the active language (portal/money_format.py); ``{% money_html value currency %}``
adds the exact stored value as a title where rounding hides digits."""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from portal import money_format

register = template.Library()


@register.filter(name="money")
def money_filter(value: object, currency: str | None = None) -> str:
    return money_format.money(value, currency)


@register.filter(name="money_number")
def money_number(value: object, currency: str | None = None) -> str:
    """The amount without the currency code (for a column whose header names the currency)."""
    return money_format.number(value, currency)


@register.filter(name="money_exact")
def money_exact(value: object, currency: str | None = None) -> str:
    return money_format.exact(value, currency)


@register.simple_tag(name="money_html")
def money_html(value: object, currency: str | None = None) -> SafeString:
    """The amount as :func:`money_filter` shows it, with every stored digit in a title when
    the currency's decimals hide some (a provider balance of 12.3456 USD shows 12.35 USD)."""
    shown = money_format.money(value, currency)
    if money_format.hides_digits(value, currency):
        return format_html('<span title="{}">{}</span>', money_format.exact(value, currency), shown)
    return format_html("{}", shown)
