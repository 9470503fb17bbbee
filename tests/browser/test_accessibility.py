"""Every page of a seeded world, for a reseller admin and for a customer owner, in real
Chromium at a desktop width and at a phone's (390 x 844): nothing is wider than the phone's
screen, and axe-core finds no serious or critical accessibility violation. Each page also links
the portal's own icon, which the server answers (no 404 for /favicon.ico on every page)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.pagewalk import blocking, describe, html_pages, public_pages, run_axe, sign_in_browser, signed_in_client
from tests.test_isolation import world  # noqa: F401 (the seeded world, a pytest fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# The skip link, its target and the portal's icon, on every page.
LANDMARKS = """() => [
  document.querySelector("body > a.skip-link[href='#main']") ? "" : "no skip link first in the page",
  document.querySelector("main#main") ? "" : "no <main id=main>",
  document.querySelector("link[rel=icon][type='image/svg+xml']") ? "" : "no icon linked",
].filter(Boolean).join(", ")"""
# Form fields named by nothing but a placeholder (which disappears once something is typed).
UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea")]
  .filter(e => !["hidden", "submit", "button", "reset"].includes(e.type))
  .filter(e => !e.closest("label") && !(e.id && document.querySelector(`label[for="${CSS.escape(e.id)}"]`))
               && !e.getAttribute("aria-label") && !e.getAttribute("aria-labelledby"))
  .map(e => `${e.tagName.toLowerCase()}[name=${e.name}]`)"""


@pytest.fixture
def seeded(world: dict[str, Any], reseller_admin: Any) -> dict[str, Any]:  # noqa: F811
    """The isolation walk's world, plus a job half done (a progress bar on the pages) and an
    open drift item (a form in a table row)."""
    from billing.models import DriftItem
    from portal.jobs import job_advance, job_create, job_start

    victim = world["victim"]
    DriftItem.objects.create(
        connection=victim.connection,
        tenant=victim,
        kind=DriftItem.Kind.MISSING_IN_PORTAL,
        fingerprint="a11y-walk",
        provider_amount=Decimal("1.00"),
        currency="USD",
    )
    running = job_create(kind="billing.sync", title="Sync balances", total=4)
    job_start(job_id=running.pk)
    job_advance(job_id=running.pk, by=1, message="1 of 4 read")
    return {**world, "admin": reseller_admin}


def walk(page: Any, live_server: Any, urls: list[str], *, phone: bool) -> list[str]:
    problems: list[str] = []
    failed: list[str] = []  # anything the page asked for (icon, style, script) that was not there
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    for url in urls:
        response = page.goto(f"{live_server.url}{url}")
        assert response is not None and response.status == 200, (url, response and response.status)
        page.wait_for_load_state("networkidle")
        if failed:
            problems.append(f"{url}: {', '.join(failed)}")
            failed.clear()
        landmarks = page.evaluate(LANDMARKS)
        if landmarks:
            problems.append(f"{url}: {landmarks}")
        if phone:
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > PHONE["width"]:
                wide = page.evaluate(
                    """() => [...document.querySelectorAll("body *")]
                      .filter(e => e.getBoundingClientRect().right > innerWidth + 1)
                      .filter(e => !e.closest(".table-scroll"))
                      .slice(0, 4).map(e => e.tagName.toLowerCase() + (e.getAttribute("class") ? "." + e.getAttribute("class") : ""))"""
                )
                problems.append(f"{url}: {width} px wide at 390 px ({', '.join(wide)})")
        unlabelled = page.evaluate(UNLABELLED)
        if unlabelled:
            problems.append(f"{url}: fields without a label: {', '.join(unlabelled)}")
        found = blocking(run_axe(page, live_server))
        if found:
            problems.append(describe(url, found))
    return problems


def persona_pages(seeded: dict[str, Any], persona: str) -> tuple[Any, list[str]]:
    user = seeded["admin"] if persona == "staff" else seeded["victim_owner"]
    client = signed_in_client(user)
    urls = html_pages(client, seeded["candidates"])
    return client, urls


@pytest.mark.parametrize("persona", ["staff", "customer"])
@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_every_page_fits_a_phone_and_has_no_serious_accessibility_violation(
    browser, live_server, seeded, persona, viewport
) -> None:
    client, urls = persona_pages(seeded, persona)
    assert len(urls) >= (20 if persona == "staff" else 6), urls
    context = browser.new_context(viewport=PHONE if viewport == "phone" else DESKTOP)
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        sign_in_browser(page, live_server, client)
        problems = walk(page, live_server, urls, phone=viewport == "phone")
    finally:
        context.close()
    assert not problems, f"{len(problems)} of {len(urls)} pages:\n" + "\n".join(problems)


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_the_public_pages_fit_a_phone_and_have_no_serious_accessibility_violation(
    browser, live_server, db, viewport
) -> None:
    urls = public_pages()
    assert "/accounts/login/" in urls
    context = browser.new_context(viewport=PHONE if viewport == "phone" else DESKTOP)
    try:
        page = context.new_page()
        problems = walk(page, live_server, urls, phone=viewport == "phone")
    finally:
        context.close()
    assert not problems, "\n".join(problems)


def test_the_skip_link_and_focus_are_visible_and_messages_are_announced(page, live_server, reseller_admin) -> None:
    """The first Tab shows the skip link, Enter moves the focus to the page's content; a focused
    control has an outline; the page's messages sit in a polite live region; the icon is ours."""
    sign_in_browser(page, live_server, signed_in_client(reseller_admin))
    page.goto(f"{live_server.url}/console/tenants/")
    skip = page.locator("a.skip-link")
    assert skip.bounding_box()["y"] < 0  # off screen until focused
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert skip.bounding_box()["y"] >= 0
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # the first control of the content, with its focus outline
    focused = page.evaluate(
        "[document.activeElement.closest('main') !== null, getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused[0] and focused[1] != "none", focused
    region = page.locator("main > [role=status][aria-live=polite]")
    assert region.count() == 1
    icon = page.get_attribute("link[rel=icon]", "href")
    answer = page.request.get(f"{live_server.url}{icon}")
    assert answer.status == 200 and answer.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in answer.body() and b"<title>Reseller portal</title>" in answer.body()


def test_a_wide_table_scrolls_in_its_own_named_focusable_box_on_a_phone(browser, live_server, seeded) -> None:
    """Most tables fit a phone once long words may break; the sync page's runs table does not at
    320 px (the smallest phones): it scrolls in its box, which the keyboard can reach and
    scroll, while the page itself stays as wide as the screen. Wide again, the box is no longer
    a tab stop."""
    context = browser.new_context(viewport={"width": 320, "height": 700})
    try:
        page = context.new_page()
        sign_in_browser(page, live_server, signed_in_client(seeded["admin"]))
        page.goto(f"{live_server.url}/console/billing/sync/")
        box = page.locator(".table-scroll[tabindex='0']").first
        assert box.get_attribute("role") == "region"
        assert (box.get_attribute("aria-label") or "").endswith("(table)")
        assert box.evaluate("b => b.scrollWidth > b.clientWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
        box.focus()
        page.keyboard.press("End")
        page.keyboard.press("ArrowRight")
        for _ in range(50):
            if box.evaluate("b => b.scrollLeft") > 0:
                break
            page.wait_for_timeout(50)
        assert box.evaluate("b => b.scrollLeft") > 0
        label = box.get_attribute("aria-label")
        page.set_viewport_size(DESKTOP)
        page.wait_for_selector(f".table-scroll[aria-label='{label}']:not([tabindex])")
    finally:
        context.close()
