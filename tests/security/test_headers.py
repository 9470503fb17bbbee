"""Every page carries a strict Content-Security-Policy and a Permissions-Policy, and no page
needs more: no inline script, no event-handler attribute, no style attribute or element.

Pages come from the URL resolver (the walk of tests/test_isolation.py, as in
tests/security/test_no_5xx.py), so a page added tomorrow is checked without editing this file.
Each is opened as an anonymous visitor, a reseller admin (past two-factor) and a customer owner;
the HTML is read with html.parser. The browser side (a real Chromium reporting violations) is
tests/browser/test_csp.py. The report endpoint's own behaviour is at the end."""

from __future__ import annotations

import json
import logging
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client

from tests.factories import TenantFactory, TransferFactory, balance_history
from tests.security.logins import sign_in
from tests.security.test_no_5xx import _body, _filled, html_routes

pytestmark = pytest.mark.django_db

REPORT_URL = "/csp-report/"
# Directive -> what it must be exactly (the policy of portal/settings.py, as a browser reads it).
REQUIRED = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "font-src": {"'self'"},
    "connect-src": {"'self'"},
    "frame-ancestors": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
    "object-src": {"'none'"},
    "report-uri": {REPORT_URL},
}
DENIED_FEATURES = ("camera", "microphone", "geolocation", "payment", "usb")


