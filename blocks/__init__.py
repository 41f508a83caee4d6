"""Prefect blocks of prefect-hailuo (``prefect block register -m blocks``)."""

from prefect_hailuo.blocks.credentials import (
    DEFAULT_SECRET_BLOCK,
    HailuoConnection,
    HailuoCredentials,
    resolve_connection,
)

__all__ = ["DEFAULT_SECRET_BLOCK", "HailuoConnection", "HailuoCredentials", "resolve_connection"]
