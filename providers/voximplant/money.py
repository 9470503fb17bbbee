"""Voximplant money: transfers to and from a child, the parent's charges and rates, thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from types import MappingProxyType

from providers.base import AccountId
from providers.errors import OutcomeUnknown
from providers.voximplant.accounts import AccountsMixin
from providers.voximplant.core import _account_id, _cents, _check_currency, _child_id, _expect_result_one, _invalid
from providers.voximplant.types import CurrencyRates, MoneyAmountToCharge, SubscriptionCharge, TransferMoneyResult
from providers.voximplant.wire import PROVIDER, parse_bool, parse_date, parse_decimal


class MoneyMixin(AccountsMixin):
    """Money moves between the parent and one child, and what the parent is charged."""

    # Docs (legacy; gone from the current reference): https://voximplant.com/docs/howtos/advanced/childaccounts
    #       https://github.com/voximplant/apiclient-nodejs/blob/6280e1b/src/Interfaces.ts
    #       (TransferMoneyToChildAccountRequest, v1.1.6)
    def transfer_money_to_child_account(
        self,
        *,
        child_account_id: int,
        amount: Decimal,
        payment_reference: str,
        check_duplicate_reference_from: datetime,
        currency: str | None = None,
        child_transaction_description: str | None = None,
        parent_transaction_description: str | None = None,
    ) -> TransferMoneyResult:
        """Move ``amount`` from the parent to ONE child, in strict mode, deduplicated by
        ``payment_reference`` against transactions since ``check_duplicate_reference_from``.

        The request shape is guarded here, before anything is sent: one positive integer id
        (no list, no ``all``), a positive Decimal with at most 2 places (negative amounts
        would pull money from the child), ``strict_mode=true`` always, a reference under
        127 characters. On :class:`OutcomeUnknown` resolve by looking the reference up;
        resend only with the same reference and the same ``check_duplicate_reference_from``.
        """
        return self._transfer(
            child_account_id=child_account_id,
            amount=amount,
            to_child=True,
            payment_reference=payment_reference,
            check_duplicate_reference_from=check_duplicate_reference_from,
            currency=currency,
            child_transaction_description=child_transaction_description,
            parent_transaction_description=parent_transaction_description,
        )

    # Docs: same call as transfer_money_to_child_account; a negative amount moves money
    #       child -> parent (the Node.js API client's TransferMoneyToChildAccount example)
    def transfer_money_from_child_account(
        self,
        *,
        child_account_id: int,
        amount: Decimal,
        payment_reference: str,
        check_duplicate_reference_from: datetime,
        currency: str | None = None,
        child_transaction_description: str | None = None,
        parent_transaction_description: str | None = None,
    ) -> TransferMoneyResult:
        """Pull ``amount`` back from ONE child to the parent (TransferMoneyToChildAccount
        with the amount negated on the wire). Same guards as the top-up: the caller passes a
        positive amount and must mean it, which a sign slip cannot fake; strict mode, so a
        child holding less is refused (127), never clamped."""
        return self._transfer(
            child_account_id=child_account_id,
            amount=amount,
            to_child=False,
            payment_reference=payment_reference,
            check_duplicate_reference_from=check_duplicate_reference_from,
            currency=currency,
            child_transaction_description=child_transaction_description,
            parent_transaction_description=parent_transaction_description,
        )

    def _transfer(
        self,
        *,
        child_account_id: int,
        amount: Decimal,
        to_child: bool,
        payment_reference: str,
        check_duplicate_reference_from: datetime,
        currency: str | None,
        child_transaction_description: str | None,
        parent_transaction_description: str | None,
    ) -> TransferMoneyResult:
        method = "TransferMoneyToChildAccount"
        child = _child_id(child_account_id, method)
        wire_amount = _cents(amount, method)
        if not isinstance(payment_reference, str) or not payment_reference.strip():
            raise _invalid("payment_reference is required", "payment_reference", method)
        if len(payment_reference) >= 127 or any(ord(c) < 32 for c in payment_reference):
            raise _invalid("payment_reference must be < 127 printable characters", "payment_reference", method)
        if not isinstance(check_duplicate_reference_from, datetime) or check_duplicate_reference_from.tzinfo is None:
            raise _invalid(
                "check_duplicate_reference_from must be an aware datetime", "check_duplicate_reference_from", method
            )
        _check_currency(currency, method)
        for name, text in (
            ("child_transaction_description", child_transaction_description),
            ("parent_transaction_description", parent_transaction_description),
        ):
            if text is not None and len(text) >= 120:
                raise _invalid(f"{name} must be < 120 characters", name, method)
        params = {
            "child_account_id": child,
            "amount": wire_amount if to_child else -wire_amount,
            "currency": currency,
            "strict_mode": True,
            "payment_reference": payment_reference,
            "check_duplicate_reference_from": check_duplicate_reference_from,
            "child_transaction_description": child_transaction_description,
            "parent_transaction_description": parent_transaction_description,
        }
        body = self._call(method, params, read=False)
        _expect_result_one(body, method)
        extra = {k: v for k, v in body.items() if k not in ("result", "balance")}
        return TransferMoneyResult(
            balance=parse_decimal(body.get("balance"), "balance", method), extra=MappingProxyType(extra)
        )

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (GetCurrencyRate)
    def get_currency_rate(self, *, currency: str | Sequence[str], on_date: date | None = None) -> CurrencyRates:
        method = "GetCurrencyRate"
        body = self._call(method, {"currency": currency, "date": on_date}, read=True)
        result = body["result"]
        if not isinstance(result, dict):
            raise OutcomeUnknown("malformed response: result is not an object", provider=PROVIDER, method=method)
        rates: dict[str, Decimal] = {}
        for code, value in result.items():
            rate = parse_decimal(value, f"rate {code}", method)
            if rate is not None:
                rates[str(code)] = rate
        return CurrencyRates(rates=MappingProxyType(rates), on_date=on_date)

    # Docs: https://voximplant.com/docs/references/httpapi/accounts (GetMoneyAmountToCharge)
    def get_money_amount_to_charge(
        self, *, currency: str | None = None, charge_date: date | None = None
    ) -> MoneyAmountToCharge:
        method = "GetMoneyAmountToCharge"
        body = self._call(method, {"currency": currency, "charge_date": charge_date}, read=True)
        result = body["result"]
        if not isinstance(result, dict):
            raise OutcomeUnknown("malformed response: result is not an object", provider=PROVIDER, method=method)

        def money(name: str) -> Decimal | None:
            return parse_decimal(result.get(name), name, method)

        amount, min_amount = money("amount"), money("min_amount")
        if amount is None or min_amount is None:
            raise OutcomeUnknown("malformed response: no amount/min_amount", provider=PROVIDER, method=method)
        subscriptions = []
        for row in result.get("subscriptions") or ():
            if not isinstance(row, dict):
                continue
            subscriptions.append(
                SubscriptionCharge(
                    amount=parse_decimal(row.get("subscription_amount"), "subscription_amount", method) or Decimal(0),
                    subscription_type=row.get("subscription_type"),
                    description=row.get("subscription_description"),
                    auto_charge=parse_bool(row.get("subscription_auto_charge")),
                    next_renewal=parse_date(row.get("subscription_next_renewal")),
                )
            )
        return MoneyAmountToCharge(
            amount=amount,
            min_amount=min_amount,
            bank_card_amount_usd=money("bank_card_amount_usd"),
            min_bank_card_amount_usd=money("min_bank_card_amount_usd"),
            robokassa_amount_rub=money("robokassa_amount_rub"),
            min_robokassa_amount_rub=money("min_robokassa_amount_rub"),
            subscriptions=tuple(subscriptions),
        )

    # -- provider-neutral interface ---------------------------------------------------------

    def set_low_balance_threshold(self, account_id: AccountId, threshold: Decimal) -> None:
        self.set_child_account_info(
            child_account_id=_account_id(account_id, "SetChildAccountInfo"), min_balance_to_notify=threshold
        )

    def transfer_money(
        self,
        *,
        account_id: AccountId,
        amount: Decimal,
        payment_reference: str,
        check_duplicate_reference_from: datetime,
        currency: str | None = None,
    ) -> TransferMoneyResult:
        return self.transfer_money_to_child_account(
            child_account_id=_account_id(account_id, "TransferMoneyToChildAccount"),
            amount=amount,
            payment_reference=payment_reference,
            check_duplicate_reference_from=check_duplicate_reference_from,
            currency=currency,
        )

    def withdraw_money(
        self,
        *,
        account_id: AccountId,
        amount: Decimal,
        payment_reference: str,
        check_duplicate_reference_from: datetime,
        currency: str | None = None,
    ) -> TransferMoneyResult:
        return self.transfer_money_from_child_account(
            child_account_id=_account_id(account_id, "TransferMoneyToChildAccount"),
            amount=amount,
            payment_reference=payment_reference,
            check_duplicate_reference_from=check_duplicate_reference_from,
            currency=currency,
        )
