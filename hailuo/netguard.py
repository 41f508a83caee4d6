"""The network rules every call of ``HailuoClient`` obeys, whatever the other side sends.

Three things a hostile or broken server can do that per-read timeouts and stock decoding
do not stop, and what stops them here:

* **Trickling.** A server sending one byte every few seconds never trips a 30 s read
  timeout, so a status call or a download could last forever. ``deadline(seconds)``
  opens a total wall-clock bound for the calls made inside it (nested bounds keep the
  earliest). ``guarded_transport`` installs a network backend whose every connect, read
  and write is given at most the time left, so a call ends at its bound even while the
  server is still sending response headers. A request made outside any ``deadline``
  still gets ``default_seconds`` from the moment it was written.
* **Private targets.** A provider answer (a download link, a redirect) must not make us
  connect to loopback, private, link-local or otherwise non-public addresses (cloud
  metadata at 169.254.169.254, an admin port on 10.x). ``check_url`` refuses such URLs
  (literal addresses, and names whose resolved addresses include one); the backends (sync
  ``GuardedBackend``, async ``GuardedAsyncBackend``) check again at connect time
  (``connect_targets``) and connect only to the address checked, so a name cannot
  resolve to a public address for the check and a private one for the connection.
* **Bombs.** ``capped_chunks`` and ``read_capped`` decode gzip/deflate in bounded pieces
  (``decisions.CappedBody``, the decoder of downloads too), refusing bodies that decode
  past a byte cap or inflate far more than any real answer or video would (a few hundred
  kilobytes of gzip can inflate to gigabytes).
  ``decode_json`` refuses undecodable and absurdly nested JSON with a typed error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from hailuo import decisions, errors

#: Decoded bytes handed out per piece when inflating (``decisions.CappedBody`` decodes).
PIECE = decisions.PIECE
#: A body may decode to this much before the inflation ratio is looked at.
RATIO_FLOOR = decisions.RATIO_FLOOR
#: The most a body may inflate (decoded / received bytes, past ``RATIO_FLOOR``): real
#: JSON compresses maybe 10x, a video not at all; a thousand-fold "video" is a bomb.
MAX_INFLATION = 50.0
#: JSON nesting deeper than this is refused (real answers are 4-5 levels deep).
MAX_JSON_DEPTH = 64

_local = threading.local()


# -- deadlines ------------------------------------------------------------------------
@contextmanager
def deadline(seconds: float | None) -> Iterator[float | None]:
    """Bound every guarded call made inside by ``seconds`` from now (None: no new bound).

    Nested bounds keep the earliest, so ``wait(timeout=...)`` bounds the status calls it
    makes even though each also has its own bound."""
    outer = getattr(_local, "deadline", None)
    if seconds is None:
        yield outer
        return
    mine = time.monotonic() + max(0.0, seconds)
    _local.deadline = mine if outer is None else min(outer, mine)
    try:
        yield _local.deadline
    finally:
        _local.deadline = outer


def current_deadline() -> float | None:
    """The monotonic time the innermost ``deadline`` ends, or None."""
    return getattr(_local, "deadline", None)


def remaining() -> float | None:
    """Seconds left before the current deadline (may be <= 0), or None without one."""
    end = current_deadline()
    return None if end is None else end - time.monotonic()


def expired() -> bool:
    left = remaining()
    return left is not None and left <= 0


# -- addresses ------------------------------------------------------------------------
def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address (not loopback, private, link-local,
    shared, reserved, multicast or unspecified; IPv4-mapped IPv6 judged as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    return bool(ip.is_global and not ip.is_multicast and not ip.is_reserved
                and not ip.is_unspecified)


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` and names under it, 127.0.0.0/8 and ::1."""
    host = (host or "").strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _literal(host: str) -> str | None:
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return host


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


