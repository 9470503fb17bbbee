import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    task_ignore_result=True,
    timezone="UTC",
    worker_prefetch_multiplier=1,
    # Shorter than the broker's visibility timeout (3600 s), longer than any provider timeout.
    task_soft_time_limit=900,
    task_time_limit=1200,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_connection_retry_on_startup=True,
)
app.autodiscover_tasks()

# Billing's periodic work (billing/tasks.py); each entry is safe to fire twice (DB claims/locks).
from celery.schedules import crontab  # noqa: E402
from django.conf import settings as _settings  # noqa: E402

app.conf.beat_schedule = {
    **(app.conf.beat_schedule or {}),
    "billing-sync-nightly": {"task": "billing.sync_nightly", "schedule": crontab(minute=0, hour=_settings.SYNC_HOUR_UTC)},
    "billing-transfer-sweep": {"task": "billing.transfer_sweep", "schedule": 60.0},
    "billing-reconcile-nightly": {
        "task": "billing.reconcile_nightly",
        "schedule": crontab(minute=30, hour=_settings.BILLING_RECONCILE_HOUR_UTC),
    },
    "billing-low-balance-alerts": {"task": "billing.low_balance_alerts", "schedule": 300.0},
}


def ensure_broker_folders() -> None:
    """The filesystem transport needs its folders before the first message."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder"):
        folder = options.get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
