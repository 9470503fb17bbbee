"""The language switcher's endpoint: Django's set_language (the cookie, then back to ``next``),
and for a signed-in customer the choice kept on their membership, so the emails background jobs
send them (tenants.mail) speak it too. Staff and anonymous visitors get the cookie alone."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.i18n import set_language as django_set_language

from tenants.models import Membership


def member_language_set(*, user_id: int, language: str) -> None:
    """Keep the language a member chose (a LANGUAGES code, already checked by set_language)."""
    Membership.objects.filter(user_id=user_id).exclude(language=language).update(language=language)


def set_language(request: HttpRequest) -> HttpResponse:
    response = django_set_language(request)
    # set_language sets the cookie only for a POST naming a language the portal speaks.
    chosen = response.cookies.get(settings.LANGUAGE_COOKIE_NAME)
    if chosen is not None and request.user.is_authenticated:
        member_language_set(user_id=request.user.pk, language=chosen.value)
    return response


urlpatterns = [path("setlang/", set_language, name="set_language")]
