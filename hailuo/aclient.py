"""``AsyncHailuoClient``: status, wait and download on ``httpx.AsyncClient``.

Why: a worker keeping hundreds of clips waiting should not hold a thread per clip. A wait
is mostly sleeping between status GETs, so here it is a coroutine: hundreds of them share
one event loop and one connection pool.

Why it cannot drift from ``HailuoClient``: it makes no decision of its own. The retry and
back-off of a status GET, the wait loop (terminal states, failures in a row, poll
spacing, timeout keeping the task id) and the download checks (redirect hops, link
refusals, size and inflation caps, truncation, empty bodies) are the pure functions of
``hailuo.decisions`` that the sync client calls too; answer parsing, key scrubbing and
id checks are the methods of ``hailuo.client.ClientCore`` both inherit. Only the I/O is
written here, and it keeps the sync client's network rules:

* the key goes only to the API host (``Authorization`` added per request, never to
  download hosts), and every error and job text is scrubbed of it;
* every call has a total wall-clock bound (``call_deadline``, a wait's ``timeout``,
  ``download_deadline``, an attempt's size-based bound) enforced by cancelling the I/O,
  so a trickling server cannot stretch it; nested bounds keep the earliest, as in
  ``hailuo.netguard`` (a context variable here: one per task, not per thread);
* downloads (links and each redirect hop) never reach loopback / private / link-local /
  reserved addresses unless the base URL is itself loopback; the address is checked
  again at connect time and only the checked address is connected to.

``submit`` is money-critical (ambiguity, idempotency, uploads, v2 reconciling) and is
NOT re-implemented: it runs ``HailuoClient.submit`` in a worker thread. Submits are rare
and rate-limited; waits are what is numerous.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from hailuo import decisions, errors, media, netguard, v2client
from hailuo.client import (
    ClientCore,
    HailuoClient,
    _BearerAuth,
    _retry_after,
    _tls_context,
    download_body,
)
from hailuo.files import atomic_output, ensure_inside
from hailuo.ids import check_id
from hailuo.models import DownloadedVideo, Job, VideoRequest, utcnow
from hailuo.providers.minimax_v2 import V2_DIALECT

log = logging.getLogger("hailuo.client")

#: The end (event-loop time) of the innermost bound of the running task, or None.
_deadline: ContextVar[float | None] = ContextVar("hailuo_async_deadline", default=None)


def _now() -> float:
    return asyncio.get_running_loop().time()


@contextmanager
def _bound(seconds: float | None) -> Iterator[float | None]:
    """Bound every call made inside (in this task) by ``seconds`` from now; nested bounds
    keep the earliest (None: no new bound). The async twin of ``netguard.deadline``."""
    outer = _deadline.get()
    if seconds is None:
        yield outer
        return
    mine = _now() + max(0.0, seconds)
    token = _deadline.set(mine if outer is None else min(outer, mine))
    try:
        yield _deadline.get()
    finally:
        _deadline.reset(token)


def _remaining() -> float | None:
    end = _deadline.get()
    return None if end is None else end - _now()


def _expired() -> bool:
    left = _remaining()
    return left is not None and left <= 0


async def _raw(response: httpx.Response) -> AsyncIterator[bytes]:
    """The raw body as it arrives (or at once, when httpx read it already: a mock)."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for raw in response.aiter_raw():
        yield raw


