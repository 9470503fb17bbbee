"""Voximplant app users of a child account: applications, AddUser, SetUserInfo, GetUsers,
DelUser, TransferMoneyToUser, and the history lookup that resolves a transfer whose answer
was lost.

Every call acts inside the child account ``account_id``: the parent's JWT plus an
``account_id`` form field, as the platform lets a parent act for its children.
TransferMoneyToUser has no payment reference and no duplicate check, so a resend pays twice:
the client never resends it, and :meth:`UsersMixin.find_user_transfers` finds an earlier
attempt by the reference the caller put in ``user_transaction_description``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from providers.base import AccountId
from providers.errors import InvalidArgument, OutcomeUnknown, PagingError
from providers.pbx_users import PbxApplication, UserSnapshot, UserTransfer
from providers.redaction import Secret
from providers.voximplant.core import (
    MAX_PAGE,
    _account_id,
    _cents,
    _check_currency,
    _child_id,
    _expect_result_one,
    _invalid,
    _reveal,
)
from providers.voximplant.history import HistoryMixin
from providers.voximplant.wire import PROVIDER, parse_bool, parse_decimal, parse_int

__all__ = ["UserPage", "UsersMixin"]

#: AddUser / SetUserInfo ``user_name`` (and ``new_user_name``), as documented.
USER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{2,49}")
#: Descriptions of TransferMoneyToUser must be shorter than this (errors 234 / 235).
DESCRIPTION_MAX = 120
#: ``user_display_name`` and ``user_custom_data`` must be shorter than these.
DISPLAY_NAME_MAX = 256
CUSTOM_DATA_MAX = 8192
#: The user type of transaction; both sides of a TransferMoneyToUser carry it.
USER_TRANSFER_TYPE = "user_money_transfer"
# The wire maps these codes to the account's fields; for the user methods they name the user's.
_USER_FIELDS = {463: "user_password", 464: "user_password", 523: "user_password", 524: "user_password"}
_USER_FIELDS |= {211: "user_custom_data", 212: "user_custom_data"}


@dataclass(frozen=True)
class UserPage:
    """One GetUsers answer."""

    users: tuple[UserSnapshot, ...]
    total_count: int
    count: int


class UsersMixin(HistoryMixin):
    """The app users of one child account, and the money moved to them."""

    def _user_call(self, method: str, account_id: AccountId, params: Mapping[str, object], *, read: bool) -> Any:
        child = _account_id(account_id, method, "account_id")
        try:
            return self._call(method, {"account_id": child, **params}, read=read)
        except InvalidArgument as exc:
            if isinstance(exc.code, int) and exc.code in _USER_FIELDS:
                exc.field = _USER_FIELDS[exc.code]
            raise

    # Docs: https://voximplant.com/docs/references/httpapi/applications (GetApplications)
    def get_applications(self, *, account_id: AccountId) -> tuple[PbxApplication, ...]:
        method = "GetApplications"
        apps: list[PbxApplication] = []
        while True:
            body = self._user_call(method, account_id, {"count": MAX_PAGE, "offset": len(apps)}, read=True)
            rows = _rows(body, method)
            for row in rows:
                apps.append(
                    PbxApplication(
                        application_id=parse_int(row.get("application_id"), "application_id", method),
                        application_name=str(row.get("application_name") or ""),
                    )
                )
            total = parse_int(body.get("total_count", len(apps)), "total_count", method)
            if not rows or len(apps) >= total:
                return tuple(apps)

    # Docs: https://voximplant.com/docs/references/httpapi/users (AddUser)
    def add_user(
        self,
        *,
        account_id: AccountId,
        user_name: str,
        user_display_name: str,
        user_password: Secret | str,
        parent_accounting: bool,
        application_id: int | None = None,
        application_name: str | None = None,
        user_active: bool | None = None,
        user_custom_data: str | None = None,
    ) -> int:
        """A new user bound to one application of the child; returns the new ``user_id``.
        On :class:`OutcomeUnknown` look the name up with :meth:`find_user` before anything else."""
        method = "AddUser"
        _check_user_name(user_name, "user_name", method)
        if not isinstance(parent_accounting, bool):
            raise _invalid("parent_accounting must be True or False", "parent_accounting", method)
        params = {
            "user_name": user_name,
            **_user_fields(
                method,
                user_display_name=user_display_name,
                user_password=user_password,
                parent_accounting=parent_accounting,
                user_active=user_active,
                user_custom_data=user_custom_data,
                new=True,
            ),
            **_application(application_id, application_name, method, required=True),
        }
        body = self._user_call(method, account_id, params, read=False)
        _expect_result_one(body, method)
        user_id = body.get("user_id")
        if user_id is None:
            raise OutcomeUnknown("malformed response: no user_id", provider=PROVIDER, method=method)
        return parse_int(user_id, "user_id", method)

    # Docs: https://voximplant.com/docs/references/httpapi/users (SetUserInfo)
    def set_user_info(
        self,
        *,
        account_id: AccountId,
        user_id: int,
        new_user_name: str | None = None,
        user_display_name: str | None = None,
        user_password: Secret | str | None = None,
        parent_accounting: bool | None = None,
        user_active: bool | None = None,
        user_custom_data: str | None = None,
    ) -> None:
        method = "SetUserInfo"
        if new_user_name is not None:
            _check_user_name(new_user_name, "new_user_name", method)
        params = {
            "user_id": _child_id(user_id, method, "user_id"),
            "new_user_name": new_user_name,
            **_user_fields(
                method,
                user_display_name=user_display_name,
                user_password=user_password,
                parent_accounting=parent_accounting,
                user_active=user_active,
                user_custom_data=user_custom_data,
            ),
        }
        _expect_result_one(self._user_call(method, account_id, params, read=False), method)

    # Docs: https://voximplant.com/docs/references/httpapi/users (GetUsers)
    def get_users_page(
        self,
        *,
        account_id: AccountId,
        application_id: int | None = None,
        application_name: str | None = None,
        user_id: int | Sequence[int] | None = None,
        user_name: str | None = None,
        count: int = MAX_PAGE,
        offset: int = 0,
    ) -> UserPage:
        """One page of users ordered by id. ``user_name`` is a filter the provider may match
        as a part of the name; compare names yourself (``find_user`` does)."""
        method = "GetUsers"
        if not 1 <= count <= MAX_PAGE:
            raise _invalid(f"count must be 1..{MAX_PAGE}", "count", method)
        if offset < 0:
            raise _invalid("offset must be >= 0", "offset", method)
        ids = None
        if user_id is not None:
            items = [user_id] if isinstance(user_id, int) else list(user_id)
            ids = [_child_id(item, method, "user_id") for item in items]
        params = {
            "user_id": ids,
            "user_name": user_name,
            "order_by": "user_id",
            "count": count,
            "offset": offset,
            **_application(application_id, application_name, method, required=True),
        }
        body = self._user_call(method, account_id, params, read=True)
        users = tuple(_user(row, method) for row in _rows(body, method))
        total = body.get("total_count")
        return UserPage(
            users=users,
            total_count=parse_int(total, "total_count", method) if total is not None else len(users),
            count=parse_int(body.get("count", len(users)), "count", method),
        )

    def get_users(
        self,
        *,
        account_id: AccountId,
        application_id: int | None = None,
        application_name: str | None = None,
        user_id: int | Sequence[int] | None = None,
        user_name: str | None = None,
        page_size: int = MAX_PAGE,
    ) -> tuple[UserSnapshot, ...]:
        """Every user (of one application, or of each of the child's applications in turn),
        ascending by id within an application, each once; :class:`PagingError` when the
        provider's counts do not add up."""
        if application_id is None and application_name is None:
            out: list[UserSnapshot] = []
            for app in self.get_applications(account_id=account_id):
                out += self.get_users(
                    account_id=account_id,
                    application_id=app.application_id,
                    user_id=user_id,
                    user_name=user_name,
                    page_size=page_size,
                )
            return tuple(out)
        seen: dict[int, UserSnapshot] = {}
        offset = 0
        total = 0
        while True:
            page = self.get_users_page(
                account_id=account_id,
                application_id=application_id,
                application_name=application_name,
                user_id=user_id,
                user_name=user_name,
                count=page_size,
                offset=offset,
            )
            total = page.total_count
            for user in page.users:
                seen.setdefault(user.user_id, user)
            offset += len(page.users)
            if not page.users or offset >= total:
                break
        if len(seen) < min(offset, total):
            raise PagingError("GetUsers pages repeated users", provider=PROVIDER, method="GetUsers")
        return tuple(sorted(seen.values(), key=lambda u: u.user_id))

    def find_user(
        self,
        *,
        account_id: AccountId,
        user_name: str,
        application_id: int | None = None,
        application_name: str | None = None,
    ) -> UserSnapshot | None:
        _check_user_name(user_name, "user_name", "GetUsers")
        for user in self.get_users(
            account_id=account_id, application_id=application_id, application_name=application_name, user_name=user_name
        ):
            if user.user_name == user_name:
                return user
        return None

    # Docs: https://voximplant.com/docs/references/httpapi/users (DelUser)
    def del_user(self, *, account_id: AccountId, user_id: int) -> None:
        """Delete exactly one user (never a list or ``all``)."""
        method = "DelUser"
        params = {"user_id": _child_id(user_id, method, "user_id")}
        _expect_result_one(self._user_call(method, account_id, params, read=False), method)

    # Docs: https://voximplant.com/docs/references/voxengine/voximplantapi/transfermoneytouserrequest
    #       (TransferMoneyToUser; legacy, in older SDKs)
    def transfer_money_to_user(
        self,
        *,
        account_id: AccountId,
        user_id: int,
        amount: Decimal,
        user_transaction_description: str,
        account_transaction_description: str | None = None,
        currency: str | None = None,
    ) -> Decimal:
        """Move ``amount`` from the child account to ONE user with its own balance, in strict
        mode; returns the account's balance afterwards. 573: the user spends the account's
        money (no balance to fund). Never resent: on :class:`OutcomeUnknown` look the reference
        up with :meth:`find_user_transfers`."""
        return self._user_transfer(
            account_id, user_id, amount, True, user_transaction_description, account_transaction_description, currency
        )

    def transfer_money_from_user(
        self,
        *,
        account_id: AccountId,
        user_id: int,
        amount: Decimal,
        user_transaction_description: str,
        account_transaction_description: str | None = None,
        currency: str | None = None,
    ) -> Decimal:
        """Pull ``amount`` (positive) back from ONE user to the child account (the amount is
        negated on the wire); strict mode, so a user holding less is refused (127)."""
        return self._user_transfer(
            account_id, user_id, amount, False, user_transaction_description, account_transaction_description, currency
        )

    def _user_transfer(
        self,
        account_id: AccountId,
        user_id: int,
        amount: Decimal,
        to_user: bool,
        user_description: str,
        account_description: str | None,
        currency: str | None,
    ) -> Decimal:
        method = "TransferMoneyToUser"
        uid = _child_id(user_id, method, "user_id")
        wire_amount = _cents(amount, method)
        if not isinstance(user_description, str) or not user_description.strip():
            raise _invalid(
                "user_transaction_description is required: it carries the reference that finds the transfer again",
                "user_transaction_description",
                method,
            )
        for name, text in (
            ("user_transaction_description", user_description),
            ("account_transaction_description", account_description),
        ):
            if text is not None and (len(text) >= DESCRIPTION_MAX or any(ord(c) < 32 for c in text)):
                raise _invalid(f"{name} must be < {DESCRIPTION_MAX} printable characters", name, method)
        _check_currency(currency, method)
        params = {
            "user_id": uid,
            "amount": wire_amount if to_user else -wire_amount,
            "currency": currency,
            "strict_mode": True,
            "user_transaction_description": user_description,
            "account_transaction_description": account_description,
        }
        body = self._user_call(method, account_id, params, read=False)
        _expect_result_one(body, method)
        balance = parse_decimal(body.get("balance"), "balance", method)
        if balance is None:
            raise OutcomeUnknown("malformed response: no balance", provider=PROVIDER, method=method)
        return balance

    def find_user_transfers(
        self,
        *,
        account_id: AccountId,
        user_id: int,
        reference: str,
        from_date: datetime,
        to_date: datetime,
    ) -> tuple[UserTransfer, ...]:
        """The movements of the user's own balance in ``[from_date, to_date]`` whose description
        contains ``reference``, oldest first: the user's side of each TransferMoneyToUser
        (GetTransactionHistory of the child, ``user_id`` and ``users_transactions_only``).
        Pad the window: the history is written in the provider's time, shown a while later."""
        method = "GetTransactionHistory"
        child = _account_id(account_id, method)
        uid = _child_id(user_id, method, "user_id")
        if not isinstance(reference, str) or not reference.strip():
            raise _invalid("reference is required", "reference", method)
        found = []
        for row in self.iter_transaction_history(
            from_date=from_date,
            to_date=to_date,
            child_account_id=child,
            children_transactions_only=True,
            users_transactions_only=True,
            user_id=uid,
            transaction_type=USER_TRANSFER_TYPE,
        ):
            if reference not in (row.transaction_description or ""):
                continue
            found.append(
                UserTransfer(
                    transaction_id=row.transaction_id,
                    account_id=row.account_id,
                    user_id=uid,
                    performed_at=row.performed_at,
                    amount=row.amount,
                    currency=row.currency,
                    transaction_type=row.transaction_type,
                    description=row.transaction_description,
                )
            )
        return tuple(found)


def _user_fields(
    method: str,
    *,
    user_display_name: str | None,
    user_password: Secret | str | None,
    parent_accounting: bool | None,
    user_active: bool | None,
    user_custom_data: str | None,
    new: bool = False,
) -> dict[str, object]:
    """The settings AddUser and SetUserInfo share, checked and as sent (``None``: not sent).
    ``new``: a new user (AddUser), whose display name is required."""
    if new or user_display_name is not None:
        _check_display_name(user_display_name, method)
    _check_custom_data(user_custom_data, method)
    return {
        "user_display_name": user_display_name,
        "user_password": _reveal(user_password),
        "parent_accounting": parent_accounting,
        "user_active": user_active,
        "user_custom_data": user_custom_data,
    }


def _application(
    application_id: int | None, application_name: str | None, method: str, *, required: bool
) -> dict[str, object]:
    if application_id is not None and application_name is not None:
        raise _invalid("give application_id or application_name, not both", "application_id", method)
    if application_id is not None:
        return {"application_id": _child_id(application_id, method, "application_id")}
    if application_name is not None:
        if not isinstance(application_name, str) or not application_name.strip():
            raise _invalid("application_name is empty", "application_name", method)
        return {"application_name": application_name}
    if required:
        raise _invalid("application_id or application_name is required", "application_id", method)
    return {}


def _check_user_name(name: object, field: str, method: str) -> None:
    if not isinstance(name, str) or not USER_NAME_RE.fullmatch(name):
        raise _invalid(
            f"{field} must be 3-50 characters: lower-case latin letters, digits, '_' and '-', "
            "starting with a letter or digit",
            field,
            method,
        )


def _check_display_name(name: object, method: str) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) >= DISPLAY_NAME_MAX:
        raise _invalid(f"user_display_name must be 1-{DISPLAY_NAME_MAX - 1} characters", "user_display_name", method)


