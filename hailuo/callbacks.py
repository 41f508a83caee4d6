"""``CallbackReceiver``: a tiny HTTP endpoint that wakes a waiting task when the provider calls.

Why: a render takes 30-90 s and ``HailuoClient.wait`` polls with growing intervals, so
without callbacks a finished video can sit unnoticed for up to ``max_interval`` seconds.
Both providers can POST status changes to a URL; this receiver turns such a POST into
``threading.Event.set()`` on the event the client's ``wait(wake=...)`` sleeps on, and the
client re-polls at once. The callback is only a *hint*: the job the wait returns always
comes from the client's own status call, so a forged, late or out-of-order callback can at
most cause one extra poll. Polling stays the fallback when no callback ever arrives.

Why the standard library's ``ThreadingHTTPServer``: it starts in milliseconds, needs no
event loop (tasks may already run inside one), and the load is a handful of small POSTs
per video. One thread per connection; idle keep-alive connections time out.

What it speaks (``api-contract.md`` sections 1 and 2):

* MiniMax POSTs to ``callback_url`` itself: first ``{"challenge": "..."}``, which must be
  echoed within 3 s, then query-shaped bodies with lowercase statuses: flat ones for v1
  (Hailuo-02/2.3), ``{"task": {...}}`` for v2 (MiniMax-H3 / H3-Max).
* APIMart POSTs to ``<webhook>/callback`` a body identical to ``GET /v1/tasks/{id}``,
  retrying on 5xx / no answer and stopping on 4xx, so unknown task ids get a 200.

Security (a callback URL is public and anyone may POST to it):

* a shared ``token`` query parameter, random by default (``url_for`` carries it; compared
  in constant time; never logged). ``insecure_no_token=True`` turns it off, e.g. behind a
  proxy that authenticates;
* bodies are size-limited and never logged; task ids must be safe ids (``hailuo.ids``);
* at most ``max_connections`` open connections, each closed after
  ``connection_max_seconds`` whatever it is doing (a trickling client cannot pin a thread);
* wake-ups caused by unparseable callbacks are rate-limited per task;
* duplicates are judged on the body's content, and a status that the client's own poll
  contradicts is forgotten (``confirm``): a forged early "completed" cannot make the real
  one be dropped as its duplicate.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from hailuo import errors, redact
from hailuo.capabilities import Provider
from hailuo.ids import is_safe_id
from hailuo.models import Job
from hailuo.providers import dialect_for

if TYPE_CHECKING:
    from hailuo.client import HailuoClient

log = logging.getLogger("hailuo.callbacks")
log.addFilter(redact.LogScrubber())

#: Largest callback body accepted. Real ones are well under 2 KB.
DEFAULT_MAX_BODY = 64 * 1024
#: APIMart appends this to the webhook URL it was given.
APIMART_SUFFIX = "/callback"


class _BodyError(Exception):
    """A request body we refuse; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # never block shutdown on a slow or idle client
    request_queue_size = 128  # the stdlib's 5 resets connections under a burst of callbacks
    receiver: CallbackReceiver

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, but never more than ``max_connections`` at once:
        beyond that a connection gets a 503 (providers retry) and is closed."""
        slots = self.receiver._slots
        if not slots.acquire(blocking=False):
            self.receiver._count("refused_connections")
            with contextlib.suppress(OSError):
                request.settimeout(0.2)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Retry-After: 1\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.receiver._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


def detect_provider(body: dict[str, Any]) -> Provider | None:
    """The provider whose callback shape ``body`` has, or None.

    APIMart wraps the task in ``{"code", "data": {"id", ...}}``; MiniMax's v1 body is flat,
    with ``task_id`` and ``base_resp``; MiniMax's v2 (H3) body is the query's
    ``{"task": {"id", "status", ...}}``.
    """
    if isinstance(body.get("data"), dict):
        return Provider.APIMART
    if "task_id" in body or "base_resp" in body or is_v2_callback(body):
        return Provider.MINIMAX
    return None


def is_v2_callback(body: dict[str, Any]) -> bool:
    """A MiniMax video v2 (H3) callback: shaped like the query answer, ``{"task": {...}}``
    with lowercase statuses (api-contract-v2.md 1.7)."""
    return isinstance(body.get("task"), dict)


def _task_id_of(body: dict[str, Any]) -> str:
    data = body.get("data")
    raw = (data.get("id") or data.get("task_id")) if isinstance(data, dict) else None
    task = body.get("task")
    if not raw and isinstance(task, dict):
        raw = task.get("id")
    raw = raw or body.get("task_id")
    return str(raw) if raw not in (None, "") else ""


def _parse_callback(provider: Provider, task_id: str, body: dict[str, Any]) -> Job:
    """The job a callback body reports, in its dialect (v2 for an H3 body on MiniMax)."""
    if provider is Provider.MINIMAX and is_v2_callback(body):
        from hailuo.providers.minimax_v2 import V2_DIALECT

        return V2_DIALECT.parse_status(task_id, 200, body, None)
    return dialect_for(provider).parse_status(task_id, 200, body, None)


def _strip_suffix(value: str) -> str:
    """``abc/callback`` -> ``abc``.

    APIMart appends ``/callback`` to the webhook string; when the webhook carried a query
    (``...?token=abc``) the suffix lands on the last query value instead of the path.
    """
    return value[: -len(APIMART_SUFFIX)] if value.endswith(APIMART_SUFFIX) else value


class CallbackReceiver:
    """Receives provider callbacks and wakes the matching ``HailuoClient.wait``.

    ``CallbackReceiver(port=0)`` serves on a free port of 127.0.0.1; an operator exposing
    it through a tunnel or proxy passes ``public_url`` so ``url_for`` hands providers the
    reachable address. ``path`` is the path the receiver is mounted on (``"/hooks"``):
    POSTs to ``<path>`` and ``<path>/callback`` are accepted, also when a reverse proxy
    forwards them under an extra outer prefix. ``provider`` pins the body dialect;
    by default it is detected from each body's shape.

    ``renudge`` re-sets a task's event this many seconds after a terminal callback, while
    the task is still registered: if the provider's status GET lags its callback, the
    woken client re-polls soon instead of sleeping a full poll interval.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        path: str = "",
        token: str | None = None,
        provider: Provider | str | None = None,
        public_url: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        connection_timeout: float = 15.0,
        remember_unknown: int = 256,
        renudge: Iterable[float] = (1.0, 3.0),
        insecure_no_token: bool = False,
        max_connections: int = 64,
        connection_max_seconds: float = 60.0,
        unparseable_wake_interval: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self.path = "/" + path.strip("/") if path.strip("/") else ""
        # A random token unless one is given or explicitly refused: an open callback URL
        # lets anyone wake (and so poll) our waits.
        self.token = token or (None if insecure_no_token else secrets.token_urlsafe(24))
        self.max_connections = max_connections
        self.connection_max_seconds = connection_max_seconds
        self.unparseable_wake_interval = unparseable_wake_interval
        self._slots = threading.BoundedSemaphore(max(1, max_connections))
        self._unparseable_woken: dict[str, float] = {}
        self.provider = Provider(provider) if provider is not None else None
        self.public_url = public_url.rstrip("/") if public_url else None
        self.max_body = max_body
        self.connection_timeout = connection_timeout
        self.remember_unknown = remember_unknown
        self.renudge = tuple(renudge)
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._latest: dict[str, Job] = {}
        self._timers: dict[str, list[threading.Timer]] = {}
        # Dedupe memory and callbacks that arrived before ``register`` (a fast task can
        # report before the submitting code has registered its id). Both are bounded.
        # Dedupe memory: task id -> {(status, body digest): status}.
        self._seen: OrderedDict[str, dict[tuple[str, str], Any]] = OrderedDict()
        self._early: OrderedDict[str, Job] = OrderedDict()
        self._stats = {"received": 0, "duplicates": 0, "ignored_unknown": 0, "rejected": 0,
                       "challenges": 0, "woken": 0, "unparseable": 0,
                       "unparseable_not_woken": 0, "refused_connections": 0,
                       "forgotten_unconfirmed": 0}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> CallbackReceiver:
        """Bind and serve in a daemon thread; returns at once (the socket is listening)."""
        if self._server is not None:
            return self
        cls = _Server6 if ":" in self.host else _Server
        server = cls((self.host, self.port), _make_handler(self))
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="hailuo-callbacks", daemon=True)
        self._thread.start()
        log.info("callback receiver listening on %s%s", self.url, self.path)
        return self

    def stop(self) -> None:
        """Stop serving and release the port; pending wake-up timers are cancelled."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            timers = [t for ts in self._timers.values() for t in ts]
            self._timers.clear()
        for timer in timers:
            timer.cancel()

    def __enter__(self) -> CallbackReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """The local base URL (``http://127.0.0.1:PORT``), without ``path`` or token."""
        if self._server is None:
            raise RuntimeError("the callback receiver is not started")
        host, port = self._server.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(str(host), str(host))
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def url_for(self, task_id: str | None = None) -> str:
        """The URL to give the provider (``callback_url`` / ``webhook``).

        Includes ``path`` and the token when set. ``task_id`` (optional) is added as a
        query parameter and used when a body names no task; the id is rarely known before
        submit, so usually leave it out.
        """
        base = self.public_url or self.url
        query = {}
        if self.token:
            query["token"] = self.token
        if task_id:
            query["task_id"] = task_id
        url = base + self.path
        return f"{url}?{urlencode(query)}" if query else url

    # ------------------------------------------------------------------ registry
    def register(self, task_id: str) -> threading.Event:
        """Start caring about ``task_id``; the event is set on each new status for it.

        If a callback for the task already arrived (before registration), the event is
        returned already set and ``latest`` has its status.
        """
        with self._lock:
            event = self._events.get(task_id)
            if event is None:
                event = self._events[task_id] = threading.Event()
            early = self._early.pop(task_id, None)
            if early is not None:
                self._latest[task_id] = early
                event.set()
        return event

    def unregister(self, task_id: str) -> None:
        """Stop caring about ``task_id``; later callbacks for it are acknowledged and ignored."""
        with self._lock:
            self._events.pop(task_id, None)
            self._latest.pop(task_id, None)
            self._unparseable_woken.pop(task_id, None)
            timers = self._timers.pop(task_id, [])
        for timer in timers:
            timer.cancel()

    def registered(self) -> list[str]:
        with self._lock:
            return list(self._events)

    def latest(self, task_id: str) -> Job | None:
        """The most recent status a callback reported for a registered task (a hint only)."""
        with self._lock:
            return self._latest.get(task_id)

    def stats(self) -> dict[str, int]:
        """Counters: received (parsed status bodies), duplicates, ignored_unknown,
        rejected (4xx answers), challenges (MiniMax handshakes), woken (events set),
        unparseable (and unparseable_not_woken: rate-limited), refused_connections
        (over ``max_connections``), forgotten_unconfirmed (callbacks a poll contradicted)."""
        with self._lock:
            return dict(self._stats)

    def confirm(self, job: Job) -> None:
        """What the client's own status poll showed for ``job.task_id``.

        Callbacks that claimed another status were not confirmed - late, early or forged
        - and are forgotten: the genuine callback of that status, when it comes, is not
        dropped as their duplicate and wakes the wait. The hint (``latest``) becomes the
        polled job."""
        with self._lock:
            seen = self._seen.get(job.task_id)
            if seen:
                for key, status in list(seen.items()):
                    if status is not job.status:
                        del seen[key]
                        self._stats["forgotten_unconfirmed"] += 1
            if job.task_id in self._events:
                self._latest[job.task_id] = job

    # ------------------------------------------------------------------ handling
    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    def _path_ok(self, path: str) -> bool:
        path = path.rstrip("/")
        if path.endswith(APIMART_SUFFIX):
            path = path[: -len(APIMART_SUFFIX)].rstrip("/")
        return path.endswith(self.path) if self.path else True

    def _token_ok(self, query: dict[str, list[str]]) -> bool:
        if not self.token:
            return True
        given = [_strip_suffix(v) for v in query.get("token", [])]
        return any(hmac.compare_digest(v.encode(), self.token.encode()) for v in given)

    def handle(self, path: str, query: dict[str, list[str]], body: dict[str, Any]
               ) -> tuple[int, dict[str, Any]]:
        """One parsed POST -> (HTTP status, JSON answer). Never raises for bad input."""
        if "challenge" in body:
            challenge = body["challenge"]
            if not isinstance(challenge, str | int | float) or isinstance(challenge, bool):
                return 400, {"error": "challenge must be a string"}
            self._count("challenges")
            return 200, {"challenge": challenge}
        provider = self.provider or detect_provider(body)
        if provider is None:
            return 400, {"error": "not a known callback shape"}
        hinted = [_strip_suffix(v) for v in query.get("task_id", []) if v]
        task_id = _task_id_of(body) or (hinted[0] if hinted else "")
        if not task_id:
            return 400, {"error": "no task id"}
        if not is_safe_id(task_id):
            return 400, {"error": "not a valid task id"}
        try:
            job = _parse_callback(provider, task_id, body)
            if job.task_id != task_id:
                raise errors.TaskIdMismatchError("the body names two task ids")
        except (errors.HailuoError, ValueError, TypeError, AttributeError, KeyError,
                IndexError, RecursionError) as exc:
            # Unparseable for us, but the task may still have changed: let its wait re-poll
            # - at most once per ``unparseable_wake_interval``, so a flood of junk cannot
            # turn into a flood of status calls.
            self._count("unparseable")
            log.warning("unparseable %s callback for task %s: %s", provider.value, task_id,
                        type(exc).__name__)
            if self._may_wake_unparseable(task_id):
                self._wake(task_id, terminal=False)
            return 400, {"error": "unparseable status body"}
        return 200, self._accept(job, _digest(body))

    def _may_wake_unparseable(self, task_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if task_id not in self._events:
                return False
            last = self._unparseable_woken.get(task_id)
            if last is not None and now - last < self.unparseable_wake_interval:
                self._stats["unparseable_not_woken"] += 1
                return False
            self._unparseable_woken[task_id] = now
            return True

    def _accept(self, job: Job, digest: str = "") -> dict[str, Any]:
        key = (job.status.value, digest)
        with self._lock:
            self._stats["received"] += 1
            seen = self._seen.setdefault(job.task_id, {})
            self._seen.move_to_end(job.task_id)
            while len(self._seen) > max(4096, 4 * self.remember_unknown):
                self._seen.popitem(last=False)
            if key in seen:
                self._stats["duplicates"] += 1
                return {"ok": True, "duplicate": True}
            seen[key] = job.status
            if job.task_id not in self._events:
                self._stats["ignored_unknown"] += 1
                if self.remember_unknown > 0:
                    self._early[job.task_id] = job
                    self._early.move_to_end(job.task_id)
                    while len(self._early) > self.remember_unknown:
                        self._early.popitem(last=False)
                log.debug("callback for unregistered task %s (%s) ignored", job.task_id, key)
                return {"ok": True, "ignored": True}
            previous = self._latest.get(job.task_id)
            # Out of order ("processing" after "success"): keep the terminal status.
            if previous is None or not previous.status.terminal or job.status.terminal:
                self._latest[job.task_id] = job
        log.info("callback: task %s is %s", job.task_id, job.status.value)
        self._wake(job.task_id, terminal=job.status.terminal)
        return {"ok": True}

    def _wake(self, task_id: str, *, terminal: bool) -> None:
        with self._lock:
            event = self._events.get(task_id)
            if event is None:
                return
            self._stats["woken"] += 1
            event.set()
            if not terminal or not self.renudge:
                return
            timers = [threading.Timer(delay, self._renudge, (task_id, event))
                      for delay in self.renudge]
            self._timers.setdefault(task_id, []).extend(timers)
        for timer in timers:
            timer.daemon = True
            timer.start()

    def _renudge(self, task_id: str, event: threading.Event) -> None:
        with self._lock:
            if self._events.get(task_id) is event:
                event.set()


def _digest(body: Any) -> str:
    """A short digest of a callback body's content (key order ignored)."""
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(body)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:24]


def _make_handler(receiver: CallbackReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.receiver = receiver
    Handler.timeout = receiver.connection_timeout
    return Handler


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive (providers reuse connections); JSON in, JSON out."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms.
    disable_nagle_algorithm = True
    server_version = "hailuo-callbacks"
    sys_version = ""
    receiver: CallbackReceiver
    _reaper: threading.Timer | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # the stdlib logs the request line with its query (the token): never do that

    def setup(self) -> None:
        super().setup()
        # However slowly a client sends, its connection (and thread) ends at this bound.
        limit = self.receiver.connection_max_seconds
        self._reaper: threading.Timer | None = None
        if limit and limit > 0:
            self._reaper = threading.Timer(limit, self._reap)
            self._reaper.daemon = True
            self._reaper.start()

    def _reap(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        with contextlib.suppress(OSError):
            super().finish()

    def _send(self, status: int, payload: dict[str, Any], *, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        if status >= 400:
            self.receiver._count("rejected")
            log.info("callback %s %s answered %d", self.command, urlsplit(self.path).path,
                     status)

    def _read_body(self) -> bytes:
        limit = self.receiver.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _BodyError(400, "bad Content-Length") from None
        if size < 0:
            raise _BodyError(400, "bad Content-Length")
        if size > limit:
            raise _BodyError(413, "body too large")
        data = self.rfile.read(size)
        if len(data) != size:
            raise _BodyError(400, "body shorter than Content-Length")
        return data

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "bad chunk") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if size < 0 or len(body) + size > limit:
                raise _BodyError(413, "body too large")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _BodyError(400, "truncated chunk")
            body += chunk
            self.rfile.readline(8)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        started = time.monotonic()
        try:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            receiver = self.receiver
            if not receiver._path_ok(parts.path):
                self._send(404, {"error": "not found"}, close=True)
                return
            if not receiver._token_ok(query):
                self._send(403, {"error": "forbidden"}, close=True)
                return
            try:
                raw = self._read_body()
            except _BodyError as exc:
                self._send(exc.status, {"error": exc.reason}, close=True)
                return
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                self._send(400, {"error": "body is not JSON"})
                return
            if not isinstance(body, dict):
                self._send(400, {"error": "body is not a JSON object"})
                return
            status, answer = receiver.handle(parts.path, query, body)
            self._send(status, answer)
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        except Exception:  # never let one request take the receiver down
            log.exception("callback handler failed")
            with contextlib.suppress(Exception):
                self._send(500, {"error": "internal error"}, close=True)
        finally:
            log.debug("callback handled in %.1f ms", (time.monotonic() - started) * 1000)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """A health check for operators and load balancers (no token needed, no data)."""
        if not self.receiver._path_ok(urlsplit(self.path).path):
            self._send(404, {"error": "not found"})
            return
        self._send(200, {"status": "ok"})


def wait_with_callbacks(
    client: HailuoClient,
    job: Job | str,
    receiver: CallbackReceiver,
    timeout: float = 1800.0,
    on_update: Callable[[Job], None] | None = None,
) -> Job:
    """``client.wait`` that also wakes on callbacks: registers the task, waits, unregisters.

    The result (and any failure) comes from the client's own status calls; the callback
    only shortens the sleep, so completion is noticed within about a second of the
    provider's callback instead of at the next scheduled poll.
    """
    if receiver.provider is not None and receiver.provider is not client.provider:
        raise ValueError(f"receiver is pinned to {receiver.provider.value}, the client talks "
                         f"to {client.provider.value}")
    task_id = job.task_id if isinstance(job, Job) else job
    event = receiver.register(task_id)

    def polled(current: Job) -> None:
        receiver.confirm(current)  # what a poll showed outranks what callbacks claimed
        if on_update is not None:
            on_update(current)

    try:
        return client.wait(job, timeout=timeout, on_update=polled, wake=event)
    finally:
        receiver.unregister(task_id)


__all__ = ["CallbackReceiver", "detect_provider", "wait_with_callbacks"]
