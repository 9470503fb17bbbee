"""Prometheus metrics: the registry /metrics serves, the request metrics and the heartbeats.

The portal owns the registry and what it can measure itself (requests, the worker and beat
heartbeats). Apps above it add their own collectors with ``register_collector`` when Django
starts (the console adds the money and sync gauges, see ``console/metrics.py``); a collector
reads the database when /metrics is scraped, so its queries must be cheap and indexed.

Under gunicorn each worker process counts its own requests. With ``PROMETHEUS_MULTIPROC_DIR``
set (compose's web command sets it; deploy/gunicorn.conf.py empties the folder when
gunicorn starts), the request counter and histogram write to files in that folder and a scrape
adds up every worker's files, so any worker answers with the whole server's counts. The gauges
computed at scrape time (heartbeats, money and sync) stay collectors, read by whichever worker
answers. Without the variable the counts live in this process, as under ``runserver``.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from portal.health import HEARTBEATS, heartbeat_ages

# Read once, as prometheus_client does when it is first imported: it decides how values are kept.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

# The collectors computed at scrape time; in single-process mode also the request metrics.
registry = CollectorRegistry()
# In multi-process mode the request metrics belong to no registry: their values are in the
# folder's files, which MultiProcessCollector reads (registering them too would count twice).
_request_registry = None if MULTIPROCESS_DIR else registry

REQUESTS = Counter(
    "portal_http_requests",
    "HTTP requests answered, by view and status class.",
    ["view", "status"],
    registry=_request_registry,
)
LATENCY = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer an HTTP request, by view.",
    ["view"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=_request_registry,
)

_collectors: dict[str, Collector] = {}


def register_collector(name: str, collector: Collector) -> None:
    """Adds (or replaces) a collector by name, so registering twice is harmless."""
    previous = _collectors.pop(name, None)
    if previous is not None:
        registry.unregister(previous)
    registry.register(collector)
    _collectors[name] = collector


class HeartbeatCollector:
    """The age of the last beat and worker heartbeat (portal.heartbeat, every minute)."""

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "portal_heartbeat_age_seconds",
            "Seconds since the beat last scheduled the heartbeat task (beat) or a worker last ran it (worker).",
            labels=["process"],
        )
        try:
            ages = heartbeat_ages()
        except Exception:  # noqa: BLE001 - an unreadable heartbeat is reported as absent, not as a failed scrape
            ages = dict.fromkeys(HEARTBEATS)
        for process, age in ages.items():
            if age is not None:
                gauge.add_metric([process], age)
        yield gauge


register_collector("portal.heartbeats", HeartbeatCollector())


def _view_label(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"  # 404s of unknown paths: one label, whatever the path was
    return match.view_name  # "app:name", or the dotted path of a view without a name


class RequestMetricsMiddleware:
    """Counts requests and their latency, labelled by the view name (never the path, so the
    label set stays as small as the URL configuration) and the status class (2xx, 4xx...)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        status = "5xx"
        try:
            response = self.get_response(request)
            status = f"{response.status_code // 100}xx"
            return response
        finally:
            view = _view_label(request)
            REQUESTS.labels(view=view, status=status).inc()
            LATENCY.labels(view=view).observe(time.perf_counter() - started)


def token_matches(request: HttpRequest) -> bool | None:
    """None when no METRICS_TOKEN is configured, else whether the request's bearer token is it."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: every worker's request metrics from the multi-process folder plus
    the collectors computed now, or, in single-process mode, this process's registry."""
    if not MULTIPROCESS_DIR:
        return registry
    scrape = CollectorRegistry()
    multiprocess.MultiProcessCollector(scrape, path=MULTIPROCESS_DIR)
    for collector in _collectors.values():
        scrape.register(collector)
    return scrape


def render_metrics() -> bytes:
    return generate_latest(scrape_registry())
