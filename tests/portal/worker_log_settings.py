"""Settings for a worker under test that also loads the test-only tasks."""

from portal.settings_test import *  # noqa: F403

CELERY_IMPORTS = ["tests.portal.worker_log_tasks"]
