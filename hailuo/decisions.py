"""The decisions of a Hailuo client, without the I/O: retry, wait, download checks.

Why a module of its own: the sync ``HailuoClient`` (a thread per waiting clip) and the
``AsyncHailuoClient`` (hundreds of clips waiting in one event loop) must retry, back off,
give up, poll and verify downloads *identically*. Were the rules written twice they would
drift, and a drift here costs money (a wait that never ends, a corrupt clip kept). So both
clients do only the I/O (a GET, a sleep, a chunk written) and ask this module what to do
next. Everything here takes plain values - status codes, header values, elapsed seconds,
byte counts, ``Job`` objects - and returns a value or raises the typed error to stop with;
nothing here opens a socket, sleeps, logs or reads a clock it was not handed (the jitter
of a back-off is the one random draw, and it can be injected).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hailuo import errors
from hailuo.capabilities import Provider
from hailuo.ids import shown
from hailuo.models import Job, JobStatus

#: Answers of an idempotent GET that are worth asking again (a status or file lookup).
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
#: Redirects one download attempt may follow (each hop is checked by the address policy).
MAX_REDIRECTS = 5
#: One attempt of a download of known size gets this long plus size / MIN_DOWNLOAD_RATE.
DOWNLOAD_GRACE = 120.0
MIN_DOWNLOAD_RATE = 32 * 1024
#: Decoded bytes handed out per piece when inflating.
PIECE = 256 * 1024
#: A body may decode to this much before the inflation ratio is looked at.
RATIO_FLOOR = 1 << 20
#: Task failure codes that mean the content was refused (input / output judged sensitive).
CONTENT_CODES = (1026, 1027)


# -- back-off ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter, never shorter than the server's ``Retry-After``.

    Half the delay is fixed and half random, so clients failing together do not come back
    together; ``rand`` is injectable so tests can pin the draw."""

    backoff: float = 0.5
    max_backoff: float = 20.0
    rand: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        base = min(self.max_backoff, self.backoff * 2 ** attempt)
        jittered = base / 2 + self.rand() * base / 2
        return max(jittered, retry_after or 0.0)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header value asks for (delta seconds or an HTTP date
    relative to ``now``), never negative; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
            return max(0.0, (when - now).total_seconds())
        except ValueError:
            return None


def bounded_pause(delay: float, remaining: float | None) -> float:
    """A pause that never sleeps past the current deadline (``remaining`` seconds left,
    None without one)."""
    return delay if remaining is None else max(0.0, min(delay, remaining))


# -- an idempotent GET --------------------------------------------------------------------
@dataclass
class GetRetries:
    """The retry rules of one idempotent GET (status, file lookup, list), attempt by
    attempt: which answers and transport failures are retried, after how long, and with
    which typed error it gives up. One instance per call; the caller does the I/O:

    * an answer: ``on_answer`` gives None (use it, whatever its status) or the delay;
    * a transport failure: ``on_transport_error`` gives the delay or raises;
    * after the pause: ``next_attempt`` raises when the call's deadline has passed.
    """

    provider: str
    path: str
    max_retries: int
    backoff: Backoff
    call_deadline: float
    attempt: int = 0

    def on_answer(self, status_code: int, retry_after: float | None) -> float | None:
        """None: this answer is final (a success, a definite error, or retries spent);
        else seconds to wait before asking again (408/429/5xx)."""
        if status_code not in RETRYABLE_HTTP or self.attempt >= self.max_retries:
            return None
        return self.backoff.delay(self.attempt, retry_after)

    def on_transport_error(self, exc: BaseException, *, expired: bool) -> float:
        """The delay before retrying a GET that broke off; raises ``StatusDeadlineError``
        when the call's time is up and ``ProviderUnavailableError`` when retries are
        spent (both without the transport error chained: it may quote the URL)."""
        if expired:
            raise self.deadline_error() from None
        if self.attempt >= self.max_retries:
            raise errors.ProviderUnavailableError(
                f"{self.provider} unreachable after {self.attempt + 1} attempts: "
                f"{type(exc).__name__}") from None
        return self.backoff.delay(self.attempt)

    def next_attempt(self, *, expired: bool) -> None:
        """Count the attempt that follows a pause, unless the deadline passed meanwhile."""
        if expired:
            raise self.deadline_error()
        self.attempt += 1

    def deadline_error(self) -> errors.StatusDeadlineError:
        return errors.StatusDeadlineError(
            f"GET {self.path} on {self.provider} did not finish before its deadline (at most "
            f"{self.call_deadline:.0f}s per call, less inside a wait that is ending); the "
            "server is too slow or trickling its answer")


