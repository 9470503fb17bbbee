"""Russian beyond the customer pages: the staff console after the real switcher, the emails
background jobs send owners (each in the language of the owner's membership, tenants.mail),
the language a signed-in customer chooses kept on the membership, and the input rules'
messages (portal.inputs) in both languages."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import translation
from django.utils.html import escape

from billing.alerts import low_balance_alerts_send
from billing.models import LowBalanceAlert
from portal import inputs
from portal.errors import PortalError
from portal.roles import Role, assign_role
from reselling.models import Invoice
from tenants.mail import owners_by_language
from tenants.models import Membership
from tenants.services import send_owner_invitation
from tests.factories import CustomerFactory, TenantFactory, TransferFactory, UserFactory
from tests.portal.test_languages import _switch
from tests.reselling.invoicing import charge, invoice_of, run

pytestmark = pytest.mark.django_db


def _russian_console(user: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    _switch(client, "ru", "/console/")
    return client


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    text = response.content.decode()
    assert '<html lang="ru">' in text, url
    return text


def test_staff_pages_turn_russian_after_the_switcher(reseller_admin, customer_tenant) -> None:
    TransferFactory(tenant=customer_tenant, reason="Monthly top-up")
    charge(customer_tenant, "60", description="Calls")
    run()
    invoice = invoice_of(customer_tenant)
    client = _russian_console(reseller_admin)
    for url, russian, english in (
        ("/console/", ("Сегодня", "Низкий баланс", "Операции клиентов"), ("Tenant operations", ">Today<")),
        (
            "/console/tenants/",
            ("Новый клиент", "Импорт от провайдера", "Скачать CSV", "Применить", "1 клиент"),
            ("New tenant", ">Apply<", "1 tenant<"),
        ),
        (
            f"/console/tenants/{customer_tenant.uuid}/",
            ("Компания", "Счёт у провайдера", "Журнал аудита", "Операции у провайдера"),
            ("Provider account", "Audit trail"),
        ),
        (
            "/console/billing/",
            ("Все переводы", "Неурегулированные", "Что известно", "1 перевод"),
            ("All transfers", "What is known"),
        ),
        (
            f"/console/reselling/invoices/{invoice.uuid}/",
            ("Плательщик", "Промежуточный итог", "Платежи", "Записать платёж"),
            ("Bill to", "Subtotal", "Record payment"),
        ),
    ):
        text = _page(client, url)
        for word in russian:
            assert word in text, (url, word)
        for word in english:
            assert word not in text, (url, word)
    # The same pages still read English for a colleague who chose nothing.
    english = Client()
    english.force_login(reseller_admin)
    text = english.get("/console/tenants/").content.decode()
    assert "New tenant" in text and "Новый клиент" not in text


def test_the_row_labels_of_the_less_used_staff_pages_turn_russian(reseller_admin, customer_tenant) -> None:
    """The labels a screen reader reads for each row's control, on the bulk transfer page and the
    plans page's defaults per connection."""
    client = _russian_console(reseller_admin)
    name, connection = escape(customer_tenant.company_name), escape(customer_tenant.connection.name)
    text = _page(client, "/console/billing/bulk/")
    assert f'aria-label="Выбрать {name}"' in text and "Select " not in text
    text = _page(client, "/console/reselling/plans/")
    assert f'aria-label="План по умолчанию для {connection}"' in text and "Default plan of" not in text


def _owner(tenant, username: str, language: str) -> User:
    owner = CustomerFactory(username=username, email=f"{username}@example.com", tenant=tenant)
    Membership.objects.filter(user=owner).update(language=language)
    return owner


def test_each_owner_gets_the_low_balance_email_in_their_language(customer_tenant, mailoutbox, settings) -> None:
    settings.STAFF_ALERT_EMAILS = ["staff-alerts@reseller.example"]
    Membership.objects.filter(tenant=customer_tenant).update(language="ru")  # the fixture's owner too
    _owner(customer_tenant, "ivan", "ru")
    _owner(customer_tenant, "jane", "")
    _owner(customer_tenant, "gone-language", "xx")  # no longer offered: the default
    LowBalanceAlert.objects.create(
        tenant=customer_tenant, balance=Decimal("1234.5"), threshold=Decimal("2000"), currency="RUR"
    )
    assert low_balance_alerts_send() == 3
    by_first = {tuple(m.to): m for m in mailoutbox}
    english = by_first[("gone-language@example.com", "jane@example.com")]
    russian = next(m for m in mailoutbox if "ivan@example.com" in m.to)
    staff = by_first[("staff-alerts@reseller.example",)]
    assert "jane@example.com" not in russian.to and "ivan@example.com" not in english.to
    name = customer_tenant.company_name
    assert english.subject == f"Low balance: {name} has 1,234.50 RUR"
    assert "The balance of " + name + " is 1,234.50 RUR, below the alert threshold of 2,000.00 RUR." in english.body
    assert russian.subject == f"Низкий баланс: у {name} осталось 1\xa0234,50 RUR"
    assert "ниже порога оповещения 2\xa0000,00 RUR" in russian.body and "Top up" not in russian.body
    html = russian.alternatives[0][0]
    assert '<html lang="ru">' in html and "Посмотреть баланс" in html and "See your balance" not in html
    assert '<html lang="en">' in english.alternatives[0][0]
    assert staff.subject.startswith("Low balance:")  # staff read the default language


