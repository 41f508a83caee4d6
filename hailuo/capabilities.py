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
    IMAGE_TO_VIDEO = "image-to-video"  # a first frame
    FIRST_LAST_FRAME = "first-last-frame"
    SUBJECT_REFERENCE = "subject-reference"
    LAST_FRAME = "last-frame"  # H3: a last frame alone
    REFERENCE = "reference"  # H3: reference images / videos / audios (r2v)


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
    """``768``, ``"768P"``, ``" 768p "`` -> ``"768p"`` (the canonical, lowercase label);
    ``"2K"`` -> ``"2k"`` (H3)."""
    text = str(value).strip().lower()
    if not text.endswith(("p", "k")):
        text += "p"
    return text


# -- MiniMax video v2: MiniMax-H3 / MiniMax-H3-Max (api-contract-v2.md section 1) ----------
# A separate table: these models speak another API (``/v2/video_generation``), take
# other fields (``ratio``, reference media) and exist on MiniMax's own API only. The
# legacy table above, ``models_for`` and the v1 simulator routes do not list them.

#: The v2 models, in the order the docs list them.
H3_MODELS: tuple[str, ...] = ("MiniMax-H3", "MiniMax-H3-Max")
#: Longest ``text`` item of a v2 create (regeneration allows 40000; not used here).
H3_MAX_PROMPT_CHARS = 7000
#: ``ratio`` values of a v2 create; ``adaptive`` follows the input images.
H3_RATIOS: tuple[str, ...] = ("adaptive", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
H3_FPS = 24

_H3_OPTIONS = {"768p": tuple(range(4, 16)), "2k": tuple(range(4, 16))}
_H3_MAX_OPTIONS = {"480p": tuple(range(5, 16)), "768p": tuple(range(5, 16))}
_H3_MODES = (M.TEXT_TO_VIDEO, M.IMAGE_TO_VIDEO, M.LAST_FRAME, M.FIRST_LAST_FRAME, M.REFERENCE)
_H3_NOTES = {
    M.LAST_FRAME: "docs conflict (the role text says last_frame must be paired); H3RM and "
                  "MiniMax's CLI allow it alone",
    M.REFERENCE: "",
}

V2_CAPABILITIES: tuple[Capability, ...] = (
    *(_cap(P.MINIMAX, "MiniMax-H3", mode, _H3_OPTIONS, default_dur=5,
           note=_H3_NOTES.get(mode, "")) for mode in _H3_MODES),
    *(_cap(P.MINIMAX, "MiniMax-H3-Max", mode, _H3_MAX_OPTIONS, default_dur=5,
           note=("reference mode per the newer CN docs and PAYG-new (the EN copy says t2v "
                 "and i2v only): a 400 is possible") if mode is M.REFERENCE
           else _H3_NOTES.get(mode, "")) for mode in _H3_MODES),
)
_INDEX.update({(c.provider, c.model, c.mode): c for c in V2_CAPABILITIES})


def is_h3(model: str | None) -> bool:
    """Whether ``model`` is a MiniMax video v2 model (H3 / H3-Max)."""
    return model in H3_MODELS


@dataclass(frozen=True)
class MediaLimit:
    """What MiniMax v2 accepts for one kind of input medium (api-contract-v2.md 1.3)."""

    kind: str  # "image", "video", "audio"
    formats: tuple[str, ...]
    max_bytes: int
    min_side: int | None = None
    max_side: int | None = None
    min_aspect: float | None = None  # width / height
    max_aspect: float | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None
    max_total_seconds: float | None = None
    min_fps: float | None = None
    max_fps: float | None = None
    codecs: tuple[str, ...] = ()
    audio_codecs: tuple[str, ...] = ()


_MB = 1024 * 1024
H3_MEDIA_LIMITS: dict[str, MediaLimit] = {
    "image": MediaLimit("image", ("jpeg", "png", "webp", "heic", "heif"), 30 * _MB,
                        min_side=256, max_side=5760, min_aspect=0.4, max_aspect=2.5),
    "video": MediaLimit("video", ("mp4", "mov"), 50 * _MB, min_side=256, max_side=5760,
                        min_aspect=0.4, max_aspect=2.5, min_seconds=2, max_seconds=15,
                        max_total_seconds=15, min_fps=23.976, max_fps=60,
                        codecs=("h264", "hevc"), audio_codecs=("aac", "mp3")),
    "audio": MediaLimit("audio", ("wav", "mp3"), 15 * _MB, min_seconds=2, max_seconds=15,
                        max_total_seconds=15),
}
#: Count limits per field; all reference files together at most ``H3_MAX_REFERENCES``.
H3_MAX_COUNTS: dict[str, int] = {"first_frame_image": 1, "last_frame_image": 1,
                                 "reference_images": 9, "reference_videos": 3,
                                 "reference_audios": 3}
H3_MAX_REFERENCES = 12
#: The whole create body (base64 adds about a third: big media go as ``mm_file://``).
H3_MAX_BODY_BYTES = 64 * _MB
