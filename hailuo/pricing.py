"""Cost estimates from a price table kept as data, each row with its source.

Why estimates at all: a ``max_cost_usd`` guard must refuse *before* anything is paid,
and every manifest records what a clip would have cost. Prices change: edit the table,
not the code. When no published price fits, the most expensive published per-second rate
for that resolution is used and the estimate says so (``PriceQuote.basis``), so a guard
errs on the safe side.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hailuo.capabilities import Provider
from hailuo.models import VideoRequest


@dataclass(frozen=True)
class PriceRow:
    provider: Provider
    model: str | None  # None: any model of the provider
    resolution: str
    per_second: Decimal | None = None
    per_clip: dict[int, Decimal] | None = None  # duration -> price
    source: str = ""


GUIDE = "hailuo-02-guide.txt (APIMart: 768p $0.04/s, 1080p $0.08/s)"
TABLE = "published Hailuo-02 table (768P 6 s $0.28, 10 s $0.56; 1080P 6 s $0.49)"
ASSUMED = "no published price; the 768p per-second rate is assumed as an upper bound"

PRICES: tuple[PriceRow, ...] = (
    PriceRow(Provider.APIMART, None, "768p", per_second=Decimal("0.04"), source=GUIDE),
    PriceRow(Provider.APIMART, None, "1080p", per_second=Decimal("0.08"), source=GUIDE),
    PriceRow(Provider.APIMART, None, "512p", per_second=Decimal("0.04"), source=ASSUMED),
    PriceRow(Provider.MINIMAX, "MiniMax-Hailuo-02", "768p",
             per_clip={6: Decimal("0.28"), 10: Decimal("0.56")}, source=TABLE),
    PriceRow(Provider.MINIMAX, "MiniMax-Hailuo-02", "1080p",
             per_clip={6: Decimal("0.49")}, source=TABLE),
    PriceRow(Provider.MINIMAX, None, "512p", per_second=Decimal("0.04"), source=ASSUMED),
    PriceRow(Provider.MINIMAX, None, "720p", per_second=Decimal("0.04"), source=ASSUMED),
    PriceRow(Provider.MINIMAX, None, "768p", per_second=Decimal("0.56") / 10,
             source=TABLE + "; per-second rate of the 10 s price"),
    PriceRow(Provider.MINIMAX, None, "1080p", per_second=Decimal("0.08"), source=GUIDE),
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
            return PriceQuote((row.per_second * duration).quantize(Decimal("0.0001")), row.source)
    top = max((r.per_second for r in PRICES if r.per_second), default=Decimal("0.08"))
    return PriceQuote((top * duration).quantize(Decimal("0.0001")), ASSUMED)


def estimate(request: VideoRequest, provider: Provider | str = Provider.APIMART) -> Decimal:
    """Estimated USD cost of one clip."""
    return quote(request, provider).usd
