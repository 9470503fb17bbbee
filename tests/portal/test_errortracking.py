"""Error tracking: off without SENTRY_DSN; with it, events leave the process without secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from portal.errortracking import init_error_tracking

ROOT = Path(__file__).resolve().parents[2]
DSN = "https://publickey@errors.example.invalid/42"

BEARER_TOKEN = "f9a8b7c6d5e4f3a2b1c0d9e8"
API_KEY = "ak-live-7Q2w9E4r6T8yU1i3"
PASSWORD = "Tr0ub4dor-and-3horse"
SESSION_COOKIE = "sess9x8y7z6w5v4u3t2s1r0q"
PLANTED = [BEARER_TOKEN, API_KEY, PASSWORD, SESSION_COOKIE]


@csrf_exempt
def failing_provider_call(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    password = body["password"]
    authorization = request.headers["Authorization"]
    raise RuntimeError(
        f"provider refused login {body['login']} with password={password} "
        f"api_key={request.GET['api_key']} and Authorization: {authorization}"
    )


urlpatterns = [path("provider-call/", failing_provider_call)]


class KeptEnvelopes(Transport):
    """Keeps what the SDK would send, instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


@pytest.fixture(autouse=True)
def _sdk_stopped_afterwards() -> Iterator[None]:
    yield
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close()
    for scope in (sentry_sdk.get_current_scope(), sentry_sdk.get_isolation_scope(), sentry_sdk.get_global_scope()):
        scope.clear()
        scope.set_client(None)
    assert not sentry_sdk.get_client().is_active()


def sent_items(transport: KeptEnvelopes) -> list[dict[str, Any]]:
    sentry_sdk.flush()
    return [
        item.payload.json
        for envelope in transport.envelopes
        for item in envelope.items
        if item.payload.json is not None and item.type in ("event", "transaction")
    ]


def post_failing_request(client: Client) -> HttpResponse:
    client.cookies["sessionid"] = SESSION_COOKIE
    return client.post(
        f"/provider-call/?tenant=acme&api_key={API_KEY}",
        data=json.dumps({"login": "acme", "password": PASSWORD}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {BEARER_TOKEN}",
        HTTP_X_TENANT="acme",
    )


def assert_sent_without_secrets(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The error event among what was sent, checked for the planted secrets."""
    errors = [item for item in items if item.get("exception")]
    assert errors, items
    error = errors[0]
    # Still useful: what failed, where, and with which local variables.
    failure = error["exception"]["values"][-1]
    assert failure["type"] == "RuntimeError"
    assert "provider refused login acme" in failure["value"]
    frames = failure["stacktrace"]["frames"]
    assert any(frame.get("function") == "failing_provider_call" and frame.get("vars") for frame in frames)
    assert error["request"]["data"]["login"] == "acme"

    sent = json.dumps(items)
    for secret in PLANTED:
        assert secret not in sent, secret
    assert "[REDACTED]" in sent
    return error


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__, SENTRY_DSN=DSN)
def test_an_error_in_a_view_reaches_error_tracking_without_the_secrets_of_its_request() -> None:
    transport = KeptEnvelopes()
    assert init_error_tracking(transport=transport)

    response = post_failing_request(Client(raise_request_exception=False))

    assert response.status_code == 500
    assert_sent_without_secrets(sent_items(transport))


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__, SENTRY_DSN=DSN, SENTRY_TRACES_SAMPLE_RATE=1.0)
def test_through_the_wsgi_application_the_request_headers_go_without_authorization_and_cookies() -> None:
    """Served as gunicorn serves it, the event also carries the URL, the query string and the
    headers, and the request's transaction is sent."""
    transport = KeptEnvelopes()
    assert init_error_tracking(transport=transport)
    application = get_wsgi_application()
    statuses: list[str] = []

    class WsgiClient(Client):
        def request(self, **request: Any) -> HttpResponse:
            environ = self._base_environ(**request)
            # As the test client does: the test's database connection stays open across the request.
            signals.request_started.disconnect(close_old_connections)
            signals.request_finished.disconnect(close_old_connections)
            try:
                body = b"".join(application(environ, lambda status, headers, exc_info=None: statuses.append(status)))
            finally:
                signals.request_started.connect(close_old_connections)
                signals.request_finished.connect(close_old_connections)
            return HttpResponse(body, status=int(statuses[-1].split()[0]))

    response = post_failing_request(WsgiClient())

    assert response.status_code == 500
    items = sent_items(transport)
    error = assert_sent_without_secrets(items)
    assert error["request"]["url"].endswith("/provider-call/")
    assert "tenant=acme" in error["request"]["query_string"]
    headers = {name.lower(): value for name, value in error["request"]["headers"].items()}
    assert headers.get("x-tenant") == "acme"
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert any(item.get("type") == "transaction" for item in items)


@override_settings(SENTRY_DSN="")
def test_without_a_dsn_error_tracking_stays_off() -> None:
    assert init_error_tracking(transport=KeptEnvelopes()) is False
    assert not sentry_sdk.get_client().is_active()


def start_portal(tmp_path: Path, **env: str) -> dict[str, Any]:
    """What a freshly started portal process (Django loaded, as the web process does) reports."""
    script = (
        "import json, sys, django\n"
        "django.setup()\n"
        "imported = 'sentry_sdk' in sys.modules\n"
        "import sentry_sdk\n"
        "client = sentry_sdk.get_client()\n"
        "print(json.dumps({'imported': imported, 'active': client.is_active(),\n"
        "    'integrations': sorted(getattr(client, 'integrations', {})),\n"
        "    'pii': client.should_send_default_pii(), 'environment': client.options.get('environment')}))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "DJANGO_"))}
    base.update(env, DJANGO_SETTINGS_MODULE="portal.settings_test", PORTAL_VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_a_portal_started_without_a_dsn_does_not_load_error_tracking(tmp_path: Path) -> None:
    report = start_portal(tmp_path)
    assert report["imported"] is False
    assert report["active"] is False


def test_a_portal_started_with_a_dsn_from_a_file_tracks_errors_without_personal_data(tmp_path: Path) -> None:
    dsn_file = tmp_path / "sentry_dsn"
    dsn_file.write_text(DSN + "\n")
    report = start_portal(tmp_path, SENTRY_DSN_FILE=str(dsn_file), SENTRY_ENVIRONMENT="staging")
    assert report["active"] is True
    assert {"django", "celery"} <= set(report["integrations"])
    assert report["pii"] is False
    assert report["environment"] == "staging"


def test_a_bad_dsn_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "DJANGO_"))}
    base.update(DJANGO_SETTINGS_MODULE="portal.settings_test", PORTAL_VAR_DIR=str(tmp_path), SENTRY_DSN="not-a-dsn")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SENTRY_DSN is not a valid Sentry DSN" in result.stderr
