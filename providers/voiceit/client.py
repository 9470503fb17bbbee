"""VoiceIt API 2 sub-account client.

HTTP Basic with the master apiKey/apiToken for ``/subaccount`` calls; a sub-account's
own key/token for ``/users`` (used to check that its credentials work). Every answer
carries the envelope ``status``/``responseCode``/``message``/``timeTaken``; success is a
2xx status **and** ``responseCode == "SUCC"``.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from providers.base import AccountId, AccountSnapshot, CreatedAccount, ProviderClient, RotatedCredentials
from providers.capabilities import VOICEIT_MATRIX, Capability
from providers.errors import (
    AuthenticationError,
    ConfigurationError,
    Duplicate,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from providers.http import DEFAULT_TIMEOUT, HttpSession, RetryPolicy, TimeoutSpec
from providers.redaction import Secret, register_secret

__all__ = ["DEFAULT_BASE_URL", "SubAccount", "UsersPage", "VoiceItClient", "VoiceItCredentials", "VoiceItUser"]

PROVIDER = "voiceit"
DEFAULT_BASE_URL = "https://api.voiceit.io"

logger = logging.getLogger("providers.voiceit")


@dataclass(frozen=True)
class VoiceItCredentials:
    """An apiKey (an identifier, ``key_…``) and its apiToken (the secret, ``tok_…``)."""

    api_key: str
    api_token: Secret

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> VoiceItCredentials:
        inner: Any = data
        for wrapper in ("result", "master"):
            if isinstance(inner.get(wrapper), Mapping):
                inner = inner[wrapper]
        key = next((inner[k] for k in ("apiKey", "api_key", "key") if isinstance(inner.get(k), str)), None)
        token = next((inner[k] for k in ("apiToken", "api_token", "token") if isinstance(inner.get(k), str)), None)
        if not key or not token:
            raise ConfigurationError("VoiceIt credentials need apiKey and apiToken", provider=PROVIDER)
        register_secret(token)
        return cls(api_key=key, api_token=Secret(token))

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> VoiceItCredentials:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read VoiceIt credentials file: {exc.strerror}", provider=PROVIDER
            ) from None
        except ValueError:
            raise ConfigurationError("VoiceIt credentials file is not JSON", provider=PROVIDER) from None
        if not isinstance(data, Mapping):
            raise ConfigurationError("VoiceIt credentials file is not a JSON object", provider=PROVIDER)
        return cls.from_mapping(data)


@dataclass(frozen=True)
class SubAccount:
    """A created sub-account. The portal must store these: VoiceIt cannot show them again."""

    api_key: str
    api_token: Secret
    password: Secret | None
    email: str | None
    content_language: str | None
    type: str | None
    email_validation_required: bool | None


@dataclass(frozen=True)
class VoiceItUser:
    user_id: str
    created_at: int | None


@dataclass(frozen=True)
class UsersPage:
    users: tuple[VoiceItUser, ...]
    count: int


# responseCode -> (kind, field). VoiceIt documents the codes; their HTTP statuses are mostly inferred.
_AUTH = {"UNAC", "DAID", "FBDN"}
_NOT_FOUND = {
    "SANF": "api_key",
    "UNFD": "user_id",
    "GNFD": "group_id",
    "ENFD": "enrollment_id",
    "DDNE": None,
    "SDDNE": None,
}
_DUPLICATE = {"EAEX": "email", "UAEX": "username"}
_INVALID = {
    "ISAE": "email",
    "ISAU": "username",
    "INCP": "content_language",
    "CLNE": "content_language",
    "MISP": None,
    "EMNV": "email",
}
_RATE = {"ACLR"}
# The server gave up or failed inside: the call may have had its effect.
_UNKNOWN = {"ACTO", "GERR"}


def _error_for(
    code: str, message: str, *, method: str, status: int, retry_after: float | None, refused_before_execution: bool
) -> ProviderError:
    kw: dict[str, Any] = {"provider": PROVIDER, "code": code, "method": method, "http_status": status}
    if code in _AUTH:
        return AuthenticationError(message, **kw)
    if code in _NOT_FOUND:
        return NotFound(message, field=_NOT_FOUND[code], **kw)
    if code in _DUPLICATE:
        return Duplicate(message, field=_DUPLICATE[code], **kw)
    if code in _INVALID:
        return InvalidArgument(message, field=_INVALID[code], **kw)
    if code in _RATE:
        return RateLimited(message, retry_after=retry_after, refused_before_execution=refused_before_execution, **kw)
    if code in _UNKNOWN:
        return OutcomeUnknown(message, **kw)
    if status in (401, 403):
        return AuthenticationError(message, **kw)
    if status == 404:
        return NotFound(message, **kw)
    return ProviderError(message, **kw)


class VoiceItClient(ProviderClient):
    """Typed client for VoiceIt sub-accounts.

    ``base_url``: ``https://api.voiceit.io`` (API 2 and the 2026 "API 3" share it).
    ``http_429_refused_before_execution``: whether a throttle (HTTP 429 / ACLR) may be
    retried for writes. VoiceIt documents neither, so the default is False: only reads
    are retried on it.
    """

    kind = "voiceit"
    capability_matrix = VOICEIT_MATRIX

    def __init__(
        self,
        *,
        credentials: VoiceItCredentials,
        base_url: str = DEFAULT_BASE_URL,
        timeout: TimeoutSpec = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        http_429_refused_before_execution: bool = False,
    ) -> None:
        self.credentials = credentials
        self.http_429_refused_before_execution = http_429_refused_before_execution
        self._session = HttpSession(
            provider=PROVIDER,
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            retry=retry or RetryPolicy(),
            sleep=sleep,
            rng=rng,
        )

    @classmethod
    def from_files(
        cls, *, base_url: str, voiceit_credentials_path: str | PathLike[str], **kwargs: Any
    ) -> VoiceItClient:
        return cls(base_url=base_url, credentials=VoiceItCredentials.from_file(voiceit_credentials_path), **kwargs)

    def __repr__(self) -> str:
        return f"VoiceItClient(base_url={self._session.base_url!r}, api_key={self.credentials.api_key!r})"

    def close(self) -> None:
        self._session.close()

    # -- transport ------------------------------------------------------------------------

    def _call(
        self,
        name: str,
        http_method: str,
        path: str,
        *,
        read: bool,
        form: Mapping[str, str] | None = None,
        auth: tuple[str, Secret] | None = None,
    ) -> dict[str, Any]:
        key, token = auth or (self.credentials.api_key, self.credentials.api_token)
        basic = base64.b64encode(f"{key}:{token.reveal()}".encode()).decode("ascii")
        # Multipart, like the official wrappers and the spec's curl -F.
        files = {k: (None, v) for k, v in form.items()} if form is not None else None

        def build() -> httpx.Request:
            return self._session.build_request(
                http_method, path, files=files, headers={"Authorization": "Basic " + basic}
            )

        return self._session.call(name, build, lambda response: self._parse(name, response), idempotent=read)

    def _parse(self, name: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        try:
            body: Any = json.loads(response.content, parse_float=Decimal) if response.content else None
        except ValueError:
            body = None
        code = body.get("responseCode") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        retry_after = _retry_after(response)
        if status >= 500:
            raise OutcomeUnknown(
                f"HTTP {status} from provider",
                provider=PROVIDER,
                method=name,
                http_status=status,
                code=code if isinstance(code, str) else None,
            )
        if status == 429:
            raise RateLimited(
                str(message or "throttled (HTTP 429)"),
                provider=PROVIDER,
                method=name,
                http_status=status,
                code=code if isinstance(code, str) else None,
                retry_after=retry_after,
                refused_before_execution=self.http_429_refused_before_execution,
            )
        if isinstance(code, str) and code != "SUCC":
            raise _error_for(
                code,
                str(message or code),
                method=name,
                status=status,
                retry_after=retry_after,
                refused_before_execution=self.http_429_refused_before_execution,
            )
        if 400 <= status < 500:
            kind: type[ProviderError] = (
                AuthenticationError if status in (401, 403) else NotFound if status == 404 else ProviderError
            )
            raise kind(f"HTTP {status} from provider", provider=PROVIDER, method=name, http_status=status)
        if not 200 <= status < 300 or not isinstance(body, dict) or code != "SUCC":
            if not response.content:
                what = "empty body"
            elif "html" in response.headers.get("content-type", "").lower():
                what = "HTML page"
            elif not isinstance(body, dict):
                what = "non-JSON body"
            else:
                what = f"HTTP {status} without responseCode SUCC"
            raise OutcomeUnknown(f"no usable answer: {what}", provider=PROVIDER, method=name, http_status=status)
        return body

    # -- sub-accounts -----------------------------------------------------------------------

    def _create(
        self, kind: str, first_name: str, last_name: str, email: str, password: str | Secret, content_language: str
    ) -> SubAccount:
        name = f"Create{kind.capitalize()}SubAccount"
        form = {
            # All five always, empty = "let VoiceIt generate" (as the official Go wrapper sends them).
            "firstName": first_name,
            "lastName": last_name,
            "email": email,
            "password": password.reveal() if isinstance(password, Secret) else password,
            "contentLanguage": content_language,
        }
        body = self._call(name, "POST", f"/subaccount/{kind}", read=False, form=form)
        api_key, api_token = body.get("apiKey"), body.get("apiToken")
        if not isinstance(api_key, str) or not isinstance(api_token, str) or not api_key or not api_token:
            # It said SUCC but we cannot tell which sub-account exists: the outcome is unknown.
            raise OutcomeUnknown("malformed response: no apiKey/apiToken", provider=PROVIDER, method=name)
        password_back = body.get("password")
        validation = body.get("emailValidationRequired")
        return SubAccount(
            api_key=api_key,
            api_token=Secret(api_token),
            password=Secret(password_back) if isinstance(password_back, str) else None,
            email=body.get("email") if isinstance(body.get("email"), str) else None,
            content_language=body.get("contentLanguage") if isinstance(body.get("contentLanguage"), str) else None,
            type=body.get("type") if isinstance(body.get("type"), str) else kind,
            email_validation_required=validation if isinstance(validation, bool) else None,
        )

    # Docs: https://github.com/voiceittech/VoiceIt2-Sub-Account-Specs (README: managed sub-account)
    def create_managed_sub_account(
        self,
        *,
        first_name: str = "",
        last_name: str = "",
        email: str = "",
        password: str | Secret = "",
        content_language: str = "",
    ) -> SubAccount:
        """Usage is billed to the master. Not idempotent and not findable afterwards: on
        :class:`OutcomeUnknown` do not retry blindly (supply a deterministic email so a
        retry fails with :class:`Duplicate` instead of creating a second account)."""
        return self._create("managed", first_name, last_name, email, password, content_language)

    # Docs: https://github.com/voiceittech/VoiceIt2-Sub-Account-Specs (README: unmanaged sub-account)
    def create_unmanaged_sub_account(
        self,
        *,
        first_name: str = "",
        last_name: str = "",
        email: str = "",
        password: str | Secret = "",
        content_language: str = "",
    ) -> SubAccount:
        """The account holder adds their own card; same caveats as the managed create."""
        return self._create("unmanaged", first_name, last_name, email, password, content_language)

    # Docs: https://github.com/voiceittech/VoiceIt2-Sub-Account-Specs (README: regenerate API token)
    def regenerate_sub_account_api_token(self, sub_account_api_key: str) -> RotatedCredentials:
        name = "RegenerateSubAccountAPIToken"
        body = self._call(name, "POST", f"/subaccount/{_path_key(sub_account_api_key, name)}", read=False)
        token = body.get("apiToken")
        if not isinstance(token, str) or not token:
            raise OutcomeUnknown("malformed response: no apiToken", provider=PROVIDER, method=name)
        return RotatedCredentials(account_id=sub_account_api_key, api_token=Secret(token))

    # Docs: https://github.com/voiceittech/VoiceIt2-Sub-Account-Specs (README: delete sub-account)
    def delete_sub_account(self, sub_account_api_key: str, *, missing_ok: bool = False) -> None:
        """Irreversible. ``missing_ok``: an unknown/already-deleted key is not an error
        (useful when resolving an earlier :class:`OutcomeUnknown`)."""
        name = "DeleteSubAccount"
        try:
            self._call(name, "DELETE", f"/subaccount/{_path_key(sub_account_api_key, name)}", read=False)
        except NotFound:
            if not missing_ok:
                raise

    # -- users (exercise a sub-account's own credentials) ------------------------------------

    # Docs: https://api.voiceit.io/ (Users: get all users)
    def list_users(self, *, api_key: str | None = None, api_token: Secret | str | None = None) -> UsersPage:
        """``GET /users`` as the master, or as a sub-account when its key and token are given."""
        name = "GetAllUsers"
        body = self._call(name, "GET", "/users", read=True, auth=_auth(api_key, api_token))
        users = []
        for row in body.get("users") or ():
            if isinstance(row, dict) and isinstance(row.get("userId"), str):
                created = row.get("createdAt")
                users.append(
                    VoiceItUser(user_id=row["userId"], created_at=created if isinstance(created, int) else None)
                )
        count = body.get("count")
        return UsersPage(users=tuple(users), count=count if isinstance(count, int) else len(users))

    # Docs: https://api.voiceit.io/ (Users: create a user)
    def create_user(self, *, api_key: str | None = None, api_token: Secret | str | None = None) -> str:
        """``POST /users``; returns the new userId."""
        name = "CreateUser"
        body = self._call(name, "POST", "/users", read=False, auth=_auth(api_key, api_token))
        user_id = body.get("userId")
        if not isinstance(user_id, str):
            raise OutcomeUnknown("malformed response: no userId", provider=PROVIDER, method=name)
        return user_id

    # -- provider-neutral interface -----------------------------------------------------------

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
        # VoiceIt has no account name and no active flag; the portal keeps the name itself.
        create = self.create_managed_sub_account if managed else self.create_unmanaged_sub_account
        sub = create(first_name=first_name or "", last_name=last_name or "", email=email, password=password)
        return CreatedAccount(
            account_id=sub.api_key,
            email=sub.email,
            active=True,
            api_key=Secret(sub.api_key),
            api_token=sub.api_token,
            password=sub.password,
        )

    def get_account(self, account_id: AccountId) -> AccountSnapshot | None:
        """Refused before anything is sent: VoiceIt has no call that reads a sub-account back
        (no list, no get), so :class:`~providers.errors.Unsupported` carries the
        ``LIST_ACCOUNTS`` reason. The portal's own records are the source of truth."""
        raise self._unsupported(Capability.LIST_ACCOUNTS)

    def get_accounts(self, account_ids: Sequence[AccountId]) -> tuple[AccountSnapshot, ...]:
        """Refused like :meth:`get_account`: VoiceIt cannot read sub-accounts back, by id or
        otherwise."""
        raise self._unsupported(Capability.LIST_ACCOUNTS)

    def find_accounts(self, *, name: str | None = None, email: str | None = None) -> tuple[AccountSnapshot, ...]:
        """Refused like :meth:`get_account`: VoiceIt has no sub-account lookup by name or email."""
        raise self._unsupported(Capability.LIST_ACCOUNTS)

    def close_account(self, account_id: AccountId) -> None:
        # Idempotent on purpose: closing an account that is already gone is done.
        self.delete_sub_account(str(account_id), missing_ok=True)

    def rotate_credentials(self, account_id: AccountId) -> RotatedCredentials:
        return self.regenerate_sub_account_api_token(str(account_id))

    def check_credentials(self, *, api_key: str, api_token: Secret | str) -> bool:
        """True if ``GET /users`` works with these credentials, False if they are refused
        (401 UNAC/DAID). Other failures propagate: they say nothing about the credentials."""
        try:
            self.list_users(api_key=api_key, api_token=api_token)
        except AuthenticationError:
            return False
        return True


def _auth(api_key: str | None, api_token: Secret | str | None) -> tuple[str, Secret] | None:
    if api_key is None and api_token is None:
        return None
    if not api_key or api_token is None:
        raise InvalidArgument("give both api_key and api_token", provider=PROVIDER, field="api_token")
    return api_key, api_token if isinstance(api_token, Secret) else Secret(api_token)


def _path_key(api_key: str, method: str) -> str:
    if not isinstance(api_key, str) or not api_key.strip():
        raise InvalidArgument("sub-account apiKey is required", provider=PROVIDER, field="api_key", method=method)
    return quote(api_key, safe="")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
