"""The beat schedule reseller admins change in the console: the page, its validation and audit,
the beat scheduler that follows the database, and the next nightly sync on the sync page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from portal.audit import audit_events
from portal.celery import app
from portal.models import ScheduleEntry
from portal.schedule import NIGHTLY_SYNC, DatabaseScheduler

pytestmark = pytest.mark.django_db

URL = "/console/schedule/"


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[DatabaseScheduler]:
    beat = DatabaseScheduler(app=app, schedule_filename=str(tmp_path / "celerybeat-schedule"))
    yield beat
    beat.close()


def other_hour(now: datetime, *avoid: int) -> int:
    hour = (now.hour + 5) % 24
    while hour in avoid:
        hour = (hour + 1) % 24
    return hour


def test_changing_the_sync_hour_on_the_page_moves_the_schedulers_next_run(
    client: Any, reseller_admin: Any, scheduler: DatabaseScheduler, settings: Any
) -> None:
    before = scheduler.next_run_at(NIGHTLY_SYNC)
    assert (before.hour, before.minute) == (settings.SYNC_HOUR_UTC, 0)
    hour = other_hour(datetime.now(UTC), settings.SYNC_HOUR_UTC)

    client.force_login(reseller_admin)
    response = client.post(URL, {"entry": NIGHTLY_SYNC, "hour": str(hour), "minute": "30"})
    assert response.status_code == 302

    after = scheduler.next_run_at(NIGHTLY_SYNC)
    assert (after.hour, after.minute) == (hour, 30)
    assert timedelta(0) < after - datetime.now(UTC) <= timedelta(days=1)
    # A moved entry waits for its new time instead of firing at once.
    assert scheduler.schedule[NIGHTLY_SYNC].is_due().is_due is False
    event = audit_events(action_prefix="portal.schedule.").first()
    assert event is not None and event.actor == reseller_admin
    assert event.data["entry"] == NIGHTLY_SYNC and event.data["after"] == {"minute": "30", "hour": str(hour)}
    page = client.get(URL).content.decode()
    assert f"minute 30, hour {hour} UTC" in page


@pytest.mark.parametrize("hour", ["24", "x", "-1", "", "1-30"])
def test_a_bad_hour_is_refused_on_the_field(client: Any, reseller_admin: Any, hour: str) -> None:
    client.force_login(reseller_admin)
    response = client.post(URL, {"entry": NIGHTLY_SYNC, "hour": hour, "minute": "0"})
    assert response.status_code == 400
    assert b'data-testid="hour-error"' in response.content
    assert b"Enter an hour from 0 to 23" in response.content
    assert ScheduleEntry.objects.get(name=NIGHTLY_SYNC).hour != hour
    assert not audit_events(action_prefix="portal.schedule.").exists()


def test_a_bad_sweeper_interval_is_refused_on_the_field(client: Any, reseller_admin: Any) -> None:
    client.force_login(reseller_admin)
    response = client.post(URL, {"entry": "billing-transfer-sweep", "every_seconds": "0"})
    assert response.status_code == 400
    assert b'data-testid="every_seconds-error"' in response.content
    response = client.post(URL, {"entry": "billing-transfer-sweep", "every_seconds": "120"})
    assert response.status_code == 302
    assert ScheduleEntry.objects.get(name="billing-transfer-sweep").every_seconds == 120


def test_the_heartbeat_cannot_be_retimed(client: Any, reseller_admin: Any) -> None:
    client.force_login(reseller_admin)
    response = client.post(URL, {"entry": "portal-heartbeat", "every_seconds": "600"})
    assert response.status_code == 400
    assert b'data-testid="schedule-error"' in response.content


@pytest.mark.parametrize("persona", ["reseller_billing", "reseller_support", "customer_owner", "no_role_user"])
def test_only_reseller_admins_see_or_change_the_schedule(client: Any, request: Any, persona: str) -> None:
    client.force_login(request.getfixturevalue(persona))
    assert client.get(URL).status_code == 403
    response = client.post(URL, {"entry": NIGHTLY_SYNC, "hour": "5", "minute": "0"})
    assert response.status_code == 403
    assert not ScheduleEntry.objects.filter(name=NIGHTLY_SYNC, hour="5").exists()


def test_anonymous_visitors_go_to_the_login_page(client: Any) -> None:
    response = client.get(URL)
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_the_sync_page_shows_the_next_nightly_sync(client: Any, reseller_billing: Any, settings: Any) -> None:
    client.force_login(reseller_billing)
    page = client.get(reverse("billing:sync_runs")).content.decode()
    assert f"{settings.SYNC_HOUR_UTC:02d}:00 UTC" in page.split('data-testid="next-sync"')[1].split("</p>")[0]
    row = ScheduleEntry.objects.get(name=NIGHTLY_SYNC)
    row.hour, row.minute = "7", "45"
    row.save()
    page = client.get(reverse("billing:sync_runs")).content.decode()
    assert "07:45 UTC" in page.split('data-testid="next-sync"')[1].split("</p>")[0]


def test_a_second_beat_on_the_same_schedule_file_refuses_to_start(scheduler: DatabaseScheduler) -> None:
    with pytest.raises(RuntimeError, match="only one may run"):
        DatabaseScheduler(app=app, schedule_filename=scheduler.schedule_filename)
