"""How the customer portal's audit actions read (portal/audit_sentences.py finds this module
by its name)."""

from __future__ import annotations

from portal.audit_sentences import register

register(
    {
        "customers.member.invited": "{actor} invited {email} to {tenant}",
        "customers.member.invite_not_sent": "{actor}'s invitation to {tenant} could not be sent",
        "customers.member.invite_resent": "{actor} sent the invitation of {email} to {tenant} again",
        "customers.member.removed": "{actor} removed {email} from {tenant}",
        "customers.team.two_factor_required": "{actor} made two-factor sign-in required for {tenant}",
        "customers.team.two_factor_optional": "{actor} made two-factor sign-in optional for {tenant}",
        "customers.profile.updated": "{actor} updated their profile[ at {tenant}]",
        "customers.balance.refreshed": "{actor} refreshed the balance of {tenant}",
    }
)
