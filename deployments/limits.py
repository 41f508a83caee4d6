"""Sizing the ``hailuo-submit`` global concurrency limit from a provider's requests-per-minute.

Why this arithmetic: ``tasks.submit_slots.take_submit_slot`` takes one slot per submit
(rate-limit mode) and never gives it back; the slots leak away at
``slot_decay_per_second``. That is a leaky bucket of ``limit`` slots. In
any window of ``W`` seconds it lets through fewer than ``limit + decay * W`` acquisitions
(the bucket can hold at most ``limit`` and drains at most ``decay * W``), so choosing
``decay = (budget + 1 - limit) / 60`` keeps every 60 s window at ``budget`` submits or
fewer. ``budget`` is the provider's limit less ``headroom``, because a submit reaches the
provider a little after it took its slot and the provider's clock is not ours.

No Prefect import: the operator script, the CLI and the tests all use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prefect_hailuo.defaults import SUBMIT_LIMIT_NAME

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class SubmitLimit:
    """What ``prefect gcl create`` needs, and the rate it guarantees."""

    rpm: int
    budget: int
    limit: int
    slot_decay_per_second: float

    def max_in_window(self, seconds: float = WINDOW_SECONDS) -> int:
        """The most submits the bucket can let through in any window of ``seconds``."""
        # the 1e-9 absorbs float rounding of decay * 60 (the bound itself is exact)
        return math.ceil(self.limit + self.slot_decay_per_second * seconds - 1e-9) - 1

    def describe(self) -> str:
        return (f"{SUBMIT_LIMIT_NAME}: limit {self.limit}, slot decay "
                f"{self.slot_decay_per_second:.4f}/s -> at most {self.max_in_window()} submits "
                f"per minute (provider allows {self.rpm})")


def submit_limit(rpm: int, headroom: float = 0.1) -> SubmitLimit:
    """Size the bucket for a provider allowing ``rpm`` submits per minute per key.

    ``headroom`` is the fraction kept unused (default 10 %, at least one request when the
    provider allows more than one). The burst (``limit``) is a tenth of the budget, at
    least 1: a small batch starts at once, a big one settles to the steady rate.
    """
    if rpm < 1:
        raise ValueError(f"requests per minute must be at least 1, got {rpm}")
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom must be in [0, 1), got {headroom}")
    spare = max(1, math.ceil(rpm * headroom)) if rpm > 1 and headroom > 0 else 0
    budget = rpm - spare
    burst = max(1, budget // 10)
    decay = (budget + 1 - burst) / WINDOW_SECONDS
    return SubmitLimit(rpm=rpm, budget=budget, limit=burst, slot_decay_per_second=decay)
