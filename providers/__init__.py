"""Typed clients for the telephony providers behind the portal (plain Python, no Django).

Start here::

    from providers import build_client, Capability
    client = build_client("voximplant", base_url=..., credentials_path=..., parent_api_key_path=...)
    if client.supports(Capability.TRANSFER_MONEY):
        client.transfer_money(...)

See providers/README.md for the API, the error kinds and which of them are retried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from os import PathLike
from typing import Literal, overload

import httpx

from providers.base import ProviderClient
from providers.capabilities import Capability, CapabilityMatrix
from providers.errors import ConfigurationError
from providers.http import DEFAULT_TIMEOUT, RetryPolicy, TimeoutSpec
from providers.redaction import Secret
from providers.voiceit import VoiceItClient
from providers.voximplant import VoximplantClient

__all__ = [
    "DEFAULT_TIMEOUT",
    "Capability",
    "CapabilityMatrix",
    "ProviderClient",
    "RetryPolicy",
    "Secret",
    "VoiceItClient",
    "VoximplantClient",
    "build_client",
]

Kind = Literal["voximplant", "voiceit"]
PathArg = str | PathLike[str]


@overload
def build_client(
    kind: Literal["voximplant"],
    *,
    base_url: str,
    credentials_path: PathArg | None = ...,
    parent_api_key_path: PathArg | None = ...,
    voiceit_credentials_path: PathArg | None = ...,
    timeout: TimeoutSpec = ...,
    transport: httpx.BaseTransport | None = ...,
    retry: RetryPolicy | None = ...,
    clock: Callable[[], float] = ...,
    sleep: Callable[[float], None] = ...,
    rng: random.Random | None = ...,
) -> VoximplantClient: ...


@overload
def build_client(
    kind: Literal["voiceit"],
    *,
    base_url: str,
    credentials_path: PathArg | None = ...,
    parent_api_key_path: PathArg | None = ...,
    voiceit_credentials_path: PathArg | None = ...,
    timeout: TimeoutSpec = ...,
    transport: httpx.BaseTransport | None = ...,
    retry: RetryPolicy | None = ...,
    clock: Callable[[], float] = ...,
    sleep: Callable[[float], None] = ...,
    rng: random.Random | None = ...,
) -> VoiceItClient: ...


@overload
def build_client(
    kind: str,
    *,
    base_url: str,
    credentials_path: PathArg | None = ...,
    parent_api_key_path: PathArg | None = ...,
    voiceit_credentials_path: PathArg | None = ...,
    timeout: TimeoutSpec = ...,
    transport: httpx.BaseTransport | None = ...,
    retry: RetryPolicy | None = ...,
    clock: Callable[[], float] = ...,
    sleep: Callable[[float], None] = ...,
    rng: random.Random | None = ...,
) -> ProviderClient: ...


def build_client(
    kind: str,
    *,
    base_url: str,
    credentials_path: PathArg | None = None,
    parent_api_key_path: PathArg | None = None,
    voiceit_credentials_path: PathArg | None = None,
    timeout: TimeoutSpec = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> ProviderClient:
    """A client for ``kind`` ("voximplant" or "voiceit") talking to ``base_url``.

    ``base_url`` is the API root (``https://api.voximplant.com``, ``https://api.voiceit.io``,
    or the sandbox's ``RunningSandbox.base_url``, which serves both).
    Voximplant needs ``credentials_path`` (service-account credentials.json) and, for
    AddAccount/CloneAccount, ``parent_api_key_path``. VoiceIt needs
    ``voiceit_credentials_path`` (JSON with apiKey/apiToken of the master account).
    ``timeout``: seconds, ``(connect, read)`` or ``httpx.Timeout``; connect and read are
    mandatory. ``transport``: e.g. ``sandbox.transport.SandboxTransport(app)``.
    ``retry``/``sleep``/``rng``/``clock``: retry policy and injectable time for tests.
    """
    if kind == "voximplant":
        if credentials_path is None:
            raise ConfigurationError("voximplant needs credentials_path", provider=kind)
        return VoximplantClient.from_files(
            base_url=base_url,
            credentials_path=credentials_path,
            parent_api_key_path=parent_api_key_path,
            timeout=timeout,
            transport=transport,
            retry=retry,
            clock=clock,
            sleep=sleep,
            rng=rng,
        )
    if kind == "voiceit":
        if voiceit_credentials_path is None:
            raise ConfigurationError("voiceit needs voiceit_credentials_path", provider=kind)
        return VoiceItClient.from_files(
            base_url=base_url,
            voiceit_credentials_path=voiceit_credentials_path,
            timeout=timeout,
            transport=transport,
            retry=retry,
            sleep=sleep,
            rng=rng,
        )
    raise ValueError(f"unknown provider kind {kind!r}; expected 'voximplant' or 'voiceit'")