def retry_lookup(exc: errors.HailuoError, attempt: int, max_retries: int,
                 backoff: Backoff) -> float:
    """The delay before asking a file lookup again after a transient answer inside HTTP
    200 (MiniMax code 1013 / 1000, a rate limit); re-raises ``exc`` once retries are
    spent, and anything that is not transient at once."""
    if (not isinstance(exc, errors.ProviderUnavailableError | errors.RateLimitedError)
            or attempt >= max_retries):
        raise exc
    return backoff.delay(attempt, exc.retry_after)


# -- a status answer ----------------------------------------------------------------------
def same_task(job: Job, task_id: str, provider: str) -> Job:
    """An answer must be about the task asked for: it never changes the task id."""
    if job.task_id != task_id:
        raise errors.TaskIdMismatchError(
            f"{provider} answered about task {shown(job.task_id)} when asked about "
            f"task {task_id}; the answer is not used", task_id=task_id,
            answered_id=shown(job.task_id))
    return job


def result_missing(job: Job, provider: Provider) -> errors.ResultMissingError | None:
    """The error for a task reported completed without any link (MiniMax ``Success``
    without ``file_id``, APIMart ``completed`` without a URL), else None. Retryable: the
    task exists, asking again may get the link, and it must never be submitted again."""
    if job.status is not JobStatus.COMPLETED or job.video_urls:
        return None
    missing = ("a file_id" if provider is Provider.MINIMAX and not job.file_id
               else "a download URL")
    return errors.ResultMissingError(
        f"{provider} reports task {job.task_id} completed but without {missing}; asking "
        "again may get it. The task exists (do not submit it again)", task_id=job.task_id)


def v2_result_missing(job: Job) -> errors.ResultMissingError | None:
    """``result_missing`` for a MiniMax v2 (H3) task, whose link is ``content.url``."""
    if job.status is not JobStatus.COMPLETED or job.video_urls:
        return None
    return errors.ResultMissingError(
        f"MiniMax reports v2 task {job.task_id} succeeded but without content.url; "
        "asking again may get it. The task exists (do not submit it again)",
        task_id=job.task_id)


def job_failure(job: Job) -> errors.HailuoError:
    """The typed error of a task that ended failed or cancelled (content refusals as
    ``ContentRejectedError``), keeping its task id and code."""
    reason = job.error_message or job.status.value
    cls = (errors.ContentRejectedError if job.error_code in CONTENT_CODES
           else errors.GenerationFailedError)
    return cls(f"generation {job.status.value}: {reason}", code=job.error_code,
               task_id=job.task_id)


# -- the wait loop ------------------------------------------------------------------------
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


class WaitLoop:
    """The state and rules of one ``wait``: what a poll's outcome means and how long to
    pause before the next. The client polls and sleeps; per round it calls ``seen`` (an
    answer) or ``failed`` (a typed error), then ``finished`` (after ``on_update``) and
    ``pause``.

    Rules: a completed task ends the wait; any other terminal status raises its typed
    failure; a non-retryable error is raised at once, retryable ones only after
    ``max_consecutive_failures`` in a row; past ``timeout`` the wait raises
    ``TimedOutError`` keeping the task id (or the ``ResultMissingError`` of a finished
    task whose link never came: what is missing is its link, not time). Pauses follow
    ``PollPolicy`` from the submit time, honour a ``Retry-After`` and never pass the
    deadline.
    """

    def __init__(self, job: Job, *, timeout: float, policy: PollPolicy, started: float
                 ) -> None:
        """``started``: the caller's monotonic clock now (the same clock ``pause`` gets)."""
        self.current = job
        self.timeout = timeout
        self.policy = policy
        self.started = started
        self.deadline = started + timeout
        self.submitted = job.submitted_at
        self.estimate = job.estimated_time
        self.failures = 0
        self.after_estimate = 0
        self._retry_after: float | None = None
        self._missing: errors.ResultMissingError | None = None

    @property
    def task_id(self) -> str:
        return self.current.task_id

    def failed(self, exc: errors.HailuoError) -> None:
        """A poll failed: re-raises ``exc`` unless it is retryable and the failures in a
        row are within budget."""
        self._retry_after = self._missing = None
        if not exc.retryable:
            raise exc
        self.failures += 1
        if self.failures > self.policy.max_consecutive_failures:
            raise exc
        if isinstance(exc, errors.ResultMissingError):
            self._missing = exc
        self._retry_after = getattr(exc, "retry_after", None)

    def seen(self, latest: Job) -> Job:
        """A poll answered: the job to report, keeping what the answer leaves out (the
        submit time, idempotency key and estimate of the job being waited for)."""
        self._retry_after = self._missing = None
        self.failures = 0
        self.current = latest.model_copy(update={
            "submitted_at": latest.submitted_at or self.submitted,
            "idempotency_key": self.current.idempotency_key,
            "estimated_time": latest.estimated_time or self.estimate,
        })
        self.estimate = self.current.estimated_time
        return self.current

    def finished(self) -> Job | None:
        """The completed job, None while it runs; raises the failure of a task that ended
        otherwise."""
        if self.current.status is JobStatus.COMPLETED:
            return self.current
        if self.current.status.terminal:
            raise job_failure(self.current)
        return None

    def pause(self, now: float, utc_now: datetime) -> float:
        """Seconds to sleep before the next poll (``now`` on the monotonic clock of
        ``started``); raises when the wait's time is up."""
        if now >= self.deadline and self._missing is not None:
            raise self._missing  # the task ended; what is missing is its link, not time
        if now >= self.deadline:
            raise errors.TimedOutError(
                f"task still {self.current.status.value} after {self.timeout:.0f}s; resume it "
                "later by task id", task_id=self.current.task_id)
        elapsed = ((utc_now - self.submitted).total_seconds() if self.submitted
                   else now - self.started)
        delay = self.policy.next_delay(elapsed, self.estimate, self.after_estimate)
        if not self.estimate or elapsed >= self.estimate * self.policy.estimate_fraction:
            self.after_estimate += 1
        return min(max(delay, self._retry_after or 0.0), max(0.0, self.deadline - now))