def test_the_owner_invitation_speaks_the_owner_language(customer_tenant, mailoutbox) -> None:
    def invited(username: str, language: str) -> Membership:
        user = User.objects.create(username=username, email=f"{username}@example.com")
        user.set_unusable_password()
        user.save()
        assign_role(user, Role.CUSTOMER_OWNER)
        return Membership.objects.create(user=user, tenant=customer_tenant, language=language)

    russian, english = invited("olga", "ru"), invited("oliver", "")
    assert send_owner_invitation(membership_id=russian.pk)
    assert send_owner_invitation(membership_id=english.pk)
    ru_mail, en_mail = mailoutbox
    name = customer_tenant.company_name
    assert ru_mail.to == ["olga@example.com"] and ru_mail.subject == f"Приглашение управлять {name}"
    assert (
        "Вас пригласили управлять клиентским порталом" in ru_mail.body
        and "Ваше имя пользователя: olga." in ru_mail.body
    )
    assert "Задать пароль" in ru_mail.alternatives[0][0]
    assert en_mail.subject == f"You are invited to manage {name}"
    assert f"You have been invited to manage the customer portal of {name}." in en_mail.body
    assert "Choose your password" in en_mail.alternatives[0][0]
    # The delivery outcome is kept as before.
    assert Membership.objects.get(pk=russian.pk).invite_delivery == Membership.InviteDelivery.SENT


def test_a_team_invite_from_a_russian_page_reaches_the_viewer_in_russian(
    customer_owner, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    client = Client()
    client.force_login(customer_owner)
    client.cookies["django_language"] = "ru"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/me/team/invite/", {"email": "anna@example.com"})
    assert response.status_code in (200, 302)
    assert Membership.objects.get(user__email="anna@example.com").language == "ru"
    (mail,) = mailoutbox
    assert mail.subject.startswith("Приглашение в учётную запись")
    assert "приглашает вас смотреть баланс и выписку" in mail.body


def test_switching_language_as_a_customer_keeps_it_on_the_membership(customer_owner, reseller_admin) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer_owner)
    _switch(client, "ru", "/me/")
    assert Membership.objects.get(user=customer_owner).language == "ru"
    assert [group for group, _ in owners_by_language(customer_owner.membership.tenant_id)] == ["ru"]
    # A language the portal does not speak changes nothing, the cookie included.
    response = client.post(
        "/i18n/setlang/",
        {"language": "xx", "next": "/me/", "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 302 and Membership.objects.get(user=customer_owner).language == "ru"
    _switch(client, "en", "/me/")
    assert Membership.objects.get(user=customer_owner).language == "en"
    # Staff have no membership and anonymous visitors no user: the cookie alone, no error.
    _russian_console(reseller_admin)
    anonymous = Client()
    assert anonymous.post("/i18n/setlang/", {"language": "ru", "next": "/accounts/login/"}).status_code == 302
    assert not Membership.objects.exclude(language__in=["", "en"]).exists()


def test_the_switcher_form_still_posts_to_set_language(customer_owner) -> None:
    client = Client()
    client.force_login(customer_owner)
    html = client.get("/me/").content.decode()
    assert re.search(r'<form method="post" action="/i18n/setlang/"', html)


@pytest.mark.parametrize(
    ("call", "english", "russian"),
    [
        (
            lambda: inputs.iso_date("31.01.2026", field="start", label="start date"),
            "Enter the start date as YYYY-MM-DD.",
            "Поле «start date»: введите дату в формате ГГГГ-ММ-ДД.",
        ),
        (
            lambda: inputs.email("not an address", field="email"),
            "Enter a valid email address, like name@example.com.",
            "Поле «адрес электронной почты»: введите правильный адрес, например name@example.com.",
        ),
        (
            lambda: inputs.text("x" * 11, field="notes", label="notes", max_length=10),
            "The notes can be at most 10 characters (this one has 11).",
            "Поле «notes»: не больше 10 символов (сейчас 11).",
        ),
        (
            lambda: inputs.iso_month("2026-13", field="month"),
            "Enter the month as YYYY-MM, between 1900-01 and 2999-12.",
            "Поле «месяц»: введите месяц в формате ГГГГ-ММ, от 1900-01 до 2999-12.",
        ),
        (
            lambda: inputs.iso_date("0001-01-01", field="d", label="date received"),
            "The date received is outside the range of dates the portal keeps (1900–9998).",
            "Поле «date received»: дата вне диапазона, который хранит портал (1900–9998).",
        ),
    ],
)
def test_input_messages_keep_their_english_and_read_russian(call, english, russian) -> None:
    for language, expected in (("en", english), ("ru", russian)):
        with translation.override(language), pytest.raises(PortalError) as refused:
            call()
        assert refused.value.message == expected


def test_invoice_email_subject_follows_the_owner(customer_tenant, customer_owner, mailoutbox) -> None:
    from reselling.delivery import issue_email
    from tenants.mail import owner_messages

    _owner(customer_tenant, "pyotr", "ru")
    charge(customer_tenant, "60", description="Calls")
    run()
    invoice = invoice_of(customer_tenant)
    assert invoice.kind == Invoice.Kind.INVOICE
    english, russian = owner_messages(customer_tenant.pk, lambda to: issue_email(invoice, to))
    assert english.to == [customer_owner.email] and russian.to == ["pyotr@example.com"]
    assert english.subject.startswith(f"Invoice {invoice.number} from")
    assert russian.subject.startswith(f"Счёт {invoice.number} от")
    assert "срок оплаты" in russian.body and "due on" in english.body


def test_tenant_factory_owners_without_a_language_read_the_default(db) -> None:
    tenant = TenantFactory()
    UserFactory(username="no-membership")
    CustomerFactory(username="plain", email="plain@example.com", tenant=tenant)
    assert owners_by_language(tenant.pk) == [("en", ["plain@example.com"])]
