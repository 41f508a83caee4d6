"""``HailuoClient``: submit, status, wait, download — for APIMart and MiniMax alike.

Money safety is the design constraint:

* Invalid requests are rejected locally (capability table, image checks) before any I/O.
* Idempotent GETs are retried on 408/429/5xx and transport errors with backoff, jitter
  and ``Retry-After``.
* The submit POST is never retried blindly. It is retried only when the request cannot
  have created a task (connection never made, 429 / code 1002 / 408 / 503, APIMart's 503
  ``idempotency_unavailable``, a provider error code inside the answer), or when the answer
  was lost (5xx, broken connection) AND the provider has said that this model honours
  ``Idempotency-Key`` (APIMart ``GET /v1/model-schema`` reports ``idempotency``; the answer
  is cached per client and model). Then the same key and the same body are sent again.
  Otherwise an :class:`AmbiguousSubmitError` carries the key, the request fingerprint and
  how to reconcile, and nothing is sent twice. APIMart's 409 ``idempotency_in_progress``
  is waited out (``Retry-After``) and resent with the same key and body; 409
  ``idempotency_result_indeterminate`` / ``idempotency_key_reused`` stop with an
  :class:`AmbiguousSubmitError` that keeps the key.
* Local images go to APIMart as uploads (``POST /v1/uploads/images``), never as data URLs;
  an upload of the same bytes is reused while it has a day of its 72 h left (memory cache
  per process; a small on-disk cache keyed by base URL + account hash + content hash lets
  re-runs reuse it, see ``UploadCache``). Request identity stays the content hash.
* Waiting always ends: on every terminal status, at a total timeout (the task id is kept
  in the error so the wait can be resumed), or after a budget of consecutive failed polls.
* Downloads stream to a temp file (constant memory), are hashed and probed as real video,
  and only then renamed into place. Expired links fall back to the backup URL, then to a
  fresh link fetched by task id. The API key is never sent to download hosts.
* Hostile or broken answers end in typed errors (``hailuo.netguard``, ``hailuo.ids``,
  ``hailuo.redact``): provider ids must be safe ids before they become a URL segment or a
  file name, and a status answer cannot change the task id; provider text is scrubbed of
  the key (raw, URL-encoded, partial, ``Bearer ...``) before it reaches an error, a Job or
  a log line; every call has a total wall-clock deadline that trickling cannot stretch;
  status answers are capped at 1 MB and downloads in decoded bytes and inflation ratio;
  downloads (links and each redirect hop) never reach loopback / private / link-local /
  reserved addresses unless the base URL itself is loopback; after a submit was sent, an
  answer we cannot use is an ``AmbiguousSubmitError``, never a raw exception.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr

from hailuo import decisions, errors, media, netguard, redact, v2client
from hailuo.capabilities import Provider
from hailuo.decisions import PollPolicy
from hailuo.files import atomic_output, ensure_inside
from hailuo.fingerprint import IMAGE_FIELDS, request_fingerprint
from hailuo.ids import check_id
from hailuo.images import CheckedImage, check_image
from hailuo.models import DownloadedVideo, Job, VideoRequest, utcnow
from hailuo.providers import DEFAULT_BASE_URLS, Dialect, dialect_for
from hailuo.providers.minimax import REGION_CODES, region_hint
from hailuo.v2client import _retry_after, _simulated  # shared with the v2 calls

log = logging.getLogger("hailuo.client")
log.addFilter(redact.LogScrubber())

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
#: Retry and download rules shared with ``AsyncHailuoClient`` live in ``hailuo.decisions``.
RETRYABLE_HTTP = decisions.RETRYABLE_HTTP
#: Submit answers that prove no task was created, so a retry cannot pay twice.
SUBMIT_NOT_ACCEPTED_HTTP = frozenset({408, 429, 503})
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Total wall-clock bound of one API call (a status GET, a file lookup, a submit POST),
#: whatever the server trickles; per-read timeouts alone never end a trickle.
CALL_DEADLINE = 120.0
#: Total wall-clock bound of one ``download`` (all links, refreshes and redirects).
DOWNLOAD_DEADLINE = 1800.0
#: One attempt of a download of known size gets this long plus size / MIN_DOWNLOAD_RATE.
DOWNLOAD_GRACE = decisions.DOWNLOAD_GRACE
MIN_DOWNLOAD_RATE = decisions.MIN_DOWNLOAD_RATE
#: A status (or file) answer larger than this is refused: real ones are a few KB.
MAX_STATUS_BYTES = 1 << 20
#: Decoded bytes one video may have (a 10 s 1080p clip is a few tens of MB).
MAX_DOWNLOAD_BYTES = 2 << 30
#: A compressed body decoding to more than this many times its size is a bomb.
MAX_REDIRECTS = decisions.MAX_REDIRECTS
#: Upload answers after which the image was certainly not stored: retried.
UPLOAD_NOT_STORED_HTTP = frozenset({408, 429, 503})
#: APIMart keeps an uploaded image for 72 h; one is reused only while a day of that is left,
#: so a queued task can still fetch it.
UPLOAD_TTL_SECONDS = 72 * 3600.0
UPLOAD_REUSE_MARGIN = 24 * 3600.0
#: How long a model-schema idempotency answer is trusted.
SCHEMA_CACHE_SECONDS = 3600.0
#: ``prepare`` shows a local image bound for an upload as this prefix + its sha256.
UPLOAD_PLACEHOLDER = "upload:sha256:"


class _BearerAuth(httpx.Auth):
    """Adds the key per request; keeps it out of client reprs and default headers."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        yield request


