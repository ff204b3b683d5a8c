"""The one exception tree of imagefunnel.

Foreign errors (httpx, PIL, SQLAlchemy, YAML) are translated into these at the package boundary and
raised ``from`` the original, so the funnel, router and CLI only ever handle our own types::

    ImageFunnelError
    ├── SpecError                 a job spec is invalid (names the field and line)
    ├── ImageError                bytes that are not a usable image
    │   ├── ImageDecodeError      corrupt, truncated or of an unsupported type
    │   ├── ImageTooLarge         over the byte or pixel limit (decompression bombs)
    │   └── ImageFileError        a path that is not a readable regular file (missing, FIFO, device)
    ├── ProviderError             a provider could not produce a usable generation
    │   ├── RateLimited           HTTP 429; carries Retry-After
    │   ├── ProviderTimeout       no answer within the allotted time
    │   ├── ProviderUnavailable   5xx, connection refused, outage, failed request
    │   │   └── ConnectionLost    the connection dropped after the request was sent (maybe taken)
    │   ├── BadOutput             an answer that is not a usable image (black, truncated, garbage)
    │   └── NotAdmitted           the provider went into cooldown between decision and send (nothing sent)
    ├── NoProviderAvailable       every capable provider failed or was excluded
    ├── BudgetExceeded            the next request would overspend the job budget
    ├── StoreError                the job store is unusable or inconsistent
    ├── ExecutorError             an executor URL that cannot be used, or a broken pool
    │   └── ScoringWorkerError    a scoring worker process died or could not build its scorer
    └── SharedStateError          a shared-state URL (cooldowns across workers) that cannot be used
"""

from __future__ import annotations


class ImageFunnelError(Exception):
    """Base class of every error imagefunnel raises on purpose."""


def describe(exc: BaseException) -> str:
    """``"Type: message"``: how a failure is named wherever a stop reason may quote it, so the reason
    says what kind of failure it was even when the message alone does not (a connect timeout)."""
    return f"{type(exc).__name__}: {exc}"


class SpecError(ImageFunnelError):
    """A job spec is invalid; the message names the field and, when known, the line."""

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.line = line


class ImageError(ImageFunnelError):
    """Bytes that cannot be used as an image."""


class ImageDecodeError(ImageError):
    """Corrupt, truncated or unsupported image data."""


class ImageTooLarge(ImageError):
    """Image over the configured byte or pixel limit (including decompression bombs)."""


class ImageFileError(ImageError):
    """A path that cannot be read as an image file: missing, unreadable, a directory or not a regular file."""


class ProviderError(ImageFunnelError):
    """A provider failed to produce a usable generation."""

    def __init__(self, message: str, *, provider: str, charged_usd: float = 0.0) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        # Some failures are still billed (e.g. garbage output on HTTP 200); the ledger records it.
        self.charged_usd = charged_usd


class RateLimited(ProviderError):
    """HTTP 429 from the provider."""

    def __init__(self, message: str, *, provider: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_after_s = retry_after_s


class ProviderTimeout(ProviderError):
    """The provider did not finish within the allotted time."""


class ProviderUnavailable(ProviderError):
    """Server error, refused connection, outage, or a request the provider reported as failed."""


class ConnectionLost(ProviderUnavailable):
    """The connection dropped after the request was sent: the provider may have taken it, and bill it."""


class BadOutput(ProviderError):
    """The provider answered, but not with a usable image."""


class NotAdmitted(ProviderError):
    """Nothing was sent: the provider's breaker opened (a 429's Retry-After, a failure streak) after
    the router chose it and before the request went out. The router decides again."""


class NoProviderAvailable(ImageFunnelError):
    """No capable provider is healthy, or every one in the fallback chain failed."""


class BudgetExceeded(ImageFunnelError):
    """Dispatching the next request would spend more than the job budget."""


class StoreError(ImageFunnelError):
    """The job store cannot be used."""


class ExecutorError(ImageFunnelError):
    """An executor URL that cannot be used, or a pool that can no longer run work."""


class ScoringWorkerError(ExecutorError):
    """A scoring worker process died or could not start (its scorer raised while being built)."""


class SharedStateError(ImageFunnelError):
    """A shared-state URL (``memory://``, ``redis://``) that cannot be used."""
