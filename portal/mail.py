"""Emails built from templates: one place renders a subject, a text and an HTML body into an
``EmailMultiAlternatives``.

A sender names its templates (``emails/<name>.txt`` and ``.html``), its context and its
recipients; :func:`templated_email` does the rest, attachments included. Staff read the default
language: :func:`staff_message` builds their email inside ``translation.override`` of it. A
tenant's owners read each their own language (``tenants.mail.owner_messages``, built on the
same two pieces).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import translation

#: ``build(recipients)`` returns the email for those addresses, in the active language.
Build = Callable[[list[str]], EmailMultiAlternatives]

#: An attached file: its name, its content and its MIME type.
Attachment = tuple[str, bytes, str]


def default_language() -> str:
    """The LANGUAGES code of the default language (what staff read)."""
    return translation.get_supported_language_variant(settings.LANGUAGE_CODE)


def site_link(path: str) -> str:
    """``path`` (a ``reverse`` result) as an absolute address on the portal (SITE_URL)."""
    return str(settings.SITE_URL).rstrip("/") + path


def templated_email(
    template: str,
    context: Mapping[str, Any],
    *,
    subject: str,
    to: list[str],
    html: bool = True,
    attachments: Iterable[Attachment] = (),
) -> EmailMultiAlternatives:
    """The email whose body is ``<template>.txt`` and, with ``html``, whose HTML alternative is
    ``<template>.html``, both rendered with ``context`` in the active language."""
    message = EmailMultiAlternatives(subject=subject, body=render_to_string(f"{template}.txt", context), to=to)
    if html:
        message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    for name, content, mimetype in attachments:
        message.attach(name, content, mimetype)
    return message


def staff_message(build: Build, recipients: list[str]) -> EmailMultiAlternatives:
    """``build(recipients)`` rendered in the default language."""
    with translation.override(default_language()):
        return build(recipients)


def staff_addresses(*roles: str, alert_list: bool = False) -> list[str]:
    """The sorted addresses of the active staff users in any of ``roles``, with the
    STAFF_ALERT_EMAILS list too when ``alert_list``."""
    users = get_user_model().objects.filter(groups__name__in=roles, is_active=True).exclude(email="")
    extra = set(settings.STAFF_ALERT_EMAILS) if alert_list else set()
    return sorted({user.email for user in users} | extra)
