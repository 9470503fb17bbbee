"""Voximplant: which platform_api methods the provider still answers.

The provider's documents no longer list some methods the portal relies on
(TransferMoneyToChildAccount above all), so the portal asks instead of assuming. Each method
is called once with arguments the provider must refuse before it does anything: a method
that exists answers with a validation error, a withdrawn one with error 103 "Unknown
command". docs/providers.md explains the calls and why none of them can change anything.
"""

from __future__ import annotations

from collections.abc import Mapping

from providers.capabilities import AVAILABLE, MISSING, UNKNOWN
from providers.errors import AuthenticationError, NotSent, OutcomeUnknown, ProviderError, RateLimited
from providers.voximplant.core import VoximplantCore

#: Error 103: the provider does not know the method.
UNKNOWN_COMMAND = 103
#: Error 104: the method exists but this key may not call it (still an answer from the method).
FORBIDDEN_COMMAND = 104

# An inverted date range: GetTransactionHistory refuses it (error 123) before reading anything.
_LATER = "2000-01-02 00:00:00"
_EARLIER = "2000-01-01 00:00:00"


class ProbeMixin(VoximplantCore):
    """``probe_methods``: one harmless call per method, classified by the provider's answer."""

    probe_method_names = (
        "TransferMoneyToChildAccount",
        "GetChildrenAccounts",
        "SetChildAccountInfo",
        "CloneAccount",
        "AddAccount",
        "GetTransactionHistory",
        "GetAccountInfo",
        "SetAccountInfo",
        "AddUser",
        "GetUsers",
        "SetUserInfo",
        "DelUser",
        "TransferMoneyToUser",
        "GetAccountPlans",
        "GetAvailablePlans",
        "ChangeAccountPlan",
        "GetAccountDocuments",
    )

    def _probe_params(self) -> dict[str, Mapping[str, object]]:
        """The arguments of each probe call. The reseller's own account id stands where a child
        id goes: it is never one of its own children, so every child lookup fails."""
        own = self.credentials.account_id
        return {
            # Zero is below the smallest amount (0.01) the method accepts, the target is not a
            # child and strict mode forbids clamping: refused, and zero would move nothing anyway.
            "TransferMoneyToChildAccount": {"child_account_id": own, "amount": "0", "strict_mode": True},
            "GetChildrenAccounts": {"child_account_id": own, "brief_output": True, "count": 1},
            # A target and nothing to change: refused (not a child), and there is nothing to apply.
            "SetChildAccountInfo": {"child_account_id": own},
            # No new name, email or password and no parent key: nothing can be created.
            "CloneAccount": {"account_id": own},
            "AddAccount": {},
            "GetTransactionHistory": {"from_date": _LATER, "to_date": _EARLIER, "count": 1},
            "GetAccountInfo": {"return_live_balance": False},
            # Nothing to change.
            "SetAccountInfo": {},
            # No user name, display name, password or application: nothing can be created.
            "AddUser": {},
            # A read, of an application no account has (ids start at 1): refused or empty.
            "GetUsers": {"application_id": 0, "count": 1},
            # No user named and nothing to change; never ``all`` (DelUser takes it).
            "SetUserInfo": {},
            "DelUser": {},
            # As for TransferMoneyToChildAccount: zero is below the smallest amount (0.01), strict
            # mode forbids clamping, and no user is named, so there is nobody to pay either.
            "TransferMoneyToUser": {"amount": "0", "strict_mode": True},
            # Reads of the reseller's own account.
            "GetAccountPlans": {},
            "GetAvailablePlans": {},
            # No plan type and no plan: nothing to change and no fee to reserve.
            "ChangeAccountPlan": {},
            "GetAccountDocuments": {},
        }

    def probe_methods(self) -> dict[str, str]:
        params = self._probe_params()
        found: dict[str, str] = {}
        reachable = True
        for method in self.probe_method_names:
            if not reachable:
                found[method] = UNKNOWN
                continue
            try:
                # Never resent on an unclear answer (read=False): a probe has no second chance
                # to be harmless, and a missing verdict only keeps the previous one.
                self._call(method, params[method], read=False)
            except NotSent:
                # The request never left: the provider is unreachable for the rest too.
                found[method] = UNKNOWN
                reachable = False
            except ProviderError as exc:
                found[method] = verdict(exc)
            else:
                found[method] = AVAILABLE
        return found


def verdict(exc: ProviderError) -> str:
    """What a refusal says about the method: only an API error code is a verdict."""
    if exc.code == UNKNOWN_COMMAND:
        return MISSING
    if isinstance(exc, OutcomeUnknown | RateLimited | NotSent) or exc.code is None:
        return UNKNOWN
    if isinstance(exc, AuthenticationError) and exc.code != FORBIDDEN_COMMAND:
        # The caller was not recognised: the method was never reached.
        return UNKNOWN
    return AVAILABLE