class AddressPolicy:
    """Which hosts a download may connect to.

    ``allow_private`` lets anything through (a local base URL: the simulator, a test
    server); otherwise every address a host has must be public, except hosts named in
    ``allowed_hosts`` (exact, case-insensitive)."""

    def __init__(self, *, allow_private: bool, allowed_hosts: Collection[str] = ()) -> None:
        self.allow_private = allow_private
        self.allowed_hosts = frozenset(h.strip("[]").lower() for h in allowed_hosts)

    def exempt(self, host: str) -> bool:
        return self.allow_private or host.strip("[]").lower() in self.allowed_hosts

    def refuse(self, host: str, address: str) -> errors.DownloadRefusedError:
        shown = host if address == host else f"{host} ({address})"
        return errors.DownloadRefusedError(
            f"refusing to download from {shown[:120]}: not a public address (loopback, "
            "private, link-local or reserved ranges are only allowed when the client's "
            "base URL is itself local)", host=host[:120], address=address)

    def check_addresses(self, host: str, addresses: list[str]) -> None:
        if self.exempt(host):
            return
        for address in addresses:
            if not is_public_address(address):
                raise self.refuse(host, address)

    def check_url(self, url: str | httpx.URL, *, resolve: bool) -> None:
        """Refuse a URL that is not http(s) or whose host is not public.

        ``resolve``: also look names up (a name that does not resolve is let through:
        the connection will fail on its own, and the backend checks again)."""
        parts = urlsplit(str(url))
        if parts.scheme.lower() not in ("http", "https"):
            raise errors.DownloadRefusedError(
                f"refusing to download a {parts.scheme or 'relative'!r} URL; only http(s)",
                scheme=parts.scheme[:20])
        host = parts.hostname or ""
        if not host:
            raise errors.DownloadRefusedError("refusing to download a URL without a host")
        if self.exempt(host):
            return
        literal = _literal(host)
        if literal is not None:
            self.check_addresses(host, [literal])
            return
        if is_loopback_host(host):
            raise self.refuse(host, host)
        if resolve:
            try:
                addresses = _resolve(host, parts.port or (443 if parts.scheme == "https"
                                                          else 80))
            except (OSError, UnicodeError):
                return
            self.check_addresses(host, addresses)


# -- the address check at connect time (both backends) ----------------------------------
def connect_targets(policy: AddressPolicy | None, host: str, port: int) -> list[str]:
    """The addresses a connection to ``host`` may be made to, checked against ``policy``
    when the connection is made: ``[host]`` without a policy or for an exempt host, else
    the literal address or every address the name resolves to, each of which must be
    public (``DownloadRefusedError`` otherwise; a name that does not resolve is an
    ``httpcore.ConnectError``). The backends connect only to these, so a name cannot
    resolve to a public address for the check and a private one for the connection.
    Resolving may block: ``resolves_at_connect`` says when (the async backend then calls
    this in a worker thread)."""
    if policy is None or policy.exempt(host):
        return [host]
    literal = _literal(host)
    try:
        targets = [literal] if literal else _resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host[:120]}: {exc}") from None
    policy.check_addresses(host, targets)
    return targets


def resolves_at_connect(policy: AddressPolicy | None, host: str) -> bool:
    """Whether ``connect_targets`` looks ``host`` up (a name under a policy)."""
    return policy is not None and not policy.exempt(host) and _literal(host) is None


class _ConnectAttempts:
    """The checked addresses tried in turn: ``with attempts:`` around one connect keeps a
    ``ConnectError`` / ``ConnectTimeout`` and lets the next address be tried;
    ``failed()`` is the last of them, to raise when none connected."""

    def __init__(self) -> None:
        self.last: Exception | None = None

    def __enter__(self) -> _ConnectAttempts:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, httpcore.ConnectError | httpcore.ConnectTimeout):
            self.last = exc
            return True
        return False

    def failed(self) -> Exception:
        assert self.last is not None
        return self.last


