"""What each provider can do, and why not when it cannot.

The portal asks ``client.supports(Capability.TRANSFER_MONEY)`` (or reads
``client.capabilities``) instead of testing the provider's name, and shows
``client.unsupported_reason(cap)`` to staff when the answer is no.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType

__all__ = [
    "AVAILABLE",
    "Capability",
    "CapabilityMatrix",
    "MISSING",
    "METHOD_CAPABILITIES",
    "PROBE_STATES",
    "UNKNOWN",
    "VOICEIT_MATRIX",
    "VOXIMPLANT_MATRIX",
    "missing_method_reason",
    "with_probe",
]

#: What a probe says about one provider method: it answers (``available``), it answered
#: "unknown command" (``missing``), or no probe has had a verdict yet (``unknown``).
AVAILABLE = "available"
MISSING = "missing"
UNKNOWN = "unknown"
PROBE_STATES = (AVAILABLE, MISSING, UNKNOWN)


class Capability(enum.Enum):
    #: Create a tenant account at the provider (generic ``create_account``).
    CREATE = "create"
    #: Create a tenant account as a copy of another (``clone_account``).
    CLONE = "clone"
    #: Suspend a tenant account through the API (``freeze_account``).
    FREEZE = "freeze"
    #: Resume a suspended tenant account (``unfreeze_account``).
    UNFREEZE = "unfreeze"
    #: Enumerate the tenant accounts the provider holds (``iter_account_pages``).
    LIST_ACCOUNTS = "list_accounts"
    #: Read every tenant's balance from the provider (``iter_account_pages`` carries balances).
    LIST_BALANCES = "list_balances"
    #: Move money from the reseller to a tenant account (``transfer_money``).
    TRANSFER_MONEY = "transfer_money"
    #: The provider skips a resent transfer carrying the same reference.
    DEDUPLICATED_TRANSFER = "deduplicated_transfer"
    #: Close or delete a tenant account (``close_account``).
    CLOSE_DELETE = "close_delete"
    #: Issue new API credentials for a tenant account (``rotate_credentials``).
    ROTATE_CREDENTIALS = "rotate_credentials"
    #: Probe whether a tenant's own credentials still work (``check_credentials``).
    CHECK_CREDENTIALS = "check_credentials"
    #: Read money movements, e.g. to find a transfer by reference (``iter_transactions``).
    TRANSACTION_HISTORY = "transaction_history"
    #: Change a tenant's email / password / language after creation.
    UPDATE_PROFILE = "update_profile"
    #: A create whose outcome is unknown can be found again at the provider.
    RECOVERABLE_CREATE = "recoverable_create"
    #: Switch a tenant between "reseller pays" and "customer pays".
    CHANGE_BILLING_MODE = "change_billing_mode"
    #: Set where the provider posts account events (``set_account_callbacks``).
    ACCOUNT_CALLBACKS = "account_callbacks"
    #: Read the account's plans and packages, and upgrade them (``get_account_plans``,
    #: ``get_available_plans``, ``change_account_plan``).
    ACCOUNT_PLANS = "account_plans"
    #: Read whether the account's documents are verified (``get_account_documents``).
    ACCOUNT_VERIFICATION = "account_verification"
    #: Manage a tenant's telephony (PBX) users: add, change, list, delete (``add_user``,
    #: ``set_user_info``, ``get_users``, ``del_user``).
    PBX_USERS = "pbx_users"
    #: Move money between a tenant account and one of its users with a balance of its own
    #: (``transfer_money_to_user``, ``transfer_money_from_user``, ``find_user_transfers``).
    PBX_USER_TRANSFERS = "pbx_user_transfers"


class CapabilityMatrix:
    """Capability -> ``None`` (supported) or the human reason it is not."""

    def __init__(self, provider: str, entries: Mapping[Capability, str | None]) -> None:
        missing = set(Capability) - set(entries)
        if missing:
            raise ValueError(f"{provider}: capability matrix lacks {sorted(c.name for c in missing)}")
        for cap, reason in entries.items():
            if reason is not None and not reason.strip():
                raise ValueError(f"{provider}: {cap.name} is unsupported without a reason")
        self.provider = provider
        self._entries: Mapping[Capability, str | None] = MappingProxyType(dict(entries))

    @property
    def supported(self) -> frozenset[Capability]:
        return frozenset(cap for cap, reason in self._entries.items() if reason is None)

    def supports(self, capability: Capability) -> bool:
        return self._entries[capability] is None

    def reason(self, capability: Capability) -> str | None:
        """Why ``capability`` is absent, or ``None`` when it is supported."""
        return self._entries[capability]

    def items(self) -> list[tuple[Capability, str | None]]:
        return list(self._entries.items())

    def __repr__(self) -> str:
        return f"CapabilityMatrix({self.provider!r}, supported={sorted(c.name for c in self.supported)})"


VOXIMPLANT_MATRIX = CapabilityMatrix(
    "voximplant",
    {
        Capability.CREATE: None,
        Capability.CLONE: None,
        Capability.FREEZE: None,
        Capability.UNFREEZE: None,
        Capability.LIST_ACCOUNTS: None,
        Capability.LIST_BALANCES: None,
        Capability.TRANSFER_MONEY: None,
        Capability.DEDUPLICATED_TRANSFER: None,
        Capability.CLOSE_DELETE: (
            "Voximplant has no call to close or delete a child account; "
            "disable it instead (SetChildAccountInfo active=false)."
        ),
        Capability.ROTATE_CREDENTIALS: (
            "Voximplant has no call to regenerate a child account's API key; "
            "only its password can be changed (SetChildAccountInfo new_child_account_password)."
        ),
        Capability.CHECK_CREDENTIALS: (
            "The portal holds no Voximplant child credentials to probe; read the child's state "
            "with GetChildrenAccounts instead."
        ),
        Capability.TRANSACTION_HISTORY: None,
        Capability.UPDATE_PROFILE: None,
        Capability.RECOVERABLE_CREATE: None,
        Capability.CHANGE_BILLING_MODE: (
            "Every Voximplant child account has its own balance funded by the parent; "
            "there is no billing mode to switch."
        ),
        Capability.ACCOUNT_CALLBACKS: None,
        Capability.ACCOUNT_PLANS: None,
        Capability.ACCOUNT_VERIFICATION: None,
        Capability.PBX_USERS: None,
        Capability.PBX_USER_TRANSFERS: None,
    },
)

VOICEIT_MATRIX = CapabilityMatrix(
    "voiceit",
    {
        Capability.CREATE: None,
        Capability.CLONE: "VoiceIt has no call to clone a sub-account.",
        Capability.FREEZE: (
            "VoiceIt has no suspend API; rotate the sub-account token and withhold it instead "
            "(this does not stop dashboard logins with the sub-account's email and password)."
        ),
        Capability.UNFREEZE: "VoiceIt has no resume API; hand out a freshly rotated token instead.",
        Capability.LIST_ACCOUNTS: "VoiceIt has no call to list sub-accounts; the portal database is the source of truth.",
        Capability.LIST_BALANCES: "VoiceIt has no balance API (managed sub-accounts spend the master's funds).",
        Capability.TRANSFER_MONEY: "VoiceIt has no credit transfer: there is no per-sub-account balance to fund.",
        Capability.DEDUPLICATED_TRANSFER: "VoiceIt has no transfers at all.",
        Capability.CLOSE_DELETE: None,
        Capability.ROTATE_CREDENTIALS: None,
        Capability.CHECK_CREDENTIALS: None,
        Capability.TRANSACTION_HISTORY: "VoiceIt has no usage or transaction API; meter usage in the portal.",
        Capability.UPDATE_PROFILE: (
            "VoiceIt sets name, email, password and language only at creation; "
            "later changes happen in VoiceIt's dashboard."
        ),
        Capability.RECOVERABLE_CREATE: (
            "VoiceIt has no idempotency key and no lookup: a create that timed out may leave an "
            "orphaned sub-account only VoiceIt's dashboard can show. Do not retry it blindly."
        ),
        Capability.CHANGE_BILLING_MODE: (
            "VoiceIt removed switchType in 2026; recreate the sub-account instead (new key, data not migrated)."
        ),
        Capability.ACCOUNT_CALLBACKS: (
            "VoiceIt posts no account events: its notification URL reports the result of one call only."
        ),
        Capability.ACCOUNT_PLANS: (
            "VoiceIt has no subscription plans to read or change through its API; a sub-account's usage "
            "is billed to the master account."
        ),
        Capability.ACCOUNT_VERIFICATION: "VoiceIt has no document verification of sub-accounts.",
        Capability.PBX_USERS: (
            "VoiceIt has no telephony users: its /users are voice-biometric enrollments with no login, name or balance."
        ),
        Capability.PBX_USER_TRANSFERS: "VoiceIt has no balances to move, for sub-accounts or their users.",
    },
)


#: Provider method -> the capabilities that need it. A method a probe found missing makes
#: each of these unsupported (``with_probe``).
METHOD_CAPABILITIES: Mapping[str, Mapping[str, tuple[Capability, ...]]] = MappingProxyType(
    {
        "voximplant": MappingProxyType(
            {
                "TransferMoneyToChildAccount": (Capability.TRANSFER_MONEY, Capability.DEDUPLICATED_TRANSFER),
                "GetChildrenAccounts": (
                    Capability.LIST_ACCOUNTS,
                    Capability.LIST_BALANCES,
                    Capability.RECOVERABLE_CREATE,
                ),
                "SetChildAccountInfo": (Capability.FREEZE, Capability.UNFREEZE, Capability.UPDATE_PROFILE),
                "CloneAccount": (Capability.CLONE,),
                "AddAccount": (Capability.CREATE,),
                "GetTransactionHistory": (Capability.TRANSACTION_HISTORY,),
                "GetAccountInfo": (Capability.LIST_BALANCES,),
                "SetAccountInfo": (Capability.ACCOUNT_CALLBACKS,),
                "AddUser": (Capability.PBX_USERS,),
                "GetUsers": (Capability.PBX_USERS,),
                "SetUserInfo": (Capability.PBX_USERS,),
                "DelUser": (Capability.PBX_USERS,),
                "TransferMoneyToUser": (Capability.PBX_USER_TRANSFERS,),
                "GetAccountPlans": (Capability.ACCOUNT_PLANS,),
                "GetAvailablePlans": (Capability.ACCOUNT_PLANS,),
                "ChangeAccountPlan": (Capability.ACCOUNT_PLANS,),
                "GetAccountDocuments": (Capability.ACCOUNT_VERIFICATION,),
            }
        ),
        "voiceit": MappingProxyType({}),
    }
)


def missing_method_reason(method: str, checked_at: datetime | None) -> str:
    """The words staff read when a probe found ``method`` gone."""
    when = f" (checked {checked_at.astimezone(UTC):%Y-%m-%d %H:%M})" if checked_at is not None else ""
    return f"The provider no longer answers {method}{when}"


def with_probe(
    matrix: CapabilityMatrix, probed: Mapping[str, object] | None, checked_at: datetime | None
) -> CapabilityMatrix:
    """``matrix`` as the last probe leaves it: a capability the static matrix supports becomes
    unsupported when a method it needs was probed ``missing``. ``available`` and ``unknown``
    change nothing (the static matrix stands until a probe says otherwise)."""
    if not probed:
        return matrix
    needs = METHOD_CAPABILITIES.get(matrix.provider, {})
    entries = dict(matrix.items())
    for method, state in probed.items():
        if state != MISSING:
            continue
        for capability in needs.get(method, ()):
            if entries[capability] is None:
                entries[capability] = missing_method_reason(method, checked_at)
    return CapabilityMatrix(matrix.provider, entries)
