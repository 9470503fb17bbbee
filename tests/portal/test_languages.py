"""English and Russian: the switcher (Django's set_language), the pages it changes, Russian money,
and the committed catalogue (every marked string translated, the .mo matching its .po)."""

from __future__ import annotations

import importlib.util
import re
from decimal import Decimal
from pathlib import Path

import polib
import pytest
from django.test import Client
from django.utils import translation

from portal.money_format import money
from tests.factories import CustomerFactory, TenantFactory, balance_history

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "locale" / "ru" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
ENGLISH_NAV = (">Statement<", ">Team<", ">Balance<", ">Log out<", ">Password<", ">My company<")


def _compiler():
    spec = importlib.util.spec_from_file_location("compile_messages", ROOT / "scripts" / "compile_messages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _switch(client: Client, language: str, page: str) -> None:
    """Choose a language the way a person does: the form on the page, posted with its CSRF token."""
    html = client.get(page).content.decode()
    assert 'action="/i18n/setlang/"' in html, "the page offers no language switcher"
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token is not None
    response = client.post("/i18n/setlang/", {"language": language, "next": page, "csrfmiddlewaretoken": token[1]})
    assert response.status_code == 302 and response["Location"] == page


def test_a_customer_switches_to_russian_and_the_pages_follow(customer_owner) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer_owner)
    assert ">Statement<" in client.get("/me/").content.decode()  # English until chosen
    _switch(client, "ru", "/me/")
    assert client.cookies["django_language"].value == "ru"
    for url, words in (
        ("/me/", ("Баланс", "Выписка", "Обновить сейчас", "Оповещение о низком балансе", "Выйти")),
        ("/me/statement/", ("Выписка", "Сумма", "Выгрузить CSV")),
        ("/me/team/", ("Команда", "Пригласить наблюдателя", "Отправить приглашение", "Двухфакторный вход")),
    ):
        response = client.get(url)
        text = response.content.decode()
        assert response.status_code == 200, url
        assert '<html lang="ru">' in text, url
        for word in words:
            assert word in text, (url, word)
        for label in ENGLISH_NAV:
            assert label not in text, (url, label)


def test_the_choice_persists_in_the_language_cookie_and_can_go_back(customer_owner) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer_owner)
    _switch(client, "ru", "/me/team/")
    # A new session of the same browser (the cookie stays) still reads Russian.
    again = Client(enforce_csrf_checks=True)
    again.cookies["django_language"] = client.cookies["django_language"].value
    again.force_login(customer_owner)
    assert "Команда" in again.get("/me/team/").content.decode()
    _switch(again, "en", "/me/team/")
    text = again.get("/me/team/").content.decode()
    assert ">Team<" in text and "Команда" not in text


def test_messages_from_customer_actions_follow_the_language(client, customer_owner) -> None:
    client.force_login(customer_owner)
    client.cookies["django_language"] = "ru"
    response = client.post("/me/alerts/", {"threshold": "25"}, follow=True)
    assert "Оповещение о низком балансе сохранено." in response.content.decode()
    response = client.post("/me/team/invite/", {"email": "not-an-address"})
    assert response.status_code == 400
    assert "Введите правильный адрес электронной почты." in response.content.decode()


def test_staff_pages_offer_the_switcher_and_the_console_nav_turns_russian(reseller_admin) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(reseller_admin)
    html = client.get("/console/").content.decode()
    assert 'name="language"' in html and '<option value="ru" lang="ru">Русский</option>' in html
    assert ">Tenants<" in html
    _switch(client, "ru", "/console/")
    text = client.get("/console/").content.decode()
    assert ">Клиенты<" in text and ">Переводы<" in text and "Администратор реселлера" in text
    assert ">Tenants<" not in text and ">Transfers<" not in text


def test_the_sign_in_page_follows_the_browser_and_a_bad_language_changes_nothing() -> None:
    client = Client()
    assert '<html lang="en">' in client.get("/accounts/login/").content.decode()
    russian = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="ru-RU,ru;q=0.9").content.decode()
    assert '<html lang="ru">' in russian and "Забыли пароль?" in russian
    response = client.post("/i18n/setlang/", {"language": "xx", "next": "/accounts/login/"})
    assert response.status_code == 302 and "django_language" not in response.cookies
    assert client.post("/i18n/setlang/", {"language": "ru", "next": "https://evil.example/"})["Location"] == "/"


def test_money_reads_the_russian_way_on_the_customer_page(client, db) -> None:
    with translation.override("ru"):
        assert money(Decimal("1234.56"), "RUR") == "1\xa0234,56 RUR"
    with translation.override("en"):
        assert money(Decimal("1234.56"), "RUR") == "1,234.56 RUR"
    tenant = TenantFactory(company_name="Рога и копыта", balance="1234.56", currency="RUR")
    balance_history(tenant, ["1000", "1234.56"])
    client.force_login(CustomerFactory(username="roga-owner", tenant=tenant))
    client.cookies["django_language"] = "ru"
    text = client.get("/me/").content.decode()
    assert "1\xa0234,56 RUR" in text or "1&nbsp;234,56 RUR" in text


def test_russian_plurals_come_from_the_catalogue() -> None:
    with translation.override("ru"):
        words = [
            translation.ngettext(
                "It stays confirmed for %(minutes)s minute.", "It stays confirmed for %(minutes)s minutes.", n
            )
            % {"minutes": n}
            for n in (1, 3, 5, 21)
        ]
    assert words == [
        "Подтверждение действует 1 минуту.",
        "Подтверждение действует 3 минуты.",
        "Подтверждение действует 5 минут.",
        "Подтверждение действует 21 минуту.",
    ]


def test_the_committed_mo_matches_the_po() -> None:
    """Compiled again from the .po in pure Python: the same catalogue as the committed .mo."""
    compiled = _compiler().compile_po(PO)
    committed = polib.mofile(str(MO))

    def catalogue(mo: polib.MOFile) -> dict[tuple[str | None, str], object]:
        return {(e.msgctxt, e.msgid): (e.msgstr, tuple(sorted(e.msgstr_plural.items()))) for e in mo}

    assert catalogue(committed) == catalogue(compiled), "run scripts/compile_messages.py and commit the .mo"
    assert committed.metadata.get("Plural-Forms") == compiled.metadata.get("Plural-Forms")
    assert "nplurals=4" in committed.metadata["Plural-Forms"]


def test_every_marked_string_has_a_russian_translation() -> None:
    po = polib.pofile(str(PO))
    untranslated = [e.msgid for e in po if not e.obsolete and (not e.translated() or "fuzzy" in e.flags)]
    assert not untranslated, untranslated
    known = {e.msgid for e in po if not e.obsolete}
    marked = set()
    for template in (ROOT / "templates").rglob("*.*"):
        text = template.read_text(encoding="utf-8")
        marked |= set(re.findall(r'{% (?:translate|trans) "([^"]+)"', text))
        marked |= set(re.findall(r'_\("([^"]+)"\)', text))
    missing = sorted(marked - known)
    assert not missing, f"marked in templates but not in the catalogue (run makemessages): {missing}"
