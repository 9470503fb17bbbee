import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_healthz_reports_each_dependency(client, sandbox) -> None:
    with override_settings(VOXIMPLANT_BASE_URL=sandbox.base_url):
        response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ok"] is True
    assert set(body["checks"]) == {"database", "broker", "provider"}
    assert all(check["ok"] for check in body["checks"].values())


def test_healthz_is_503_when_the_provider_is_unreachable(client) -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with override_settings(VOXIMPLANT_BASE_URL=f"http://127.0.0.1:{port}"):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["provider"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
