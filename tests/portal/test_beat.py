from portal.celery import app


def test_every_beat_entry_names_a_registered_task() -> None:
    app.loader.import_default_modules()
    schedule = app.conf.beat_schedule
    assert {"billing-sync-nightly", "billing-transfer-sweep", "tenants-sweep-operations"} <= set(schedule)
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, name
