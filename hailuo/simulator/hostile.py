"""Hostile or broken answers on request (issue 13, part C), over real HTTP.

Each knob of ``SimulatorConfig``'s "Hostile answers" section turns one way a provider (or
whatever sits between us and it) can misbehave into a real HTTP answer, so the client's
defences are tested against sockets, not mocks:

==========================  =============================================================
knob                        what the simulator does
==========================  =============================================================
``hostile_task_id``         submit and status answers carry this id (``../../etc/x``)
                            instead of the task's own (the task IS created and paid)
``status_id_mismatch``      status answers name another task id
``echo_key_in_errors``      error answers and failure messages echo the caller's key:
                            inside ``Bearer <key>``, URL-encoded, and partly
``gzip_bomb_download``      downloads answer a gzip body inflating ~1000-fold (64 MiB of
                            zeros in ~64 KiB) labelled ``video/mp4``
``huge_status_body``        status answers are 4 MiB of valid-looking JSON, streamed
``deep_json``               submit (after creating the task) and status answers are JSON
                            nested 100 000 levels deep
``trickle_bytes``           status answers and downloads are sent one byte every this
                            many seconds (0: off), until the client hangs up
``redirect_download_to``    downloads answer 302 to this URL; ``{path}`` in it is
                            replaced by the original path and query (plus
                            ``redirected=1``, which is never redirected again)
``undecodable_submit_body`` submit creates the task, then answers bytes that are not JSON
``broken_gzip``             submit (after creating the task) and status answers claim
                            ``Content-Encoding: gzip`` over a corrupt gzip stream
==========================  =============================================================

All default to off. The app calls ``submit_answer``, ``status_answer``,
``download_answer`` and ``echo_key`` at the one place each answer is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.responses import Response

from hailuo.simulator.config import SimulatorConfig

if TYPE_CHECKING:
    from hailuo.simulator.app import Exchange

DEEP = 100_000
HUGE_BYTES = 4 << 20
BOMB_BYTES = 64 << 20
#: A trickle never lasts longer than this, even if the client never hangs up.
TRICKLE_MAX_SECONDS = 600.0


# -- bodies ---------------------------------------------------------------------------
def deep_json() -> bytes:
    return b"[" * DEEP + b"]" * DEEP


def broken_gzip(payload: bytes) -> bytes:
    """A gzip stream with a valid header and a corrupt deflate body."""
    packed = bytearray(gzip.compress(payload))
    for i in range(10, min(len(packed) - 8, 40)):
        packed[i] ^= 0xA5
    return bytes(packed)


@cache
def gzip_bomb() -> bytes:
    """64 MiB of zeros gzipped (~64 KiB): computed once per process."""
    return gzip.compress(b"\0" * BOMB_BYTES, compresslevel=9)


def undecodable() -> bytes:
    return b"\xff\xfe\x00\x81<html>not json{\x00"


def _replace_value(value: Any, old: str, new: Any) -> Any:
    if isinstance(value, dict):
        return {k: _replace_value(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_value(v, old, new) for v in value]
    return new if value == old else value


def _bearer_key(exchange: Exchange) -> str | None:
    header = exchange.request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _echo(message: Any, key: str) -> str:
    piece = key[: max(1, len(key) * 2 // 3)]
    return (f"{message} [request from Authorization: Bearer {key}; "
            f"api_key={quote(key, safe='')}; key prefix {piece}]")


def echo_key(exchange: Exchange, body: Any, status: int) -> Any:
    """``body`` with the caller's key echoed into its error and failure messages."""
    if not exchange.sim.config.echo_key_in_errors or not isinstance(body, dict):
        return body
    key = _bearer_key(exchange)
    if key is None:
        return body
    body = json.loads(json.dumps(body))
    error = body.get("error")
    if isinstance(error, dict) and "message" in error:
        error["message"] = _echo(error["message"], key)
    data = body.get("data")
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data["error"]["message"] = _echo(data["error"].get("message", "failed"), key)
    base = body.get("base_resp")
    if isinstance(base, dict) and base.get("status_code") not in (0, None):
        base["status_msg"] = _echo(base.get("status_msg", "error"), key)
    if status >= 400 and "message" in body:
        body["message"] = _echo(body["message"], key)
    return body


# -- responses ------------------------------------------------------------------------
def raw(exchange: Exchange, content: bytes, fault: str, *, status: int = 200,
        headers: dict[str, str] | None = None,
        media_type: str = "application/json") -> Response:
    exchange.faults.append(fault)
    exchange.finish(status)
    return Response(content, status_code=status, headers=headers, media_type=media_type)