def _wrap_backend(transport: httpx.HTTPTransport | httpx.AsyncHTTPTransport,
                  wrap: Callable[[Any], Any]) -> None:
    """Put ``wrap(backend)`` in place of the network backend of ``transport``'s pool; if
    this httpx/httpcore does not expose it, the transport stays unguarded (the callers'
    own checks between chunks and before each hop still apply)."""
    pool = getattr(transport, "_pool", None)
    if pool is not None and hasattr(pool, "_network_backend"):
        pool._network_backend = wrap(pool._network_backend)


# -- a network backend that obeys deadlines and address policies ------------------------
def _bounded(timeout: float | None, default_end: float | None, kind: type[Exception]
             ) -> float | None:
    end = current_deadline()
    if end is None:
        end = default_end
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise kind("the call's total deadline has passed")
    return left if timeout is None else min(timeout, left)


class _GuardedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, default_seconds: float | None) -> None:
        self._inner = inner
        self._default = default_seconds
        self._request_end: float | None = None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._default is not None:  # a new request starts its default bound
            self._request_end = time.monotonic() + self._default
        self._inner.write(buffer, _bounded(timeout, self._request_end, httpcore.WriteTimeout))

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes,
                                _bounded(timeout, self._request_end, httpcore.ReadTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, None, httpcore.ConnectTimeout)
        return _GuardedStream(self._inner.start_tls(ssl_context, server_hostname, timeout),
                              self._default)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend with deadlines on every operation and, for downloads, an
    address policy checked on the addresses actually connected to."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None, *,
                 policy: AddressPolicy | None = None,
                 default_seconds: float | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()
        self.policy = policy
        self.default_seconds = default_seconds

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None
                    ) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, None, httpcore.ConnectTimeout)
        attempts = _ConnectAttempts()
        for target in connect_targets(self.policy, host, port):  # only checked addresses
            with attempts:
                return _GuardedStream(self._inner.connect_tcp(target, port, timeout,
                                                              local_address, socket_options),
                                      self.default_seconds)
        raise attempts.failed()

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, None, httpcore.ConnectTimeout)
        return _GuardedStream(self._inner.connect_unix_socket(path, timeout, socket_options),
                              self.default_seconds)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_transport(verify: Any, *, policy: AddressPolicy | None = None,
                      default_seconds: float | None = None) -> httpx.HTTPTransport:
    """An ``httpx.HTTPTransport`` whose connections obey deadlines (and ``policy``).

    If this httpx/httpcore does not expose the pool's backend, the transport is returned
    unguarded: the callers' own checks between chunks and before each hop still apply."""
    transport = httpx.HTTPTransport(verify=verify)
    _wrap_backend(transport, lambda inner: GuardedBackend(
        inner, policy=policy, default_seconds=default_seconds))
    return transport


class GuardedAsyncBackend(httpcore.AsyncNetworkBackend):
    """httpcore's async backend with the download address policy checked on the addresses
    actually connected to (``connect_tcp`` asks ``connect_targets``, as
    ``GuardedBackend`` does); deadlines are enforced by the async client cancelling its
    I/O instead. Names are resolved in a worker thread, so a slow resolver never blocks
    the event loop."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, policy: AddressPolicy) -> None:
        self._inner = inner
        self.policy = policy

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None
                          ) -> httpcore.AsyncNetworkStream:
        targets = (await asyncio.to_thread(connect_targets, self.policy, host, port)
                   if resolves_at_connect(self.policy, host)
                   else connect_targets(self.policy, host, port))
        attempts = _ConnectAttempts()
        for target in targets:  # only checked addresses
            with attempts:
                return await self._inner.connect_tcp(target, port, timeout, local_address,
                                                     socket_options)
        raise attempts.failed()

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_async_transport(verify: Any, limits: httpx.Limits, *,
                            policy: AddressPolicy | None = None
                            ) -> httpx.AsyncHTTPTransport:
    """An ``httpx.AsyncHTTPTransport``, its connections checked against ``policy`` (if
    this httpx/httpcore does not expose the pool's backend, it is returned unguarded: the
    check of each link and hop before it is fetched still applies)."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    if policy is not None:
        _wrap_backend(transport, lambda inner: GuardedAsyncBackend(inner, policy))
    return transport