# -- downloads ----------------------------------------------------------------------------
def link_expired(job: Job, now: datetime) -> bool:
    """Whether the job's links have passed their announced expiry."""
    return job.expires_at is not None and job.expires_at <= now


def needs_fresh_status(job: Job, now: datetime) -> bool:
    """A download starts with a status call when the job has no links or they expired."""
    return not job.video_urls or link_expired(job, now)


def check_downloadable(job: Job) -> None:
    """Only a completed task is downloaded: a failed one raises its failure, a running
    one a plain ``HailuoError``."""
    if job.status is not JobStatus.COMPLETED:
        raise job_failure(job) if job.status.terminal else errors.HailuoError(
            f"task is {job.status.value}, not completed", task_id=job.task_id)


def redirect_hop(hops: int, task_id: str) -> int:
    """The count after one more redirect; refused past ``MAX_REDIRECTS``."""
    hops += 1
    if hops > MAX_REDIRECTS:
        raise errors.DownloadRefusedError(
            f"download redirected more than {MAX_REDIRECTS} times", task_id=task_id)
    return hops


def check_download_status(status_code: int, task_id: str) -> None:
    """An answer that is not the video: 401/403/410 mean the link expired or its signature
    is bad (worth a fresh link), anything else non-2xx is a failed download."""
    if status_code in (401, 403, 410):
        raise errors.LinkExpiredError(
            f"download link refused (HTTP {status_code}); it has expired "
            "or its signature is invalid", http_status=status_code, task_id=task_id)
    if status_code >= 300:
        raise errors.DownloadError(f"download answered HTTP {status_code}",
                                   http_status=status_code, task_id=task_id)


def attempt_bound(content_length: str | None) -> float | None:
    """Seconds one attempt may take: a grace plus the size at a minimal rate when the
    size is announced; None (only the download's deadline) otherwise."""
    if content_length and content_length.isdigit():
        return DOWNLOAD_GRACE + int(content_length) / MIN_DOWNLOAD_RATE
    return None


def check_received(content_length: str | None, received: int, decoded: int,
                   task_id: str) -> None:
    """A body shorter than announced is truncated; an empty one is no video."""
    if (content_length is not None and content_length.isdigit()
            and int(content_length) != received):
        raise errors.DownloadError(
            f"download truncated: {received} of {content_length} bytes", task_id=task_id)
    if decoded == 0:
        raise errors.InvalidVideoError("downloaded video is empty (0 bytes)", task_id=task_id)


def broke_off(decoded: int, exc: BaseException, task_id: str) -> errors.DownloadError:
    """The error of a download whose connection broke (retryable: another link or a
    fresh one may work)."""
    return errors.DownloadError(f"download broke off after {decoded} bytes "
                                f"({type(exc).__name__})", task_id=task_id)


def download_deadline_error(task_id: str, size: int, download_deadline: float
                            ) -> errors.DownloadDeadlineError:
    return errors.DownloadDeadlineError(
        f"download did not finish before its deadline ({size} bytes received; at most "
        f"{download_deadline:.0f}s per download, less per attempt of known size); "
        "the server is too slow or trickling", task_id=task_id)


