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

from hailuo.capabilities import Provider, is_h3
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
    if is_h3(request.model):  # priced per output second plus inputs: see h3_quote
        return h3_quote(request, provider)
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


# -- speech, music and images (issue 15) ------------------------------------------------
# A separate small table: these are priced per character, per song and per image, not per
# second of video. Same rules: every row names its source and when it was read; a model
# without a published price is quoted at the dearest published price of its kind
# (``ASSUMED``), so a budget guard errs on the safe side.
SPEECH_SOURCE = "api-contract-v2.md 3.4 (D:PAYG-new): billed per extra_info.usage_characters"
MUSIC_SOURCE = ("api-contract-v2.md 4 (D:PAYG-old; Music is marked Discontinued for new "
                "accounts in PAYG-new)")
IMAGE_SOURCE = "api-contract-v2.md 5.1 (D:PAYG, both versions)"


@dataclass(frozen=True)
class MediaPriceRow:
    kind: str  # "speech" (per million characters), "music" (per song), "image" (per image)
    provider: Provider
    model: str
    usd: Decimal
    unit: str
    source: str
    checked: str = "2026-11"


MEDIA_PRICES: tuple[MediaPriceRow, ...] = (
    *(MediaPriceRow("speech", Provider.MINIMAX, model, Decimal(usd), "1M characters",
                    SPEECH_SOURCE)
      for model, usd in (("speech-2.8-hd", "100"), ("speech-2.8-turbo", "60"),
                         ("speech-2.6-hd", "100"), ("speech-2.6-turbo", "60"),
                         ("speech-02-hd", "100"), ("speech-02-turbo", "60"))),
    *(MediaPriceRow("music", Provider.MINIMAX, model, Decimal(usd), "song (up to 5 min)",
                    MUSIC_SOURCE)
      for model, usd in (("music-3.0", "0.15"), ("music-2.6", "0.15"),
                         ("music-3.0-free", "0"), ("music-2.6-free", "0"),
                         ("music-cover-free", "0"), ("music-2.5+", "0.15"),
                         ("music-2.5", "0.15"), ("music-2.0", "0.03"))),
    MediaPriceRow("image", Provider.MINIMAX, "image-01", Decimal("0.0035"), "image",
                  IMAGE_SOURCE),
    MediaPriceRow("image", Provider.MINIMAX, "image-01-live", Decimal("0.0035"), "image",
                  IMAGE_SOURCE),
)

#: Unpublished media prices are quoted at least this high (per unit of the kind), so a
#: guard never lets through a job dearer than allowed: APIMart publishes no image prices
#: in the stored docs (api-contract-v2.md 5.3), speech-01 and music-cover have no row.
MEDIA_FALLBACK: dict[str, Decimal] = {"speech": Decimal("100"), "music": Decimal("0.15"),
                                      "image": Decimal("0.25")}


def _media_row(kind: str, provider: Provider | str, model: str) -> MediaPriceRow | None:
    provider = Provider(provider)
    for row in MEDIA_PRICES:
        if row.kind == kind and row.provider == provider and row.model == model:
            return row
    return None


def _media_unit(kind: str, provider: Provider | str, model: str) -> PriceQuote:
    row = _media_row(kind, provider, model)
    if row is not None:
        return PriceQuote(row.usd, f"{row.source}; {row.usd} USD per {row.unit}, checked "
                          f"{row.checked}")
    top = max([r.usd for r in MEDIA_PRICES if r.kind == kind] + [MEDIA_FALLBACK[kind]])
    return PriceQuote(top, f"assumed, no published price for {model} ({kind}) on "
                      f"{Provider(provider)}: {top} USD per unit, the dearest published or "
                      "fallback price of its kind, so the estimate is an upper bound")


def speech_quote(model: str, characters: int,
                 provider: Provider | str = Provider.MINIMAX) -> PriceQuote:
    """Estimated price of synthesising ``characters`` billed characters with ``model``."""
    unit = _media_unit("speech", provider, model)
    return PriceQuote(_up(unit.usd * Decimal(max(0, characters)) / Decimal(1_000_000)),
                      unit.basis)


def music_quote(model: str, provider: Provider | str = Provider.MINIMAX) -> PriceQuote:
    """Estimated price of one song (up to 5 minutes)."""
    unit = _media_unit("music", provider, model)
    return PriceQuote(_up(unit.usd), unit.basis)