def _check_custom_data(data: str | None, method: str) -> None:
    if data is not None and len(data) >= CUSTOM_DATA_MAX:
        raise _invalid(f"user_custom_data must be < {CUSTOM_DATA_MAX} characters", "user_custom_data", method)


def _rows(body: Mapping[str, Any], method: str) -> list[dict[str, Any]]:
    rows = body.get("result")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise OutcomeUnknown("malformed response: result is not a list of objects", provider=PROVIDER, method=method)
    return rows


_KNOWN = frozenset(
    "user_id user_name user_display_name application_id application_name user_active parent_accounting balance "
    "live_balance fixed_balance frozen two_factor_auth_required user_custom_data".split()
)


def _user(row: Mapping[str, Any], method: str) -> UserSnapshot:
    """UserInfoType. A user that spends the account's money has no balance of its own: None."""
    shared = parse_bool(row.get("parent_accounting"))

    def own(name: str) -> Decimal | None:
        value = parse_decimal(row.get(name), name, method)
        return None if shared else value

    name = row.get("user_name")
    if not isinstance(name, str):
        raise OutcomeUnknown("malformed response: user without user_name", provider=PROVIDER, method=method)
    app_id = row.get("application_id")
    return UserSnapshot(
        user_id=parse_int(row.get("user_id"), "user_id", method),
        user_name=name,
        display_name=row.get("user_display_name"),
        application_id=parse_int(app_id, "application_id", method) if app_id is not None else None,
        application_name=row.get("application_name"),
        active=parse_bool(row.get("user_active")),
        parent_accounting=shared,
        balance=own("balance"),
        live_balance=own("live_balance"),
        fixed_balance=own("fixed_balance"),
        frozen=parse_bool(row.get("frozen")),
        two_factor_auth_required=parse_bool(row.get("two_factor_auth_required")),
        custom_data=row.get("user_custom_data"),
        extra=MappingProxyType({k: v for k, v in row.items() if k not in _KNOWN}),
    )
