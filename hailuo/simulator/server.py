"""Running the simulator in-process on a free port, for tests, the demo and the CLI.

Why bind the socket ourselves: the port is known before uvicorn starts (port 0 asks the
OS for a free one), so there is no race reading it back and no fixed port to collide on.
Why a thread: tests and the demo keep their own event loop (or none) on the main thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from hailuo.simulator.app import create_app
from hailuo.simulator.config import SimulatorConfig
from hailuo.simulator.core import Simulator
from hailuo.simulator.transport import SimulatorH11Protocol


class SimulatorHandle:
    """A running simulator: its URL, live config and what it has seen."""

    def __init__(self, base_url: str, sim: Simulator) -> None:
        self.base_url = base_url
        self._sim = sim

    @property
    def config(self) -> SimulatorConfig:
        return self._sim.config

    @property
    def simulator(self) -> Simulator:
        return self._sim

    def configure(self, **knobs: Any) -> SimulatorConfig:
        """Change fault or timing knobs while running (e.g. ``rpm=2, fail_rate=1``)."""
        return self._sim.configure(**knobs)

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The request log, oldest first, optionally only one kind (submit, status, ...)."""
        return self._sim.state.request_log(kind)

    def callbacks(self) -> list[dict[str, Any]]:
        """Callback deliveries attempted by the simulator, oldest first."""
        return self._sim.state.callback_log()

    def submits(self) -> int:
        """Tasks created by submits: replays excluded, dropped-after-submit included."""
        return self._sim.state.accepted_submits()

    def reset(self, *, tasks: bool = False) -> None:
        """Clear the request and callback logs and rate-limit counters (and tasks)."""
        self._sim.state.reset(tasks=tasks)

    def task(self, task_id: str) -> dict[str, Any]:
        """A task's state with wall-clock timestamps (``render_finished_at``, ...)."""
        task = self._sim.state.task(task_id)
        if task is None:
            raise KeyError(task_id)
        return task.to_admin()

    def tasks(self) -> list[dict[str, Any]]:
        with self._sim.state.lock:
            tasks = list(self._sim.state.tasks.values())
        return [t.to_admin() for t in tasks]


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, config: SimulatorConfig) -> uvicorn.Config:
    """The uvicorn settings the simulator needs (its h11 protocol makes drops possible)."""
    return uvicorn.Config(
        app, host=config.host, port=config.port, http=SimulatorH11Protocol, lifespan="on",
        # log_config=None: uvicorn must not dictConfig() the process's logging. Inside a
        # Prefect flow run that re-configuration flushes Prefect's API log handler while
        # holding the logging lock, and the flush waits for a thread that needs that lock.
        log_config=None,
        log_level="warning", access_log=False, proxy_headers=False, loop="asyncio",
        timeout_graceful_shutdown=2, timeout_keep_alive=30,
    )


def base_url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


@contextlib.contextmanager
def run_simulator(config: SimulatorConfig | None = None,
                  **knobs: Any) -> Iterator[SimulatorHandle]:
    """Start the simulator on a free port in a background thread; stop it on exit.

    ``run_simulator(render_seconds=0.3, cheap=True)`` or ``run_simulator(config)``.
    """
    config = (config or SimulatorConfig()).updated(**knobs)
    app = create_app(config)
    sim: Simulator = app.state.sim
    sock = bind_socket(config.host, config.port)
    server = uvicorn.Server(uvicorn_config(app, config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="hailuo-simulator", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Hailuo simulator failed to start")
            time.sleep(0.005)
        yield SimulatorHandle(base_url_of(sock), sim)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