# -- bounded decoding -----------------------------------------------------------------
def _decoded(body: decisions.CappedBody, response: httpx.Response) -> Iterator[bytes]:
    """``response``'s body through ``body``: the raw pieces as the socket delivers them (or
    the whole body at once, when httpx read it already: ``httpx.MockTransport``)."""
    source = [response.content] if response.is_stream_consumed else response.iter_raw()
    for raw in source:
        yield from body.feed(raw)
    yield from body.finish()


def capped_chunks(response: httpx.Response, *, limit: int, max_ratio: float, what: str,
                  too_large: Callable[[str], Exception],
                  unreadable: Callable[[str], Exception],
                  counted: list[int] | None = None) -> Iterator[bytes]:
    """The decoded body of a streamed ``response``, piece by piece, never more than
    ``limit`` decoded bytes and never inflating more than ``max_ratio`` times the bytes
    received (past ``RATIO_FLOOR``): the rules of ``decisions.CappedBody``, which decodes
    gzip and deflate in bounded pieces and refuses any other Content-Encoding.
    ``counted`` (if given) receives ``[raw bytes, decoded bytes]`` as the body goes."""
    yield from _decoded(decisions.CappedBody(
        response.headers, limit=limit, max_ratio=max_ratio, what=what, too_large=too_large,
        unreadable=unreadable, consumed=response.is_stream_consumed, counted=counted),
        response)


def answer_decoder(response: httpx.Response, *, limit: int, what: str
                   ) -> decisions.CappedBody:
    """The capped decoder of an API answer (``read_capped``, and the async client's GET):
    too large or a bomb is ``AnswerTooLargeError``, undecodable ``UnreadableAnswerError``,
    both with the answer's HTTP status."""
    status = response.status_code
    return decisions.CappedBody(
        response.headers, limit=limit, max_ratio=MAX_INFLATION, what=what,
        too_large=lambda m: errors.AnswerTooLargeError(m, http_status=status),
        unreadable=lambda m: errors.UnreadableAnswerError(m, http_status=status),
        consumed=response.is_stream_consumed)


def answer_read(response: httpx.Response, request: httpx.Request, body: bytes
                ) -> httpx.Response:
    """``response`` with its decoded ``body``, already read (its encoding and length
    headers dropped: they described the body as sent)."""
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx.Response(response.status_code, headers=headers, content=body,
                          request=request)


def read_capped(http: httpx.Client, request: httpx.Request, *, limit: int,
                what: str) -> httpx.Response:
    """Send ``request`` and read the whole answer, at most ``limit`` decoded bytes and
    never a decompression bomb (``answer_decoder``); returns the answer already read, its
    body decoded (so its encoding headers are dropped). Every client reads API answers
    this way: the status and file answers of the video client, the media APIs' answers."""
    response = http.send(request, stream=True)
    try:
        body = b"".join(_decoded(answer_decoder(response, limit=limit, what=what),
                                 response))
    finally:
        response.close()
    return answer_read(response, request, body)


def decode_json(raw: bytes, *, what: str) -> Any:
    """JSON from bytes, or ``UnreadableAnswerError`` for invalid UTF-8, invalid JSON, or
    nesting deeper than ``MAX_JSON_DEPTH``."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except RecursionError:
        raise errors.UnreadableAnswerError(f"{what} is JSON nested absurdly deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.UnreadableAnswerError(
            f"{what} is not valid JSON ({type(exc).__name__})") from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise errors.UnreadableAnswerError(
            f"{what} is JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


__all__ = ["AddressPolicy", "GuardedAsyncBackend", "GuardedBackend", "answer_decoder",
           "answer_read", "capped_chunks", "connect_targets", "current_deadline", "deadline",
           "decode_json", "expired", "guarded_async_transport", "guarded_transport",
           "is_loopback_host", "is_public_address", "read_capped", "remaining",
           "resolves_at_connect"]
