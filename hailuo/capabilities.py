"""What each provider x model x mode accepts, as data in one place.

Source: ``api-contract.md`` (APIMart docs and the MiniMax resolution x duration table).
Everything that validates a request (our client, the simulator standing in for the
provider) reads this table; nothing else hard-codes a resolution or a duration.

``options`` maps a resolution to the durations allowed at it. An empty ``options``
(the 01-series and S2V-01) means the provider fixes both and the fields are not sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: Longest prompt any provider accepts (characters), for every model.
MAX_PROMPT_CHARS = 2000


class Provider(StrEnum):
    APIMART = "apimart"
    MINIMAX = "minimax"


class Mode(StrEnum):
    TEXT_TO_VIDEO = "text-to-video"
    IMAGE_TO_VIDEO = "image-to-video"
    FIRST_LAST_FRAME = "first-last-frame"
    SUBJECT_REFERENCE = "subject-reference"


@dataclass(frozen=True)
class Capability:
    provider: Provider
    model: str
    mode: Mode
    options: dict[str, tuple[int, ...]]
    default_resolution: str | None
    default_duration: int | None
    fixed_resolution: str | None = None  # what the provider renders when options is empty
    fixed_duration: int | None = None
    note: str = ""

    @property
    def resolutions(self) -> tuple[str, ...]:
        return tuple(self.options)

    @property
    def durations(self) -> tuple[int, ...]:
        return tuple(sorted({d for ds in self.options.values() for d in ds}))


# Landscape frame size per resolution label (api-contract.md section 3; 512p/720p follow 16:9).
FRAME_SIZES: dict[str, tuple[int, int]] = {
    "512p": (912, 512),
    "720p": (1280, 720),
    "768p": (1366, 768),
    "1080p": (1920, 1080),
}

P, M = Provider, Mode

_02_APIMART = {"512p": (5, 10), "768p": (5, 10), "1080p": (5,)}
_23_APIMART = {"768p": (6, 10), "1080p": (6,)}
_02_MINIMAX_I2V = {"512p": (6, 10), "768p": (6, 10), "1080p": (6,)}
_02_MINIMAX_T2V = {"768p": (6, 10), "1080p": (6,)}
_23_MINIMAX = {"768p": (6, 10), "1080p": (6,)}


def _cap(provider, model, mode, options, default_res="768p", default_dur=None, **kw) -> Capability:
    if default_dur is None and options:
        default_dur = min(options[default_res])
    return Capability(provider, model, mode, options, default_res if options else None,
                      default_dur, **kw)


_LEGACY = dict(default_res=None, fixed_resolution="720p", fixed_duration=6,
               note="01-series: 720p, fixed length; no duration/resolution fields")

CAPABILITIES: tuple[Capability, ...] = (
    # APIMart
    _cap(P.APIMART, "MiniMax-Hailuo-02", M.TEXT_TO_VIDEO, _02_APIMART),
    _cap(P.APIMART, "MiniMax-Hailuo-02", M.IMAGE_TO_VIDEO, _02_APIMART),
    _cap(P.APIMART, "MiniMax-Hailuo-02", M.FIRST_LAST_FRAME, _02_APIMART),
    _cap(P.APIMART, "MiniMax-Hailuo-2.3", M.TEXT_TO_VIDEO, _23_APIMART),
    _cap(P.APIMART, "MiniMax-Hailuo-2.3", M.IMAGE_TO_VIDEO, _23_APIMART),
    _cap(P.APIMART, "MiniMax-Hailuo-2.3-Fast", M.IMAGE_TO_VIDEO, _23_APIMART,
         note="unconfirmed on APIMart"),
    # MiniMax native
    _cap(P.MINIMAX, "MiniMax-Hailuo-02", M.TEXT_TO_VIDEO, _02_MINIMAX_T2V),
    _cap(P.MINIMAX, "MiniMax-Hailuo-02", M.IMAGE_TO_VIDEO, _02_MINIMAX_I2V),
    _cap(P.MINIMAX, "MiniMax-Hailuo-02", M.FIRST_LAST_FRAME, _02_MINIMAX_T2V),
    _cap(P.MINIMAX, "MiniMax-Hailuo-2.3", M.TEXT_TO_VIDEO, _23_MINIMAX),
    _cap(P.MINIMAX, "MiniMax-Hailuo-2.3", M.IMAGE_TO_VIDEO, _23_MINIMAX),
    _cap(P.MINIMAX, "MiniMax-Hailuo-2.3-Fast", M.IMAGE_TO_VIDEO, _23_MINIMAX),
    *(_cap(P.MINIMAX, m, M.TEXT_TO_VIDEO, {}, **_LEGACY) for m in ("T2V-01-Director", "T2V-01")),
    *(_cap(P.MINIMAX, m, M.IMAGE_TO_VIDEO, {}, **_LEGACY)
      for m in ("I2V-01-Director", "I2V-01-live", "I2V-01")),
    _cap(P.MINIMAX, "S2V-01", M.SUBJECT_REFERENCE, {}, **_LEGACY),
)

_INDEX: dict[tuple[Provider, str, Mode], Capability] = {
    (c.provider, c.model, c.mode): c for c in CAPABILITIES
}


def models_for(provider: Provider | str) -> tuple[str, ...]:
    provider = Provider(provider)
    return tuple(dict.fromkeys(c.model for c in CAPABILITIES if c.provider == provider))


def modes_for(provider: Provider | str, model: str) -> tuple[Mode, ...]:
    provider = Provider(provider)
    return tuple(c.mode for c in CAPABILITIES if c.provider == provider and c.model == model)


def lookup(provider: Provider | str, model: str, mode: Mode | str) -> Capability | None:
    return _INDEX.get((Provider(provider), model, Mode(mode)))


def normalise_resolution(value: str | int) -> str:
    """``768``, ``"768P"``, ``" 768p "`` -> ``"768p"`` (the canonical, lowercase label)."""
    text = str(value).strip().lower()
    if not text.endswith("p"):
        text += "p"
    return text
