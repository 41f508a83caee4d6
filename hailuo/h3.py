"""What an H3 output looks like: frame sizes per resolution x ratio, and the frame grid.

Only a few sizes are documented (api-contract-v2.md 1.9): 16:9 2K is 2560x1440, and the
768P regeneration spec says W and H divisible by 32 with an area of 589,824..1,032,192 px
(so 16:9 768P is 1344x768 and 9:16 is 768x1344). Everything else follows ONE rule here,
used by the simulator to render and by anyone who wants to know a clip's size before it
exists:

* the short side is the label's (480P: 480, 768P: 768, 2K: 1440);
* the long side is short x ratio, rounded to the nearest multiple of the step (16 at
  480P, 32 at 768P and 2K), or down to one if the nearest is over the area cap;
* the area never exceeds the label's 16:9 area (848x480, 1344x768, 2560x1440): when it
  would (21:9), the height is recomputed from that area and rounded down to the step, the
  width is height x ratio rounded to the nearest step, lowered a step while still over.

So 768P is 1344x768 (16:9), 1024x768 (4:3), 768x768 (1:1), 1504x640 (21:9) and the
transposes; 2K is 2560x1440, 1920x1440, 1440x1440, 2912x1248; 480P is 848x480, 640x480,
480x480, 976x416. ``adaptive`` takes the ratio nearest to the input image's aspect (16:9
when there is no image).

Frames: H3 renders on a 17k+5 grid at 24 fps: the frame count is the smallest 17k+5 at
or above ``duration x 24``, so a clip runs a little longer than asked (5 s -> 124 frames,
5.17 s), at no extra cost (billing is by the requested duration).
"""

from __future__ import annotations

import math

from hailuo.capabilities import H3_FPS, H3_RATIOS, normalise_resolution

#: label -> (short side, rounding step, the 16:9 size whose area is the cap)
_LABELS: dict[str, tuple[int, int, tuple[int, int]]] = {
    "480p": (480, 16, (848, 480)),
    "768p": (768, 32, (1344, 768)),
    "2k": (1440, 32, (2560, 1440)),
}
CONCRETE_RATIOS: tuple[str, ...] = tuple(r for r in H3_RATIOS if r != "adaptive")


def ratio_value(ratio: str) -> float:
    """``"16:9"`` -> 1.777...; raises ValueError for ``adaptive`` or a malformed ratio."""
    w, _, h = ratio.partition(":")
    return int(w) / int(h)


def nearest_ratio(width: int, height: int) -> str:
    """The concrete H3 ratio nearest (in log space) to ``width`` / ``height``."""
    aspect = math.log(width / height)
    return min(CONCRETE_RATIOS, key=lambda r: abs(math.log(ratio_value(r)) - aspect))


def _round(value: float, step: int) -> int:
    return max(step, step * round(value / step))


def frame_size(resolution: str, ratio: str) -> tuple[int, int]:
    """(width, height) of an H3 output at ``resolution`` (480p / 768p / 2k) and a concrete
    ``ratio``, by the rule in the module docstring."""
    label = normalise_resolution(resolution)
    if label not in _LABELS:
        raise ValueError(f"no H3 size for resolution {resolution!r}; known: "
                         f"{', '.join(_LABELS)}")
    short, step, (cap_w, cap_h) = _LABELS[label]
    cap = cap_w * cap_h
    value = ratio_value(ratio)
    landscape = value >= 1
    r = value if landscape else 1 / value
    s = short
    long = _round(s * r, step)
    if long * s > cap:  # rounding up went over: round down instead
        long = max(step, step * math.floor(s * r / step))
    if long * s > cap:  # wider than 16:9: keep the area, not the short side
        s = max(step, step * math.floor(math.sqrt(cap / r) / step))
        long = _round(s * r, step)
        while long * s > cap and long > step:
            long -= step
    return (long, s) if landscape else (s, long)


def frame_count(duration: int | float, fps: int = H3_FPS) -> int:
    """The smallest 17k+5 frame count at or above ``duration x fps``."""
    need = math.ceil(duration * fps)
    k = max(0, math.ceil((need - 5) / 17))
    return 17 * k + 5


def output_seconds(duration: int | float, fps: int = H3_FPS) -> float:
    """How long the clip really runs (frame count / fps)."""
    return frame_count(duration, fps) / fps