class CappedBody:
    """A body decoded as it arrives, never more than ``limit`` decoded bytes and never
    inflating more than ``max_ratio`` times the bytes received (past ``RATIO_FLOOR``).

    Push-based (``feed`` each raw piece, then ``finish``) so a sync client reading
    ``iter_raw`` and an async one reading ``aiter_raw`` decode and refuse identically.
    gzip and deflate are inflated here in bounded pieces; any other Content-Encoding is
    refused. ``counted`` (if given) holds ``[raw bytes, decoded bytes]`` as the body goes.
    ``consumed``: the body was already read and decoded by httpx (a mock transport), so
    it arrives as one decoded piece; its announced length is counted as received.
    """

    def __init__(self, headers: Mapping[str, str], *, limit: int, max_ratio: float,
                 what: str, too_large: Callable[[str], Exception],
                 unreadable: Callable[[str], Exception], consumed: bool = False,
                 counted: list[int] | None = None) -> None:
        header = headers.get("Content-Encoding", "") or ""
        codings = [c.strip().lower() for c in header.split(",")
                   if c.strip() and c.strip().lower() != "identity"]
        self._raw_size: int | None = None
        self._consumed = consumed
        if consumed:
            announced = headers.get("Content-Length", "") or ""
            self._raw_size = int(announced) if codings and announced.isdigit() else None
            codings = []
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise unreadable(f"{what} uses Content-Encoding {header[:40]!r}, which is not "
                             "accepted (identity, gzip or deflate)")
        length = headers.get("Content-Length", "") or ""
        if not codings and length.isdigit() and int(length) > limit:
            raise too_large(f"{what} announces {int(length)} bytes; the limit is {limit}")
        self.limit, self.max_ratio, self.what = limit, max_ratio, what
        self._too_large, self._unreadable = too_large, unreadable
        self.counts = counted if counted is not None else [0, 0]
        self.counts[:] = [0, 0]
        self._coding = codings[0] if codings else None
        self._inflater = (zlib.decompressobj(31 if self._coding in ("gzip", "x-gzip") else 47)
                          if self._coding else None)

    def _emit(self, piece: bytes) -> bytes:
        counts = self.counts
        counts[1] += len(piece)
        if counts[1] > self.limit:
            raise self._too_large(f"{self.what} is larger than its limit of {self.limit} "
                                  "bytes")
        if (self._inflater is not None and counts[1] > RATIO_FLOOR
                and counts[1] > self.max_ratio * max(counts[0], 1)):
            raise self._too_large(f"{self.what} inflates more than {self.max_ratio:.0f}-fold "
                                  f"({counts[0]} bytes received, {counts[1]} decoded so far): "
                                  "refused as a decompression bomb")
        return piece

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """The decoded pieces of one raw piece (lazily: a bomb is refused before it is
        inflated)."""
        self.counts[0] += (len(raw) if not self._consumed or self._raw_size is None
                           else self._raw_size)
        if self._inflater is None:
            if raw:
                yield self._emit(raw)
            return
        data = raw
        try:
            while data:
                piece = self._inflater.decompress(data, PIECE)
                data = self._inflater.unconsumed_tail
                if piece:
                    yield self._emit(piece)
        except zlib.error as exc:
            raise self._broken(exc) from None

    def finish(self) -> Iterator[bytes]:
        """What is still inside the inflater, in bounded pieces; refuses a compressed body
        that ended before its end marker."""
        if self._inflater is None:
            return
        try:
            while True:
                piece = self._inflater.decompress(b"", PIECE)
                if not piece:
                    break
                yield self._emit(piece)
            tail = self._inflater.flush()
            if tail:
                yield self._emit(tail)
        except zlib.error as exc:
            raise self._broken(exc) from None
        if not self._inflater.eof:
            raise self._unreadable(f"{self.what}: the compressed body ends before its end "
                                   "marker")

    def _broken(self, exc: zlib.error) -> Exception:
        return self._unreadable(f"{self.what}: broken {self._coding} compression ({exc})")


__all__ = ["CONTENT_CODES", "DOWNLOAD_GRACE", "MAX_REDIRECTS", "MIN_DOWNLOAD_RATE",
           "RETRYABLE_HTTP", "Backoff", "CappedBody", "GetRetries", "PollPolicy", "WaitLoop",
           "attempt_bound", "bounded_pause", "broke_off", "check_download_status",
           "check_downloadable", "check_received", "download_deadline_error", "job_failure",
           "link_expired", "needs_fresh_status", "parse_retry_after", "redirect_hop",
           "result_missing", "retry_lookup", "same_task", "v2_result_missing"]
