"""Optional error tracking (Sentry), with secrets taken out before anything leaves the process.

Nothing happens unless ``SENTRY_DSN`` is set: the SDK is not even imported. With a DSN, the
web process (``PortalConfig.ready()``) and the Celery worker (its ``celeryd_init`` signal)
start the SDK with the Django and Celery integrations and without personal data. Every
event, transaction and breadcrumb then passes through the same redaction as the log lines
(``portal.logs.redact_value``): the message, the exception values, the request's query
string, body, headers and cookies, the extra fields, the breadcrumbs and the local variables
of every frame. The Authorization and Cookie headers are dropped whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from portal.logs import redact_value

if TYPE_CHECKING:
    from sentry_sdk._types import Breadcrumb, Event

# Request headers that never leave the process, whatever their value looks like.
DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def init_error_tracking(*, transport: Any = None) -> bool:
    """Start error tracking when ``SENTRY_DSN`` is set; True when it is running.

    Starting it again in a process where it runs already does nothing, so the worker, which
    starts it early and then loads Django, starts it once. ``transport`` replaces the HTTP
    transport (the tests keep the envelopes in memory)."""
    from django.conf import settings

    dsn = getattr(settings, "SENTRY_DSN", "")
    if not dsn:
        return False

    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.redis import RedisIntegration
    from sentry_sdk.utils import BadDsn

    if sentry_sdk.get_client().is_active():
        return True
    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    try:
        sentry_sdk.init(
            dsn=dsn,
            environment=settings.SENTRY_ENVIRONMENT or None,
            traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
            # No personal data: left unset, the SDK sends no user, cookies or IP addresses and
            # keeps its own scrubber on (setting send_default_pii, even to False, is deprecated).
            integrations=[DjangoIntegration(), CeleryIntegration()],
            # Redis breadcrumbs carry cache keys, and a session's cache key is its session id.
            disabled_integrations=[RedisIntegration()],
            before_send=scrub_event,
            before_send_transaction=scrub_event,
            before_breadcrumb=scrub_breadcrumb,
            **options,
        )
    except BadDsn:
        # The DSN itself is not repeated: it holds the project's key.
        raise ImproperlyConfigured("SENTRY_DSN is not a valid Sentry DSN") from None
    return True


def scrub_event(event: Event, hint: dict[str, Any] | None = None) -> Event:
    """The event with the secret headers dropped and every string in it redacted."""
    request: Any = event.get("request")
    if isinstance(request, dict):
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                name: value for name, value in headers.items() if str(name).lower() not in DROPPED_HEADERS
            }
    scrubbed: Event = redact_value(event)
    return scrubbed


def scrub_breadcrumb(crumb: Breadcrumb, hint: dict[str, Any] | None = None) -> Breadcrumb | None:
    """Redacted; a cache or Redis breadcrumb is dropped whole (its keys hold session ids)."""
    if str(crumb.get("category") or "").startswith(("redis", "cache")):
        return None
    scrubbed: Breadcrumb = redact_value(crumb)
    return scrubbed
