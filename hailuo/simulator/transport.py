"""Closing a TCP connection from inside an ASGI app: dropped requests, truncated bodies.

Why this exists: the worst real-world failure of a submit is the connection dying with
no answer at all (did the provider create the task?). ASGI gives an app no handle on the
socket, so ``SimulatorH11Protocol`` (uvicorn's h11 protocol, one hook added) puts a
``ConnectionControl`` into each request's ``scope["state"]`` - the per-request copy of
the lifespan state that uvicorn already passes along - and the app closes the transport
through it. The client then sees exactly what a dead connection gives it: no status
line, ``httpx.RemoteProtocolError`` ("Server disconnected without sending a response")
or a read error.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.responses import Response
from uvicorn.protocols.http.h11_impl import H11Protocol

STATE_KEY = "hailuo_sim.connection"


class ConnectionControl:
    """A handle on one client connection: close it and wait until uvicorn has noticed."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.lost = asyncio.Event()

    async def close(self, *, abort: bool = False, wait: float = 2.0) -> None:
        """Close (flushing what was already written) or abort (RST), then wait for the loss.

        Waiting matters: once uvicorn has seen ``connection_lost`` it marks the request
        cycle disconnected, so whatever the app still sends is silently dropped instead
        of being reported as a protocol error.
        """
        if abort:
            self.transport.abort()
        else:
            self.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.lost.wait(), wait)


class SimulatorH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, exposing a ``ConnectionControl`` to the app per connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.control = ConnectionControl(transport)
        # Per-connection copy: every request scope on this connection gets its control.
        self.app_state = {**self.app_state, STATE_KEY: self.control}

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        control = getattr(self, "control", None)
        if control is not None:
            control.lost.set()


def connection_control(scope: dict[str, Any]) -> ConnectionControl | None:
    """The control for this request, or None when not served by ``SimulatorH11Protocol``."""
    state = scope.get("state") or {}
    return state.get(STATE_KEY)


class DropConnection(Response):
    """A "response" that answers nothing and closes the connection.

    A ``Response`` subclass only so routes can return it. Fallback when served by
    another server: send a status line promising a body, then stop, which uvicorn also
    turns into a closed connection (the client sees an incomplete response instead of
    none at all).
    """

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        control = connection_control(scope)
        if control is not None:
            await control.close()
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"64")]})
