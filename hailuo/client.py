"""``HailuoClient``: submit, status, wait, download — for APIMart and MiniMax alike.

Money safety is the design constraint:

* Invalid requests are rejected locally (capability table, image checks) before any I/O.
* Idempotent GETs are retried on 408/429/5xx and transport errors with backoff, jitter
  and ``Retry-After``.
* The submit POST is never retried blindly. It is retried only when the request cannot
  have created a task (connection never made, 429 / code 1002 / 408 / 503, a provider
  error code inside the answer) or when the provider de-duplicates by ``Idempotency-Key``
  (APIMart). Otherwise an :class:`AmbiguousSubmitError` carries what is needed to
  reconcile, and nothing is sent twice.
* Waiting always ends: on every terminal status, at a total timeout (the task id is kept
  in the error so the wait can be resumed), or after a budget of consecutive failed polls.
* Downloads stream to a temp file (constant memory), are hashed and probed as real video,
  and only then renamed into place. Expired links fall back to the backup URL, then to a
  fresh link fetched by task id. The API key is never sent to download hosts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from hailuo import errors, media
from hailuo.capabilities import Provider
from hailuo.files import atomic_output
from hailuo.fingerprint import IMAGE_FIELDS, request_fingerprint
from hailuo.images import prepare_image
from hailuo.models import DownloadedVideo, Job, JobStatus, VideoRequest, utcnow
from hailuo.providers import DEFAULT_BASE_URLS, SIMULATOR_HEADER, Dialect, dialect_for

log = logging.getLogger("hailuo.client")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
#: Submit answers that prove no task was created, so a retry cannot pay twice.
SUBMIT_NOT_ACCEPTED_HTTP = frozenset({408, 429, 503})
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class PollPolicy:
    """How ``wait`` spaces its status calls.

    The first look after submit comes near the provider's estimate (``estimate_fraction``
    of it), never more than ``max_interval`` apart so progress stays visible; after that,
    short intervals growing from ``min_interval`` by ``growth`` up to ``max_interval``.
    """

    min_interval: float = 1.0
    max_interval: float = 30.0
    growth: float = 1.3
    estimate_fraction: float = 0.95
    default_estimate: float | None = None
    max_consecutive_failures: int = 6

    def next_delay(self, elapsed: float, estimate: float | None, after_estimate_polls: int
                   ) -> float:
        estimate = estimate or self.default_estimate
        if estimate and elapsed < estimate * self.estimate_fraction:
            return max(self.min_interval,
                       min(estimate * self.estimate_fraction - elapsed, self.max_interval))
        return min(self.min_interval * self.growth ** after_estimate_polls, self.max_interval)


class _BearerAuth(httpx.Auth):
    """Adds the key per request; keeps it out of client reprs and default headers."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        yield request


def _simulated(response: httpx.Response) -> bool:
    return response.headers.get(SIMULATOR_HEADER) == "1"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
            return max(0.0, (when - utcnow()).total_seconds())
        except ValueError:
            return None


@cache
def _tls_context() -> ssl.SSLContext:
    """One certificate-verifying TLS context for every client in the process.

    Building one loads the CA bundle (about 20 ms of CPU); flows make a client per task,
    several per clip, so a batch would otherwise spend seconds on it. Contexts are safe to
    share between threads."""
    return httpx.create_ssl_context()


