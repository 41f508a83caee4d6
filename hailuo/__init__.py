"""Hailuo video generation, without Prefect: clients, models, errors.

``AsyncHailuoClient`` is exported lazily (PEP 562) so that ``import hailuo.<module>``
(the simulator, the errors) does not pay for the client's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hailuo.aclient import AsyncHailuoClient

__all__ = ["AsyncHailuoClient"]


def __getattr__(name: str) -> Any:
    if name == "AsyncHailuoClient":
        from hailuo.aclient import AsyncHailuoClient

        return AsyncHailuoClient
    raise AttributeError(f"module 'hailuo' has no attribute {name!r}")
