"""Typed provider errors.

Every failure a client raises is a :class:`ProviderError`. The kinds answer the question
the caller has to decide on: *did the provider act on my request?*

- Definite refusals (the provider answered and did nothing): :class:`AuthenticationError`,
  :class:`InvalidArgument` (and its :class:`NotFound`), :class:`InsufficientFunds`,
  :class:`Duplicate`, :class:`RateLimited`, :class:`Unsupported`, plain :class:`ProviderError`.
- :class:`NotSent`: the request never left (connection refused, DNS, TLS, pool timeout).
  Safe to resend.
- :class:`OutcomeUnknown`: the request may have been applied and no usable answer came back
  (read timeout, dropped connection, 5xx, HTML/empty/non-JSON body, an internal-error code).
  A write in this state must be resolved by looking it up, never by resending blindly.

Messages are redacted (see :mod:`providers.redaction`) so no secret can leak through
``str()``, ``repr()`` or a log line that formats the exception.
"""

from __future__ import annotations

from providers.redaction import redact

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "Duplicate",
    "InsufficientFunds",
    "InvalidArgument",
    "NotFound",
    "NotSent",
    "OutcomeUnknown",
    "PagingError",
    "ProviderError",
    "RateLimited",
    "Unsupported",
]


class ProviderError(Exception):
    """Base of every provider failure.

    Attributes: ``provider`` ("voximplant" / "voiceit"), ``code`` (the provider's error code:
    an int for Voximplant, a responseCode string for VoiceIt, ``None`` when the error did
    not come from the provider), ``field`` (the request parameter concerned, when known),
    ``method`` (the provider call), ``http_status``.
    """

    #: True when resending the very same request cannot double-apply it and may succeed.
    #: The HTTP layer retries such errors for writes as well as reads.
    retry_safe: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        code: int | str | None = None,
        field: str | None = None,
        method: str | None = None,
        http_status: int | None = None,
    ) -> None:
        self.message = redact(str(message))
        self.provider = provider
        self.code = code
        self.field = field
        self.method = method
        self.http_status = http_status
        super().__init__(self.message)

    def __str__(self) -> str:
        where = " ".join(p for p in (self.provider, self.method) if p)
        details = []
        if self.code is not None:
            details.append(f"code {self.code}")
        if self.field is not None:
            details.append(f"field {self.field}")
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} ({', '.join(details)})" if details else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, provider={self.provider!r}, "
            f"method={self.method!r}, code={self.code!r}, field={self.field!r}, "
            f"http_status={self.http_status!r})"
        )

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep keyword-only attributes across pickling (Celery result backends, multiprocessing).
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[ProviderError], message: str, state: dict[str, object]) -> ProviderError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class AuthenticationError(ProviderError):
    """Credentials refused: bad/expired JWT or key, wrong Basic auth, missing role, disabled account."""


class InvalidArgument(ProviderError):
    """The provider (or the client's own guard) rejected a parameter; see ``field``."""


class NotFound(InvalidArgument):
    """The request names something that does not exist (unknown child, sub-account, user).

    A subclass of :class:`InvalidArgument` because the provider reports it as an invalid id.
    """


class InsufficientFunds(ProviderError):
    """The paying side lacks money (Voximplant 127)."""


class Duplicate(ProviderError):
    """Something with this identity already exists, or the provider says the operation was
    already performed (Voximplant 106/128/484/515/303/514, VoiceIt EAEX/UAEX).

    For a money transfer this means *look it up*: an earlier attempt may have succeeded.
    """


class RateLimited(ProviderError):
    """Throttled. ``retry_after`` (seconds) when the provider said how long to wait.

    ``refused_before_execution`` is True where the spec shows the throttle answers instead
    of executing (Voximplant's JSON error codes 340/416/162 and gateway HTTP 429); such
    errors are retried for writes too. Otherwise only reads are retried.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        refused_before_execution: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after
        self.refused_before_execution = refused_before_execution
        self.retry_safe = refused_before_execution


class NotSent(ProviderError):
    """The request did not reach the provider (connect refused, DNS, TLS, pool timeout)."""

    retry_safe = True


class OutcomeUnknown(ProviderError):
    """The request may or may not have been applied: resolve by lookup, do not resend blindly."""


class Unsupported(ProviderError):
    """The provider lacks this capability; ``message`` is the human reason."""


class ConfigurationError(ProviderError):
    """The client is missing configuration it needs (credential file, parent api key)."""


class PagingError(ProviderError):
    """A listing could not be walked consistently (ids vs total_count, too many rows in one second)."""