class AsyncHailuoClient(ClientCore):
    """An asyncio client for one provider (``"apimart"`` or ``"minimax"``) and one key.

    The constructor mirrors ``HailuoClient`` (same defaults, the same hostile-answer
    bounds); ``transport`` / ``download_transport`` are async transports, ``sleep`` is
    awaited. ``sync_transport`` / ``sync_download_transport`` are handed to the sync
    client that runs ``submit`` (tests; None: real connections). ``limits``: the
    connection pool shared by every status call of this client (httpx's default: 100
    connections; waits beyond that queue for a connection, they never fail for it).
    """

    def __init__(
        self,
        *account: Any,
        transport: httpx.AsyncBaseTransport | None = None,
        download_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        limits: httpx.Limits | None = None,
        sync_transport: httpx.BaseTransport | None = None,
        sync_download_transport: httpx.BaseTransport | None = None,
        **settings: Any,
    ) -> None:
        """``account`` and ``settings``: the arguments of ``ClientCore``, as ``HailuoClient``
        takes them (``upload_cache_dir`` is used by the sync client that runs ``submit``)."""
        super().__init__(*account, **settings)
        self._sleep = sleep
        # What the sync client that runs ``submit`` is built from (see ``_submitter``):
        # the same settings, resolved as this client resolved them.
        self._sync_settings: dict[str, Any] = {
            **settings, "poll": self.poll,
            "allow_private_downloads": self._download_policy.allow_private,
            "download_allowed_hosts": tuple(settings.get("download_allowed_hosts", ())),
            "transport": sync_transport, "download_transport": sync_download_transport}
        self._sync: HailuoClient | None = None
        # Names are resolved for the policy only when we make the connections ourselves.
        self._resolve_downloads = download_transport is None
        tls = _tls_context()
        limits = limits or httpx.Limits()
        if transport is None:
            transport = netguard.guarded_async_transport(tls, limits)
        if download_transport is None:
            download_transport = netguard.guarded_async_transport(
                tls, limits, policy=self._download_policy)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout,
                                       verify=tls, auth=_BearerAuth(self._key), transport=transport)
        # Download hosts are CDNs: they get no Authorization header. Redirects are
        # followed by hand (``_stream``), each hop checked against the address policy.
        self._dl = httpx.AsyncClient(timeout=self._download_timeout, follow_redirects=False,
                                     verify=tls, transport=download_transport)

    def __repr__(self) -> str:
        return (f"AsyncHailuoClient(provider={self.provider.value!r}, "
                f"base_url={self.base_url!r})")

    async def __aenter__(self) -> AsyncHailuoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._dl.aclose()
        if self._sync is not None:
            self._sync.close()

    def _router(self) -> HailuoClient:
        """This client as ``hailuo.v2client``'s task routing sees it: that registry only
        reads ``provider`` and ``base_url``, so an H3 task submitted through the sync
        client (same base URL) is polled on v2 here too."""
        return cast(HailuoClient, self)

    # ------------------------------------------------------------------ submit
    def _submitter(self) -> HailuoClient:
        """The sync client that runs submits: same provider, key, base URL and settings,
        built on first use (in the event loop's thread, so only once)."""
        if self._sync is None:
            self._sync = HailuoClient(**{**self._sync_settings, "provider": self.provider,
                                         "api_key": self._key, "base_url": self.base_url})
        return self._sync

    async def submit(self, request: VideoRequest, *, idempotency_key: str | None = None,
                     take: int = 1) -> Job:
        """Send one paid request; returns the provider's job (task id) at once.

        Runs ``HailuoClient.submit`` in a worker thread (``asyncio.to_thread``) on a sync
        client built from this client's settings: the submit's money-safety logic
        (ambiguous answers, Idempotency-Key resends, APIMart uploads, MiniMax v2
        reconciling) exists once, in the sync client. Submits are rare and rate-limited,
        so a thread each costs nothing; waits are what is numerous, and those run here
        without threads. Cancelling this coroutine does not stop a submit already sent:
        the thread finishes it (its task id is then only in the provider's task list).
        """
        submitter = self._submitter()
        return await asyncio.to_thread(submitter.submit, request,
                                       idempotency_key=idempotency_key, take=take)

    async def create_and_poll(self, request: VideoRequest, **wait_kw: Any) -> Job:
        """Submit and wait: the one-call path for scripts."""
        return await self.wait(await self.submit(request), **wait_kw)

    # ------------------------------------------------------------------ status
    async def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        """An idempotent GET with retries on transient failures (``decisions.GetRetries``,
        as the sync client). All attempts end within ``call_deadline`` and any enclosing
        bound; the answer is read capped at ``max_status_bytes`` decoded bytes."""
        with _bound(self.call_deadline):
            rules = self._get_retries(path)
            while True:
                try:
                    async with asyncio.timeout_at(_deadline.get()):
                        response = await self._get_once(path, params)
                except TimeoutError:
                    raise rules.deadline_error() from None
                except httpx.TransportError as exc:
                    delay = rules.on_transport_error(exc, expired=_expired())
                else:
                    delay = rules.on_answer(response.status_code, _retry_after(response))
                    if delay is None:
                        return response
                    log.info("GET %s answered %s; retrying", path, response.status_code)
                await self._sleep(decisions.bounded_pause(delay, _remaining()))
                rules.next_attempt(expired=_expired())

    async def _get_once(self, path: str, params: dict[str, str] | None) -> httpx.Response:
        """One GET, its answer read whole through ``netguard.answer_decoder`` (the cap and
        bomb rules of ``netguard.read_capped``) and returned already read and decoded."""
        request = self._http.build_request("GET", path, params=params,
                                           headers={"Accept-Encoding": "gzip, deflate"})
        response = await self._http.send(request, stream=True)
        try:
            body = netguard.answer_decoder(response, limit=self.max_status_bytes,
                                           what=f"{self.provider} answer to GET {path}")
            parts: list[bytes] = []
            async for raw in _raw(response):
                parts.extend(body.feed(raw))
            parts.extend(body.finish())
        finally:
            await response.aclose()
        return netguard.answer_read(response, request, b"".join(parts))

    async def status(self, task_id: str, *, model: str | None = None) -> Job:
        """The task's current state; for a completed task, with download links.

        Same answers and errors as ``HailuoClient.status`` (the parsing is shared):
        ``ResultMissingError`` for a completed task without links, ``UnsafeIdError``
        before anything is sent, ``TaskIdMismatchError``, ``AnswerTooLargeError``,
        ``UnreadableAnswerError``, ``StatusDeadlineError``. ``model``: an H3 model (or a
        task this process saw as one) is queried on MiniMax's v2 API.
        """
        task_id = check_id(task_id, what="task id")
        if v2client.handles(self._router(), task_id, model):
            return await self._v2_status(task_id)
        response = await self._get(*self._status_path(task_id))
        job = self._status_answer(task_id, response)
        file_call = self.dialect.file_call(job)
        if file_call:
            job, response = await self._file_lookup(job, file_call)
        return self._status_result(job, response)

    async def _file_lookup(self, job: Job, call: tuple[str, dict[str, str]]
                           ) -> tuple[Job, httpx.Response]:
        """MiniMax's files/retrieve, its transient answers retried by
        ``decisions.retry_lookup`` (as the sync client)."""
        attempt = 0
        while True:
            response = await self._get(*call)
            try:
                return self._file_answer(job, response), response
            except (errors.ProviderUnavailableError, errors.RateLimitedError) as exc:
                await self._sleep(self._lookup_delay(job, exc, attempt))
                attempt += 1

    async def _v2_status(self, task_id: str) -> Job:
        """A MiniMax v2 (H3) task: the GET of ``hailuo.v2client.status``, made with this
        client's async GET, its answer read by the same ``v2client`` functions."""
        response = await self._get(*V2_DIALECT.status_call(task_id))
        job = v2client.status_answer(self._router(), task_id, response)
        return v2client.status_result(self._router(), job, response)

    # -------------------------------------------------------------------- wait
    async def wait(
        self,
        job: Job | str,
        *,
        timeout: float = 1800.0,
        on_update: Callable[[Job], Any] | None = None,
        wake: asyncio.Event | None = None,
    ) -> Job:
        """Poll until a terminal status; returns the completed job (with links).

        The loop is ``decisions.WaitLoop``, the one ``HailuoClient.wait`` runs: raises
        ``GenerationFailedError`` / ``ContentRejectedError`` on a failed or cancelled task
        and ``TimedOutError`` (keeping the task id) past ``timeout`` seconds, which bound
        the status call in flight too. Sleeps are ``asyncio`` sleeps, so hundreds of waits
        share one thread. ``on_update`` may be a plain function or a coroutine function;
        ``wake`` lets a callback receiver cut a sleep short.
        """
        v2client.remember_job(self._router(), job)  # an H3 job is polled on v2
        current = job if isinstance(job, Job) else Job(task_id=job, provider=self.provider)
        with _bound(timeout):
            loop = decisions.WaitLoop(current, timeout=timeout, policy=self.poll,
                                      started=_now())
            while True:
                try:
                    latest = await self.status(loop.task_id)
                except errors.HailuoError as exc:
                    self._poll_failed(loop, exc)
                else:
                    current = loop.seen(latest)
                    if on_update is not None:
                        result = on_update(current)
                        if inspect.isawaitable(result):
                            await result
                    done = loop.finished()
                    if done is not None:
                        return done
                await self._pause(loop.pause(_now(), utcnow()), wake)

    async def _pause(self, delay: float, wake: asyncio.Event | None) -> None:
        """Sleep ``delay`` seconds, or less if a callback sets ``wake``."""
        if wake is None:
            await self._sleep(delay)
            return
        try:
            async with asyncio.timeout(delay):
                await wake.wait()
        except TimeoutError:
            return
        wake.clear()

    # ---------------------------------------------------------------- download
    async def download(self, job: Job | str, path: str | os.PathLike[str], *,
                       max_refreshes: int = 2,
                       within: str | os.PathLike[str] | None = None) -> DownloadedVideo:
        """Stream the video to ``path`` atomically; hash it and prove it decodes.

        The same rules as ``HailuoClient.download`` (the checks are shared): ``path`` must
        resolve inside ``within`` when given; the whole download ends within
        ``download_deadline`` and each attempt of known size within its size-based
        bound; non-public addresses, bodies over ``max_download_bytes`` and bombs are
        refused (``DownloadRefusedError``); expired links fall back to the next link, then
        to fresh ones by task id. The path comes only from the caller, never from the
        provider. The decode check (``media.probe``) is CPU work and runs in a worker
        thread, so it never stalls the other waits of the loop.
        """
        if within is not None:
            ensure_inside(path, within)
        v2client.remember_job(self._router(), job)  # an H3 job's links are refreshed on v2
        with _bound(self.download_deadline):
            return await self._download(job, path, max_refreshes)

    async def _download(self, job: Job | str, path: str | os.PathLike[str],
                        max_refreshes: int) -> DownloadedVideo:
        current = job if isinstance(job, Job) else await self.status(job)
        check_id(current.task_id, what="task id")
        if decisions.needs_fresh_status(current, utcnow()):
            current = await self.status(current.task_id)
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        last_error: errors.HailuoError | None = None
        for refresh in range(max_refreshes + 1):
            decisions.check_downloadable(current)
            for url in current.video_urls:
                try:
                    with atomic_output(dest) as tmp:
                        sha, size = await self._stream(url, tmp, current.task_id)
                        info = await asyncio.to_thread(media.probe, tmp)
                except (errors.LinkExpiredError, errors.DownloadError,
                        errors.InvalidVideoError) as exc:
                    last_error = self._attempt_failed(exc, current.task_id)
                    if _expired():
                        raise self._download_deadline_error(current.task_id, 0) from None
                    continue
                return self._downloaded(current.task_id, dest, sha, size, info)
            if refresh < max_refreshes:
                await self._sleep(decisions.bounded_pause(self._delay(refresh), _remaining()))
                if _expired():
                    raise self._download_deadline_error(current.task_id, 0)
                current = await self.status(current.task_id)  # fresh, signed links
        raise last_error or errors.ResultMissingError(
            f"task {current.task_id} has no download URL", task_id=current.task_id)

    async def _check_link(self, url: str) -> None:
        """The address policy on a link or hop; a name is resolved in a worker thread."""
        self._download_policy.check_url(url, resolve=False)
        host = urlsplit(url).hostname or ""
        if self._resolve_downloads and not self._download_policy.exempt(host):
            await asyncio.to_thread(self._download_policy.check_url, url, resolve=True)

    async def _stream(self, url: str, tmp: Path, task_id: str) -> tuple[str, int]:
        """One download attempt of ``url`` into ``tmp``; redirects followed by hand, each
        hop checked against the address policy."""
        digest = hashlib.sha256()
        counts = [0, 0]  # bytes received, bytes decoded
        expected: str | None = None
        hops = 0
        while True:
            await self._check_link(url)
            try:
                async with asyncio.timeout_at(_deadline.get()):
                    async with self._dl.stream(
                            "GET", url, headers={"Accept-Encoding": "identity"}) as response:
                        if response.is_redirect:
                            hops = decisions.redirect_hop(hops, task_id)
                            url = str(response.url.join(response.headers["Location"]))
                            continue
                        decisions.check_download_status(response.status_code, task_id)
                        expected = response.headers.get("Content-Length")
                        await self._receive(response, tmp, digest, counts, expected, task_id)
                        break
            except TimeoutError:
                raise self._download_deadline_error(task_id, counts[1]) from None
            except httpx.TransportError as exc:
                if _expired():
                    raise self._download_deadline_error(task_id, counts[1]) from None
                raise decisions.broke_off(counts[1], exc, task_id) from None
        decisions.check_received(expected, counts[0], counts[1], task_id)
        return digest.hexdigest(), counts[1]

    async def _receive(self, response: httpx.Response, tmp: Path, digest: Any,
                       counts: list[int], expected: str | None, task_id: str) -> None:
        """Write the decoded body to ``tmp`` within the attempt's bound and the caps of
        ``decisions.CappedBody`` (the decoder the sync client uses)."""
        with _bound(decisions.attempt_bound(expected)):
            try:
                async with asyncio.timeout_at(_deadline.get()):
                    body = download_body(response.headers, response.is_stream_consumed,
                                         self.max_download_bytes, task_id, counts)
                    with open(tmp, "wb") as out:
                        async for raw in _raw(response):
                            for chunk in body.feed(raw):
                                out.write(chunk)
                                digest.update(chunk)
                        for chunk in body.finish():
                            out.write(chunk)
                            digest.update(chunk)
            except TimeoutError:
                raise self._download_deadline_error(task_id, counts[1]) from None


__all__ = ["AsyncHailuoClient"]