class HailuoClient:
    """A client for one provider (``"apimart"`` or ``"minimax"``) and one key."""

    def __init__(
        self,
        provider: Provider | str = Provider.APIMART,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        download_timeout: httpx.Timeout | float = DOWNLOAD_TIMEOUT,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_rate_limit_waits: int = 8,
        poll: PollPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        download_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = Provider(provider)
        self.dialect: Dialect = dialect_for(self.provider)
        if api_key is None:
            raise errors.AuthenticationError(
                "no API key given: store it in a Prefect Secret block or pass api_key")
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not self._key.get_secret_value().strip():
            raise errors.AuthenticationError("the API key is empty")
        self.base_url = (base_url or DEFAULT_BASE_URLS[self.provider]).rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_rate_limit_waits = max_rate_limit_waits
        self.poll = poll or PollPolicy()
        self._sleep = sleep
        tls = _tls_context()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=tls,
                                  auth=_BearerAuth(self._key), transport=transport)
        # Download hosts are CDNs: they get no Authorization header.
        self._dl = httpx.Client(timeout=download_timeout, follow_redirects=True,
                                verify=tls, transport=download_transport)

    def __repr__(self) -> str:
        return f"HailuoClient(provider={self.provider.value!r}, base_url={self.base_url!r})"

    def __enter__(self) -> HailuoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._dl.close()

    # ----------------------------------------------------------------- helpers
    def _json(self, response: httpx.Response) -> Any:
        try:
            response.read()
            return json.loads(response.text) if response.content else {}
        except ValueError:
            return {"_raw": response.text[:200]}

    @contextmanager
    def _scrubbed(self) -> Iterator[None]:
        """Errors built from provider answers never carry the key, even if echoed back."""
        try:
            yield
        except errors.HailuoError as exc:
            key = self._key.get_secret_value()
            if key in exc.message:
                exc.message = exc.message.replace(key, "***")
                exc.args = (exc.message,)
            raise

    def _delay(self, attempt: int, retry_after: float | None = None) -> float:
        base = min(self.max_backoff, self.backoff * 2 ** attempt)
        jittered = base / 2 + random.random() * base / 2
        return max(jittered, retry_after or 0.0)

    def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        """An idempotent GET with retries on transient failures."""
        attempt = 0
        while True:
            try:
                response = self._http.get(path, params=params)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise errors.ProviderUnavailableError(
                        f"{self.provider} unreachable after {attempt + 1} attempts: "
                        f"{type(exc).__name__}") from None
            else:
                if response.status_code not in RETRYABLE_HTTP or attempt >= self.max_retries:
                    return response
                log.info("GET %s answered %s; retrying", path, response.status_code)
                self._sleep(self._delay(attempt, _retry_after(response)))
                attempt += 1
                continue
            self._sleep(self._delay(attempt))
            attempt += 1

    # ------------------------------------------------------------------ submit
    def prepare(self, request: VideoRequest) -> tuple[VideoRequest, dict[str, Any]]:
        """Validate locally and build the wire body. Raises before any network call."""
        validated = request.validate_for(self.provider)
        images = {name: prepare_image(getattr(validated, name), field=name)
                  for name in IMAGE_FIELDS if getattr(validated, name)}
        return validated, self.dialect.submit_body(validated, images)

    def submit(self, request: VideoRequest, *, idempotency_key: str | None = None,
               take: int = 1) -> Job:
        """Send one paid request; returns the provider's job (task id) at once."""
        validated, body = self.prepare(request)
        fingerprint = request_fingerprint(validated, self.provider, take)
        key = idempotency_key or f"hailuo-{fingerprint[:32]}-{uuid.uuid4().hex[:8]}"
        headers = {"Idempotency-Key": key} if self.dialect.honours_idempotency_key else {}
        attempt = rate_waits = 0
        while True:
            try:
                response = self._http.post(self.dialect.submit_path, json=body, headers=headers)
            except _NEVER_SENT as exc:
                if attempt >= self.max_retries:
                    raise errors.ProviderUnavailableError(
                        f"could not connect to {self.provider}: {type(exc).__name__}") from None
                self._sleep(self._delay(attempt))
                attempt += 1
                continue
            except httpx.TransportError as exc:
                if self.dialect.honours_idempotency_key and attempt < self.max_retries:
                    log.warning("submit connection lost (%s); retrying with the same "
                                "Idempotency-Key", type(exc).__name__)
                    self._sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise errors.AmbiguousSubmitError(
                    f"the connection to {self.provider} broke after the submit was sent "
                    f"({type(exc).__name__}); it may or may not have been accepted. Not "
                    "resubmitted automatically: check the provider console or resubmit "
                    "deliberately.", idempotency_key=key if headers else None,
                    request_fingerprint=fingerprint) from None
            retry_after = _retry_after(response)
            try:
                with self._scrubbed():
                    job = self.dialect.parse_submit(response.status_code, self._json(response),
                                                    retry_after)
            except errors.RateLimitedError as exc:
                if rate_waits >= self.max_rate_limit_waits:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else self._delay(rate_waits)
                log.info("submit rate limited; waiting %.1fs", wait)
                self._sleep(wait)
                rate_waits += 1
                continue
            except errors.ProviderUnavailableError as exc:
                definite = (response.status_code in SUBMIT_NOT_ACCEPTED_HTTP or exc.code is not None
                            or self.dialect.honours_idempotency_key)
                if not definite:
                    raise errors.AmbiguousSubmitError(
                        f"{self.provider} answered HTTP {response.status_code} to the submit; "
                        "it may or may not have been accepted. Not resubmitted automatically.",
                        http_status=response.status_code, idempotency_key=None,
                        request_fingerprint=fingerprint) from None
                if attempt >= self.max_retries:
                    raise
                self._sleep(self._delay(attempt, exc.retry_after))
                attempt += 1
                continue
            log.info("submitted %s task %s", self.provider.value, job.task_id)
            return job.model_copy(update={
                "submitted_at": job.submitted_at or utcnow(),
                "idempotency_key": key if headers else None,
                "simulated": _simulated(response),
            })

    # ------------------------------------------------------------------ status
    def status(self, task_id: str) -> Job:
        """The task's current state; for a completed task, with download links."""
        path, params = self.dialect.status_call(task_id)
        response = self._get(path, params)
        with self._scrubbed():
            job = self.dialect.parse_status(task_id, response.status_code,
                                            self._json(response), _retry_after(response))
            file_call = self.dialect.file_call(job)
            if file_call:
                response = self._get(*file_call)
                job = self.dialect.parse_file(job, response.status_code, self._json(response),
                                              _retry_after(response))
        return job.model_copy(update={"simulated": _simulated(response)})

    def parse_callback(self, body: Any, task_id: str | None = None) -> Job:
        """A job from a provider callback body (same shape as a status answer)."""
        tid = task_id or str((body.get("data") or {}).get("id") or body.get("task_id") or "")
        return self.dialect.parse_status(tid, 200, body, None)

    # -------------------------------------------------------------------- wait
    def wait(
        self,
        job: Job | str,
        *,
        timeout: float = 1800.0,
        on_update: Callable[[Job], None] | None = None,
        wake: threading.Event | None = None,
    ) -> Job:
        """Poll until a terminal status; returns the completed job (with links).

        Raises ``GenerationFailedError`` / ``ContentRejectedError`` on a failed or cancelled
        task and ``TimedOutError`` (keeping the task id) past ``timeout`` seconds. ``wake``
        lets a callback receiver cut a sleep short.
        """
        current = job if isinstance(job, Job) else Job(task_id=job, provider=self.provider)
        started = time.monotonic()
        deadline = started + timeout
        submitted = current.submitted_at
        estimate = current.estimated_time
        failures = after_estimate = 0
        while True:
            retry_after = None
            try:
                latest = self.status(current.task_id)
            except errors.HailuoError as exc:
                if not exc.retryable:
                    raise
                failures += 1
                if failures > self.poll.max_consecutive_failures:
                    raise
                retry_after = getattr(exc, "retry_after", None)
                log.info("status poll failed (%s); %d in a row", type(exc).__name__, failures)
            else:
                failures = 0
                current = latest.model_copy(update={
                    "submitted_at": latest.submitted_at or submitted,
                    "idempotency_key": current.idempotency_key,
                    "estimated_time": latest.estimated_time or estimate,
                })
                estimate = current.estimated_time
                if on_update:
                    on_update(current)
                if current.status is JobStatus.COMPLETED:
                    return current
                if current.status.terminal:
                    raise self._failure(current)
            now = time.monotonic()
            if now >= deadline:
                raise errors.TimedOutError(
                    f"task still {current.status.value} after {timeout:.0f}s; resume it later "
                    "by task id", task_id=current.task_id)
            elapsed = ((utcnow() - submitted).total_seconds() if submitted
                       else now - started)
            delay = self.poll.next_delay(elapsed, estimate, after_estimate)
            if not estimate or elapsed >= estimate * self.poll.estimate_fraction:
                after_estimate += 1
            self._pause(min(max(delay, retry_after or 0.0), max(0.0, deadline - now)), wake)

    def _pause(self, delay: float, wake: threading.Event | None) -> None:
        """Sleep ``delay`` seconds, or less if a callback sets ``wake``."""
        if wake is None:
            self._sleep(delay)
        elif wake.wait(delay):
            wake.clear()

    @staticmethod
    def _failure(job: Job) -> errors.HailuoError:
        reason = job.error_message or job.status.value
        cls = (errors.ContentRejectedError if job.error_code in (1026, 1027)
               else errors.GenerationFailedError)
        return cls(f"generation {job.status.value}: {reason}", code=job.error_code,
                   task_id=job.task_id)

    def create_and_poll(self, request: VideoRequest, **wait_kw: Any) -> Job:
        """Submit and wait: the one-call path for scripts."""
        return self.wait(self.submit(request), **wait_kw)

    # ---------------------------------------------------------------- download
    def download(self, job: Job | str, path: str | os.PathLike[str], *,
                 max_refreshes: int = 2) -> DownloadedVideo:
        """Stream the video to ``path`` atomically; hash it and prove it decodes."""
        current = job if isinstance(job, Job) else self.status(job)
        if not current.video_urls or self._expired(current):
            current = self.status(current.task_id)
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        last_error: errors.HailuoError | None = None
        for refresh in range(max_refreshes + 1):
            if current.status is not JobStatus.COMPLETED:
                raise self._failure(current) if current.status.terminal else errors.HailuoError(
                    f"task is {current.status.value}, not completed", task_id=current.task_id)
            for url in current.video_urls:
                try:
                    with atomic_output(dest) as tmp:
                        sha, size = self._stream(url, tmp, current.task_id)
                        info = media.probe(tmp)
                except (errors.LinkExpiredError, errors.DownloadError,
                        errors.InvalidVideoError) as exc:
                    exc.task_id = exc.task_id or current.task_id
                    last_error = exc
                    log.warning("download of task %s failed: %s", current.task_id,
                                type(exc).__name__)
                    continue
                return DownloadedVideo(
                    task_id=current.task_id, path=dest, sha256=sha, size=size,
                    width=info.width, height=info.height, duration=info.duration,
                    fps=info.fps, frames=info.frames, codec=info.codec)
            if refresh < max_refreshes:
                self._sleep(self._delay(refresh))
                current = self.status(current.task_id)  # fresh, signed links
        assert last_error is not None
        raise last_error

    @staticmethod
    def _expired(job: Job) -> bool:
        return job.expires_at is not None and job.expires_at <= utcnow()

    def _stream(self, url: str, tmp: Path, task_id: str) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        try:
            with self._dl.stream("GET", url) as response:
                if response.status_code in (401, 403, 410):
                    raise errors.LinkExpiredError(
                        f"download link refused (HTTP {response.status_code}); it has expired "
                        "or its signature is invalid", http_status=response.status_code,
                        task_id=task_id)
                if response.status_code >= 400:
                    raise errors.DownloadError(f"download answered HTTP {response.status_code}",
                                               http_status=response.status_code, task_id=task_id)
                expected = response.headers.get("Content-Length")
                # Chunks as the socket delivers them: iter_bytes(n) re-chunks with a copy,
                # which costs about half the throughput. A compressed body is decoded;
                # its Content-Length then counts the compressed bytes, so is not compared.
                if response.headers.get("Content-Encoding", "identity") != "identity":
                    expected = None
                with open(tmp, "wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
        except httpx.TransportError as exc:
            raise errors.DownloadError(f"download broke off after {size} bytes "
                                       f"({type(exc).__name__})", task_id=task_id) from None
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise errors.DownloadError(f"download truncated: {size} of {expected} bytes",
                                       task_id=task_id)
        if size == 0:
            raise errors.InvalidVideoError("downloaded video is empty (0 bytes)", task_id=task_id)
        return digest.hexdigest(), size

