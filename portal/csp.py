"""Browser policies: the Permissions-Policy header on every answer, and the endpoint that
receives the browser's Content-Security-Policy violation reports.

The Content-Security-Policy itself is django-csp's middleware with the policy in
``portal/settings.py`` (CONTENT_SECURITY_POLICY); see docs/security.md."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

logger = logging.getLogger("portal.csp")

# Features no page of the portal uses: nobody may use them, not even our own origin.
# Only names Chromium knows (an unknown name makes the browser log an error on every page).
DEFAULT_PERMISSIONS_POLICY: dict[str, tuple[str, ...]] = {
    "accelerometer": (),
    "autoplay": (),
    "browsing-topics": (),
    "camera": (),
    "display-capture": (),
    "encrypted-media": (),
    "fullscreen": ("self",),
    "geolocation": (),
    "gyroscope": (),
    "hid": (),
    "idle-detection": (),
    "magnetometer": (),
    "microphone": (),
    "midi": (),
    "payment": (),
    "picture-in-picture": (),
    "publickey-credentials-get": (),
    "screen-wake-lock": (),
    "serial": (),
    "usb": (),
    "xr-spatial-tracking": (),
}


def permissions_policy_header(policy: dict[str, tuple[str, ...]] | None = None) -> str:
    """``camera=(), fullscreen=(self), ...``: the structured-header form browsers read."""
    policy = DEFAULT_PERMISSIONS_POLICY if policy is None else policy
    return ", ".join(f"{feature}=({' '.join(allow)})" for feature, allow in policy.items())


class PermissionsPolicyMiddleware:
    """Sets Permissions-Policy on every answer that does not set its own (settings.PERMISSIONS_POLICY)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.header = permissions_policy_header(getattr(settings, "PERMISSIONS_POLICY", None))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Permissions-Policy" not in response:
            response["Permissions-Policy"] = self.header
        return response


# --- violation reports --------------------------------------------------------------------

# A real report is well under 2 KB; browsers batch a few. Anything bigger is not read at all.
REPORT_MAX_BYTES = 16 * 1024
REPORT_CONTENT_TYPES = ("application/csp-report", "application/reports+json", "application/json")
_UNSAFE = re.compile(r"[^\w./:@+\-'\s]")
_MAX_LOGGED = 3


def _clean(value: Any, limit: int = 120) -> str:
    """A short, single-line, printable text (reports are attacker-controlled)."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return _UNSAFE.sub("?", " ".join(text.split()))[:limit]


def _where(url: Any) -> str:
    """A URL without query string, fragment or credentials: those may carry tokens."""
    if not isinstance(url, str):
        return ""
    if ":" in url and not url.startswith(("http:", "https:", "ws:", "wss:")):
        return _clean(url.split(":", 1)[0] + ":")  # inline, eval, data:, blob: ... : the scheme only
    try:
        parts = urlsplit(url)
    except ValueError:
        return "?"
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    prefix = f"{parts.scheme}://{host}{port}" if parts.scheme else ""
    return _clean(prefix + parts.path)


def _reports(payload: Any) -> list[dict[str, Any]]:
    """The violations of either format: ``{"csp-report": {...}}`` (report-uri) or a list of
    ``{"type": "csp-violation", "body": {...}}`` (the Reporting API)."""
    if isinstance(payload, dict) and isinstance(payload.get("csp-report"), dict):
        return [payload["csp-report"]]
    if isinstance(payload, list):
        return [
            item["body"]
            for item in payload
            if isinstance(item, dict) and isinstance(item.get("body"), dict) and item.get("type") == "csp-violation"
        ]
    return []


def _summary(report: dict[str, Any]) -> str:
    directive = (
        report.get("effective-directive") or report.get("effectiveDirective") or report.get("violated-directive")
    )
    blocked = report.get("blocked-uri", report.get("blockedURL"))
    document = report.get("document-uri", report.get("documentURL"))
    source = report.get("source-file", report.get("sourceFile"))
    line = report.get("line-number", report.get("lineNumber"))
    text = f"{_clean(directive, 60)} blocked={_where(blocked) or '-'} page={_where(document) or '-'}"
    if source:
        text += f" source={_where(source)}"
        if isinstance(line, int) and not isinstance(line, bool):
            text += f":{line}"
    return text  # no script samples: they may quote page data


@csrf_exempt  # browsers send reports without a token; the endpoint only logs
@require_POST
def csp_report(request: HttpRequest) -> HttpResponse:
    """Logs a redacted one-line summary at WARNING; 204 for anything it could read or not."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > REPORT_MAX_BYTES:
        return HttpResponse(status=413)
    content_type = (request.content_type or "").lower()
    if content_type not in REPORT_CONTENT_TYPES:
        return HttpResponse(status=415)
    body = request.read(REPORT_MAX_BYTES + 1)
    if len(body) > REPORT_MAX_BYTES:
        return HttpResponse(status=413)
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        payload = None
    reports = _reports(payload)
    if not reports:
        logger.warning("csp report unreadable (%s, %d bytes)", content_type, len(body))
        return HttpResponse(status=204)
    shown = "; ".join(_summary(r) for r in reports[:_MAX_LOGGED])
    more = f" (+{len(reports) - _MAX_LOGGED} more)" if len(reports) > _MAX_LOGGED else ""
    logger.warning("csp violation: %s%s", shown, more)
    return HttpResponse(status=204)
