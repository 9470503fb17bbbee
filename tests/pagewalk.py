"""Every HTML page of a seeded world, in a real browser: the list of pages a user can open
(found from the URL resolver the way tests/test_isolation.py walks it), signing a browser in
as a user without the password pages, and axe-core (static/vendor/axe-core, served by the test
server like any static file) run on the page shown.

Used by tests/browser/test_accessibility.py."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.test import Client

from tests.test_isolation import PUBLIC, all_routes, fill, missing_value, values_for

AXE_PATH = "vendor/axe-core/axe.min.js"
# Impacts that fail a test; "minor" and "moderate" findings are printed by nobody.
BLOCKING_IMPACTS = ("serious", "critical")
# Pages the walk does not open: leaving them signs the user out or downloads a file.
SKIPPED_NAMES = {"logout", "two_factor_reauth"}


def signed_in_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)  # tests/conftest.py: also past the second factor
    return client


def sign_in_browser(page: Any, live_server: Any, client: Client) -> None:
    """The browser gets the test client's session cookie: the same signed-in session."""
    page.context.clear_cookies()
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )


def html_pages(client: Client, candidates: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Paths of every page (outside the admin and the API) that answers this client 200 with
    HTML. A route with ids is filled with the first candidate id that opens it."""
    pages: list[str] = []
    for route in all_routes():
        if route.is_admin or route.is_api or route.is_regex or route.name in SKIPPED_NAMES:
            continue
        params = route.params
        first_values = [values_for(p, candidates) or [missing_value(p[0])] for p in params]
        # One parameter: try each candidate; several: the first of each (enough for the walk).
        tries = [[v] for v in first_values[0]] if len(params) == 1 else [[vs[0] for vs in first_values]]
        for values in tries:
            url = fill(route, {name: value for (_, name), value in zip(params, values, strict=True)})
            response = client.get(url)
            if response.status_code == 200 and response.get("Content-Type", "").startswith("text/html"):
                pages.append(url)
                break
    return sorted(set(pages))


def public_pages() -> list[str]:
    """Pages anyone opens (the sign-in and password-reset pages) that have no ids."""
    client = Client()
    found = []
    for route in all_routes():
        if route.name not in PUBLIC or route.params or route.is_regex or route.name in SKIPPED_NAMES:
            continue
        url = fill(route, {})
        response = client.get(url)
        if response.status_code == 200 and response.get("Content-Type", "").startswith("text/html"):
            found.append(url)
    return found


def run_axe(page: Any, live_server: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page shown, as an external script of the page's own origin
    (the Content-Security-Policy allows scripts from 'self' only)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=f"{live_server.url}{settings.STATIC_URL}{AXE_PATH}")
    # page.evaluate runs through the DevTools protocol, which the policy does not govern.
    results = page.evaluate(
        """async () => {
          const r = await axe.run(document, {resultTypes: ["violations"]});
          return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary}))}));
        }"""
    )
    return list(results)


def blocking(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in BLOCKING_IMPACTS]


def describe(url: str, violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{url}: [{v['impact']}] {v['id']}: {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']}: {(node['summary'] or '').splitlines()[-1:]}")
    return "\n".join(lines)
