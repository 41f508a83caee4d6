"""A local stand-in for the APIMart and MiniMax Hailuo APIs, over real HTTP.

It speaks both providers' wire dialects as ``api-contract.md`` and ``api-contract-v2.md``
document them (APIMart uploads, model schema, response version 2026-07-27 and its
idempotency answers included), validates like they do, renders real MP4s and injects the
faults real clients meet (rate limits, 5xx, dropped connections, failed tasks, truncated
downloads, expired links, callback retries, and the scripted answers listed in
``hailuo.simulator.config.FAULTS``). ``run_simulator(**knobs)`` starts it in-process on a free port;
``python -m hailuo.simulator`` runs it in the foreground.

Exports are resolved lazily so ``import hailuo.simulator.render`` (used by the media
code) does not pay for importing FastAPI and uvicorn (about half a second).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hailuo.simulator.app import create_app
    from hailuo.simulator.config import SimulatorConfig
    from hailuo.simulator.server import SimulatorHandle, run_simulator

__all__ = ["SimulatorConfig", "SimulatorHandle", "create_app", "run_simulator"]

_WHERE = {
    "create_app": "hailuo.simulator.app",
    "SimulatorConfig": "hailuo.simulator.config",
    "SimulatorHandle": "hailuo.simulator.server",
    "run_simulator": "hailuo.simulator.server",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
