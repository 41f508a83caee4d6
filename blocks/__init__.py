"""Prefect blocks of prefect-hailuo (``prefect block register -m prefect_hailuo``)."""

from prefect_hailuo.blocks.credentials import (
    HailuoConnection,
    HailuoCredentials,
    resolve_connection,
    simulation_requested,
)

__all__ = ["HailuoConnection", "HailuoCredentials", "resolve_connection",
           "simulation_requested"]
