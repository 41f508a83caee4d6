"""One typed error hierarchy for everything that can go wrong talking to Hailuo.

Why a hierarchy: callers (Prefect tasks, the CLI) decide what to do from the *type*
and the ``retryable`` flag, never by parsing messages. Why the constructor shape
``__init__(self, message, **optional)``: Prefect persists exceptions with failed
states, so every error must pickle. No error ever carries the API key: messages are
built from provider answers and our own text, and the client scrubs the key from
anything it quotes.
"""

from __future__ import annotations

from typing import Any


class HailuoError(Exception):
    """Base class. ``retryable`` says whether the same call may simply be tried again."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        task_id: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.task_id = task_id
        self.details = details

    def __reduce__(self):  # keyword-only arguments do not survive default pickling
        return (_rebuild, (type(self), self.message, self._kwargs()))

    def _kwargs(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "http_status": self.http_status,
            "task_id": self.task_id,
            **self.details,
        }

    def __str__(self) -> str:
        extras = []
        if self.code is not None:
            extras.append(f"code={self.code}")
        if self.http_status is not None:
            extras.append(f"http={self.http_status}")
        if self.task_id:
            extras.append(f"task_id={self.task_id}")
        return f"{self.message} ({', '.join(extras)})" if extras else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def _rebuild(cls: type[HailuoError], message: str, kwargs: dict[str, Any]) -> HailuoError:
    return cls(message, **kwargs)


class InvalidRequestError(HailuoError, ValueError):
    """The request is invalid; raised locally before any network call when we can tell.

    ``field`` names the offending field and ``allowed`` lists what would be accepted.
    """

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        if field and not message.startswith(field):
            message = f"{field}: {message}"  # every message names its field first
        super().__init__(message, field=field, **kw)
        self.field = field


class InvalidImageError(InvalidRequestError):
    """An image input failed a check (format, size, short edge, aspect ratio)."""


class AuthenticationError(HailuoError):
    """Key missing, wrong or for the other host (401, codes 1004 / 2049)."""


class InsufficientBalanceError(HailuoError):
    """The account cannot pay (402, code 1008, 2056 usage limit)."""


class ContentRejectedError(HailuoError):
    """Input or output judged sensitive (1026 / 1027). Never resubmitted automatically."""


class RateLimitedError(HailuoError):
    """Too many requests (429, codes 1002 / 1039 / 1041 / 2045). Safe to retry later."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kw)
        self.retry_after = retry_after


class ProviderUnavailableError(HailuoError):
    """The provider failed on its side (5xx, 408, codes 1000 / 1001 / 1024 / 1033)."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kw)
        self.retry_after = retry_after


class GenerationFailedError(HailuoError):
    """The provider accepted the task, then reported it failed or cancelled.

    ``task_id`` is always set. Whether a *new* submit is sensible is a policy
    decision for the caller (see ``resubmittable``).
    """

    @property
    def resubmittable(self) -> bool:
        return self.code not in (1026, 1027, 2013, 1008, 1004, 2049)


class AmbiguousSubmitError(HailuoError):
    """The submit POST may or may not have reached the provider and no task id came back.

    It is *not* retried automatically: a blind retry is how users got billed twice.
    ``idempotency_key`` and ``request_fingerprint`` are what is needed to reconcile
    (APIMart honours the key; otherwise check the provider console before resubmitting).
    """


class LinkExpiredError(HailuoError):
    """A signed download link expired (403 / 410). A fresh link can be fetched by task id."""

    retryable = True


class DownloadError(HailuoError):
    """A download broke off or came back incomplete."""

    retryable = True


class InvalidVideoError(HailuoError):
    """A downloaded file is not a decodable video (zero bytes, truncated, wrong format)."""

    retryable = True


class TimedOutError(HailuoError):
    """Waiting ran past its total timeout. ``task_id`` is kept so the wait can be resumed."""

    retryable = True


class ConfigurationError(HailuoError, ValueError):
    """Something the operator must set up (a block, a file, a folder) is missing or wrong:
    found before anything is paid, and never retried."""


class CostLimitExceededError(InvalidRequestError):
    """The cost estimate exceeds the caller's ``max_cost_usd``: refused before any submit."""
