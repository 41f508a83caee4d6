"""What every provider dialect provides, and the one mapping from provider codes to errors.

A dialect knows how one provider spells things on the wire: request bodies, response
shapes, status words and error codes. It does no I/O; ``hailuo.client`` does the HTTP.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hailuo import errors
from hailuo.capabilities import Provider
from hailuo.models import Job, JobStatus, VideoRequest, parse_status

log = logging.getLogger("hailuo.providers")

#: Models whose documentation lists ``fast_pretreatment`` (MiniMax: "only applicable to
#: MiniMax-Hailuo-2.3, MiniMax-Hailuo-2.3-Fast and MiniMax-Hailuo-02"; APIMart's Hailuo-02
#: and Hailuo-2.3 pages). Other models are never sent the field.
FAST_PRETREATMENT_MODELS = frozenset({"MiniMax-Hailuo-02", "MiniMax-Hailuo-2.3",
                                      "MiniMax-Hailuo-2.3-Fast"})

# MiniMax base_resp codes (api-contract.md section 2), also seen inside APIMart errors.
_CODE_ERRORS: dict[int, type[errors.HailuoError]] = {
    1000: errors.ProviderUnavailableError,
    1001: errors.ProviderUnavailableError,
    1002: errors.RateLimitedError,
    1004: errors.AuthenticationError,
    1008: errors.InsufficientBalanceError,
    1013: errors.ProviderUnavailableError,  # transient (seen on files/retrieve): retry
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


def status_word(value: Any, *, task_id: str | None = None,
                default: JobStatus = JobStatus.PROCESSING, lenient: bool = True) -> JobStatus:
    """A provider status word as a ``JobStatus``; an unknown word means "still running".

    Providers add words (``queued`` arrived with APIMart's 2026-07-27 answers); a word we do
    not know must not crash a wait. It is reported as ``default`` (not terminal), so the
    wait goes on until a known terminal word or the wait's own deadline. ``lenient=False``
    (callback bodies, which a poll double-checks anyway) raises ``ValueError`` instead.
    """
    if value is None or value == "":
        return default
    try:
        return parse_status(str(value))
    except ValueError:
        if not lenient:
            raise
        log.warning("unknown status word %r for task %s; treating it as still running",
                    str(value)[:40], task_id or "?")
        return default


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Dialect(ABC):
    """One provider's wire format. Stateless; safe to share."""

    provider: Provider
    submit_path: str
    #: Whether submits carry an ``Idempotency-Key`` header. Sending it is not proof that the
    #: provider de-duplicates by it for every model: see ``HailuoClient.submit``.
    sends_idempotency_key: bool = False
    #: Whether local images must be uploaded first (no data: URLs in generation bodies).
    uploads_images: bool = False

    def submit_headers(self, idempotency_key: str) -> dict[str, str]:
        """Extra headers of a generation POST."""
        return {}

    def idempotency_signal(self, status_code: int, body: Any) -> str | None:
        """The provider's idempotency verdict on a submit answer, if it gave one."""
        return None

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
        self, task_id: str, status_code: int, body: Any, retry_after: float | None, *,
        lenient: bool = False,
    ) -> Job:
        """The job from a status answer (or a callback body), or raise the typed error.

        ``lenient``: an unknown status word is "still running" (polls); otherwise it raises
        ``ValueError`` (callback bodies: the receiver refuses them and the wait re-polls).
        """

    def file_call(self, job: Job) -> tuple[str, dict[str, str]] | None:
        """(path, params) of an extra lookup needed for download links, if any."""
        return None

    def parse_file(self, job: Job, status_code: int, body: Any, retry_after: float | None) -> Job:
        return job
