"""What every provider dialect provides, and the one mapping from provider codes to errors.

A dialect knows how one provider spells things on the wire: request bodies, response
shapes, status words and error codes. It does no I/O; ``hailuo.client`` does the HTTP.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hailuo import errors
from hailuo.capabilities import Provider
from hailuo.models import Job, VideoRequest

# MiniMax base_resp codes (api-contract.md section 2), also seen inside APIMart errors.
_CODE_ERRORS: dict[int, type[errors.HailuoError]] = {
    1000: errors.ProviderUnavailableError,
    1001: errors.ProviderUnavailableError,
    1002: errors.RateLimitedError,
    1004: errors.AuthenticationError,
    1008: errors.InsufficientBalanceError,
    1024: errors.ProviderUnavailableError,
    1026: errors.ContentRejectedError,
    1027: errors.ContentRejectedError,
    1033: errors.ProviderUnavailableError,
    1039: errors.RateLimitedError,
    1041: errors.RateLimitedError,
    1042: errors.InvalidRequestError,
    2013: errors.InvalidRequestError,
    2038: errors.AuthenticationError,
    2045: errors.RateLimitedError,
    2049: errors.AuthenticationError,
    2056: errors.InsufficientBalanceError,
}

_HTTP_ERRORS: dict[int, type[errors.HailuoError]] = {
    400: errors.InvalidRequestError,
    401: errors.AuthenticationError,
    402: errors.InsufficientBalanceError,
    403: errors.AuthenticationError,
    404: errors.InvalidRequestError,
    408: errors.ProviderUnavailableError,
    409: errors.InvalidRequestError,
    422: errors.InvalidRequestError,
    429: errors.RateLimitedError,
}


def error_for(
    *,
    message: str,
    code: int | None = None,
    http_status: int | None = None,
    retry_after: float | None = None,
    task_id: str | None = None,
) -> errors.HailuoError:
    """The typed error for a provider code (preferred) or an HTTP status."""
    cls = _CODE_ERRORS.get(code) if code is not None else None
    if cls is None and http_status is not None:
        cls = _HTTP_ERRORS.get(http_status)
        if cls is None and http_status >= 500:
            cls = errors.ProviderUnavailableError
    cls = cls or errors.HailuoError
    kw: dict[str, Any] = {"code": code, "http_status": http_status, "task_id": task_id}
    if cls in (errors.RateLimitedError, errors.ProviderUnavailableError):
        kw["retry_after"] = retry_after
    return cls(message, **kw)


def from_unix(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC) if value not in (None, "", 0) else None
    except (TypeError, ValueError, OverflowError):
        return None


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Dialect(ABC):
    """One provider's wire format. Stateless; safe to share."""

    provider: Provider
    submit_path: str
    #: Whether the provider de-duplicates submits by an ``Idempotency-Key`` header.
    honours_idempotency_key: bool = False

    @abstractmethod
    def submit_body(self, request: VideoRequest, images: Mapping[str, str]) -> dict[str, Any]:
        """Body for a validated request; ``images`` maps field name -> prepared URL/data URL."""

    @abstractmethod
    def parse_submit(self, status_code: int, body: Any, retry_after: float | None) -> Job:
        """The job from a submit answer, or raise the typed error it carries."""

    @abstractmethod
    def status_call(self, task_id: str) -> tuple[str, dict[str, str]]:
        """(path, query params) of the status request."""

    @abstractmethod
    def parse_status(
        self, task_id: str, status_code: int, body: Any, retry_after: float | None
    ) -> Job:
        """The job from a status answer (or a callback body), or raise the typed error."""

    def file_call(self, job: Job) -> tuple[str, dict[str, str]] | None:
        """(path, params) of an extra lookup needed for download links, if any."""
        return None

    def parse_file(self, job: Job, status_code: int, body: Any, retry_after: float | None) -> Job:
        return job
