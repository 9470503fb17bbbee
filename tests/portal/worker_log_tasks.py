"""A task that logs planted secrets, for the tests of the worker's log lines.

The worker under test loads it through ``tests.portal.worker_log_settings``.
"""

import logging

from celery import shared_task

BEARER = "Bearer f9a8b7c6d5e4f3a2b1c0"
API_KEY = "ak-live-7Q2w9E4r6T8y"
PASSWORD = 'Tr0ub4dor"and\\3horse'
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZW5hbnQtNDIifQ.c2lnbmVkLWJ5LXRoZS1wcm92aWRlcg"
# What must never appear in a log line, whole or in part.
PLANTED = ["f9a8b7c6d5e4f3a2b1c0", API_KEY, "Tr0ub4dor", "3horse", JWT, "c2lnbmVkLWJ5LXRoZS1wcm92aWRlcg"]

logger = logging.getLogger("tests.worker_logs")


@shared_task(name="tests.log_planted_secrets")
def log_planted_secrets() -> None:
    """Logs every kind of planted secret, prints one, then fails with one in the error."""
    body = '{"login": "acme", "password": "' + PASSWORD.replace("\\", "\\\\").replace('"', '\\"') + '"}'
    logger.warning(
        "provider call with Authorization: %s returned %s",
        BEARER,
        body,
        extra={"url": f"https://provider.example/api?api_key={API_KEY}", "session": JWT, "tenant": "acme"},
    )
    print(f"debug: api_key={API_KEY}")
    raise RuntimeError(f"provider refused the call: api_key={API_KEY} token {JWT}")
