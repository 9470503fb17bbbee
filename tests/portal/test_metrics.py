"""/metrics: the Prometheus text an operator's scraper reads, behind a bearer token."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests-0123456789"


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with override_settings(METRICS_TOKEN=TOKEN):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_is_not_found_without_a_configured_token(client) -> None:
    with override_settings(METRICS_TOKEN=""):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 404
    # The same request once a token is configured: the endpoint is there, only switched off.
    with override_settings(METRICS_TOKEN=TOKEN):
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_metrics_refuses_a_wrong_or_missing_token(client) -> None:
    with override_settings(METRICS_TOKEN=TOKEN):
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token").status_code == 403
        assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 403
        assert client.get("/metrics").status_code == 403


def test_metrics_report_transfers_unresolved_age_sync_age_and_heartbeats(client) -> None:
    from billing.models import SyncRun
    from portal.health import record_heartbeat
    from tests.factories import ProviderConnectionFactory, TenantFactory, TransferFactory

    now = timezone.now()
    connection = ProviderConnectionFactory(name="Metrics Voximplant")
    tenant = TenantFactory(connection=connection)
    TransferFactory.create_batch(2, tenant=tenant, state="pending")
    TransferFactory(tenant=tenant, state="succeeded")
    TransferFactory(tenant=tenant, state="needs_review", created_at=now - timedelta(hours=2))
    TransferFactory(tenant=tenant, state="unknown", created_at=now - timedelta(minutes=5))
    SyncRun.objects.create(
        connection=connection,
        state="succeeded",
        started_at=now - timedelta(hours=3, minutes=5),
        finished_at=now - timedelta(hours=3),
    )
    # A later run that failed does not count as a successful sync.
    SyncRun.objects.create(
        connection=connection,
        state="failed",
        started_at=now - timedelta(hours=1),
        finished_at=now - timedelta(minutes=50),
    )
    record_heartbeat("worker", at=now - timedelta(seconds=30))
    record_heartbeat("beat", at=now - timedelta(seconds=20))

    samples = scrape(client)

    assert samples[("portal_business_metrics_up", ())] == 1
    assert samples[("portal_transfers_open", (("state", "pending"),))] == 2
    assert samples[("portal_transfers_open", (("state", "needs_review"),))] == 1
    assert samples[("portal_transfers_open", (("state", "unknown"),))] == 1
    assert samples[("portal_transfers_open", (("state", "sending"),))] == 0
    assert samples[("portal_transfers_created_24h", (("state", "succeeded"),))] == 1
    assert samples[("portal_transfers_created_24h", (("state", "pending"),))] == 2
    assert samples[("portal_transfers_created_24h", (("state", "failed"),))] == 0
    assert 7200 <= samples[("portal_transfer_oldest_unresolved_age_seconds", ())] < 7200 + 60
    sync_age = samples[("portal_balance_sync_last_success_age_seconds", (("connection", "Metrics Voximplant"),))]
    assert 3 * 3600 <= sync_age < 3 * 3600 + 60
    assert 30 <= samples[("portal_heartbeat_age_seconds", (("process", "worker"),))] < 90
    assert 20 <= samples[("portal_heartbeat_age_seconds", (("process", "beat"),))] < 80


def test_metrics_oldest_unresolved_age_is_zero_without_unresolved_transfers(client) -> None:
    from tests.factories import TransferFactory

    TransferFactory(state="pending", created_at=timezone.now() - timedelta(days=3))
    assert scrape(client)[("portal_transfer_oldest_unresolved_age_seconds", ())] == 0


def test_a_page_request_increments_its_request_counter_and_latency(client) -> None:
    key = ("portal_http_requests_total", (("status", "2xx"), ("view", "login")))
    latency = ("portal_http_request_duration_seconds_count", (("view", "login"),))
    before = scrape(client)
    assert client.get("/accounts/login/").status_code == 200
    assert client.get("/accounts/login/").status_code == 200
    after = scrape(client)
    assert after[key] - before.get(key, 0) == 2
    assert after[latency] - before.get(latency, 0) == 2


def test_unknown_paths_share_one_request_label(client) -> None:
    key = ("portal_http_requests_total", (("status", "4xx"), ("view", "unmatched")))
    before = scrape(client)
    client.get("/no-such-page-1")
    client.get("/no-such-page-2")
    after = scrape(client)
    assert after[key] - before.get(key, 0) == 2
    assert not any("no-such-page" in value for _, labels in after for _, value in labels)
