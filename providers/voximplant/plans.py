"""Voximplant account plans and document verification: GetAccountPlans, GetAvailablePlans,
ChangeAccountPlan and GetAccountDocuments.

The plan calls act on the account the token speaks for; the parent reaches a child's plans by
sending the child's id as ``account_id`` beside its JWT (the provider's Java-style
impersonation). GetAccountDocuments is asked by the parent with ``child_account_id``.
ChangeAccountPlan is not idempotent (every accepted call reserves another month's fee), so a
lost answer is never resent: the caller reads the plans back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from providers.base import AccountId
from providers.errors import InsufficientFunds, OutcomeUnknown, ProviderError
from providers.plans import (
    PLAN_TYPES,
    AccountPlan,
    AccountVerification,
    AvailablePlan,
    PlanChange,
    PlanChangeForbidden,
    PlanPackage,
)
from providers.voximplant.core import VoximplantCore, _account_id, _expect_result_one, _invalid
from providers.voximplant.wire import PROVIDER, parse_date, parse_decimal, parse_int

__all__ = ["PlansMixin"]


def _rows(body: Mapping[str, Any], method: str) -> list[Mapping[str, Any]]:
    result = body.get("result")
    if not isinstance(result, list) or not all(isinstance(row, dict) for row in result):
        raise OutcomeUnknown("malformed response: result is not a list of objects", provider=PROVIDER, method=method)
    return result


def _int_or_none(value: Any, what: str, method: str) -> int | None:
    return None if value is None else parse_int(value, what, method)


def _plan_fields(row: Mapping[str, Any], method: str) -> dict[str, Any]:
    return {
        "plan_type": str(row.get("plan_type") or ""),
        "plan_id": parse_int(row.get("plan_subscription_template_id"), "plan_subscription_template_id", method),
        "name": str(row.get("plan_name") or row.get("name") or ""),
        "price": parse_decimal(row.get("price"), "price", method),
        "currency": row.get("currency") if isinstance(row.get("currency"), str) else None,
    }


def _filters(plan_types: Sequence[str] | None, plan_ids: Sequence[int] | None, method: str) -> dict[str, object]:
    params: dict[str, object] = {}
    if plan_types is not None:
        for item in plan_types:
            if item not in PLAN_TYPES:
                raise _invalid(f"plan_type must be one of {', '.join(PLAN_TYPES)}", "plan_type", method)
        params["plan_type"] = ";".join(plan_types)
    if plan_ids is not None:
        for plan_id in plan_ids:
            if type(plan_id) is not int or plan_id <= 0:
                raise _invalid("plan ids are positive integers", "plan_subscription_template_id", method)
        params["plan_subscription_template_id"] = ";".join(str(i) for i in plan_ids)
    return params


class PlansMixin(VoximplantCore):
    """The account's plans (read, upgrade) and its document verification."""

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (GetAccountPlans)
    def get_account_plans(
        self,
        account_id: AccountId,
        *,
        plan_types: Sequence[str] | None = None,
        plan_ids: Sequence[int] | None = None,
    ) -> tuple[AccountPlan, ...]:
        method = "GetAccountPlans"
        params = {"account_id": _account_id(value=account_id, method=method, field="account_id")}
        body = self._call(method, {**params, **_filters(plan_types, plan_ids, method)}, read=True)
        plans = []
        for row in _rows(body, method):
            packages = tuple(
                PlanPackage(
                    name=str(pkg.get("package_name") or pkg.get("name") or ""),
                    price=parse_decimal(pkg.get("price"), "package price", method),
                    amount=_int_or_none(pkg.get("amount"), "package amount", method),
                    remaining_amount=_int_or_none(pkg.get("remaining_amount"), "remaining_amount", method),
                    unit=pkg.get("unit") if isinstance(pkg.get("unit"), str) else None,
                )
                for pkg in row.get("packages") or ()
                if isinstance(pkg, dict)
            )
            plans.append(
                AccountPlan(
                    **_plan_fields(row, method), next_charge=parse_date(row.get("next_charge")), packages=packages
                )
            )
        return tuple(plans)

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (GetAvailablePlans)
    def get_available_plans(
        self,
        account_id: AccountId,
        *,
        plan_types: Sequence[str] | None = None,
        plan_ids: Sequence[int] | None = None,
    ) -> tuple[AvailablePlan, ...]:
        method = "GetAvailablePlans"
        params = {"account_id": _account_id(value=account_id, method=method, field="account_id")}
        body = self._call(method, {**params, **_filters(plan_types, plan_ids, method)}, read=True)
        return tuple(AvailablePlan(**_plan_fields(row, method)) for row in _rows(body, method))

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (ChangeAccountPlan)
    def change_account_plan(self, account_id: AccountId, *, plan_type: str, plan_id: int) -> PlanChange:
        """Upgrade one plan. 379 (a downgrade, which only the provider's support makes) is
        :class:`PlanChangeForbidden`; 244 (the reservation does not fit the money) is
        :class:`InsufficientFunds`. Never resent: on OutcomeUnknown read the plans back."""
        method = "ChangeAccountPlan"
        child = _account_id(value=account_id, method=method, field="account_id")
        if plan_type not in PLAN_TYPES:
            raise _invalid(f"plan_type must be one of {', '.join(PLAN_TYPES)}", "plan_type", method)
        if type(plan_id) is not int or plan_id <= 0:
            raise _invalid("the plan id is a positive integer", "plan_subscription_template_id", method)
        params = {"account_id": child, "plan_type": plan_type, "plan_subscription_template_id": plan_id}
        try:
            body = self._call(method, params, read=False)
        except ProviderError as exc:
            if exc.code == 379:
                raise PlanChangeForbidden(exc.message, provider=PROVIDER, code=379, method=method) from exc
            if exc.code == 244:
                raise InsufficientFunds(exc.message, provider=PROVIDER, code=244, method=method) from exc
            raise
        _expect_result_one(body, method)
        info = body.get("account_info")
        info = info if isinstance(info, dict) else {}
        return PlanChange(
            account_id=parse_int(info.get("account_id", child), "account_id", method),
            balance=parse_decimal(info.get("balance"), "balance", method),
            live_balance=parse_decimal(info.get("live_balance"), "live_balance", method),
            money_on_hold=parse_decimal(info.get("money_on_hold"), "money_on_hold", method),
            currency=info.get("currency") if isinstance(info.get("currency"), str) else None,
        )

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (GetAccountDocuments)
    def get_account_documents(self, account_id: AccountId) -> AccountVerification:
        method = "GetAccountDocuments"
        child = _account_id(value=account_id, method=method)
        body = self._call(
            method,
            {"child_account_id": child, "children_verifications_only": True, "with_details": True},
            read=True,
        )
        for row in _rows(body, method):
            if parse_int(row.get("account_id"), "account_id", method) != child:
                continue
            verifications = [v for v in row.get("verifications") or () if isinstance(v, dict)]
            if not verifications:
                break
            first = verifications[0]
            status = str(first.get("verification_status") or "")
            documents = tuple(
                str(doc.get("name") or doc.get("document_name") or "")
                for doc in first.get("documents") or ()
                if isinstance(doc, dict)
            )
            return AccountVerification(
                account_id=child,
                status=status,
                hold_until=parse_date(first.get("unverified_hold_until")),
                documents=documents,
            )
        raise OutcomeUnknown("the answer does not name the account", provider=PROVIDER, method=method)