def image_quote(model: str, n: int = 1,
                provider: Provider | str = Provider.MINIMAX) -> PriceQuote:
    """Estimated price of ``n`` images (every image asked for, blocked ones included: an
    upper bound)."""
    unit = _media_unit("image", provider, model)
    return PriceQuote(_up(unit.usd * max(0, n)), unit.basis)


# -- MiniMax-H3 / MiniMax-H3-Max (MiniMax video v2, issue 14) -------------------------------
# Output seconds at a per-resolution rate, plus inputs: images beyond the free ones, and
# reference video seconds. The 17k+5 frame grid makes clips a little LONGER than asked at
# no extra cost, so the requested duration is billed. Input audio is free.
H3_SOURCE = ("api-contract-v2.md 1.11: MiniMax pay-as-you-go page (D:PAYG, both scraped "
             "versions; LZ checked the official page 2026-10-24)")
H3_MAX_SOURCE = "api-contract-v2.md 1.11: MiniMax pay-as-you-go page (D:PAYG-new)"

H3_PRICES: tuple[PriceRow, ...] = (
    PriceRow(Provider.MINIMAX, "MiniMax-H3", "768p", per_second=Decimal("0.08"),
             source=H3_SOURCE, checked="2026-11"),
    PriceRow(Provider.MINIMAX, "MiniMax-H3", "2k", per_second=Decimal("0.13"),
             source=H3_SOURCE, checked="2026-11"),
    PriceRow(Provider.MINIMAX, "MiniMax-H3-Max", "480p", per_second=Decimal("0.05"),
             source=H3_MAX_SOURCE, checked="2026-11"),
    PriceRow(Provider.MINIMAX, "MiniMax-H3-Max", "768p", per_second=Decimal("0.08"),
             source=H3_MAX_SOURCE, checked="2026-11"),
)


@dataclass(frozen=True)
class H3InputPrice:
    """What an H3 model charges for its inputs. ``video_per_second`` None: reference video
    seconds are billed at the output rate of the clip's resolution."""

    model: str
    free_images: int  # first and last frames count as images
    per_image: Decimal
    video_per_second: dict[str, Decimal] | None
    source: str
    checked: str = "2026-11"
    audio_per_second: Decimal = Decimal("0")  # "input audio: free"


H3_INPUT_PRICES: tuple[H3InputPrice, ...] = (
    H3InputPrice("MiniMax-H3", 5, Decimal("0.04"), None,
                 f"{H3_SOURCE}; reference video rounded up to whole seconds (T:LZ)"),
    H3InputPrice("MiniMax-H3-Max", 2, Decimal("0.074"),
                 {"480p": Decimal("0.0553"), "768p": Decimal("0.143")},
                 f"{H3_MAX_SOURCE}; rounded up to whole seconds like H3 (assumed)"),
)
#: A reference video whose length cannot be known here (a URL) is priced at the documented
#: maximum of all reference videos together, so the estimate stays an upper bound.
H3_UNKNOWN_VIDEO_SECONDS = 15


def _h3_video_seconds(request: VideoRequest) -> tuple[int, str]:
    """Billed reference video seconds (each video rounded up) and how they were known."""
    import math

    from hailuo.h3media import check_media

    if not request.reference_videos:
        return 0, ""
    seconds, unknown = 0, 0
    for index, value in enumerate(request.reference_videos):
        if value.startswith("s3://"):  # fetched by the flow; not measurable here
            unknown += 1
            continue
        item = check_media(value, field="reference_videos", index=index)
        if item.seconds is None:
            unknown += 1
        else:
            seconds += math.ceil(item.seconds - 1e-6)
    if unknown:
        return max(seconds, H3_UNKNOWN_VIDEO_SECONDS), (
            f"{unknown} reference video(s) given by URL priced as {H3_UNKNOWN_VIDEO_SECONDS} s "
            "in total (the documented maximum)")
    return seconds, f"{seconds} s of reference video"


