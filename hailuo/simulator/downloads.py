"""Streaming a rendered file the way a CDN does: Content-Length, HEAD, Range, CDN errors.

Why a hand-written ASGI response: the truncation fault needs to promise the full
Content-Length, send only part of the body and then close the socket, which no stock
response class can do. Files are streamed in chunks, never read whole into memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.responses import Response

from hailuo.simulator.transport import connection_control

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def cdn_error(status: int, code: str, message: str) -> Response:
    """A small XML error body like an object store's (403 bad signature, 410 expired)."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>\n")
    return Response(body, status_code=status, media_type="application/xml")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive) for a single satisfiable range, None for no range,
    or "unsatisfiable"."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None  # malformed or multi-range: ignored, as many servers do
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


class FileStream(Response):
    """Streams ``path``; with ``truncate`` it stops halfway and hangs up.

    A ``Response`` subclass only so routes can return it; ``__call__`` does the work.
    """

    def __init__(self, path: Path, *, method: str, range_header: str | None,
                 truncate: bool = False) -> None:
        super().__init__()
        self.path = path
        self.size = path.stat().st_size
        self.method = method
        self.truncate = truncate
        self.range = parse_range(range_header, self.size)

        self.status_code = 416 if self.range == "unsatisfiable" else 206 if self.range else 200

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"accept-ranges", b"bytes"), (b"content-type", b"video/mp4")]
        if self.range == "unsatisfiable":
            headers = [(b"content-range", f"bytes */{self.size}".encode()),
                       (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 416, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        start, end = self.range if isinstance(self.range, tuple) else (0, self.size - 1)
        length = end - start + 1
        headers.append((b"content-length", str(length).encode()))
        if isinstance(self.range, tuple):
            headers.append((b"content-range", f"bytes {start}-{end}/{self.size}".encode()))
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": headers})
        if self.method == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        to_send = length // 2 if self.truncate else length
        with self.path.open("rb") as handle:
            handle.seek(start)
            while to_send > 0:
                chunk = handle.read(min(CHUNK, to_send))
                if not chunk:
                    break
                to_send -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if self.truncate:
            control = connection_control(scope)
            if control is not None:
                await control.close()
            return  # without the control, uvicorn closes an incomplete response itself
        await send({"type": "http.response.body", "body": b""})
