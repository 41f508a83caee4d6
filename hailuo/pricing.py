"""Cost estimates from a price table kept as data, each row with its source.

Why estimates at all: a ``max_cost_usd`` guard must refuse *before* anything is paid,
and every manifest records what a clip would have cost. Prices change: edit the table,
not the code. When no published price fits, the most expensive published per-second rate
for that resolution is used and the estimate says so (``PriceQuote.basis``), so a guard
errs on the safe side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from hailuo.capabilities import Provider
from hailuo.errors import CostLimitExceededError
from hailuo.models import VideoRequest


@dataclass(frozen=True)
class PriceRow:
    provider: Provider
    model: str | None  # None: any model of the provider
    resolution: str
    per_second: Decimal | None = None
    per_clip: dict[int, Decimal] | None = None  # duration -> price
    source: str = ""
    checked: str = ""  # when the source was read (YYYY-MM)

    def highest_per_second(self) -> Decimal:
        """The dearest second this row can charge (a per-clip price spread over its clip)."""
        rates = [self.per_second] if self.per_second is not None else []
        rates += [price / seconds for seconds, price in (self.per_clip or {}).items()]
        return max(rates, default=Decimal("0"))


GUIDE = "hailuo-02-guide.txt: APIMart 768p $0.04/s, 1080p $0.08/s"
TABLE = ("api-contract.md: published Hailuo-02 table, 768P 6 s $0.28, 10 s $0.56, "
         "1080P 6 s $0.49; api-contract-v2.md 1.11 (MiniMax PAYG): legacy 2.3/02 unchanged, "
         "2.3 768P 6 s $0.28")
ASSUMED = ("assumed, no published price: the dearest published rate of the provider for a higher "
           "resolution is used, so the estimate is an upper bound")

#: Every row names its source and when it was read. Rows marked ASSUMED are upper bounds:
#: an estimate may be above the real price, never below it (a ``max_cost_usd`` guard
#: must not let a job through that costs more than the user allowed).
PRICES: tuple[PriceRow, ...] = (
    PriceRow(Provider.APIMART, None, "768p", per_second=Decimal("0.04"), source=GUIDE,
             checked="2026-11"),
    PriceRow(Provider.APIMART, None, "1080p", per_second=Decimal("0.08"), source=GUIDE,
             checked="2026-11"),
    PriceRow(Provider.APIMART, None, "512p", per_second=Decimal("0.04"),
             source=f"{ASSUMED} (APIMart 768p)", checked="2026-11"),
    PriceRow(Provider.MINIMAX, None, "768p",
             per_clip={6: Decimal("0.28"), 10: Decimal("0.56")}, source=TABLE,
             checked="2026-11"),
    PriceRow(Provider.MINIMAX, None, "1080p", per_clip={6: Decimal("0.49")}, source=TABLE,
             checked="2026-11"),
    PriceRow(Provider.MINIMAX, None, "512p",
             per_clip={6: Decimal("0.28"), 10: Decimal("0.56")},
             source=f"{ASSUMED} (MiniMax 768P)", checked="2026-11"),
    PriceRow(Provider.MINIMAX, None, "720p", per_clip={6: Decimal("0.49")},
             source=f"{ASSUMED} (MiniMax 1080P; the 01-series has no published price)",
             checked="2026-11"),
)


@dataclass(frozen=True)
class PriceQuote:
    usd: Decimal
    basis: str


def quote(request: VideoRequest, provider: Provider | str) -> PriceQuote:
    """Estimated price of one clip; validates the request first (so defaults are known)."""
    provider = Provider(provider)
    resolution = request.output_resolution(provider)
    duration = request.output_duration(provider)
    candidates = [r for r in PRICES if r.provider == provider and r.resolution == resolution]
    for row in sorted(candidates, key=lambda r: r.model is None):  # exact model first
        if row.model not in (None, request.model):
            continue
        if row.per_clip and duration in row.per_clip:
            return PriceQuote(row.per_clip[duration], row.source)
        if row.per_second is not None:
            return PriceQuote(_up(row.per_second * duration), row.source)
    # nothing fits (an unpublished duration or resolution): the dearest second anywhere
    top = max(r.highest_per_second() for r in PRICES)
    return PriceQuote(_up(top * duration), f"{ASSUMED} (the dearest published second)")


def _up(amount: Decimal) -> Decimal:
    """Rounded up to a hundredth of a cent: rounding never lowers an estimate."""
    return amount.quantize(Decimal("0.0001"), rounding=ROUND_CEILING)


def estimate(request: VideoRequest, provider: Provider | str = Provider.APIMART) -> Decimal:
    """Estimated USD cost of one clip."""
    return quote(request, provider).usd


def check_budget(requests: Iterable[VideoRequest], provider: Provider | str,
                 max_cost_usd: float | Decimal | None, *, limit_name: str = "max_cost_usd"
                 ) -> Decimal:
    """The cost guard, the one every entry point uses (flows, films, the CLI): validates
    and prices every request, and refuses the whole set before anything is sent when the
    estimate is over ``max_cost_usd`` (None: no limit). Returns the total estimate.

    ``limit_name`` is how the caller spells the limit (``--max-cost`` on the command line).
    """
    requests = list(requests)
    total = sum((estimate(r, provider) for r in requests), Decimal("0"))
    if max_cost_usd is not None and total > Decimal(str(max_cost_usd)):
        raise CostLimitExceededError(
            f"estimated cost ${total} for {len(requests)} clip(s) exceeds {limit_name} "
            f"${max_cost_usd}; nothing was submitted", field=limit_name)
    return total
