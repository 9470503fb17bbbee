"""The customer statement's From/To: a clear message on the form for every bad input, and the
provider is not asked about a period that makes no sense."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.utils import timezone

from customers.services import STATEMENT_MAX_DAYS, statement_period

TODAY = date(2026, 6, 15)


@pytest.mark.parametrize(
    ("raw_from", "raw_to", "field", "words"),
    [
        ("yesterday", "", "from", "Enter the From date as YYYY-MM-DD."),
        ("", "2026-02-30", "to", "The To date is not a real date."),
        ("2026-05-10", "2026-05-01", "from", "The From date is after the To date"),
        ("2026-07-01", "", "from", "The From date is in the future."),
        ("2024-01-01", "2026-01-01", "from", f"at most {STATEMENT_MAX_DAYS} days"),
        ("", "1950-01-01", "to", "must be 2000-01-01 or later"),
        ("", "0001-01-01", "to", "outside the range of dates the portal keeps"),
        ("1999-12-31", "2000-01-05", "from", "must be 2000-01-01 or later"),
    ],
)
def test_bad_periods_say_what_is_wrong(raw_from, raw_to, field, words) -> None:
    period = statement_period(raw_from=raw_from, raw_to=raw_to, today=TODAY)
    assert words in period.errors[field] and period.date_from is None and period.date_to is None


@pytest.mark.parametrize(
    ("raw_from", "raw_to", "expected"),
    [
        ("", "", (None, None)),
        ("2026-05-01", "2026-05-10", (date(2026, 5, 1), date(2026, 5, 10))),
        ("2026-05-01", "2026-05-01", (date(2026, 5, 1), date(2026, 5, 1))),
        (" 2025-06-15 ", "", (date(2025, 6, 15), None)),  # 366 days up to today
    ],
)
def test_good_periods_pass(raw_from, raw_to, expected) -> None:
    period = statement_period(raw_from=raw_from, raw_to=raw_to, today=TODAY)
    assert not period.errors and (period.date_from, period.date_to) == expected


@pytest.mark.django_db
def test_the_page_shows_the_message_on_the_form_and_never_the_provider_note(client, customer_owner) -> None:
    client.force_login(customer_owner)
    today = timezone.now().date()
    late, early = today.isoformat(), (today - timedelta(days=3)).isoformat()
    response = client.get(f"/me/statement/?from={late}&to={early}")
    html = response.content.decode()
    assert response.status_code == 400
    assert 'data-testid="from-error"' in html and "The From date is after the To date" in html
    assert 'aria-invalid="true"' in html and "history could not be read" not in html
    assert "Correct the dates above" in html
    far = client.get("/me/statement/?from=1950-01-01").content.decode()
    assert "2000-01-01 or later" in far and "history could not be read" not in far
    farther = client.get("/me/statement/?from=0001-01-01").content.decode()
    assert "outside the range of dates" in farther and "history could not be read" not in farther
    csv = client.get("/me/statement/?from=31-12-2025&format=csv")
    assert csv.status_code == 400 and "Enter the From date as YYYY-MM-DD." in csv.content.decode()
