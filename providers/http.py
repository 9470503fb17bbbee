"""The one HTTP wrapper both clients use: mandatory timeouts, transport-failure
classification and bounded, jittered retries.

Retry rule (the only place it lives):

- an error whose ``retry_safe`` is true (``NotSent``; ``RateLimited`` refused before
  execution; an auth error the client fixed by re-minting its token) is retried for any call;
- for reads (``idempotent=True``) ``OutcomeUnknown`` and every ``RateLimited`` are retried too;
- everything else is raised at once. A write that may have been applied is never resent here.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import httpx

from providers.errors import NotSent, OutcomeUnknown, ProviderError, RateLimited

__all__ = ["DEFAULT_TIMEOUT", "HttpSession", "RetryPolicy", "TimeoutSpec", "make_timeout"]

T = TypeVar("T")

TimeoutSpec = float | int | httpx.Timeout | tuple[float, float]

#: Connect 5 s, read 30 s: both well below the task queue's soft time limit.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)

logger = logging.getLogger("providers.http")


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~70 ms; every client in the process shares one context.
    return httpx.create_ssl_context()


def make_timeout(spec: TimeoutSpec) -> httpx.Timeout:
    """Build an ``httpx.Timeout`` with connect and read timeouts that are set and positive.

    ``float`` sets every timeout; ``(connect, read)`` sets those two (write = read,
    pool = connect); an ``httpx.Timeout`` is checked as is.
    """
    if isinstance(spec, bool):
        raise TypeError("timeout must be a number, a (connect, read) pair or httpx.Timeout")
    if isinstance(spec, httpx.Timeout):
        timeout = spec
    elif isinstance(spec, int | float):
        timeout = httpx.Timeout(float(spec))
    elif isinstance(spec, tuple) and len(spec) == 2:
        connect, read = float(spec[0]), float(spec[1])
        timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
    else:
        raise TypeError("timeout must be a number, a (connect, read) pair or httpx.Timeout")
    for name in ("connect", "read"):
        value = getattr(timeout, name)
        if value is None or value <= 0:
            raise ValueError(f"a positive {name} timeout is mandatory")
    return timeout


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter.

    Attempt ``n`` (1-based) that fails retryably waits a random time in
    ``[d/2, d]`` where ``d = min(max_delay, base_delay * 2**(n-1))``; a provider's
    ``retry_after`` raises the wait to at least that (still capped by ``max_delay``).
    """

    max_attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        wait: float = ceiling / 2 + rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


class HttpSession:
    """An ``httpx.Client`` plus the classification and retry rules above."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        timeout: TimeoutSpec,
        transport: httpx.BaseTransport | None,
        retry: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.retry = retry
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = httpx.Client(
            base_url=base_url,
            timeout=make_timeout(timeout),
            transport=transport,
            follow_redirects=False,
            verify=_ssl_context(),
            headers={"User-Agent": "cloudpbx-portal-providers/1.0", **(headers or {})},
        )

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def close(self) -> None:
        self._client.close()

    def build_request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[None, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        return self._client.build_request(method, url, data=data, files=files, headers=headers)

    def call(
        self,
        name: str,
        build: Callable[[], httpx.Request],
        parse: Callable[[httpx.Response], T],
        *,
        idempotent: bool,
        on_error: Callable[[ProviderError], None] | None = None,
    ) -> T:
        """Send ``build()`` and ``parse`` the response, retrying per the module rule.

        ``build`` runs for every attempt (so a fresh token is used); ``on_error`` may
        adjust an error before the retry decision (e.g. mark an expired-token error safe
        after dropping the cached token).
        """
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                response = self._send(name, build())
                try:
                    result = parse(response)
                finally:
                    response.close()
            except ProviderError as err:
                if on_error is not None:
                    on_error(err)
                retryable = err.retry_safe or (idempotent and isinstance(err, OutcomeUnknown | RateLimited))
                logger.info(
                    "%s %s attempt %d failed after %.3fs: %s%s",
                    self.provider,
                    name,
                    attempt,
                    time.monotonic() - started,
                    type(err).__name__,
                    "" if err.code is None else f" code={err.code}",
                )
                if not retryable or attempt >= self.retry.max_attempts:
                    raise
                retry_after = err.retry_after if isinstance(err, RateLimited) else None
                wait = self.retry.delay(attempt, self._rng, retry_after)
                logger.warning(
                    "%s %s: retrying after %s (attempt %d of %d, waiting %.3fs)",
                    self.provider,
                    name,
                    type(err).__name__,
                    attempt + 1,
                    self.retry.max_attempts,
                    wait,
                )
                self._sleep(wait)
                continue
            logger.debug("%s %s attempt %d ok in %.3fs", self.provider, name, attempt, time.monotonic() - started)
            return result

    def _send(self, name: str, request: httpx.Request) -> httpx.Response:
        try:
            return self._client.send(request)
        # Nothing was written to the wire: no connection (refused, DNS, TLS handshake,
        # connect timeout) or no free connection in the pool.
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as exc:
            raise NotSent(
                f"request not sent: {type(exc).__name__}: {exc}", provider=self.provider, method=name
            ) from exc
        # Bytes may have reached the provider: write/read timeouts, a connection dropped
        # mid-exchange, a protocol violation, a proxy failure.
        except httpx.TransportError as exc:
            raise OutcomeUnknown(
                f"no usable answer: {type(exc).__name__}: {exc}", provider=self.provider, method=name
            ) from exc
