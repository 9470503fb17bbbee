"""Signing test clients in as the product does, second factor included where the user needs it."""

from __future__ import annotations

from typing import Any


def sign_in(client: Any, user: Any) -> Any:
    """force_login, then past the second factor when the user's role asks for one (staff)."""
    client.force_login(user)
    try:
        from portal.twofactor import needs_two_factor
        from tests.twofactor import mark_verified
    except ImportError:  # two-factor sign-in is not part of this build
        return client
    if needs_two_factor(user):
        mark_verified(client, user)
    return client
