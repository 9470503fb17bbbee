"""Voximplant Management API (platform_api) client.

One method per provider call, each with its docs link; a few iterators on top (every
child, the whole transaction history of a window). Reads are retried on transient
failures; a write without a usable answer is never resent (see providers/README.md).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from os import PathLike
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import httpx

from providers.base import (
    AccountId,
    AccountPage,
    AccountSnapshot,
    CreatedAccount,
    MoneyTransfer,
    ProviderClient,
)
from providers.capabilities import VOXIMPLANT_MATRIX
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    PagingError,
    ProviderError,
    RateLimited,
)
from providers.http import DEFAULT_TIMEOUT, HttpSession, RetryPolicy, TimeoutSpec
from providers.redaction import Secret
from providers.voximplant.auth import JwtSigner, ServiceAccountCredentials, load_parent_api_key
from providers.voximplant.types import (
    AccountInfo,
    AccountInfoResponse,
    AddedAccount,
    ChildrenPage,
    ClonedAccount,
    ClonedItem,
    CurrencyRates,
    MoneyAmountToCharge,
    SubscriptionCharge,
    Transaction,
    TransactionHistoryPage,
    TransferMoneyResult,
)
from providers.voximplant.wire import (
    PROVIDER,
    encode_params,
    error_from_body,
    parse_bool,
    parse_date,
    parse_decimal,
    parse_int,
    parse_timestamp,
    zone,
)

__all__ = ["VoximplantClient"]

logger = logging.getLogger("providers.voximplant")

DEFAULT_BASE_URL = "https://api.voximplant.com"
#: GetChildrenAccounts / GetTransactionHistory: full-output ``count`` cap.
MAX_PAGE = 1000
#: GetTransactionHistory: the largest ``offset`` the API accepts.
HISTORY_OFFSET_CAP = 10_000

OrderBy = Literal["child_account_id", "child_account_name", "child_account_email"]
ChildIds = int | Sequence[int]

_SECRET_ACCOUNT_FIELDS = frozenset({"api_key", "callback_salt", "account_password", "password"})
_MONEY_ACCOUNT_FIELDS = ("balance", "live_balance", "fixed_balance", "money_on_hold", "credit_limit")


def _invalid(message: str, field: str, method: str | None = None) -> InvalidArgument:
    return InvalidArgument(message, provider=PROVIDER, field=field, method=method)


def _child_id(value: object, method: str, field: str = "child_account_id") -> int:
    # bool is an int subclass; "all", "1;2" and lists are refused by the type check.
    if type(value) is not int or value <= 0:
        raise _invalid("exactly one positive integer child account id is required", field, method)
    return value


def _account_id(value: AccountId, method: str, field: str = "child_account_id") -> int:
    """The provider-neutral ``AccountId`` as a Voximplant id: an int, or the same written in
    ASCII digits (as a portal may store it). ``"1;2"``, ``"all"``, ``"١٢"`` are refused."""
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,18}", value):
        value = int(value)
    return _child_id(value, method, field)


def _child_ids(value: ChildIds, method: str) -> list[int]:
    items = [value] if isinstance(value, int) else list(value)
    if not items:
        raise _invalid("at least one child account id is required", "child_account_id", method)
    return [_child_id(item, method) for item in items]


class VoximplantClient(ProviderClient):
    """Typed client for ``/platform_api/<Method>``.

    ``base_url`` is the API root (``https://api.voximplant.com``; a trailing
    ``/platform_api`` is tolerated). ``credentials`` is the service account used to mint
    JWTs; ``parent_api_key`` is needed only by AddAccount and CloneAccount (legacy
    parent authorisation).
    """

    kind = "voximplant"
    capability_matrix = VOXIMPLANT_MATRIX

    def __init__(
        self,
        *,
        credentials: ServiceAccountCredentials,
        base_url: str = DEFAULT_BASE_URL,
        parent_api_key: Secret | None = None,
        timeout: TimeoutSpec = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        token_lifetime: int = 60,
        token_refresh_margin: int = 15,
        http_429_refused_before_execution: bool = True,
    ) -> None:
        root = base_url.rstrip("/")
        if root.endswith("/platform_api"):
            root = root[: -len("/platform_api")]
        self.credentials = credentials
        self.parent_api_key = parent_api_key
        self.signer = JwtSigner(credentials, lifetime=token_lifetime, refresh_margin=token_refresh_margin, clock=clock)
        # Gateway 429s are treated as refusals before execution (the sandbox shows it;
        # tests/providers pin that). Set False to stop retrying writes on 429.
        self.http_429_refused_before_execution = http_429_refused_before_execution
        self._session = HttpSession(
            provider=PROVIDER,
            base_url=root,
            timeout=timeout,
            transport=transport,
            retry=retry or RetryPolicy(),
            sleep=sleep,
            rng=rng,
        )

    @classmethod
    def from_files(
        cls,
        *,
        base_url: str,
        credentials_path: str | PathLike[str],
        parent_api_key_path: str | PathLike[str] | None = None,
        **kwargs: Any,
    ) -> VoximplantClient:
        return cls(
            base_url=base_url,
            credentials=ServiceAccountCredentials.from_file(credentials_path),
            parent_api_key=load_parent_api_key(parent_api_key_path) if parent_api_key_path else None,
            **kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"VoximplantClient(base_url={self._session.base_url!r}, "
            f"account_id={self.credentials.account_id}, key_id={self.credentials.key_id!r})"
        )

    def close(self) -> None:
        self._session.close()

    # -- transport ------------------------------------------------------------------------

    def _call(
        self, method: str, params: Mapping[str, object], *, read: bool, parent_auth: bool = False
    ) -> dict[str, Any]:
        fields = encode_params(params)
        if parent_auth:
            if self.parent_api_key is None:
                raise ConfigurationError(
                    f"{method} needs the parent account api key (parent_api_key_path)",
                    provider=PROVIDER,
                    method=method,
                )
            fields["parent_account_api_key"] = self.parent_api_key.reveal()
        path = f"/platform_api/{method}"

        def build() -> httpx.Request:
            return self._session.build_request(
                "POST", path, data=fields, headers={"Authorization": "Bearer " + self.signer.token()}
            )

        reminted = False

        def on_error(err: ProviderError) -> None:
            # An expired token is refused before execution: drop it so the retry re-mints.
            # Once only: a second 456 means the clock is wrong, not the cache.
            nonlocal reminted
            if isinstance(err, AuthenticationError) and err.code == 456 and not reminted:
                reminted = True
                self.signer.invalidate()
                err.retry_safe = True

        return self._session.call(
            method, build, lambda response: self._parse(method, response), idempotent=read, on_error=on_error
        )

    def _parse(self, method: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        body: Any
        try:
            body = json.loads(response.content, parse_float=Decimal) if response.content else None
        except ValueError:
            body = None
        error: Any = None
        if isinstance(body, dict):
            error = body.get("error")
            if error is None and isinstance(body.get("errors"), list) and body["errors"]:
                error = body["errors"][0]
        code = error.get("code") if isinstance(error, dict) else None
        kw: dict[str, Any] = {"provider": PROVIDER, "method": method, "http_status": status}
        if status >= 500:
            # Whatever the body says, a 5xx may come after the work was done.
            raise OutcomeUnknown(f"HTTP {status} from provider", code=code, **kw)
        if status == 429:
            raise RateLimited(
                "throttled (HTTP 429)",
                code=code,
                retry_after=_retry_after(response),
                refused_before_execution=self.http_429_refused_before_execution,
                **kw,
            )
        if isinstance(error, dict):
            # API errors come as HTTP 200 JSON: a definite answer.
            raise error_from_body(error, method=method, http_status=status, retry_after=_retry_after(response))
        if 400 <= status < 500:
            kind: type[ProviderError] = (
                AuthenticationError if status in (401, 403) else NotFound if status == 404 else ProviderError
            )
            raise kind(f"HTTP {status} from provider", **kw)
        if not 200 <= status < 300:
            raise OutcomeUnknown(f"unexpected HTTP {status}", **kw)
        if not isinstance(body, dict):
            if not response.content:
                what = "empty body"
            elif "html" in response.headers.get("content-type", "").lower():
                what = "HTML page"
            else:
                what = "non-JSON body"
            raise OutcomeUnknown(f"no usable answer: {what}", **kw)
        if "result" not in body:
            raise OutcomeUnknown("no usable answer: JSON without result", **kw)
        return body

    # -- accounts ---------------------------------------------------------------------------

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

    def get_children_snapshots(
        self,
        *,
        count: int,
        offset: int | None = None,
        active: bool | None = None,
        frozen: bool | None = None,
        return_live_balance: bool | None = None,
    ) -> AccountPage:
        """One GetChildrenAccounts page in ``child_account_id`` order, read for a sync.

        Same call, auth, retries and error mapping as :meth:`get_children_accounts`, but
        each child becomes an :class:`AccountSnapshot` (id, name, email, flags, balance,
        currency, credit limit) instead of a full :class:`AccountInfo`: dates, the other
        money fields and the extras are not parsed, which is most of the cost of a page.
        """
        method = "GetChildrenAccounts"
        if not 1 <= count <= MAX_PAGE:
            raise _invalid(f"count must be 1..{MAX_PAGE} for full output", "count", method)
        if offset is not None and offset < 0:
            raise _invalid("offset must be >= 0", "offset", method)
        params = {
            "active": active,
            "frozen": frozen,
            "count": count,
            "offset": offset or None,
            "order_by": "child_account_id",
            "return_live_balance": return_live_balance,
        }
        body = self._call(method, params, read=True)
        rows = body["result"]
        if not isinstance(rows, list):
            raise OutcomeUnknown("malformed response: result is not a list", provider=PROVIDER, method=method)
        accounts = tuple(_snapshot_from_row(row, method) for row in rows)
        total = body.get("total_count")
        return AccountPage(
            accounts=accounts,
            total_count=total if isinstance(total, int) and not isinstance(total, bool) else len(accounts),
        )

    def iter_children_ids(
        self, *, active: bool | None = None, frozen: bool | None = None, id_page_size: int | None = None
    ) -> list[int]:
        """Every child account id, ascending, each once: the walk of :meth:`iter_children_pages`
        over ``brief_output`` pages of ``id_page_size`` ids (default 1000)."""
        size = MAX_PAGE if id_page_size is None else id_page_size
        if size < 1:
            raise _invalid("id_page_size must be at least 1", "count", "GetChildrenAccounts")

        def read(count: int, offset: int) -> tuple[Sequence[AccountInfo], int | None]:
            page = self.get_children_accounts(
                brief_output=True,
                order_by="child_account_id",
                active=active,
                frozen=frozen,
                count=count,
                offset=offset or None,
            )
            return page.accounts, page.total_count

        return [a.account_id for rows, _ in _walk_by_id(read, size, _info_id) for a in rows]

    def iter_children_pages(
        self,
        *,
        page_size: int = MAX_PAGE,
        active: bool | None = None,
        frozen: bool | None = None,
        return_live_balance: bool | None = None,
    ) -> Iterator[tuple[AccountInfo, ...]]:
        """Every child (full AccountInfo), each exactly once, in ascending id order; see
        :func:`_walk_by_id` for why children added or removed during the walk cannot cause
        skips or repeats. The first page holds up to ``page_size`` children, later pages up
        to ``page_size - 1`` (each call re-reads the last child already seen)."""

        def read(count: int, offset: int) -> tuple[Sequence[AccountInfo], int | None]:
            page = self.get_children_accounts(
                order_by="child_account_id",
                active=active,
                frozen=frozen,
                count=count,
                offset=offset or None,
                return_live_balance=return_live_balance,
            )
            return page.accounts, page.total_count

        for rows, _ in _walk_by_id(read, page_size, _info_id):
            yield tuple(rows)

    def iter_children(self, **kwargs: Any) -> Iterator[AccountInfo]:
        """Every child, one at a time (see :meth:`iter_children_pages`)."""
        for page in self.iter_children_pages(**kwargs):
            yield from page

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

    # -- money ------------------------------------------------------------------------------

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
        if not isinstance(amount, Decimal) or not amount.is_finite():
            raise _invalid("amount must be a finite Decimal", "amount", method)
        if amount < Decimal("0.01"):
            raise _invalid("amount must be at least 0.01 (the direction is chosen by the method)", "amount", method)
        if amount != amount.quantize(Decimal("0.01")):
            raise _invalid("amount has more than 2 decimal places", "amount", method)
        if not isinstance(payment_reference, str) or not payment_reference.strip():
            raise _invalid("payment_reference is required", "payment_reference", method)
        if len(payment_reference) >= 127 or any(ord(c) < 32 for c in payment_reference):
            raise _invalid("payment_reference must be < 127 printable characters", "payment_reference", method)
        if not isinstance(check_duplicate_reference_from, datetime) or check_duplicate_reference_from.tzinfo is None:
            raise _invalid(
                "check_duplicate_reference_from must be an aware datetime", "check_duplicate_reference_from", method
            )
        if currency is not None and not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
            raise _invalid("currency must be a 3-letter upper-case code", "currency", method)
        for name, text in (
            ("child_transaction_description", child_transaction_description),
            ("parent_transaction_description", parent_transaction_description),
        ):
            if text is not None and len(text) >= 120:
                raise _invalid(f"{name} must be < 120 characters", name, method)
        wire_amount = amount.quantize(Decimal("0.01"))
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

    # Docs: https://voximplant.com/docs/references/httpapi/history (GetTransactionHistory)
    def get_transaction_history(
        self,
        *,
        from_date: datetime,
        to_date: datetime,
        timezone: str = "Etc/GMT",
        count: int | None = None,
        offset: int | None = None,
        transaction_id: int | Sequence[int] | None = None,
        transaction_type: str | Sequence[str] | None = None,
        user_id: int | Sequence[int] | None = None,
        child_account_id: int | Sequence[int] | Literal["all"] | None = None,
        children_transactions_only: bool | None = None,
        users_transactions_only: bool | None = None,
        payment_reference: str | None = None,
        desc_order: bool | None = None,
        with_total_count: bool | None = True,
        is_uncommitted: bool | None = None,
    ) -> TransactionHistoryPage:
        """One page of history. Dates are sent in ``timezone`` (default ``Etc/GMT``, never
        ``auto``); ``count`` <= 1000 and ``offset`` <= 10000 are enforced here."""
        method = "GetTransactionHistory"
        if count is not None and not 1 <= count <= MAX_PAGE:
            raise _invalid(f"count must be 1..{MAX_PAGE}", "count", method)
        if offset is not None and not 0 <= offset <= HISTORY_OFFSET_CAP:
            raise _invalid(f"offset must be 0..{HISTORY_OFFSET_CAP}", "offset", method)
        if timezone == "auto":
            # Never "auto": the dates would be read in the account's
            # location, which this client does not know when it formats them.
            raise _invalid("timezone='auto' is not supported; pass a zone name", "timezone", method)
        tz = zone(timezone)
        children: object = child_account_id
        if child_account_id is not None and child_account_id != "all":
            children = _child_ids(child_account_id, method)
        params = encode_params(
            {
                "from_date": from_date,
                "to_date": to_date,
                "timezone": timezone,
                "count": count,
                "offset": offset,
                "transaction_id": transaction_id,
                "transaction_type": transaction_type,
                "user_id": user_id,
                "child_account_id": children,
                "children_transactions_only": children_transactions_only,
                "users_transactions_only": users_transactions_only,
                "payment_reference": payment_reference,
                "desc_order": desc_order,
                "with_total_count": with_total_count,
                "is_uncommitted": is_uncommitted,
            },
            tz=tz,
        )
        body = self._call(method, params, read=True)
        rows = body["result"]
        if not isinstance(rows, list):
            raise OutcomeUnknown("malformed response: result is not a list", provider=PROVIDER, method=method)
        answered = body.get("timezone")
        answered_tz: str = answered if isinstance(answered, str) and answered else timezone
        row_tz = zone(answered_tz)
        total = body.get("total_count")
        count_back = body.get("count")
        return TransactionHistoryPage(
            transactions=tuple(_transaction(row, row_tz, method) for row in rows),
            total_count=parse_int(total, "total_count", method) if total is not None else None,
            count=parse_int(count_back, "count", method) if count_back is not None else len(rows),
            timezone=answered_tz,
        )

    def iter_transaction_history(
        self,
        *,
        from_date: datetime,
        to_date: datetime,
        page_size: int = MAX_PAGE,
        offset_cap: int = HISTORY_OFFSET_CAP,
        transaction_type: str | Sequence[str] | None = None,
        child_account_id: int | Sequence[int] | Literal["all"] | None = None,
        children_transactions_only: bool | None = None,
        payment_reference: str | None = None,
        user_id: int | Sequence[int] | None = None,
        transaction_id: int | Sequence[int] | None = None,
    ) -> Iterator[Transaction]:
        """Every transaction in ``[from_date, to_date]``, oldest first, each once.

        The API refuses offsets past 10,000, so a window holding more
        rows than ``offset_cap`` is split in two by time and each half walked separately;
        halves share their boundary second and rows are de-duplicated by transaction id,
        which is correct whether the server treats ``to_date`` as inclusive or exclusive.
        Pages are read in ascending order, so rows arriving during the walk land after the
        current offset. Raises :class:`PagingError` when more than ``offset_cap`` rows fall
        within two seconds (use the async CSV report then).
        """
        method = "GetTransactionHistory"
        if not 1 <= page_size <= MAX_PAGE:
            raise _invalid(f"page_size must be 1..{MAX_PAGE}", "count", method)
        if not 1 <= offset_cap <= HISTORY_OFFSET_CAP:
            raise _invalid(f"offset_cap must be 1..{HISTORY_OFFSET_CAP}", "offset", method)
        start = _floor_second(from_date)
        end = _ceil_second(to_date)
        if end < start:
            raise _invalid("to_date is before from_date", "to_date", method)
        filters: dict[str, Any] = {
            "transaction_type": transaction_type,
            "child_account_id": child_account_id,
            "children_transactions_only": children_transactions_only,
            "payment_reference": payment_reference,
            "user_id": user_id,
            "transaction_id": transaction_id,
        }
        seen: set[int] = set()
        windows: list[tuple[datetime, datetime]] = [(start, end)]
        while windows:
            lo, hi = windows.pop()
            page = self.get_transaction_history(
                from_date=lo, to_date=hi, count=page_size, offset=0, desc_order=False, with_total_count=True, **filters
            )
            if page.total_count is None:
                raise PagingError("history answered without total_count", provider=PROVIDER, method=method)
            if page.total_count > offset_cap:
                if hi - lo < timedelta(seconds=2):
                    raise PagingError(
                        f"more than {offset_cap} transactions between {lo.isoformat()} and {hi.isoformat()}; "
                        "use the asynchronous history report",
                        provider=PROVIDER,
                        method=method,
                    )
                mid = lo + timedelta(seconds=(hi - lo).total_seconds() // 2)
                # LIFO: push the later half first so rows come out oldest first.
                windows.append((mid, hi))
                windows.append((lo, mid))
                logger.debug("GetTransactionHistory: window of %d rows split in two", page.total_count)
                continue
            offset = 0
            last: datetime | None = None
            while True:
                for row in page.transactions:
                    last = row.performed_at
                    if row.transaction_id not in seen:
                        seen.add(row.transaction_id)
                        yield row
                offset += len(page.transactions)
                total = page.total_count or 0
                if not page.transactions or offset >= total:
                    break
                if offset > offset_cap:
                    # Rows kept arriving and pushed this window past the cap: walk the rest
                    # of it as a new window starting at the last row seen.
                    if last is not None:
                        windows.append((_floor_second(last), hi))
                    break
                page = self.get_transaction_history(
                    from_date=lo,
                    to_date=hi,
                    count=page_size,
                    offset=offset,
                    desc_order=False,
                    with_total_count=True,
                    **filters,
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

    def update_account(self, account_id: AccountId, *, email: str | None = None, password: str | None = None) -> None:
        self.set_child_account_info(
            child_account_id=_account_id(account_id, "SetChildAccountInfo"),
            new_child_account_email=email,
            new_child_account_password=password,
        )

    def set_low_balance_threshold(self, account_id: AccountId, threshold: Decimal) -> None:
        self.set_child_account_info(
            child_account_id=_account_id(account_id, "SetChildAccountInfo"), min_balance_to_notify=threshold
        )

    def iter_account_pages(self, *, page_size: int = MAX_PAGE) -> Iterator[Sequence[AccountSnapshot]]:
        for page in self.iter_balance_pages(page_size=page_size):
            yield page.accounts

    def iter_balance_pages(self, *, page_size: int = MAX_PAGE) -> Iterator[AccountPage]:
        """Every child once, ascending by id, one :meth:`get_children_snapshots` call per page
        (see :func:`_walk_by_id`). Memory holds one page whatever the number of children."""

        def read(count: int, offset: int) -> tuple[Sequence[AccountSnapshot], int | None]:
            page = self.get_children_snapshots(count=count, offset=offset)
            return page.accounts, page.total_count

        for rows, total in _walk_by_id(read, page_size, _snapshot_id):
            yield AccountPage(accounts=tuple(rows), total_count=total)

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

    def iter_transactions(
        self,
        *,
        from_date: datetime,
        to_date: datetime,
        account_id: AccountId | None = None,
        payment_reference: str | None = None,
        transaction_types: Sequence[str] | None = None,
        tenant_side: bool = False,
    ) -> Iterator[MoneyTransfer]:
        child: int | Literal["all"] | None = (
            _account_id(account_id, "GetTransactionHistory") if account_id is not None else None
        )
        if tenant_side and child is None:
            child = "all"
        for row in self.iter_transaction_history(
            from_date=from_date,
            to_date=to_date,
            child_account_id=child,
            children_transactions_only=True if tenant_side else None,
            payment_reference=payment_reference,
            transaction_type=transaction_types,
        ):
            yield MoneyTransfer(
                transaction_id=row.transaction_id,
                account_id=row.account_id,
                performed_at=row.performed_at,
                amount=row.amount,
                currency=row.currency,
                transaction_type=row.transaction_type,
                payment_reference=row.payment_reference,
                description=row.transaction_description,
            )


# -- parsing helpers ----------------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _reveal(value: str | Secret | None) -> str | None:
    return value.reveal() if isinstance(value, Secret) else value


def _expect_result_one(body: Mapping[str, Any], method: str) -> None:
    result = body.get("result")
    if result is True or (isinstance(result, int) and not isinstance(result, bool) and result == 1):
        return
    raise OutcomeUnknown(f"unexpected result {result!r}", provider=PROVIDER, method=method)


def _floor_second(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidArgument("naive datetime: pass an aware datetime", provider=PROVIDER)
    return value.astimezone(UTC).replace(microsecond=0)


def _ceil_second(value: datetime) -> datetime:
    floor = _floor_second(value)
    return floor if floor == value else floor + timedelta(seconds=1)


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


def _money(value: Any, name: str, method: str) -> Decimal | None:
    # Responses are parsed with parse_float=Decimal: the common cases need no more work.
    kind = type(value)
    if kind is Decimal and value.is_finite():
        return value  # type: ignore[no-any-return]
    if kind is int:
        return Decimal(value)
    return parse_decimal(value, name, method)


def _snapshot_from_row(row: Any, method: str) -> AccountSnapshot:
    """A GetChildrenAccounts row as a snapshot, converting only the fields a snapshot has."""
    if not isinstance(row, dict) or "account_id" not in row:
        raise OutcomeUnknown("malformed response: account without account_id", provider=PROVIDER, method=method)
    return AccountSnapshot(
        account_id=parse_int(row["account_id"], "account_id", method),
        name=row.get("account_name"),
        email=row.get("account_email"),
        active=parse_bool(row.get("active")),
        frozen=parse_bool(row.get("frozen")),
        balance=_money(row.get("balance"), "balance", method),
        currency=row.get("currency"),
        credit_limit=_money(row.get("credit_limit"), "credit_limit", method),
    )


def _info_id(account: AccountInfo) -> int:
    return account.account_id


def _snapshot_id(account: AccountSnapshot) -> int:
    return int(account.account_id)


_Row = TypeVar("_Row")
_MAX_STALLED_PAGES = 10


def _walk_by_id(
    read: Callable[[int, int], tuple[Sequence[_Row], int | None]], page_size: int, ident: Callable[[_Row], int]
) -> Iterator[tuple[list[_Row], int | None]]:
    """The one walk over every child: each child once, in ascending id order, ``page_size``
    per call. ``read(count, offset)`` returns one page ordered by ``child_account_id`` and
    the provider's total count; yields (the children not yet seen, that count).

    Offset paging ordered by id, with a one-row overlap: each request starts at the last
    child already seen (the anchor). Children created during the walk get larger ids and
    land after the anchor, so they are picked up in the same walk; if children before the
    anchor vanish, the page no longer starts at or before the anchor and the walk backs up
    until it finds its place again. One call per page, no id list held: memory holds one
    page whatever the number of children. A page out of id order, or pages that stop
    moving forward, raise :class:`PagingError` rather than skip or repeat children.
    """
    method = "GetChildrenAccounts"
    if not 1 <= page_size <= MAX_PAGE:
        raise _invalid(f"page_size must be 1..{MAX_PAGE}", "count", method)
    last_id: int | None = None
    next_offset = 0
    stalled = 0
    while True:
        ask = next_offset - 1 if last_id is not None else 0
        while True:
            rows, total = read(page_size, ask)
            ids = [ident(row) for row in rows]
            if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
                raise PagingError(
                    "GetChildrenAccounts ignored order_by=child_account_id", provider=PROVIDER, method=method
                )
            if last_id is None or ask == 0 or (ids and ids[0] <= last_id):
                break
            # Children before the anchor were removed since the last page: back up and retry.
            ask = max(0, ask - page_size)
        fresh = [row for row, i in zip(rows, ids, strict=True) if last_id is None or i > last_id]
        if fresh:
            stalled = 0
            last_id = ident(fresh[-1])
            yield fresh, total
        else:
            # Only when the anchor ended up as the last child of a full page, which takes a
            # removal timed just so; page after page of it means the offset is not honoured.
            stalled += 1
            if stalled >= _MAX_STALLED_PAGES:
                raise PagingError("GetChildrenAccounts pages stopped moving forward", provider=PROVIDER, method=method)
        next_offset = ask + len(rows)
        if len(rows) < page_size:
            return


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


def _transaction(row: Any, tz: Any, method: str) -> Transaction:
    if not isinstance(row, dict) or "transaction_id" not in row:
        raise OutcomeUnknown("malformed response: transaction without id", provider=PROVIDER, method=method)
    performed_at = parse_timestamp(row.get("performed_at"), tz, "performed_at", method)
    amount = parse_decimal(row.get("amount"), "amount", method)
    if performed_at is None or amount is None:
        raise OutcomeUnknown("malformed response: transaction without time/amount", provider=PROVIDER, method=method)
    known = {
        "transaction_id",
        "account_id",
        "performed_at",
        "amount",
        "currency",
        "transaction_type",
        "transaction_description",
        "payment_reference",
    }
    return Transaction(
        transaction_id=parse_int(row["transaction_id"], "transaction_id", method),
        account_id=parse_int(row.get("account_id"), "account_id", method),
        performed_at=performed_at.astimezone(UTC),
        amount=amount,
        currency=row.get("currency"),
        transaction_type=str(row.get("transaction_type") or ""),
        transaction_description=row.get("transaction_description"),
        payment_reference=row.get("payment_reference"),
        extra=MappingProxyType({k: v for k, v in row.items() if k not in known}),
    )