def h3_quote(request: VideoRequest, provider: Provider | str = Provider.MINIMAX) -> PriceQuote:
    """Estimated price of one H3 / H3-Max clip: the requested seconds at the resolution's
    rate, images beyond the free ones, reference video seconds (local files are measured;
    URLs count as the 15 s maximum). Validates first (H3 on APIMart is refused)."""
    req = request.validate_for(provider)
    assert req.resolution is not None and req.duration is not None
    row = next(r for r in H3_PRICES if r.model == req.model and r.resolution == req.resolution)
    inputs = next(i for i in H3_INPUT_PRICES if i.model == req.model)
    assert row.per_second is not None
    output = row.per_second * req.duration
    images = (int(bool(req.first_frame_image)) + int(bool(req.last_frame_image))
              + len(req.reference_images))
    extra_images = max(0, images - inputs.free_images)
    image_cost = inputs.per_image * extra_images
    seconds, how = _h3_video_seconds(req)
    video_rate = (row.per_second if inputs.video_per_second is None
                  else inputs.video_per_second[req.resolution])
    video_cost = video_rate * seconds
    parts = [f"{req.duration} s x ${row.per_second}/s at {req.resolution.upper()} (the "
             "requested duration: the frame grid's extra frames are free)"]
    if extra_images:
        parts.append(f"{extra_images} image(s) beyond the first {inputs.free_images} x "
                     f"${inputs.per_image}")
    if seconds:
        parts.append(f"{how} x ${video_rate}/s")
    basis = f"{'; '.join(parts)}. {row.source}, checked {row.checked}"
    if extra_images or seconds:
        basis += f"; inputs: {inputs.source}"
    return PriceQuote(_up(output + image_cost + video_cost), basis)


# -- regeneration: a finished MiniMax-H3 768P clip again at 2K (issue 14, item 7) ----------
H3_REGENERATION_SOURCE = (
    "api-contract-v2.md 1.11: MiniMax pay-as-you-go page (D:PAYG), 'Regeneration 768P->2K "
    "$0.05 / s output; original inputs billed again (images after the 5th $0.025, input "
    "video $0.05/s)'; named MiniMax-H3-Regeneration there (D:PAYG-new)")


@dataclass(frozen=True)
class RegenerationPrice:
    """What ``POST /v2/video_regeneration`` charges: output seconds at 2K, and the original
    request's inputs again (images beyond the free ones, reference video seconds)."""

    model: str
    per_second: Decimal
    free_images: int
    per_image: Decimal
    video_per_second: Decimal
    source: str
    checked: str = "2026-11"


H3_REGENERATION_PRICES: tuple[RegenerationPrice, ...] = (
    RegenerationPrice("MiniMax-H3", Decimal("0.05"), 5, Decimal("0.025"), Decimal("0.05"),
                      H3_REGENERATION_SOURCE),
)


def regeneration_quote(request: VideoRequest,
                       provider: Provider | str = Provider.MINIMAX) -> PriceQuote:
    """Estimated price of regenerating the clip of ``request`` (its original MiniMax-H3
    768P request) at 2K: the requested seconds at $0.05 (the base video has the same
    frame count as the original, whose extra grid frames were not billed either), plus
    the original inputs billed again. The base video itself is what is upscaled, not an
    input, and is not billed as one. Validates first (MiniMax's API, MiniMax-H3 only)."""
    req = request.validate_for(provider)
    row = next((r for r in H3_REGENERATION_PRICES if r.model == req.model), None)
    if row is None:
        from hailuo.errors import InvalidRequestError

        raise InvalidRequestError(f"regeneration to 2K is priced (and documented) for "
                                  f"MiniMax-H3 only, not {req.model}", field="model")
    assert req.duration is not None
    images = (int(bool(req.first_frame_image)) + int(bool(req.last_frame_image))
              + len(req.reference_images))
    extra_images = max(0, images - row.free_images)
    seconds, how = _h3_video_seconds(req)
    total = (row.per_second * req.duration + row.per_image * extra_images
             + row.video_per_second * seconds)
    parts = [f"{req.duration} s x ${row.per_second}/s regenerated at 2K"]
    if extra_images:
        parts.append(f"{extra_images} image(s) beyond the first {row.free_images} x "
                     f"${row.per_image} (billed again)")
    if seconds:
        parts.append(f"{how} x ${row.video_per_second}/s (billed again)")
    return PriceQuote(_up(total), f"{'; '.join(parts)}. {row.source}, checked {row.checked}")
