"""Voximplant Management API (platform_api): the transport and authentication core.

:class:`VoximplantCore` holds the connection, mints the JWTs and turns every answer into a
result or a :class:`ProviderError`; the method groups in ``accounts``, ``children``,
``money`` and ``history`` build on it and ``client.VoximplantClient`` puts them together.
Reads are retried on transient failures; a write without a usable answer is never resent
(see providers/README.md).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from os import PathLike
from typing import Any, Self, TypeVar, overload

import httpx

from providers.base import AccountId, ProviderClient
from providers.capabilities import VOXIMPLANT_MATRIX
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from providers.http import DEFAULT_TIMEOUT, HttpSession, RetryPolicy, TimeoutSpec
from providers.redaction import Secret
from providers.voximplant.auth import JwtSigner, ServiceAccountCredentials, load_parent_api_key
from providers.voximplant.wire import PROVIDER, encode_params, error_from_body

DEFAULT_BASE_URL = "https://api.voximplant.com"
#: GetChildrenAccounts / GetTransactionHistory: full-output ``count`` cap.
MAX_PAGE = 1000
#: GetTransactionHistory: the largest ``offset`` the API accepts.
HISTORY_OFFSET_CAP = 10_000

ChildIds = int | Sequence[int]
_Fast = TypeVar("_Fast")


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


def _cents(amount: object, method: str) -> Decimal:
    """A transfer's ``amount``: a finite Decimal of at least 0.01 with at most 2 places (the
    method, never the sign, gives the direction), as sent on the wire."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise _invalid("amount must be a finite Decimal", "amount", method)
    if amount < Decimal("0.01"):
        raise _invalid("amount must be at least 0.01 (the direction is chosen by the method)", "amount", method)
    if amount != amount.quantize(Decimal("0.01")):
        raise _invalid("amount has more than 2 decimal places", "amount", method)
    return amount.quantize(Decimal("0.01"))


def _check_currency(currency: str | None, method: str) -> None:
    if currency is not None and not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise _invalid("currency must be a 3-letter upper-case code", "currency", method)


def _child_ids(value: ChildIds, method: str) -> list[int]:
    items = [value] if isinstance(value, int) else list(value)
    if not items:
        raise _invalid("at least one child account id is required", "child_account_id", method)
    return [_child_id(item, method) for item in items]


class VoximplantCore(ProviderClient):
    """The connection, the authentication and the one call path of ``/platform_api/<Method>``.

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
    ) -> Self:
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

    @overload
    def _call(
        self, method: str, params: Mapping[str, object], *, read: bool, parent_auth: bool = False, fast: None = None
    ) -> dict[str, Any]: ...

    @overload
    def _call(
        self,
        method: str,
        params: Mapping[str, object],
        *,
        read: bool,
        parent_auth: bool = False,
        fast: Callable[[bytes], _Fast | None],
    ) -> dict[str, Any] | _Fast: ...

    def _call(
        self,
        method: str,
        params: Mapping[str, object],
        *,
        read: bool,
        parent_auth: bool = False,
        fast: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """The method's answer: its JSON body, or what ``fast`` made of a 2xx body. ``fast``
        decodes the common answer of one method straight into its result and returns None
        for anything else (an error, an unusual type), which the general parser then reads and
        judges: status, error codes and malformed answers are handled in one place either way."""
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
            method, build, lambda response: self._parse(method, response, fast), idempotent=read, on_error=on_error
        )

    def _parse(self, method: str, response: httpx.Response, fast: Callable[[bytes], Any] | None = None) -> Any:
        status = response.status_code
        if fast is not None and 200 <= status < 300 and response.content:
            quick = fast(response.content)
            if quick is not None:
                return quick
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