class Trickle(Response):
    """Sends ``content`` one byte every ``interval`` seconds until the client hangs up."""

    def __init__(self, content: bytes, interval: float, *, status: int = 200,
                 media_type: str = "application/json") -> None:
        super().__init__(status_code=status)
        self.content = content
        self.interval = interval
        self.media = media_type

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.get_running_loop().create_task(watch())
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + TRICKLE_MAX_SECONDS
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": [(b"content-type", self.media.encode()),
                                    (b"content-length", str(len(self.content)).encode())]})
            for i in range(len(self.content)):
                if gone.is_set() or loop.time() > stop_at:
                    return
                await send({"type": "http.response.body", "body": self.content[i:i + 1],
                            "more_body": True})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), self.interval)
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()


class Huge(Response):
    """A status-shaped JSON answer of ``HUGE_BYTES``, streamed in pieces."""

    def __init__(self, head: bytes) -> None:
        super().__init__(status_code=200)
        self.head = head

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        tail = b'"}}'
        pad = HUGE_BYTES - len(self.head) - len(tail)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": self.head, "more_body": True})
        piece = b"x" * (64 * 1024)
        while pad > 0:
            chunk = piece[: min(len(piece), pad)]
            pad -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": tail})


def submit_answer(exchange: Exchange, answer: dict[str, Any], task_id: str,
                  status: int) -> Response | dict[str, Any] | None:
    """After a task was created: a hostile Response, a rewritten answer, or None."""
    config: SimulatorConfig = exchange.sim.config
    if config.undecodable_submit_body:
        return raw(exchange, undecodable(), "undecodable_submit_body", status=status)
    if config.deep_json:
        return raw(exchange, deep_json(), "deep_json", status=status)
    if config.broken_gzip:
        return raw(exchange, broken_gzip(json.dumps(answer).encode()), "broken_gzip",
                   status=status, headers={"Content-Encoding": "gzip"})
    if config.hostile_task_id is not None:
        exchange.faults.append("hostile_task_id")
        return _replace_value(answer, task_id, config.hostile_task_id)
    return None


def status_answer(exchange: Exchange, body: dict[str, Any], task_id: str) -> Response:
    """The status answer ``body`` for ``task_id``, made hostile as the knobs say."""
    config: SimulatorConfig = exchange.sim.config
    if config.hostile_task_id is not None:
        exchange.faults.append("hostile_task_id")
        body = _replace_value(body, task_id, config.hostile_task_id)
    elif config.status_id_mismatch:
        exchange.faults.append("status_id_mismatch")
        other = task_id[:-4] + ("0000" if not task_id.endswith("0000") else "1111")
        body = _replace_value(body, task_id, other)
    if config.deep_json:
        return raw(exchange, deep_json(), "deep_json")
    if config.broken_gzip:
        return raw(exchange, broken_gzip(json.dumps(body).encode()), "broken_gzip",
                   headers={"Content-Encoding": "gzip"})
    if config.huge_status_body:
        exchange.faults.append("huge_status_body")
        exchange.finish(200)
        text = json.dumps(body)
        return Huge(text[:-2].encode() + b', "pad": "')
    if config.trickle_bytes > 0:
        exchange.faults.append("trickle")
        exchange.finish(200)
        return Trickle(json.dumps(body).encode(), config.trickle_bytes)
    return exchange.reply(body)


def download_answer(exchange: Exchange, path: Any) -> Response | None:
    """A hostile download answer (the link was valid), or None for the normal file."""
    config: SimulatorConfig = exchange.sim.config
    request = exchange.request
    target = config.redirect_download_to
    if target and request.query_params.get("redirected") != "1":
        if "{path}" in target:
            query = request.url.query
            target = target.replace("{path}", f"{request.url.path}?{query}&redirected=1")
        exchange.faults.append("redirect_download")
        exchange.finish(302)
        return Response(status_code=302, headers={"Location": target})
    if config.gzip_bomb_download:
        return raw(exchange, gzip_bomb(), "gzip_bomb_download", media_type="video/mp4",
                   headers={"Content-Encoding": "gzip"})
    if config.trickle_bytes > 0 and request.method == "GET":
        exchange.faults.append("trickle")
        exchange.finish(200)
        return Trickle(path.read_bytes(), config.trickle_bytes, media_type="video/mp4")
    return None


__all__ = ["download_answer", "echo_key", "status_answer", "submit_answer"]
