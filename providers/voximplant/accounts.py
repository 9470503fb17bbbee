"""Voximplant child accounts: read, add, clone, edit, freeze.

The GetAccountInfo, GetChildrenAccounts, AddAccount, CloneAccount and SetChildAccountInfo
calls, and the provider-neutral account methods built on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

from providers.base import AccountId, AccountSnapshot, CreatedAccount
from providers.errors import OutcomeUnknown
from providers.redaction import Secret
from providers.voximplant.core import (
    MAX_PAGE,
    ChildIds,
    VoximplantCore,
    _account_id,
    _child_id,
    _child_ids,
    _expect_result_one,
    _invalid,
    _reveal,
)
from providers.voximplant.types import (
    AccountInfo,
    AccountInfoResponse,
    AddedAccount,
    ChildrenPage,
    ClonedAccount,
    ClonedItem,
)
from providers.voximplant.wire import PROVIDER, parse_bool, parse_decimal, parse_int, parse_timestamp

OrderBy = Literal["child_account_id", "child_account_name", "child_account_email"]

_SECRET_ACCOUNT_FIELDS = frozenset({"api_key", "callback_salt", "account_password", "password"})
_MONEY_ACCOUNT_FIELDS = ("balance", "live_balance", "fixed_balance", "money_on_hold", "credit_limit")


class AccountsMixin(VoximplantCore):
    """Child accounts: the account calls and the provider-neutral account methods."""

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (GetAccountInfo)
    def get_account_info(self, *, return_live_balance: bool | None = None) -> AccountInfoResponse:
        method = "GetAccountInfo"
        body = self._call(method, {"return_live_balance": return_live_balance}, read=True)
        result = body["result"]
        if not isinstance(result, dict):
            raise OutcomeUnknown("malformed response: result is not an object", provider=PROVIDER, method=method)
        api_address = body.get("api_address")
        return AccountInfoResponse(
            account=_account_info(result, method), api_address=api_address if isinstance(api_address, str) else None
        )

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (GetChildrenAccounts)
    #       https://docs.voximplant.ai/api-reference/management-api (Reference > Accounts > GetChildrenAccounts)
    def get_children_accounts(
        self,
        *,
        child_account_id: ChildIds | None = None,
        child_account_name: str | None = None,
        child_account_email: str | None = None,
        active: bool | None = None,
        frozen: bool | None = None,
        ignore_invalid_accounts: bool | None = None,
        brief_output: bool | None = None,
        medium_output: bool | None = None,
        count: int | None = None,
        offset: int | None = None,
        order_by: OrderBy | None = None,
        return_live_balance: bool | None = None,
    ) -> ChildrenPage:
        method = "GetChildrenAccounts"
        if count is not None and not brief_output and not medium_output and not 1 <= count <= MAX_PAGE:
            raise _invalid(f"count must be 1..{MAX_PAGE} for full output", "count", method)
        if offset is not None and offset < 0:
            raise _invalid("offset must be >= 0", "offset", method)
        params = {
            "child_account_id": _child_ids(child_account_id, method) if child_account_id is not None else None,
            "child_account_name": child_account_name,
            "child_account_email": child_account_email,
            "active": active,
            "frozen": frozen,
            "ignore_invalid_accounts": ignore_invalid_accounts,
            "brief_output": brief_output,
            "medium_output": medium_output,
            "count": count,
            "offset": offset,
            "order_by": order_by,
            "return_live_balance": return_live_balance,
        }
        body = self._call(method, params, read=True)
        rows = body["result"]
        if not isinstance(rows, list):
            raise OutcomeUnknown("malformed response: result is not a list", provider=PROVIDER, method=method)
        accounts = tuple(_account_info(row, method) for row in rows)
        total = body.get("total_count")
        count_back = body.get("count")
        return ChildrenPage(
            accounts=accounts,
            total_count=parse_int(total, "total_count", method) if total is not None else len(accounts),
            count=parse_int(count_back, "count", method) if count_back is not None else len(accounts),
        )

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (AddAccount)
    def add_account(
        self,
        *,
        account_name: str,
        account_email: str,
        account_password: str | Secret,
        active: bool | None = None,
        language_code: str | None = None,
        location: str | None = None,
        min_balance_to_notify: Decimal | None = None,
        account_notifications: bool | None = None,
        tariff_changing_notifications: bool | None = None,
        news_notifications: bool | None = None,
        account_first_name: str | None = None,
        account_last_name: str | None = None,
        account_custom_data: str | None = None,
    ) -> AddedAccount:
        """Create a child account. Parent authorisation: ``parent_account_id`` (from the
        service-account credentials) plus ``parent_account_api_key``.

        Not idempotent: after :class:`OutcomeUnknown`, look the child up by
        ``account_name`` (unique) before trying again.
        """
        method = "AddAccount"
        params = {
            "parent_account_id": self.credentials.account_id,
            "account_name": account_name,
            "account_email": account_email,
            "account_password": _reveal(account_password),
            "active": active,
            "language_code": language_code,
            "location": location,
            "min_balance_to_notify": min_balance_to_notify,
            "account_notifications": account_notifications,
            "tariff_changing_notifications": tariff_changing_notifications,
            "news_notifications": news_notifications,
            "account_first_name": account_first_name,
            "account_last_name": account_last_name,
            "account_custom_data": account_custom_data,
        }
        body = self._call(method, params, read=False, parent_auth=True)
        api_key = body.get("api_key")
        if "account_id" not in body or not isinstance(api_key, str):
            raise OutcomeUnknown("malformed response: no account_id/api_key", provider=PROVIDER, method=method)
        return AddedAccount(
            account_id=parse_int(body["account_id"], "account_id", method),
            api_key=Secret(api_key),
            active=parse_bool(body.get("active")),
        )

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (CloneAccount)
    def clone_child_account(
        self,
        *,
        new_account_name: str,
        new_account_email: str,
        new_account_password: str | Secret,
        account_id: int | None = None,
        account_name: str | None = None,
        account_email: str | None = None,
        account_first_name: str | None = None,
        account_last_name: str | None = None,
        account_custom_data: str | None = None,
        language_code: str | None = None,
        location: str | None = None,
    ) -> ClonedAccount:
        """Clone a child. The source is exactly one of ``account_id`` / ``account_name`` /
        ``account_email``; parent authorisation is ``parent_account_api_key``."""
        method = "CloneAccount"
        given = [p for p in (account_id, account_name, account_email) if p is not None]
        if len(given) != 1:
            raise _invalid("give exactly one of account_id, account_name, account_email", "account_id", method)
        params = {
            "account_id": _child_id(account_id, method, "account_id") if account_id is not None else None,
            "account_name": account_name,
            "account_email": account_email,
            "new_account_name": new_account_name,
            "new_account_email": new_account_email,
            "new_account_password": _reveal(new_account_password),
            "account_first_name": account_first_name,
            "account_last_name": account_last_name,
            "account_custom_data": account_custom_data,
            "language_code": language_code,
            "location": location,
        }
        body = self._call(method, params, read=False, parent_auth=True)
        result = body["result"]
        if not isinstance(result, dict) or "account_id" not in result:
            raise OutcomeUnknown("malformed response: no cloned account", provider=PROVIDER, method=method)
        return _cloned_account(result, method)

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (SetChildAccountInfo)
    #       https://docs.voximplant.ai/api-reference/management-api (Reference > Accounts > SetChildAccountInfo)
    def set_child_account_info(
        self,
        *,
        child_account_id: ChildIds | None = None,
        child_account_name: str | Sequence[str] | None = None,
        child_account_email: str | Sequence[str] | None = None,
        active: bool | None = None,
        new_child_account_email: str | None = None,
        new_child_account_password: str | Secret | None = None,
        account_notifications: bool | None = None,
        tariff_changing_notifications: bool | None = None,
        news_notifications: bool | None = None,
        language_code: str | None = None,
        location: str | None = None,
        min_balance_to_notify: Decimal | None = None,
        support_robokassa: bool | None = None,
        support_bank_card: bool | None = None,
        support_invoice: bool | None = None,
        can_use_restricted: bool | None = None,
        callback_url: str | None = None,
        callback_salt: str | Secret | None = None,
    ) -> None:
        """Edit children. Target exactly one of id / name / email (explicit lists only:
        the API's ``all`` is deliberately not offered). ``active=False`` disables."""
        method = "SetChildAccountInfo"
        targets = [t for t in (child_account_id, child_account_name, child_account_email) if t is not None]
        if len(targets) != 1:
            raise _invalid(
                "give exactly one of child_account_id, child_account_name, child_account_email",
                "child_account_id",
                method,
            )
        for name, value in (("child_account_name", child_account_name), ("child_account_email", child_account_email)):
            if value is not None and (value == "all" or (not isinstance(value, str) and "all" in value)):
                raise _invalid("'all' is not accepted here", name, method)
        params = {
            "child_account_id": _child_ids(child_account_id, method) if child_account_id is not None else None,
            "child_account_name": child_account_name,
            "child_account_email": child_account_email,
            "active": active,
            "new_child_account_email": new_child_account_email,
            "new_child_account_password": _reveal(new_child_account_password),
            "account_notifications": account_notifications,
            "tariff_changing_notifications": tariff_changing_notifications,
            "news_notifications": news_notifications,
            "language_code": language_code,
            "location": location,
            "min_balance_to_notify": min_balance_to_notify,
            "support_robokassa": support_robokassa,
            "support_bank_card": support_bank_card,
            "support_invoice": support_invoice,
            "can_use_restricted": can_use_restricted,
            "callback_url": callback_url,
            "callback_salt": _reveal(callback_salt),
        }
        body = self._call(method, params, read=False)
        _expect_result_one(body, method)

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (SetAccountInfo)
    def set_account_info(
        self,
        *,
        callback_url: str | None = None,
        callback_salt: str | Secret | None = None,
        min_balance_to_notify: Decimal | None = None,
        account_notifications: bool | None = None,
        language_code: str | None = None,
        location: str | None = None,
    ) -> None:
        """Edit the caller's own (parent) account. The provider checks ``callback_salt`` (under
        40 chars, error 399) and ``callback_url`` (error 398); both come back as InvalidArgument
        naming the field."""
        method = "SetAccountInfo"
        params = {
            "callback_url": callback_url,
            "callback_salt": _reveal(callback_salt),
            "min_balance_to_notify": min_balance_to_notify,
            "account_notifications": account_notifications,
            "language_code": language_code,
            "location": location,
        }
        body = self._call(method, params, read=False)
        _expect_result_one(body, method)

    # -- provider-neutral interface ---------------------------------------------------------

    def create_account(
        self,
        *,
        name: str,
        email: str,
        password: str,
        first_name: str | None = None,
        last_name: str | None = None,
        active: bool = True,
        managed: bool = True,
    ) -> CreatedAccount:
        added = self.add_account(
            account_name=name,
            account_email=email,
            account_password=password,
            active=active,
            account_first_name=first_name,
            account_last_name=last_name,
        )
        return CreatedAccount(account_id=added.account_id, email=email, active=added.active, api_key=added.api_key)

    def get_account(self, account_id: AccountId) -> AccountSnapshot | None:
        child = _account_id(account_id, "GetChildrenAccounts")
        page = self.get_children_accounts(child_account_id=[child], ignore_invalid_accounts=True, count=1)
        for account in page.accounts:
            if account.account_id == child:
                return _snapshot(account)
        return None

    def get_own_account(self) -> AccountSnapshot:
        return _snapshot(self.get_account_info().account)

    def find_account(self, *, name: str) -> AccountSnapshot | None:
        # The name filter may match substrings (the docs do not say): compare exactly.
        page = self.get_children_accounts(child_account_name=name, count=MAX_PAGE)
        for account in page.accounts:
            if account.account_name == name:
                return _snapshot(account)
        return None

    def clone_account(self, *, source_account_id: AccountId, name: str, email: str, password: str) -> CreatedAccount:
        cloned = self.clone_child_account(
            account_id=_account_id(source_account_id, "CloneAccount", "account_id"),
            new_account_name=name,
            new_account_email=email,
            new_account_password=password,
        )
        return CreatedAccount(
            account_id=cloned.account_id, email=cloned.account_email, active=cloned.active, api_key=cloned.api_key
        )

    def freeze_account(self, account_id: AccountId) -> None:
        self.set_child_account_info(child_account_id=_account_id(account_id, "SetChildAccountInfo"), active=False)

    def unfreeze_account(self, account_id: AccountId) -> None:
        self.set_child_account_info(child_account_id=_account_id(account_id, "SetChildAccountInfo"), active=True)

    def set_account_callbacks(self, *, url: str, salt: Secret | str | None) -> None:
        self.set_account_info(callback_url=url, callback_salt=salt)

    def update_account(self, account_id: AccountId, *, email: str | None = None, password: str | None = None) -> None:
        self.set_child_account_info(
            child_account_id=_account_id(account_id, "SetChildAccountInfo"),
            new_child_account_email=email,
            new_child_account_password=password,
        )


def _account_info(row: Any, method: str) -> AccountInfo:
    if not isinstance(row, dict) or "account_id" not in row:
        raise OutcomeUnknown("malformed response: account without account_id", provider=PROVIDER, method=method)
    money = {name: parse_decimal(row.get(name), name, method) for name in _MONEY_ACCOUNT_FIELDS}
    api_key = row.get("api_key")
    known = {
        "account_id",
        "account_name",
        "account_email",
        "api_key",
        "active",
        "frozen",
        "currency",
        "created",
        "language_code",
        "location",
        "min_balance_to_notify",
        "account_first_name",
        "account_last_name",
        "account_custom_data",
        "callback_url",
        *_MONEY_ACCOUNT_FIELDS,
    }
    extra = {k: v for k, v in row.items() if k not in known and k not in _SECRET_ACCOUNT_FIELDS}
    return AccountInfo(
        account_id=parse_int(row["account_id"], "account_id", method),
        account_name=row.get("account_name"),
        account_email=row.get("account_email"),
        api_key=Secret(api_key) if isinstance(api_key, str) and api_key else None,
        active=parse_bool(row.get("active")),
        frozen=parse_bool(row.get("frozen")),
        currency=row.get("currency"),
        created=parse_timestamp(row.get("created"), UTC, "created", method),
        language_code=row.get("language_code"),
        location=row.get("location"),
        min_balance_to_notify=parse_decimal(row.get("min_balance_to_notify"), "min_balance_to_notify", method),
        account_first_name=row.get("account_first_name"),
        account_last_name=row.get("account_last_name"),
        account_custom_data=row.get("account_custom_data"),
        callback_url=row.get("callback_url"),
        extra=MappingProxyType(extra),
        **money,
    )


def _snapshot(account: AccountInfo) -> AccountSnapshot:
    return AccountSnapshot(
        account_id=account.account_id,
        name=account.account_name,
        email=account.account_email,
        active=account.active,
        frozen=account.frozen,
        balance=account.balance,
        currency=account.currency,
        credit_limit=account.credit_limit,
    )


def _items(rows: Any, id_key: str, name_key: str) -> tuple[ClonedItem, ...]:
    items = []
    for row in rows or ():
        if isinstance(row, dict) and id_key in row:
            items.append(ClonedItem(id=int(row[id_key]), name=str(row.get(name_key, ""))))
    return tuple(items)


def _cloned_account(result: Mapping[str, Any], method: str) -> ClonedAccount:
    api_key = result.get("api_key")
    known = {
        "account_id",
        "account_name",
        "account_email",
        "api_key",
        "active",
        "users",
        "scenarios",
        "applications",
        "acd_queues",
        "acd_skills",
        "admin_roles",
        "admin_users",
    }
    return ClonedAccount(
        account_id=parse_int(result["account_id"], "account_id", method),
        account_name=result.get("account_name"),
        account_email=result.get("account_email"),
        api_key=Secret(api_key) if isinstance(api_key, str) and api_key else None,
        active=parse_bool(result.get("active")),
        users=_items(result.get("users"), "user_id", "user_name"),
        scenarios=_items(result.get("scenarios"), "scenario_id", "scenario_name"),
        applications=_items(result.get("applications"), "application_id", "application_name"),
        acd_queues=_items(result.get("acd_queues"), "acd_queue_id", "acd_queue_name"),
        acd_skills=_items(result.get("acd_skills"), "skill_id", "skill_name"),
        admin_roles=_items(result.get("admin_roles"), "admin_role_id", "admin_role_name"),
        # admin_user_api_key is a secret: keep only ids and names.
        admin_users=_items(result.get("admin_users"), "admin_user_id", "admin_user_name"),
        extra=MappingProxyType({k: v for k, v in result.items() if k not in known}),
    )
