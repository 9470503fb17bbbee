"""How portal's own audit actions read (sign-ins, two-factor, API tokens, the schedule), and
the people an event's data names (portal/audit_sentences.py finds this module by its name)."""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth import get_user_model

from portal.audit_sentences import Ref, actor_url, register, register_reference


def _people_by_id(keys: set[str]) -> Mapping[str, Ref]:
    ids = {int(k) for k in keys if k.isdigit()}
    users = get_user_model().objects.filter(pk__in=ids)
    return {str(u.pk): (u.get_full_name() or u.get_username(), actor_url(u.get_username())) for u in users}


def _people_by_username(keys: set[str]) -> Mapping[str, Ref]:
    users = get_user_model().objects.filter(username__in=keys)
    found = {u.get_username(): u for u in users}
    return {k: ((found[k].get_full_name() or k) if k in found else k, actor_url(k)) for k in keys}


register_reference("maker", "user_id", resolver=_people_by_id)
register_reference("user", "username", resolver=_people_by_username)

register(
    {
        "portal.login.failed": "A sign-in as {username} failed",
        "portal.login.locked_out": "Sign-ins as {username} were locked out after too many failures",
        "portal.two_factor.failed": "{actor} typed a wrong two-factor code[ ({step})]",
        "portal.two_factor.verified": "{actor} signed in with a two-factor code[ ({method})]",
        "portal.two_factor.recovery_used": "{actor} used a recovery code[; {left} left]",
        "portal.two_factor.enrolled": "{actor} set up two-factor sign-in",
        "portal.two_factor.enrol_failed": "{actor} could not set up two-factor sign-in (the code did not match)",
        "portal.two_factor.reauthenticated": "{actor} confirmed their password and code again",
        "portal.two_factor.reset": "{actor} reset two-factor sign-in for {user}[ ({devices_removed} devices removed)]",
        "portal.api_token.created": "{actor} created an API token[ “{name}”][ for {tenant}]",
        "portal.api_token.revoked": "{actor} revoked an API token[ “{name}”][ for {tenant}]",
        "portal.schedule.changed": "{actor} changed the schedule of {entry}[: {after}]",
    }
)
