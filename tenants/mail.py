"""Emails to a tenant's people in the language each of them reads.

A member's language is ``Membership.language`` (set when a signed-in customer switches language,
customers.language); empty, or a code no longer in LANGUAGES, means the default language. Every
email a background job sends to owners is built here once per language, inside
``translation.override``, so its templates, subject and money read the way that owner's pages do.
Each ``build`` renders its templates through ``portal.mail.templated_email``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils import translation

from portal.mail import Build, default_language
from tenants.models import Membership
from tenants.selectors import owner_languages


def language_of(code: str) -> str:
    """The LANGUAGES code an email is written in for a member who chose ``code``."""
    if code and code in dict(settings.LANGUAGES):
        return code
    return default_language()


def member_language(membership: Membership) -> str:
    return language_of(membership.language)


def owners_by_language(tenant_id: int) -> list[tuple[str, list[str]]]:
    """The tenant's owner addresses grouped by language, default language first, each group
    sorted. An address shared by two owners goes with the first language found for it."""
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    for email, code in owner_languages(tenant_id):
        if email not in seen:
            seen.add(email)
            groups.setdefault(language_of(code), []).append(email)
    default = language_of("")
    return sorted(groups.items(), key=lambda group: (group[0] != default, group[0]))


def owner_messages(tenant_id: int, build: Build) -> list[EmailMultiAlternatives]:
    """``build(recipients)`` once per language of the tenant's owners, each rendered in that
    language; none when the tenant has no owner with an address."""
    messages = []
    for language, recipients in owners_by_language(tenant_id):
        with translation.override(language):
            messages.append(build(recipients))
    return messages
