import re

import pytest
from django.contrib.auth.models import User
from django.core import mail

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_password_reset_by_email_sets_a_new_password(client) -> None:
    UserFactory(username="forgetful", role="reseller_support")
    response = client.post("/accounts/password/reset/", {"email": "forgetful@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form_url = client.get(link).url  # Django swaps the token for a session-held one
    new_password = "a-brand-new-long-passphrase-7"
    response = client.post(form_url, {"new_password1": new_password, "new_password2": new_password})
    assert response.status_code == 302
    assert User.objects.get(username="forgetful").check_password(new_password)
    # The link works once.
    assert "has been used or has expired" in client.get(link, follow=True).content.decode()


def test_an_unknown_email_gets_the_same_answer_and_no_mail(client) -> None:
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short-pass1", "too short"),
        ("password1234", "too common"),
        ("123456789012345", "entirely numeric"),
        ("x" * 4097, "too long"),
    ],
)
def test_weak_passwords_are_refused(client, password: str, message: str) -> None:
    client.force_login(UserFactory(username="changer", role="reseller_admin"))
    response = client.post(
        "/accounts/password/change/",
        {"old_password": PASSWORD, "new_password1": password, "new_password2": password},
    )
    assert response.status_code == 200
    assert message in response.content.decode()


@pytest.mark.parametrize("password", ["twelve chars", "🔒 emoji and spaces 🔑", "y" * 64])
def test_long_unusual_passwords_are_accepted(client, password: str) -> None:
    client.force_login(UserFactory(username="changer2", role="reseller_admin"))
    response = client.post(
        "/accounts/password/change/",
        {"old_password": PASSWORD, "new_password1": password, "new_password2": password},
    )
    assert response.status_code == 302, response.content.decode()[:2000]


def test_error_pages_are_friendly(client) -> None:
    client.force_login(UserFactory(username="wanderer", role="customer_viewer"))
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "There is nothing here" in response.content.decode()
    response = client.get("/console/")
    assert response.status_code == 403
    assert "Your role does not include this page" in response.content.decode()


def test_the_500_page_renders_without_the_database(rf) -> None:
    from portal.views import error_500

    response = error_500(rf.get("/"))
    assert response.status_code == 500
    assert b"Something went wrong" in response.content


def test_staff_pages_send_anonymous_users_to_log_in(client) -> None:
    for url in ["/console/", "/console/audit/"]:
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/"), url


def test_a_user_without_a_role_is_told_so(client) -> None:
    client.force_login(UserFactory(username="roleless", role=None))
    response = client.get("/")
    assert response.status_code == 403
    assert "No role yet" in response.content.decode()
