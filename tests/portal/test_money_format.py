"""Money as pages show it: the currency's decimals, the language's separators, the code."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template
from django.utils import translation

from portal import money_format
from tests.factories import ProviderConnectionFactory, TenantFactory


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        (Decimal("2749.6500"), "USD", "2,749.65 USD"),
        (Decimal("1234567.891"), "EUR", "1,234,567.89 EUR"),
        (Decimal("0.005"), "USD", "0.00 USD"),  # half-even: 0.005 rounds to 0.00
        (Decimal("-0.001"), "USD", "0.00 USD"),  # never "-0.00"
        (Decimal("-12.5"), "RUR", "-12.50 RUR"),
        (Decimal("1500"), "KZT", "1,500.00 KZT"),
        (Decimal("1500.4"), "JPY", "1,500 JPY"),
        (Decimal("7"), "usd", "7.00 USD"),
        (None, "USD", "—"),
        ("not a number", "USD", "—"),
    ],
)
def test_money_has_the_currency_decimals_grouping_and_code(value, currency, shown):
    with translation.override("en"):
        assert money_format.money(value, currency) == shown


def test_russian_groups_with_spaces_and_a_decimal_comma():
    with translation.override("ru"):
        text = money_format.money(Decimal("1234.56"), "RUR")
    assert text.replace("\xa0", " ") == "1 234,56 RUR"


def test_exact_keeps_every_provider_digit_without_grouping():
    assert money_format.exact(Decimal("2749.6543"), "USD") == "2749.6543 USD"
    assert money_format.exact(Decimal("12345.6")) == "12345.6"
    assert money_format.hides_digits(Decimal("12.3456"), "USD")
    assert not money_format.hides_digits(Decimal("12.3400"), "USD")


def test_template_tag_puts_the_exact_value_in_a_title_only_when_rounding_hides_digits():
    template = Template("{% load money %}{% money_html a 'USD' %}|{% money_html b 'USD' %}|{{ a|money:'USD' }}")
    with translation.override("en"):
        out = template.render(Context({"a": Decimal("1234.5678"), "b": Decimal("5.5000")}))
    assert out == '<span title="1234.5678 USD">1,234.57 USD</span>|5.50 USD|1,234.57 USD'


@pytest.mark.django_db
def test_tenant_list_and_page_show_balances_in_the_one_format(client, reseller_admin):
    tenant = TenantFactory(company_name="Grouped Ltd", balance=Decimal("2749.6543"), currency="USD")
    client.force_login(reseller_admin)
    listing = client.get("/console/tenants/").content.decode()
    assert ">2,749.65 USD<" in listing and 'title="2749.6543 USD"' in listing
    page = client.get(f"/console/tenants/{tenant.uuid}/").content.decode()
    assert "2,749.65 USD" in page and "2749.6543" in page  # shown rounded, exact in the title


@pytest.mark.django_db
def test_balance_sort_with_several_currencies_asks_for_a_currency(client, reseller_admin):
    TenantFactory(company_name="Dollar Co", balance=Decimal("5"), connection=ProviderConnectionFactory(currency="USD"))
    TenantFactory(
        company_name="Euro Co",
        balance=Decimal("1"),
        currency="EUR",
        connection=ProviderConnectionFactory(currency="EUR"),
    )
    client.force_login(reseller_admin)
    refused = client.get("/console/tenants/?sort=balance").content.decode()
    assert "Sorting by balance compares amounts of one currency: choose a currency (EUR, USD)." in refused
    assert 'data-field="currency"' in refused and "Dollar Co" not in refused
    one = client.get("/console/tenants/?sort=balance&currency=EUR").content.decode()
    assert "Euro Co" in one and "Dollar Co" not in one
