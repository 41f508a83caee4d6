"""The process-wide embedded simulator: started on first use, stopped at exit.

Why: with no credentials configured, flows and the demo run against this local stand-in
for the provider, so nothing is paid and no network is needed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from typing import Any

_lock = threading.Lock()
_stack: contextlib.ExitStack | None = None
_handle: Any = None


def embedded_simulator() -> Any:
    """The running embedded simulator's handle (``.base_url``), starting it if needed.

    ``HAILUO_SIM_RENDER_SECONDS`` tunes its render time (default 3 s).
    """
    global _stack, _handle
    with _lock:
        if _handle is None:
            from hailuo.simulator import run_simulator

            stack = contextlib.ExitStack()
            seconds = float(os.environ.get("HAILUO_SIM_RENDER_SECONDS", "3"))
            _handle = stack.enter_context(run_simulator(render_seconds=seconds))
            _stack = stack
            atexit.register(stop_embedded_simulator)
        return _handle


def stop_embedded_simulator() -> None:
    global _stack, _handle
    with _lock:
        if _stack is not None:
            _stack.close()
        _stack = _handle = None