def csp_directives(header: str) -> dict[str, set[str]]:
    directives: dict[str, set[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = set(words[1:])
    return directives


def header_problems(response: Any, *, page: bool = True) -> list[str]:
    problems = []
    header = response.headers.get("Content-Security-Policy")
    if not header:
        problems.append("no Content-Security-Policy")
    else:
        directives = csp_directives(header)
        for name, expected in REQUIRED.items():
            if directives.get(name) != expected:
                problems.append(f"CSP {name} is {sorted(directives.get(name, []))}, not {sorted(expected)}")
        for name, values in directives.items():
            unsafe = {v for v in values if v.startswith("'unsafe-")}
            if unsafe:
                problems.append(f"CSP {name} allows {sorted(unsafe)}")
    policy = response.headers.get("Permissions-Policy", "")
    features = {item.split("=", 1)[0].strip(): item.split("=", 1)[-1].strip() for item in policy.split(",") if item}
    for feature in DENIED_FEATURES:
        if features.get(feature) != "()":
            problems.append(f"Permissions-Policy does not deny {feature} ({policy[:80]!r})")
    if "interest-cohort" in features:
        problems.append("Permissions-Policy names the obsolete interest-cohort")
    if not page:
        return problems
    # The headers pages had before stay (static files leave the stack before the frame check).
    if response.headers.get("X-Frame-Options") != "DENY":
        problems.append("X-Frame-Options is not DENY")
    if response.headers.get("X-Content-Type-Options") != "nosniff":
        problems.append("X-Content-Type-Options is not nosniff")
    if response.headers.get("Referrer-Policy") != "same-origin":
        problems.append("Referrer-Policy is not same-origin")
    return problems


class InlineCode(HTMLParser):
    """What a page would need 'unsafe-inline' for: inline scripts, handlers, styles, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.tags = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.found.append(f"<script> without src at line {self.getpos()[0]}")
        if tag == "style":
            self.found.append(f"<style> element at line {self.getpos()[0]}")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…> at line {self.getpos()[0]}")
            elif name == "style":
                self.found.append(f"<{tag} style={value!r}> at line {self.getpos()[0]}")
            elif name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}=javascript:…> at line {self.getpos()[0]}")

    handle_startendtag = handle_starttag


def inline_code(html: str) -> tuple[list[str], int]:
    parser = InlineCode()
    parser.feed(html)
    parser.close()
    return parser.found, parser.tags


@pytest.fixture
def world(vox_connection: Any, customer_owner: Any, reseller_admin: Any) -> dict[str, Any]:
    """A tenant with history, a transfer, an operation that needs attention and a sync run, so
    the pages render their charts, job bars, confirm buttons and tables."""
    from billing.models import SyncRun
    from portal.jobs import job_create
    from tenants.models import TenantOperation

    tenant = customer_owner.membership.tenant
    tenant.connection = vox_connection
    tenant.save(update_fields=["connection"])
    balance_history(tenant, ["100", "90", "80"])
    transfer = TransferFactory(tenant=tenant, amount="10.00", reason="seed", completed_at=None)
    job = job_create(kind="tenants.freeze", title="Freeze", tenant_id=tenant.pk)
    operation = TenantOperation.objects.create(
        tenant=tenant, kind="freeze", state="needs_attention", job=job, last_error="The provider did not answer."
    )
    run = SyncRun.objects.create(connection=vox_connection, state="succeeded")
    ids = {
        "tenant_uuid": str(tenant.uuid),
        "transfer_uuid": str(transfer.uuid),
        "job_uuid": str(job.uuid),
        "operation_uuid": str(operation.uuid),
        "sync_run_uuid": str(run.uuid),
        "run_uuid": str(run.uuid),
        "member_id": str(customer_owner.membership.pk),
        "user_id": str(customer_owner.pk),
        "connection_uuid": str(vox_connection.uuid),
    }
    return {"ids": ids, "owner": customer_owner, "admin": reseller_admin, "connection": vox_connection}


def _is_html(response: Any) -> bool:
    return response.headers.get("Content-Type", "").startswith("text/html")


@pytest.mark.parametrize("persona", ["anonymous", "admin", "owner"])
def test_every_page_carries_the_policies_and_no_inline_code(world, persona) -> None:
    client = Client(raise_request_exception=False)
    failures: list[str] = []
    html_pages: list[str] = []
    answers = 0
    for route in html_routes():
        url = _filled(route, world["ids"])
        if url is None:
            continue
        if persona != "anonymous":
            sign_in(client, world[persona])
        response = client.get(url)
        answers += 1
        # Every answer, redirects and refusals included, carries the headers.
        failures.extend(f"{url} ({response.status_code}): {p}" for p in header_problems(response))
        if not _is_html(response) or response.status_code in (301, 302):
            continue
        found, tags = inline_code(_body(response).decode(errors="replace"))
        failures.extend(f"{url} ({response.status_code}): {f}" for f in found)
        if response.status_code == 200 and tags:
            html_pages.append(url)
    assert answers > 30
    # The walk must have reached real pages, not only their login redirects.
    assert len(html_pages) >= {"anonymous": 4, "admin": 30, "owner": 10}[persona], html_pages
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:60])


def test_the_pages_with_scripts_confirms_and_job_bars_are_checked_with_them(client, world) -> None:
    """The pages that used inline code before: the walk above sees them with that code in place."""
    sign_in(client, world["admin"])
    tenant = world["ids"]["tenant_uuid"]
    detail = client.get(f"/console/tenants/{tenant}/").content.decode()
    assert 'data-confirm="Abandon this operation?' in detail
    assert "data-job-bar" in detail and 'data-percent="0"' in detail
    assert "/static/js/live.js" in detail and "/static/js/confirm.js" in detail
    assert "/static/vendor/htmx/htmx.min.js" in detail and "includeIndicatorStyles" in detail
    assert "/static/css/tenants.css" in detail
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="balance-chart"' in detail
    quiet = TenantFactory(company_name="Quiet & <Co>", connection=world["connection"], status="active")
    freeze = client.get(f"/console/tenants/{quiet.uuid}/").content.decode()
    assert 'data-confirm="Freeze Quiet &amp; &lt;Co&gt;? Their services stop until unfrozen."' in freeze
    form = client.get("/console/tenants/new/").content.decode()
    assert "/static/js/tenant-form.js" in form and "data-voiceit-connections" in form
    for page in (detail, freeze, form):
        found, _tags = inline_code(page)
        assert not found, found


def test_the_django_admin_carries_the_policies_and_no_inline_code(world) -> None:
    """The admin (is_staff users only): its login page, index and every model's list and add page."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model

    client = Client(raise_request_exception=False)
    urls = ["/admin/login/"]
    response = client.get(urls[0])
    assert response.status_code == 200
    failures = [f"/admin/login/: {p}" for p in header_problems(response) + inline_code(response.content.decode())[0]]
    superuser = get_user_model().objects.create_superuser("root-csp", "root-csp@example.com", "x-Pass-123456")
    sign_in(client, superuser)
    for model in admin.site._registry:
        meta = model._meta
        urls += [f"/admin/{meta.app_label}/{meta.model_name}/", f"/admin/{meta.app_label}/{meta.model_name}/add/"]
    shown = 0
    for url in ["/admin/", *urls[1:]]:
        response = client.get(url)
        failures.extend(f"{url} ({response.status_code}): {p}" for p in header_problems(response))
        if response.status_code == 200 and _is_html(response):
            shown += 1
            failures.extend(f"{url}: {f}" for f in inline_code(response.content.decode())[0])
    assert shown >= 10, shown
    assert not failures, "\n".join(failures[:60])


def test_error_pages_carry_the_policies_and_no_inline_code(client, world) -> None:
    from django.template import loader

    missing = client.get("/no-such-page/")
    assert missing.status_code == 404
    assert not header_problems(missing)
    assert not inline_code(missing.content.decode())[0]
    sign_in(client, world["owner"])
    refused = client.get("/console/tenants/")
    assert refused.status_code == 403
    assert not header_problems(refused)
    assert not inline_code(refused.content.decode())[0]
    # The 500 page is rendered without a request (portal.views.error_500).
    found, tags = inline_code(loader.get_template("500.html").render())
    assert tags > 3 and not found, found


def test_static_files_and_api_answers_carry_the_policies_too(client, world) -> None:
    for url in ("/static/js/confirm.js", "/static/css/portal.css", "/healthz/live", "/api/v1/me"):
        response = client.get(url)
        problems = header_problems(response, page=not url.startswith("/static/"))
        assert not problems, (url, response.status_code, problems)


def test_the_api_docs_page_loads_its_start_up_script_from_a_file(client, world) -> None:
    sign_in(client, world["admin"])
    page = client.get("/api/docs/")
    assert page.status_code == 200
    found, _tags = inline_code(page.content.decode())
    assert not found, found
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


# --- the report endpoint ----------------------------------------------------------------------


def _report(**fields: Any) -> dict[str, Any]:
    return {
        "csp-report": {
            "document-uri": "https://portal.example/console/tenants/?q=secret-query#frag",
            "referrer": "",
            "violated-directive": "script-src-elem",
            "effective-directive": "script-src-elem",
            "original-policy": "default-src 'self'",
            "blocked-uri": "https://evil.example/x.js?token=abc123",
            "status-code": 200,
            "script-sample": "steal(document.cookie)",
            **fields,
        }
    }


def _warnings(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "portal.csp" and r.levelno == logging.WARNING]


def test_a_violation_report_is_logged_as_one_redacted_line(client, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="portal.csp")
    body = json.dumps(_report(**{"source-file": "https://portal.example/static/js/x.js?v=1", "line-number": 7}))
    response = client.post(REPORT_URL, data=body, content_type="application/csp-report")
    assert response.status_code == 204
    assert response.content == b""
    lines = _warnings(caplog)
    assert len(lines) == 1
    line = lines[0]
    assert "script-src-elem" in line
    assert "https://evil.example/x.js" in line and "/console/tenants/" in line and "x.js:7" in line
    for secret in ("token", "abc123", "secret-query", "frag", "cookie", "steal", "\n"):
        assert secret not in line


def test_reports_of_the_reporting_api_are_read_too(client, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="portal.csp")
    batch = [
        {
            "type": "csp-violation",
            "url": "https://portal.example/me/",
            "body": {
                "documentURL": f"https://portal.example/me/?n={i}",
                "effectiveDirective": "style-src-attr",
                "blockedURL": "inline",
                "disposition": "enforce",
            },
        }
        for i in range(5)
    ] + [{"type": "deprecation", "body": {"id": "x"}}]
    response = client.post(REPORT_URL, data=json.dumps(batch), content_type="application/reports+json")
    assert response.status_code == 204
    [line] = _warnings(caplog)
    assert line.count("style-src-attr") == 3 and "(+2 more)" in line and "blocked=inline" in line


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe\x00", b"[]", b"{}", b'{"csp-report": "x"}', b'[{"type": "csp-violation"}]', b"1e999"],
)
def test_junk_reports_answer_204_and_a_short_line(client, caplog, body) -> None:
    caplog.set_level(logging.WARNING, logger="portal.csp")
    response = client.post(REPORT_URL, data=body, content_type="application/csp-report")
    assert response.status_code == 204
    [line] = _warnings(caplog)
    assert line.startswith("csp report unreadable") and len(line) < 100


def test_hostile_report_fields_cannot_forge_log_lines(client, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="portal.csp")
    hostile = _report(**{"effective-directive": "x\n2026-01-01 FAKE ENTRY" * 50, "blocked-uri": ["not", "a", "url"]})
    response = client.post(REPORT_URL, data=json.dumps(hostile), content_type="application/csp-report")
    assert response.status_code == 204
    [line] = _warnings(caplog)
    assert "\n" not in line and len(line) < 400


def test_oversized_or_foreign_reports_are_refused_without_reading(client, caplog) -> None:
    big = json.dumps(_report(**{"script-sample": "x" * 20000}))
    assert client.post(REPORT_URL, data=big, content_type="application/csp-report").status_code == 413
    assert client.post(REPORT_URL, data="{}", content_type="text/plain").status_code == 415
    assert client.get(REPORT_URL).status_code == 405
    assert not _warnings(caplog)


def test_the_report_endpoint_needs_no_login_and_no_csrf_token(world) -> None:
    client = Client(enforce_csrf_checks=True)
    body = json.dumps(_report())
    assert client.post(REPORT_URL, data=body, content_type="application/csp-report").status_code == 204
    sign_in(client, world["owner"])
    assert client.post(REPORT_URL, data=body, content_type="application/csp-report").status_code == 204


@pytest.mark.real_login
def test_a_session_waiting_for_its_second_factor_can_still_report(world, caplog) -> None:
    """Signed in with the password, code not given yet: the report is read, not redirected."""
    from tests.twofactor import PLAIN_FORCE_LOGIN, confirmed_device

    caplog.set_level(logging.WARNING, logger="portal.csp")
    client = Client()
    staff = world["admin"]
    confirmed_device(staff)
    PLAIN_FORCE_LOGIN(client, staff)
    assert client.get("/console/").status_code == 302  # the console waits for the code
    body = json.dumps(_report())
    assert client.post(REPORT_URL, data=body, content_type="application/csp-report").status_code == 204
    assert len(_warnings(caplog)) == 1
