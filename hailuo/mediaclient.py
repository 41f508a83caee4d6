"""The HTTP layer shared by the speech, music and image clients (issue 15).

Same standards as ``HailuoClient`` (video):

* The key is added per request by an ``httpx.Auth`` (never a default header, never in a
  repr) and scrubbed from everything quoted back (``redact``); download hosts never see it.
* Every failure is a typed ``HailuoError``. MiniMax's media APIs answer HTTP 200 with
  ``base_resp.status_code != 0`` on failure; those codes map through
  ``providers.base.error_for`` like the video codes.
* A paid call is never repeated blindly. These calls are synchronous - the answer *is*
  the product, and the provider bills when it produces it - so a call is sent again only
  when it cannot have been billed: the connection was never made, a rate-limit answer
  (429 / 1002 / 1039), 408 / 503, or a provider error code inside the answer (the request
  was refused, nothing produced). A connection that breaks after the request was sent, a
  5xx without a provider code, or an answer that cannot be read is an
  ``AmbiguousSubmitError`` naming the request fingerprint: it may have been billed.
* Answers are read with a size cap (hex audio of a 5-minute song is ~20 MB of JSON) and
  every call ends within a wall-clock deadline (``netguard``); result URLs are fetched
  like video downloads: public addresses only (unless the API itself is local, i.e. the
  simulator), redirects checked hop by hop, a size cap and a deadline.

No Prefect imports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, SecretStr

from hailuo import errors, netguard, redact
from hailuo.capabilities import Provider
from hailuo.client import (
    ProviderAccount,
    SyncHTTP,
    _retry_after,
    open_sync_http,
    private_downloads,
)
from hailuo.images import image_fingerprint
from hailuo.providers import SIMULATOR_HEADER
from hailuo.providers.base import as_int, error_for
from hailuo.providers.minimax import REGION_CODES, region_hint

log = logging.getLogger("hailuo.media")
log.addFilter(redact.LogScrubber())

#: An answer larger than this is refused (a 5-minute 256 kb/s song is ~20 MB as hex).
MAX_ANSWER_BYTES = 96 << 20
#: A fetched result (audio, image) larger than this is refused.
MAX_RESULT_BYTES = 200 << 20
MAX_REDIRECTS = 5
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Answers to a paid call that prove nothing was produced, so sending it again is safe.
NOT_PRODUCED_HTTP = frozenset({408, 429, 503})
_T = TypeVar("_T")


class ModelUnavailableError(errors.ConfigurationError):
    """The account cannot use this model at all (MiniMax marks its Music models
    "Discontinued" for new pay-as-you-go accounts). Found before anything is paid for and
    never retried: the fix is another model, another account, or doing without."""


#: Provider messages that say the account cannot use the model (wording unconfirmed:
#: api-contract-v2.md section 4 only says "Discontinued"; these cover the likely phrasings).
_UNAVAILABLE = re.compile(
    r"(?i)discontinu|no longer (?:available|supported|offered)|not (?:available|open(?:ed)?|"
    r"enabled|supported) for (?:this|your|the current) (?:account|user|plan|group)|"
    r"(?:no|without) (?:access|permission) to (?:this |the )?model|model[^.]{0,40}"
    r"(?:not (?:open|enabled|available)|unavailable)")


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def media_fingerprint(kind: str, request: BaseModel, provider: Provider | str,
                      take: int = 1, image_fields: tuple[str, ...] = ()) -> str:
    """sha256 over (kind, canonical request, provider, take): the identity of one paid
    media request. Image inputs count by content hash; the request holds no key."""
    data = request.model_dump(mode="json")
    for name in image_fields:
        if data.get(name):
            data[name] = image_fingerprint(data[name], field=name)
    blob = canonical({"kind": kind, "request": data, "provider": str(Provider(provider)),
                      "take": take})
    return hashlib.sha256(blob.encode()).hexdigest()


def minimax_error(status_code: int, body: Any, retry_after: float | None, *,
                  what: str) -> errors.HailuoError | None:
    """The typed error a MiniMax media answer carries, or None for a success."""
    base = body.get("base_resp") if isinstance(body, dict) else None
    code = as_int(base.get("status_code")) if isinstance(base, dict) else None
    if status_code < 400 and code in (None, 0):
        return None
    message = (base or {}).get("status_msg") if isinstance(base, dict) else None
    if not message and isinstance(body, dict) and "_raw" in body:
        message = body["_raw"]
    text = f"MiniMax {what}: {message or f'HTTP {status_code}'}"
    if message and _UNAVAILABLE.search(str(message)):
        return ModelUnavailableError(text, code=code or None, http_status=status_code)
    return error_for(message=text, code=code or None, http_status=status_code,
                     retry_after=retry_after)


class MediaHTTP(ProviderAccount, SyncHTTP):
    """One provider, one key, one base URL: the paid POST, polling GETs and result fetches.

    Subclasses (``SpeechClient``, ``MusicClient``, ``ImageClient``) build bodies and read
    answers. ``api_key`` may be a ``SecretStr``; it is never stored in plain text on the
    instance and never appears in an error, a log line or a repr.
    """

    #: Total wall-clock bound of one paid call (subclasses raise it: music is slow).
    call_deadline: float = 180.0
    read_timeout: float = 120.0

    def __init__(
        self,
        provider: Provider | str = Provider.MINIMAX,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        call_deadline: float | None = None,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_rate_limit_waits: int = 8,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_result_bytes: int = MAX_RESULT_BYTES,
        allow_private_downloads: bool | None = None,
        transport: httpx.BaseTransport | None = None,
        download_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(provider, api_key, base_url, max_retries=max_retries,
                         backoff=backoff, max_backoff=max_backoff,
                         max_rate_limit_waits=max_rate_limit_waits)
        self.max_answer_bytes = max_answer_bytes
        self.max_result_bytes = max_result_bytes
        if call_deadline is not None:
            self.call_deadline = call_deadline
        read = httpx.Timeout(timeout if timeout is not None else self.read_timeout,
                             connect=10.0)
        self._sleep = sleep
        self._policy = netguard.AddressPolicy(
            allow_private=private_downloads(allow_private_downloads, self.base_url))
        self._resolve_downloads = download_transport is None
        self._http, self._dl = open_sync_http(
            self.base_url, self._key, self._policy, timeout=read, download_timeout=read,
            transport=transport, download_transport=download_transport,
            call_seconds=self.call_deadline, download_seconds=self.call_deadline)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider.value!r}, " \
               f"base_url={self.base_url!r})"

    # ------------------------------------------------------------------ helpers
    def scrub(self, text: Any) -> str:
        return redact.quoted(text, self._scrub)

    def _clean(self, exc: errors.HailuoError) -> errors.HailuoError:
        """The error with provider text scrubbed, and a region hint on 1004 / 2049."""
        clean = self.scrub(exc.message)
        if (isinstance(exc, errors.AuthenticationError) and exc.code in REGION_CODES
                and self.provider is Provider.MINIMAX and "region" not in clean):
            clean = f"{clean}. {region_hint(urlsplit(self.base_url).hostname)}"
        exc.message = clean
        exc.args = (clean,)
        for name, value in list(exc.details.items()):
            if isinstance(value, str):
                exc.details[name] = self.scrub(value)
        return exc

    @staticmethod
    def simulated(response: httpx.Response) -> bool:
        return response.headers.get(SIMULATOR_HEADER) == "1"

    def _read(self, request: httpx.Request, what: str) -> httpx.Response:
        """Send and read the whole answer within the size cap; returns it already read."""
        return netguard.read_capped(self._http, request, limit=self.max_answer_bytes,
                                    what=what)

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return netguard.decode_json(response.content, what=what)
        except errors.UnreadableAnswerError as exc:
            if response.status_code >= 400:  # a proxy's HTML 502: the status says it all
                return {"_raw": self.scrub(response.text[:200])}
            exc.http_status = response.status_code
            raise

    # ------------------------------------------------------------- the paid call
    def paid_post(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        what: str,
        fingerprint: str,
        parse_error: Callable[[int, Any, float | None], errors.HailuoError | None],
        headers: Mapping[str, str] | None = None,
        cost_note: str = "",
        resend_ambiguous: bool = False,
    ) -> tuple[Any, httpx.Response]:
        """POST one paid request; returns (decoded answer, response) on success.

        Sent again only when it cannot have been billed (see the module docstring), or,
        with ``resend_ambiguous`` (an ``Idempotency-Key`` the provider honours is in
        ``headers``), after an ambiguous failure too. Otherwise an ambiguous outcome is an
        ``AmbiguousSubmitError`` carrying ``request_fingerprint``."""
        sent_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())

        def ambiguous(why: str, status: int | None = None) -> errors.AmbiguousSubmitError:
            return errors.AmbiguousSubmitError(
                f"{why}; it may have been billed{cost_note}. Not sent again automatically: "
                f"look for a {what} around {sent_at} in the {self.provider} console (usage "
                f"page); running again pays again. Request fingerprint: {fingerprint}.",
                http_status=status, request_fingerprint=fingerprint,
                idempotency_key=(headers or {}).get("Idempotency-Key"))

        attempt = rate_waits = 0
        with netguard.deadline(self.call_deadline):
            while True:
                request = self._http.build_request(
                    "POST", path, json=dict(body),
                    headers={"Accept-Encoding": "gzip, deflate", **(headers or {})})
                try:
                    response = self._read(request, f"{self.provider} answer to {what}")
                except _NEVER_SENT as exc:
                    if attempt >= self.max_retries or netguard.expired():
                        raise errors.ProviderUnavailableError(
                            f"could not connect to {self.provider} for {what}: "
                            f"{type(exc).__name__}") from None
                    self._sleep(self._delay(attempt))
                    attempt += 1
                    continue
                except (httpx.TransportError, httpx.DecodingError) as exc:
                    if resend_ambiguous and attempt < self.max_retries:
                        self._sleep(self._delay(attempt))
                        attempt += 1
                        continue
                    late = " (its deadline passed)" if netguard.expired() else ""
                    raise ambiguous(f"the connection to {self.provider} broke after the "
                                    f"{what} request was sent{late} ({type(exc).__name__})"
                                    ) from None
                except errors.AnswerTooLargeError as exc:
                    raise self._clean(exc) from None
                retry_after = _retry_after(response)
                try:
                    answer = self._json(response, f"{self.provider} answer to {what}")
                except errors.UnreadableAnswerError as exc:
                    raise ambiguous(f"{self.provider} answered the {what} with HTTP "
                                    f"{response.status_code} and an unreadable body "
                                    f"({exc.message})", response.status_code) from None
                problem = parse_error(response.status_code, answer, retry_after)
                if problem is None:
                    return answer, response
                problem = self._clean(problem)
                if isinstance(problem, errors.RateLimitedError):
                    if rate_waits >= self.max_rate_limit_waits:
                        raise problem
                    wait = (problem.retry_after if problem.retry_after is not None
                            else self._delay(rate_waits))
                    log.info("%s rate limited; waiting %.1fs", what, wait)
                    self._sleep(wait)
                    rate_waits += 1
                    continue
                if isinstance(problem, errors.ProviderUnavailableError):
                    produced_nothing = (response.status_code in NOT_PRODUCED_HTTP
                                        or problem.code is not None)
                    if produced_nothing or resend_ambiguous:
                        if attempt >= self.max_retries:
                            raise problem
                        self._sleep(self._delay(attempt, problem.retry_after))
                        attempt += 1
                        continue
                    raise ambiguous(f"{self.provider} answered the {what} with HTTP "
                                    f"{response.status_code}", response.status_code)
                raise problem

    def paid_answer(self, path: str, body: Mapping[str, Any],
                    parse: Callable[[Any, bool], _T], **post: Any) -> _T:
        """``paid_post`` (``post``: its keyword arguments), then ``parse(answer,
        simulated)``; a typed error of the parser is scrubbed like the call's own."""
        answer, response = self.paid_post(path, body, **post)
        try:
            return parse(answer, self.simulated(response))
        except errors.HailuoError as exc:
            raise self._clean(exc) from None

    # ------------------------------------------------------------------ polling
    def get_json(self, path: str, *, what: str, params: Mapping[str, str] | None = None
                 ) -> tuple[int, Any, float | None, httpx.Response]:
        """An idempotent GET retried on transport errors and 408/429/5xx."""
        attempt = 0
        with netguard.deadline(self.call_deadline):
            while True:
                request = self._http.build_request("GET", path, params=dict(params or {}),
                                                   headers={"Accept-Encoding": "gzip"})
                try:
                    response = self._read(request, f"{self.provider} answer to {what}")
                except httpx.TransportError as exc:
                    if attempt >= self.max_retries or netguard.expired():
                        raise errors.ProviderUnavailableError(
                            f"{self.provider} unreachable for {what}: "
                            f"{type(exc).__name__}") from None
                    self._sleep(self._delay(attempt))
                    attempt += 1
                    continue
                if response.status_code in (408, 429, 500, 502, 503, 504) \
                        and attempt < self.max_retries and not netguard.expired():
                    self._sleep(self._delay(attempt, _retry_after(response)))
                    attempt += 1
                    continue
                return (response.status_code, self._json(response, what),
                        _retry_after(response), response)

    # ------------------------------------------------------------------ results
    def fetch_url(self, url: str, *, what: str, attempts: int = 3) -> bytes:
        """The bytes behind a result URL (no key sent), retried on transient failures.

        ``LinkExpiredError`` (401 / 403 / 410) is not retried: the link is dead."""
        last: errors.HailuoError | None = None
        for attempt in range(attempts):
            try:
                with netguard.deadline(self.call_deadline):
                    return self._fetch_once(url, what)
            except errors.LinkExpiredError:
                raise
            except (errors.DownloadError, errors.ProviderUnavailableError) as exc:
                last = exc
                if attempt + 1 < attempts:
                    self._sleep(self._delay(attempt))
        assert last is not None
        raise last

    def _fetch_once(self, url: str, what: str) -> bytes:
        hops = 0
        while True:
            if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
                raise errors.ProviderAnswerError(f"{what}: the answer's link is not an "
                                                 "http(s) URL")
            self._policy.check_url(url, resolve=self._resolve_downloads)
            try:
                with self._dl.stream("GET", url, headers={"Accept-Encoding": "identity"}
                                     ) as response:
                    if response.is_redirect:
                        hops += 1
                        if hops > MAX_REDIRECTS:
                            raise errors.DownloadRefusedError(
                                f"{what}: redirected more than {MAX_REDIRECTS} times")
                        url = str(response.url.join(response.headers["Location"]))
                        continue
                    if response.status_code in (401, 403, 410):
                        raise errors.LinkExpiredError(
                            f"{what}: link refused (HTTP {response.status_code}); it has "
                            "expired (MiniMax media links live 24 h) or its signature is "
                            "invalid", http_status=response.status_code)
                    if response.status_code >= 300:
                        raise errors.DownloadError(
                            f"{what}: answered HTTP {response.status_code}",
                            http_status=response.status_code)
                    counts = [0, 0]
                    data = b"".join(netguard.capped_chunks(
                        response, limit=self.max_result_bytes, max_ratio=netguard.MAX_INFLATION,
                        what=what, too_large=errors.DownloadRefusedError,
                        unreadable=errors.DownloadError, counted=counts))
                    expected = response.headers.get("Content-Length", "")
                    if expected.isdigit() and int(expected) != counts[0]:
                        raise errors.DownloadError(
                            f"{what}: truncated, {counts[0]} of {expected} bytes")
                    if not data:
                        raise errors.DownloadError(f"{what}: empty (0 bytes)")
                    return data
            except httpx.TransportError as exc:
                raise errors.DownloadError(f"{what}: download broke off "
                                           f"({type(exc).__name__})") from None


__all__ = ["MAX_ANSWER_BYTES", "MediaHTTP", "ModelUnavailableError", "canonical",
           "media_fingerprint", "minimax_error"]