def _is_local_host(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def default_cache_dir() -> Path:
    """``$HAILUO_CACHE_DIR``, else ``$XDG_CACHE_HOME/hailuo``, else ``~/.cache/hailuo``."""
    if os.environ.get("HAILUO_CACHE_DIR"):
        return Path(os.environ["HAILUO_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "hailuo"


class UploadCache:
    """Images already uploaded: entry key -> (URL, expiry as Unix time).

    The entry key is ``sha256(base URL, account hash, content sha256)``: another provider
    account or endpoint never gets a URL it did not upload, and the key is never stored
    (the account hash is a truncated sha256 of it). Two layers:

    * memory, shared by every client of the process (a flow makes a client per task);
    * optionally a directory, one small JSON file per entry written atomically, so a
      re-run (another process) reuses its uploads and sends the same body again under the
      same ``Idempotency-Key``. Entries past their expiry are pruned on write. Unreadable
      or unwritable files are ignored: the cache only ever saves an upload.
    """

    _memory: dict[str, tuple[str, float]] = {}
    _memory_lock = threading.Lock()
    _key_locks: dict[str, threading.Lock] = {}

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    @classmethod
    def lock_for(cls, key: str) -> threading.Lock:
        """One lock per image: parallel clips sharing an image upload it once."""
        with cls._memory_lock:
            return cls._key_locks.setdefault(key, threading.Lock())

    def get(self, key: str, now: float) -> str | None:
        with self._memory_lock:
            hit = self._memory.get(key)
        if hit is None and self.directory is not None:
            try:
                data = json.loads((self.directory / f"{key}.json").read_text())
                hit = (str(data["url"]), float(data["expires_at"]))
            except (OSError, ValueError, KeyError, TypeError):
                hit = None
            if hit is not None:
                with self._memory_lock:
                    self._memory[key] = hit
        if hit is None or hit[1] - now < UPLOAD_REUSE_MARGIN:
            return None
        return hit[0]

    def put(self, key: str, url: str, expires_at: float, now: float) -> None:
        with self._memory_lock:
            self._memory[key] = (url, expires_at)
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".upload-", suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                json.dump({"url": url, "expires_at": expires_at}, out)
            os.replace(tmp, self.directory / f"{key}.json")
            self._prune(now)
        except OSError as exc:
            log.debug("upload cache not written (%s)", type(exc).__name__)

    def _prune(self, now: float) -> None:
        for path in self.directory.glob("*.json") if self.directory else ():
            try:
                if now - path.stat().st_mtime > UPLOAD_TTL_SECONDS:
                    path.unlink()
            except OSError:
                pass

    @classmethod
    def forget_all(cls) -> None:
        """Empty the memory layer (tests)."""
        with cls._memory_lock:
            cls._memory.clear()


def _definite_submit_error(exc: BaseException, status_code: int) -> bool:
    """Whether a failure to read a submit answer is the provider's definite verdict (a
    typed refusal such as 401 / 2013 / 1008), as opposed to an answer we could not use
    after the submit was sent: not JSON, absurdly nested, oddly shaped, an unsafe task id,
    or a success without a task id. Only the latter are ambiguous."""
    if not isinstance(exc, errors.HailuoError) or isinstance(exc, errors.ProviderAnswerError):
        return False
    return status_code >= 400 or type(exc) is not errors.HailuoError


def _answer_problem(exc: BaseException) -> str:
    if isinstance(exc, errors.HailuoError):
        return exc.message
    return f"{type(exc).__name__} while reading it"


@cache
def _tls_context() -> ssl.SSLContext:
    """One certificate-verifying TLS context for every client in the process.

    Building one loads the CA bundle (about 20 ms of CPU); flows make a client per task,
    several per clip, so a batch would otherwise spend seconds on it. Contexts are safe to
    share between threads."""
    return httpx.create_ssl_context()


def checked_key(api_key: str | SecretStr | None) -> SecretStr:
    """The API key as a ``SecretStr``; a missing or blank one is ``AuthenticationError``
    before anything is sent (every client checks its key with this)."""
    if api_key is None:
        raise errors.AuthenticationError(
            "no API key given: store it in a Prefect Secret block or pass api_key")
    key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
    if not key.get_secret_value().strip():
        raise errors.AuthenticationError("the API key is empty")
    return key


def private_downloads(allow: bool | None, base_url: str) -> bool:
    """Whether downloads may reach non-public addresses: as asked, else only when the base
    URL's host is loopback (a local simulator)."""
    if allow is None:
        return netguard.is_loopback_host(urlsplit(base_url).hostname)
    return allow


def open_sync_http(base_url: str, key: SecretStr, policy: netguard.AddressPolicy, *,
                   timeout: httpx.Timeout | float, download_timeout: httpx.Timeout | float,
                   transport: httpx.BaseTransport | None,
                   download_transport: httpx.BaseTransport | None,
                   call_seconds: float, download_seconds: float
                   ) -> tuple[httpx.Client, httpx.Client]:
    """The API client (key added per request) and the download client of a sync client.

    Download hosts are CDNs: they get no Authorization header. Redirects are followed by
    hand (``_stream``), each hop checked against ``policy``. Without a given transport,
    the guarded ones of ``netguard`` are used (bounded by ``call_seconds`` /
    ``download_seconds``; downloads checked against ``policy`` at connect time)."""
    tls = _tls_context()
    if transport is None:
        transport = netguard.guarded_transport(tls, default_seconds=call_seconds)
    if download_transport is None:
        download_transport = netguard.guarded_transport(
            tls, policy=policy, default_seconds=download_seconds)
    http = httpx.Client(base_url=base_url, timeout=timeout, verify=tls,
                        auth=_BearerAuth(key), transport=transport)
    dl = httpx.Client(timeout=download_timeout, follow_redirects=False, verify=tls,
                      transport=download_transport)
    return http, dl


class _Ambiguity:
    """What one submit does when its outcome is unknown: resend the same key and body when
    the provider has said this model honours the key, otherwise stop with an
    ``AmbiguousSubmitError`` that says how to reconcile."""

    def __init__(self, client: HailuoClient, model: str, key: str | None,
                 fingerprint: str) -> None:
        self.client, self.model, self.key, self.fingerprint = client, model, key, fingerprint
        self.sent_at = utcnow()

    def reconcile(self) -> str:
        provider = self.client.provider
        when = self.sent_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        where = ("GET /v1/tasks/<task id>" if provider is Provider.APIMART
                 else "GET /v1/query/video_generation?task_id=<task id>")
        text = (f"To reconcile: look in the {provider} console for a {self.model} task created "
                f"around {when} and check it with {where} before submitting again")
        if self.key:
            text += (f"; resending this exact request with Idempotency-Key {self.key!r} is the "
                     "safe retry if the provider has it")
        return f"{text}. Request fingerprint: {self.fingerprint}."

    def error(self, why: str, *, http_status: int | None = None) -> errors.AmbiguousSubmitError:
        return errors.AmbiguousSubmitError(
            f"{why}. Not resubmitted automatically. {self.reconcile()}",
            http_status=http_status, idempotency_key=self.key,
            request_fingerprint=self.fingerprint)

    def resend_or_raise(self, why: str, attempt: int, *, http_status: int | None = None
                        ) -> None:
        """Return (after a pause) when a resend is safe; raise otherwise."""
        if self.key is None:
            raise self.error(f"{why}; {self.client.provider} has no idempotency key, so a "
                             "resend could pay twice", http_status=http_status)
        honoured, reason = self.client.honours_idempotency_key(self.model)
        if not honoured:
            raise self.error(f"{why}; {self.client.provider} has not confirmed that "
                             f"{self.model} honours Idempotency-Key ({reason}), so a resend "
                             "could pay twice", http_status=http_status)
        if attempt >= self.client.max_retries:
            raise self.error(f"{why}; resent {attempt} time(s) with the same "
                             "Idempotency-Key without a usable answer", http_status=http_status)
        log.warning("%s; resending with the same Idempotency-Key (%s)", why, reason)
        self.client._sleep(self.client._delay(attempt))


class ProviderAccount:
    """One provider, one key, one base URL, and how calls to it are retried and backed
    off: what every client holds (``ClientCore`` for video, ``MediaHTTP`` for media)."""

    def __init__(self, provider: Provider | str, api_key: str | SecretStr | None,
                 base_url: str | None, *, max_retries: int, backoff: float,
                 max_backoff: float, max_rate_limit_waits: int) -> None:
        self.provider = Provider(provider)
        self._key = checked_key(api_key)
        # Scrubs this key (and its encoded / partial echoes) from quoted provider text;
        # remembered process-wide so errors and log lines built elsewhere are scrubbed too.
        self._scrub = redact.remember(self._key.get_secret_value())
        self.base_url = (base_url or DEFAULT_BASE_URLS[self.provider]).rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_rate_limit_waits = max_rate_limit_waits

    def _backoff(self) -> decisions.Backoff:
        return decisions.Backoff(self.backoff, self.max_backoff)

    def _delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The back-off before retry ``attempt``: jittered, never below ``Retry-After``."""
        return self._backoff().delay(attempt, retry_after)


class SyncHTTP:
    """The closing of a sync client's two connections (``open_sync_http``)."""

    _http: httpx.Client
    _dl: httpx.Client

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._dl.close()


class ClientCore(ProviderAccount):
    """The I/O-free half of a Hailuo client: settings, key scrubbing, answer parsing.

    ``HailuoClient`` and ``AsyncHailuoClient`` inherit it so that both check keys, scrub
    provider text, parse answers and refuse hostile ones with the same code; only the
    I/O (sync or async) is theirs. The retry, wait and download rules are in
    ``hailuo.decisions``.
    """

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
        upload_cache_dir: str | os.PathLike[str] | bool | None = None,
        call_deadline: float = CALL_DEADLINE,
        download_deadline: float = DOWNLOAD_DEADLINE,
        max_status_bytes: int = MAX_STATUS_BYTES,
        max_download_bytes: int = MAX_DOWNLOAD_BYTES,
        allow_private_downloads: bool | None = None,
        download_allowed_hosts: Collection[str] = (),
    ) -> None:
        """The settings both clients share (each adds only its transports and sleep).

        ``upload_cache_dir``: where uploads are remembered across processes (APIMart).
        None: ``default_cache_dir()`` unless the base URL is a local address (the
        simulator); False: memory only; a path: that directory.

        Hostile answers: ``call_deadline`` bounds each API call in total (a status GET, a
        file lookup, a submit), ``download_deadline`` each ``download``; answers over
        ``max_status_bytes`` and videos over ``max_download_bytes`` (decoded) are
        refused. Downloads never connect to loopback / private / link-local / reserved
        addresses unless ``allow_private_downloads`` (default: only when the base URL's
        host is loopback, i.e. a local simulator) or the host is in
        ``download_allowed_hosts``."""
        super().__init__(provider, api_key, base_url, max_retries=max_retries,
                         backoff=backoff, max_backoff=max_backoff,
                         max_rate_limit_waits=max_rate_limit_waits)
        self.dialect: Dialect = dialect_for(self.provider)
        self._timeout = timeout
        self._download_timeout = download_timeout
        self._upload_cache_dir = upload_cache_dir
        self.poll = poll or PollPolicy()
        self.call_deadline = call_deadline
        self.download_deadline = download_deadline
        self.max_status_bytes = max_status_bytes
        self.max_download_bytes = max_download_bytes
        self._download_policy = netguard.AddressPolicy(
            allow_private=private_downloads(allow_private_downloads, self.base_url),
            allowed_hosts=download_allowed_hosts)

    @property
    def account_hash(self) -> str:
        """A short sha256 of the key: names the account in cache keys, never reveals it."""
        return hashlib.sha256(self._key.get_secret_value().encode()).hexdigest()[:16]

    # ----------------------------------------------------------------- helpers
    def _json(self, response: httpx.Response) -> Any:
        try:
            response.read()
            return json.loads(response.text) if response.content else {}
        except (ValueError, RecursionError):  # not JSON, or nested absurdly deep
            return {"_raw": redact.quoted(response.text[:200], self._scrub)}

    def _answer(self, response: httpx.Response, what: str) -> Any:
        """The JSON of a status-like answer; an undecodable 2xx answer (not JSON, invalid
        UTF-8, nested absurdly deep) is ``UnreadableAnswerError``. An undecodable error
        answer (a proxy's HTML 502) is left to the dialect, which maps its HTTP status."""
        try:
            return netguard.decode_json(response.content, what=what)
        except errors.UnreadableAnswerError as exc:
            if response.status_code >= 400:
                return {"_raw": redact.quoted(response.text[:200], self._scrub)}
            exc.http_status = response.status_code
            raise

    def scrub(self, text: str | None) -> str | None:
        """Provider text made fit to show: this key (and ``Bearer`` credentials, URL-encoded
        and partial echoes) scrubbed, control characters replaced, cut to a sane length."""
        return None if text is None else redact.quoted(text, self._scrub)

    def _clean_job(self, job: Job) -> Job:
        """A job whose provider-written text (``error_message``) is scrubbed."""
        if job.error_message is None:
            return job
        return job.model_copy(update={"error_message": self.scrub(job.error_message)})

    @contextmanager
    def _scrubbed(self) -> Iterator[None]:
        """Errors built from provider answers never carry the key, even if echoed back.

        A MiniMax refusal of the key (1004 / 2049) also says which regional host to try.
        """
        try:
            yield
        except errors.HailuoError as exc:
            clean = redact.quoted(exc.message, self._scrub)
            if clean != exc.message:
                exc.message = clean
                exc.args = (exc.message,)
            for name, value in list(exc.details.items()):
                if isinstance(value, str):
                    exc.details[name] = redact.quoted(value, self._scrub)
            if (isinstance(exc, errors.AuthenticationError) and exc.code in REGION_CODES
                    and self.provider is Provider.MINIMAX and "region" not in exc.message):
                exc.message = f"{exc.message}. {region_hint(urlsplit(self.base_url).hostname)}"
                exc.args = (exc.message,)
            raise

    def _get_retries(self, path: str) -> decisions.GetRetries:
        return decisions.GetRetries(provider=str(self.provider), path=path,
                                    max_retries=self.max_retries, backoff=self._backoff(),
                                    call_deadline=self.call_deadline)

    def _deadline_error(self, path: str) -> errors.StatusDeadlineError:
        return self._get_retries(path).deadline_error()

    def _parse(self, what: str, task_id: str | None, parse: Callable[[], Job]) -> Job:
        """Run a dialect parser on an answer: its typed errors scrubbed, and any other
        failure (an answer of an unexpected shape) an ``UnreadableAnswerError``."""
        try:
            with self._scrubbed():
                return parse()
        except errors.HailuoError:
            raise
        except (TypeError, AttributeError, KeyError, IndexError, ValueError,
                RecursionError) as exc:
            raise errors.UnreadableAnswerError(
                f"{self.provider} {what} has an unexpected shape ({type(exc).__name__})",
                task_id=task_id) from None

    def _same_task(self, job: Job, task_id: str) -> Job:
        """An answer must be about the task asked for: it never changes the task id."""
        return decisions.same_task(job, task_id, str(self.provider))

    def _status_path(self, task_id: str) -> tuple[str, dict[str, str]]:
        """The (path, params) of a v1 status GET; ``task_id`` is checked first (an unsafe
        id never becomes a URL segment)."""
        task_id = check_id(task_id, what="task id")
        return self.dialect.status_call(quote(task_id, safe=""))

    def _status_answer(self, task_id: str, response: httpx.Response) -> Job:
        """The job a v1 status answer describes, checked to be about ``task_id``."""
        job = self._parse("status answer", task_id, lambda: self.dialect.parse_status(
            task_id, response.status_code, self._answer(response, "status answer"),
            _retry_after(response), lenient=True))  # an unknown status word: still running
        job = self._same_task(job, task_id)
        if job.file_id is not None:
            check_id(job.file_id, what="file id", task_id=task_id)
        return job

    def _file_answer(self, job: Job, response: httpx.Response) -> Job:
        """The job with the links of a file lookup answer (MiniMax files/retrieve)."""
        parsed = self._parse("file answer", job.task_id, lambda: self.dialect.parse_file(
            job, response.status_code, self._answer(response, "file answer"),
            _retry_after(response)))
        return self._same_task(parsed, job.task_id)

    def _status_result(self, job: Job, response: httpx.Response) -> Job:
        """The status a caller gets: a completed task without links is
        ``ResultMissingError``; provider text is scrubbed; simulator answers are marked."""
        missing = decisions.result_missing(job, self.provider)
        if missing is not None:
            raise missing
        return self._clean_job(job).model_copy(update={"simulated": _simulated(response)})

    @staticmethod
    def _failure(job: Job) -> errors.HailuoError:
        return decisions.job_failure(job)

    @staticmethod
    def _expired(job: Job) -> bool:
        return decisions.link_expired(job, utcnow())

    def _download_deadline_error(self, task_id: str, size: int) -> errors.DownloadDeadlineError:
        return decisions.download_deadline_error(task_id, size, self.download_deadline)

    # What both clients' I/O loops (``_file_lookup``, ``wait``, ``_download``) do between
    # their sync or async calls: the decisions of ``hailuo.decisions`` and the log lines.
    def _lookup_delay(self, job: Job, exc: errors.HailuoError, attempt: int) -> float:
        """The pause before asking a file lookup again (``decisions.retry_lookup``), or
        ``exc`` raised when it is not transient or the retries are spent."""
        delay = decisions.retry_lookup(exc, attempt, self.max_retries, self._backoff())
        log.info("file lookup for task %s answered %s (code %s); retrying",
                 job.task_id, type(exc).__name__, exc.code)
        return delay

    @staticmethod
    def _poll_failed(loop: decisions.WaitLoop, exc: errors.HailuoError) -> None:
        """A failed status poll counted by the wait loop (which raises past its budget)."""
        loop.failed(exc)
        log.info("status poll failed (%s); %d in a row", type(exc).__name__, loop.failures)

    @staticmethod
    def _attempt_failed(exc: errors.HailuoError, task_id: str) -> errors.HailuoError:
        """A failed download attempt, kept (with its task id) as the error to raise if no
        other link or refresh works."""
        exc.task_id = exc.task_id or task_id
        log.warning("download of task %s failed: %s", task_id, type(exc).__name__)
        return exc

    @staticmethod
    def _downloaded(task_id: str, dest: Path, sha: str, size: int,
                    info: media.VideoInfo) -> DownloadedVideo:
        return DownloadedVideo(
            task_id=task_id, path=dest, sha256=sha, size=size, width=info.width,
            height=info.height, duration=info.duration, fps=info.fps, frames=info.frames,
            codec=info.codec)


class HailuoClient(ClientCore, SyncHTTP):
    """A client for one provider (``"apimart"`` or ``"minimax"``) and one key."""

    def __init__(
        self,
        *account: Any,
        transport: httpx.BaseTransport | None = None,
        download_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        **settings: Any,
    ) -> None:
        """``account`` and ``settings``: the arguments of ``ClientCore`` (provider, api_key,
        base_url; timeouts, retries, polling, upload cache, deadlines and caps, download
        address policy), with its defaults."""
        super().__init__(*account, **settings)
        self._sleep = sleep
        self._clock = clock
        upload_cache_dir = self._upload_cache_dir
        if upload_cache_dir is None:
            directory = None if _is_local_host(self.base_url) else default_cache_dir()
        elif upload_cache_dir is False or upload_cache_dir is True:
            directory = default_cache_dir() if upload_cache_dir else None
        else:
            directory = Path(upload_cache_dir)
        self._uploads = UploadCache(directory / "apimart-uploads" if directory else None)
        self._schema: dict[str, tuple[bool, float]] = {}
        # Names are resolved for the policy only when we make the connections ourselves.
        self._resolve_downloads = download_transport is None
        self._http, self._dl = open_sync_http(
            self.base_url, self._key, self._download_policy, timeout=self._timeout,
            download_timeout=self._download_timeout, transport=transport,
            download_transport=download_transport, call_seconds=self.call_deadline,
            download_seconds=self.download_deadline)

    def __repr__(self) -> str:
        return f"HailuoClient(provider={self.provider.value!r}, base_url={self.base_url!r})"

    def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        """An idempotent GET with retries on transient failures (``decisions.GetRetries``).

        All attempts together end within ``call_deadline`` (and within any enclosing
        bound, such as a wait's timeout), however slowly the server sends. The answer is
        read capped at ``max_status_bytes`` decoded bytes and returned already read."""
        with netguard.deadline(self.call_deadline):
            rules = self._get_retries(path)
            while True:
                try:
                    response = self._get_once(path, params)
                except httpx.TransportError as exc:
                    delay = rules.on_transport_error(exc, expired=netguard.expired())
                else:
                    delay = rules.on_answer(response.status_code, _retry_after(response))
                    if delay is None:
                        return response
                    log.info("GET %s answered %s; retrying", path, response.status_code)
                self._sleep(decisions.bounded_pause(delay, netguard.remaining()))
                rules.next_attempt(expired=netguard.expired())

    def _get_once(self, path: str, params: dict[str, str] | None) -> httpx.Response:
        request = self._http.build_request("GET", path, params=params,
                                           headers={"Accept-Encoding": "gzip, deflate"})
        return netguard.read_capped(self._http, request, limit=self.max_status_bytes,
                                    what=f"{self.provider} answer to GET {path}")
    # ------------------------------------------------------------------ submit
    def _checked(self, request: VideoRequest
                 ) -> tuple[VideoRequest, dict[str, CheckedImage]]:
        validated = request.validate_for(self.provider)
        images = {name: check_image(getattr(validated, name), field=name)
                  for name in IMAGE_FIELDS if getattr(validated, name)}
        return validated, images

    def _wire_images(self, images: Mapping[str, CheckedImage],
                     uploaded: Mapping[str, str] | None = None) -> dict[str, str]:
        wire: dict[str, str] = {}
        for name, image in images.items():
            if image.url is not None:
                wire[name] = image.url
            elif not self.dialect.uploads_images:
                wire[name] = image.data_url()
            elif uploaded is not None:
                wire[name] = uploaded[name]
            else:
                wire[name] = f"{UPLOAD_PLACEHOLDER}{image.sha256}"
        return wire

    def prepare(self, request: VideoRequest) -> tuple[VideoRequest, dict[str, Any]]:
        """Validate locally and build the wire body. Raises before any network call.

        On APIMart a local image shows as ``upload:sha256:<hex>``: ``submit`` uploads it
        (or reuses an upload of the same bytes) and sends the returned URL instead.
        """
        if v2client.routes(self, request.model):  # MiniMax-H3 / -Max: MiniMax's v2 API
            return v2client.prepare(self, request)
        validated, images = self._checked(request)
        return validated, self.dialect.submit_body(validated, self._wire_images(images))

    def submit(self, request: VideoRequest, *, idempotency_key: str | None = None,
               take: int = 1) -> Job:
        """Send one paid request; returns the provider's job (task id) at once."""
        if v2client.routes(self, request.model):  # MiniMax-H3 / -Max: MiniMax's v2 API
            return v2client.submit(self, request, idempotency_key=idempotency_key, take=take)
        validated, images = self._checked(request)
        # Identity from content hashes, computed before (and unchanged by) any upload.
        fingerprint = request_fingerprint(validated, self.provider, take)
        uploaded = self._upload_images(images)
        body = self.dialect.submit_body(validated, self._wire_images(images, uploaded))
        key = idempotency_key or f"hailuo-{fingerprint[:32]}-{uuid.uuid4().hex[:8]}"
        headers = self.dialect.submit_headers(key)
        ambiguity = _Ambiguity(self, validated.model, key if headers else None, fingerprint)
        attempt = rate_waits = busy_waits = 0
        while True:
            try:
                response = self._http.post(self.dialect.submit_path, json=body, headers=headers)
            except _NEVER_SENT as exc:
                self._resend_unsent(exc, attempt, str(self.provider))
                attempt += 1
                continue
            except (httpx.TransportError, httpx.DecodingError) as exc:  # DecodingError: C.3
                ambiguity.resend_or_raise(
                    f"the connection to {self.provider} broke after the submit was sent "
                    f"({type(exc).__name__}); it may or may not have been accepted", attempt)
                attempt += 1
                continue
            retry_after = _retry_after(response)
            answer = self._json(response)
            signal = self.dialect.idempotency_signal(response.status_code, answer)
            if signal == "idempotency_in_progress":
                # The first request with this key is still running: same key, same body.
                if busy_waits >= self.max_rate_limit_waits:
                    raise ambiguity.error(
                        f"{self.provider} still reports the first request with this "
                        f"Idempotency-Key in progress after {busy_waits} waits",
                        http_status=response.status_code)
                wait = retry_after if retry_after is not None else self._delay(busy_waits)
                log.info("submit: the request with this Idempotency-Key is still in "
                         "progress; resending it in %.1fs", wait)
                self._sleep(wait)
                busy_waits += 1
                continue
            if signal in ("idempotency_result_indeterminate", "idempotency_key_reused"):
                what = ("cannot tell whether the earlier request with this Idempotency-Key "
                        "ran" if signal == "idempotency_result_indeterminate" else
                        "has seen this Idempotency-Key with a different request body (an "
                        "earlier submit of this request may exist)")
                raise ambiguity.error(f"{self.provider} {what} ({signal})",
                                      http_status=response.status_code)
            if signal == "idempotency_unavailable":
                # The idempotency store is down and the request was NOT executed.
                if attempt >= self.max_retries:
                    raise errors.ProviderUnavailableError(
                        f"{self.provider}: idempotency_unavailable; the submit was not "
                        f"executed. Retry later with the same Idempotency-Key {key!r}",
                        http_status=response.status_code, retry_after=retry_after,
                        idempotency_key=key)
                self._sleep(self._delay(attempt, retry_after))
                attempt += 1
                continue
            try:
                with self._scrubbed():
                    job = self.dialect.parse_submit(response.status_code, answer, retry_after)
                    check_id(job.task_id, what="task id")  # C.1: never an unsafe id
            except errors.RateLimitedError as exc:
                self._wait_out_rate_limit(exc, rate_waits, "submit")
                rate_waits += 1
                continue
            except errors.ProviderUnavailableError as exc:
                if response.status_code in SUBMIT_NOT_ACCEPTED_HTTP or exc.code is not None:
                    if attempt >= self.max_retries:
                        raise
                    self._sleep(self._delay(attempt, exc.retry_after))
                    attempt += 1
                    continue
                ambiguity.resend_or_raise(
                    f"{self.provider} answered HTTP {response.status_code} to the submit; it "
                    "may or may not have been accepted", attempt,
                    http_status=response.status_code)
                attempt += 1
                continue
            except Exception as exc:  # C.3: a broken or hostile answer after the submit
                if _definite_submit_error(exc, response.status_code):
                    raise
                ambiguity.resend_or_raise(
                    f"{self.provider} answered HTTP {response.status_code} to the submit with "
                    f"an answer that could not be used ({_answer_problem(exc)}); the task may "
                    "or may not have been created", attempt, http_status=response.status_code)
                attempt += 1
                continue
            if response.headers.get("Idempotency-Replayed", "").lower() == "true":
                log.info("submit answered by an idempotent replay: %s task %s (no new "
                         "charge)", self.provider.value, job.task_id)
            else:
                log.info("submitted %s task %s", self.provider.value, job.task_id)
            return job.model_copy(update={
                "submitted_at": job.submitted_at or utcnow(),
                "idempotency_key": key if headers else None,
                "simulated": _simulated(response),
            })

    def _resend_unsent(self, exc: BaseException, attempt: int, where: str) -> None:
        """A submit that never left (no connection made, nothing can have been created):
        pause before sending it again, or ``ProviderUnavailableError`` once the retries
        are spent."""
        if attempt >= self.max_retries:
            raise errors.ProviderUnavailableError(
                f"could not connect to {where}: {type(exc).__name__}") from None
        self._sleep(self._delay(attempt))

    def _wait_out_rate_limit(self, exc: errors.RateLimitedError, waits: int,
                             what: str | None = None) -> None:
        """Sleep out a rate limit (its ``Retry-After``, else the back-off of ``waits``), or
        raise it once ``max_rate_limit_waits`` waits were spent (nothing was made, so the
        caller sends the same body again). ``what``: the call named in the log line."""
        if waits >= self.max_rate_limit_waits:
            raise exc
        wait = exc.retry_after if exc.retry_after is not None else self._delay(waits)
        if what is not None:
            log.info("%s rate limited; waiting %.1fs", what, wait)
        self._sleep(wait)

    def honours_idempotency_key(self, model: str) -> tuple[bool, str]:
        """(does the provider de-duplicate this model's submits by Idempotency-Key, why).

        Only a provider answer counts: APIMart's ``GET /v1/model-schema`` ``idempotency``
        field for ``model`` and ``video_generation``. A True or False answer is cached per
        client (and so per base URL and key) and model for ``SCHEMA_CACHE_SECONDS``; a
        failed lookup is not cached and counts as "not confirmed".
        """
        call = getattr(self.dialect, "schema_call", None)
        if call is None or not self.dialect.sends_idempotency_key:
            return False, f"{self.provider} documents no Idempotency-Key"
        now = time.monotonic()
        cached = self._schema.get(model)
        if cached is not None and now - cached[1] < SCHEMA_CACHE_SECONDS:
            verdict = cached[0]
        else:
            try:
                response = self._get(*call(model))
            except errors.HailuoError as exc:
                return False, f"GET /v1/model-schema failed ({type(exc).__name__})"
            verdict = self.dialect.parse_schema_idempotency(  # type: ignore[attr-defined]
                response.status_code, self._json(response))
            if verdict is None:
                return False, (f"GET /v1/model-schema answered HTTP {response.status_code} "
                               "without a usable answer")
            self._schema[model] = (verdict, now)
        if verdict:
            return True, f"GET /v1/model-schema reports idempotency for {model}"
        return False, f"GET /v1/model-schema does not report idempotency for {model}"

    # ------------------------------------------------------- MiniMax v2 (H3) tasks
    def cancel(self, task_id: str, *, delete_finished: bool = False) -> Job:
        """Cancel a queued MiniMax-H3 task (not charged); see ``hailuo.v2client.cancel``."""
        if self.provider is not Provider.MINIMAX:
            raise errors.InvalidRequestError(
                f"cancel is a MiniMax v2 (H3) call; {self.provider} has none", field="task_id")
        return v2client.cancel(self, task_id, delete_finished=delete_finished)

    def list_tasks(self, *, model: str | None = None, status: str | None = None,
                   task_ids: Collection[str] = (), page_num: int = 1,
                   page_size: int = 20) -> list[Job]:
        """One page of the account's MiniMax v2 (H3) tasks of the last 7 days."""
        if self.provider is not Provider.MINIMAX:
            raise errors.InvalidRequestError(
                f"list_tasks is a MiniMax v2 (H3) call; {self.provider} has none",
                field="provider")
        return v2client.list_tasks(self, model=model, status=status, task_ids=list(task_ids),
                                   page_num=page_num, page_size=page_size)

    def regenerate(self, request: VideoRequest, base_video: str | os.PathLike[str], *,
                   take: int = 1) -> Job:
        """Regenerate a finished MiniMax-H3 768P clip at 2K (paid; returns the new task at
        once: wait for and download it like any other); see
        ``hailuo.v2client.regenerate``."""
        if self.provider is not Provider.MINIMAX:
            raise errors.InvalidRequestError(
                f"regeneration is a MiniMax v2 (H3) call; {self.provider} has none",
                field="provider")
        return v2client.regenerate(self, request, str(base_video), take=take)

    # ----------------------------------------------------------------- uploads
    def _upload_images(self, images: Mapping[str, CheckedImage]) -> dict[str, str]:
        """Upload every local image (APIMart), reusing valid uploads of the same bytes."""
        if not self.dialect.uploads_images:
            return {}
        return {name: self.upload_image(image) for name, image in images.items()
                if image.local}

    def upload_image(self, image: CheckedImage) -> str:
        """The URL of ``image`` on the provider: a cached upload of the same bytes while
        it has at least ``UPLOAD_REUSE_MARGIN`` of validity left, else a new upload."""
        assert image.sha256 is not None and image.data is not None
        entry = hashlib.sha256("\0".join(
            (self.base_url, self.account_hash, image.sha256)).encode()).hexdigest()
        with UploadCache.lock_for(entry):
            url = self._uploads.get(entry, self._clock())
            if url is not None:
                log.debug("%s: reusing the upload of sha256 %s", image.field, image.sha256[:12])
                return url
            started = self._clock()
            url, expires_at = self._post_upload(image)
            valid_until = started + UPLOAD_TTL_SECONDS
            if expires_at is not None:
                valid_until = min(valid_until, expires_at.timestamp())
            self._uploads.put(entry, url, valid_until, self._clock())
            log.info("%s uploaded (%d bytes, sha256 %s)", image.field, len(image.data),
                     image.sha256[:12])
            return url

    def _post_upload(self, image: CheckedImage) -> tuple[str, datetime | None]:
        """One upload; retried only when the image was certainly not stored (APIMart has no
        upload idempotency, so an uncertain upload is not repeated here)."""
        path = self.dialect.upload_path  # type: ignore[attr-defined]
        attempt = rate_waits = 0
        while True:
            try:
                response = self._http.post(path, files={
                    "file": (image.filename, image.data, image.content_type)})
            except _NEVER_SENT as exc:
                if attempt >= self.max_retries:
                    raise errors.ProviderUnavailableError(
                        f"could not connect to {self.provider} to upload {image.field}: "
                        f"{type(exc).__name__}") from None
            except httpx.TransportError as exc:
                raise errors.ProviderUnavailableError(
                    f"the upload of {image.field} broke off after it was sent "
                    f"({type(exc).__name__}); not repeated automatically (uploads have no "
                    "idempotency key). Nothing was paid: run again") from None
            else:
                retry_after = _retry_after(response)
                try:
                    with self._scrubbed():
                        return self.dialect.parse_upload(  # type: ignore[attr-defined]
                            response.status_code, self._json(response), retry_after,
                            image.field)
                except errors.RateLimitedError as exc:
                    self._wait_out_rate_limit(exc, rate_waits)
                    rate_waits += 1
                    continue
                except errors.ProviderUnavailableError:
                    if (response.status_code not in UPLOAD_NOT_STORED_HTTP
                            or attempt >= self.max_retries):
                        raise
            self._sleep(self._delay(attempt))
            attempt += 1

    # ------------------------------------------------------------------ status
    def status(self, task_id: str, *, model: str | None = None) -> Job:
        """The task's current state; for a completed task, with download links.

        ``model``: the task's model when known; an H3 model (or a task this process saw
        as one) is queried on MiniMax's v2 API.

        A task reported completed without any link (MiniMax ``Success`` without
        ``file_id``, APIMart ``completed`` without a URL) raises ``ResultMissingError``.

        Hostile answers end in typed errors: an unsafe ``task_id`` (``UnsafeIdError``,
        before anything is sent), an answer about another task (``TaskIdMismatchError``),
        one too large, undecodable or oddly shaped (``AnswerTooLargeError``,
        ``UnreadableAnswerError``), one that never finishes (``StatusDeadlineError``).
        """
        task_id = check_id(task_id, what="task id")
        if v2client.handles(self, task_id, model):
            return v2client.status(self, task_id)
        response = self._get(*self._status_path(task_id))
        job = self._status_answer(task_id, response)
        file_call = self.dialect.file_call(job)
        if file_call:
            job, response = self._file_lookup(job, file_call)
        return self._status_result(job, response)

    def _file_lookup(self, job: Job, call: tuple[str, dict[str, str]]
                     ) -> tuple[Job, httpx.Response]:
        """The extra lookup for links (MiniMax files/retrieve), with its transient answers
        (code 1013, 1000, rate limits inside HTTP 200) retried here
        (``decisions.retry_lookup``)."""
        attempt = 0
        while True:
            response = self._get(*call)
            try:
                return self._file_answer(job, response), response
            except (errors.ProviderUnavailableError, errors.RateLimitedError) as exc:
                self._sleep(self._lookup_delay(job, exc, attempt))
                attempt += 1

    def parse_callback(self, body: Any, task_id: str | None = None) -> Job:
        """A job from a provider callback body (same shape as a status answer)."""
        if v2client.is_v2_body(self, body):  # MiniMax v2: {"task": {...}}
            return v2client.parse_callback(self, body, task_id)
        tid = task_id or str((body.get("data") or {}).get("id") or body.get("task_id") or "")
        tid = check_id(tid, what="task id")
        job = self._parse("callback body", tid,
                          lambda: self.dialect.parse_status(tid, 200, body, None))
        return self._clean_job(self._same_task(job, tid))

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

        ``timeout`` is a wall-clock bound that includes the status call in flight: a
        server trickling its answer cannot hold the wait past it.
        """
        v2client.remember_job(self, job)  # an H3 job is polled on MiniMax's v2 API
        with netguard.deadline(timeout):
            return self._wait(job, timeout=timeout, on_update=on_update, wake=wake)

    def _wait(self, job: Job | str, *, timeout: float,
              on_update: Callable[[Job], None] | None,
              wake: threading.Event | None) -> Job:
        current = job if isinstance(job, Job) else Job(task_id=job, provider=self.provider)
        loop = decisions.WaitLoop(current, timeout=timeout, policy=self.poll,
                                  started=time.monotonic())
        while True:
            try:
                latest = self.status(loop.task_id)
            except errors.HailuoError as exc:
                self._poll_failed(loop, exc)
            else:
                current = loop.seen(latest)
                if on_update:
                    on_update(current)
                done = loop.finished()
                if done is not None:
                    return done
            self._pause(loop.pause(time.monotonic(), utcnow()), wake)

    def _pause(self, delay: float, wake: threading.Event | None) -> None:
        """Sleep ``delay`` seconds, or less if a callback sets ``wake``."""
        if wake is None:
            self._sleep(delay)
        elif wake.wait(delay):
            wake.clear()

    def create_and_poll(self, request: VideoRequest, **wait_kw: Any) -> Job:
        """Submit and wait: the one-call path for scripts."""
        return self.wait(self.submit(request), **wait_kw)

    # ---------------------------------------------------------------- download
    def download(self, job: Job | str, path: str | os.PathLike[str], *,
                 max_refreshes: int = 2,
                 within: str | os.PathLike[str] | None = None) -> DownloadedVideo:
        """Stream the video to ``path`` atomically; hash it and prove it decodes.

        ``within``: the output folder; ``path`` must resolve inside it (``UnsafeIdError``
        otherwise). The whole download - every link, refresh and redirect - ends within
        ``download_deadline``; each attempt of known size also within
        ``DOWNLOAD_GRACE + size / MIN_DOWNLOAD_RATE``. Links and redirects to
        non-public addresses, bodies over ``max_download_bytes`` and compressed bodies that
        inflate like a bomb are refused (``DownloadRefusedError``); the temporary files of
        an earlier crashed download of the same ``path`` are removed.
        """
        if within is not None:
            ensure_inside(path, within)
        v2client.remember_job(self, job)  # an H3 job's links are refreshed on v2
        with netguard.deadline(self.download_deadline):
            return self._download(job, path, max_refreshes)

    def _download(self, job: Job | str, path: str | os.PathLike[str],
                  max_refreshes: int) -> DownloadedVideo:
        current = job if isinstance(job, Job) else self.status(job)
        check_id(current.task_id, what="task id")
        if decisions.needs_fresh_status(current, utcnow()):
            current = self.status(current.task_id)
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        last_error: errors.HailuoError | None = None
        for refresh in range(max_refreshes + 1):
            decisions.check_downloadable(current)
            for url in current.video_urls:
                try:
                    with atomic_output(dest) as tmp:
                        sha, size = self._stream(url, tmp, current.task_id)
                        info = media.probe(tmp)
                except (errors.LinkExpiredError, errors.DownloadError,
                        errors.InvalidVideoError) as exc:
                    last_error = self._attempt_failed(exc, current.task_id)
                    if netguard.expired():
                        raise self._download_deadline_error(current.task_id, 0) from None
                    continue
                return self._downloaded(current.task_id, dest, sha, size, info)
            if refresh < max_refreshes:
                self._sleep(decisions.bounded_pause(self._delay(refresh), netguard.remaining()))
                if netguard.expired():
                    raise self._download_deadline_error(current.task_id, 0)
                current = self.status(current.task_id)  # fresh, signed links
        raise last_error or errors.ResultMissingError(
            f"task {current.task_id} has no download URL", task_id=current.task_id)

    def _stream(self, url: str, tmp: Path, task_id: str) -> tuple[str, int]:
        """One download attempt of ``url`` into ``tmp``; redirects followed by hand, each
        hop checked against the address policy."""
        digest = hashlib.sha256()
        counts = [0, 0]  # bytes received, bytes decoded
        expected: str | None = None
        hops = 0
        while True:
            self._download_policy.check_url(url, resolve=self._resolve_downloads)
            try:
                with self._dl.stream("GET", url,
                                     headers={"Accept-Encoding": "identity"}) as response:
                    if response.is_redirect:
                        hops = decisions.redirect_hop(hops, task_id)
                        url = str(response.url.join(response.headers["Location"]))
                        continue
                    decisions.check_download_status(response.status_code, task_id)
                    expected = response.headers.get("Content-Length")
                    self._receive(response, tmp, digest, counts, expected, task_id)
                    break
            except httpx.TransportError as exc:
                if netguard.expired():
                    raise self._download_deadline_error(task_id, counts[1]) from None
                raise decisions.broke_off(counts[1], exc, task_id) from None
        decisions.check_received(expected, counts[0], counts[1], task_id)
        return digest.hexdigest(), counts[1]

    @staticmethod
    def _check_download_status(response: httpx.Response, task_id: str) -> None:
        decisions.check_download_status(response.status_code, task_id)

    def _receive(self, response: httpx.Response, tmp: Path, digest: Any, counts: list[int],
                 expected: str | None, task_id: str) -> None:
        """Write the decoded body to ``tmp`` within the attempt's deadline and caps
        (``decisions.CappedBody``, the same decoder the async client uses)."""
        with netguard.deadline(decisions.attempt_bound(expected)):
            try:
                consumed = response.is_stream_consumed  # read already (httpx.MockTransport)
                body = download_body(response.headers, consumed, self.max_download_bytes,
                                     task_id, counts)
                # Pieces as the socket delivers them (re-chunking costs a copy).
                source = [response.content] if consumed else response.iter_raw()
                with open(tmp, "wb") as out:
                    for raw in source:
                        for chunk in body.feed(raw):
                            out.write(chunk)
                            digest.update(chunk)
                            if netguard.expired():
                                raise self._download_deadline_error(task_id, counts[1])
                    for chunk in body.finish():
                        out.write(chunk)
                        digest.update(chunk)
            except httpx.TransportError:
                if netguard.expired():
                    raise self._download_deadline_error(task_id, counts[1]) from None
                raise


def download_body(headers: Mapping[str, str], consumed: bool, limit: int, task_id: str,
                  counts: list[int]) -> decisions.CappedBody:
    """The capped decoder of a download answer: too large or a bomb is
    ``DownloadRefusedError``, undecodable ``DownloadError`` (used by both clients)."""
    return decisions.CappedBody(
        headers, limit=limit, max_ratio=netguard.MAX_INFLATION, what="the download",
        too_large=lambda m: errors.DownloadRefusedError(m, task_id=task_id),
        unreadable=lambda m: errors.DownloadError(m, task_id=task_id),
        consumed=consumed, counted=counts)
