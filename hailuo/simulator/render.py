"""Real H.264 MP4s for the simulator, rendered with PyAV (libx264).

Why real files: everything downstream of a generation (download checks, probing,
last-frame continuity, stitching, thumbnails) must be exercised against genuine
video, not placeholder bytes. Why procedural and deterministic: the same request
must give the same pixels, so tests can compare runs, and camera commands must
produce *measurable* motion, so tests can check direction by phase correlation.

How it stays fast (a 6 s 768p clip in about a second and a half on two cores): the
scene is rendered once on a canvas large enough for the whole camera path, and every
frame is a crop window of that canvas. Pure translations are integer numpy slices;
only frames with a zoom are resampled (nearest-neighbour, to stay cheap - this is a
simulator, not a renderer to look at closely). Frames go to libx264 as rgb24 and
PyAV converts them to yuv420p.

Camera semantics (a command names what the *camera* does; the content moves the
other way):

- ``Pan left`` / ``Truck left``: content moves RIGHT in the frame (~18% of the width per
  segment). ``Pan right`` / ``Truck right``: content moves left.
- ``Tilt up`` / ``Pedestal up``: content moves DOWN (~20% of the height).
  ``Tilt down`` / ``Pedestal down``: content moves up.
- ``Zoom in`` / ``Push in``: content magnifies around the centre (x1.3 per segment).
  ``Zoom out`` / ``Pull out``: content shrinks (/1.3).
- ``Shake``: small pseudo-random jitter (about 1% of the width) during its segment.
- ``Tracking shot``: slow lateral drift (content moves left, ~8% of the width).
- ``Static shot``: no motion.
- No command at all: a gentle drift (~4% of the width), as a real clip is never still.

Brackets run in sequence, the duration split evenly between them; the commands inside
one bracket run together. Motion is cumulative: a second bracket starts where the
first left off. Command names are matched case-insensitively; unknown names are
ignored (the simulator's validation rejects them before a render is ever started).

Modes: text-to-video renders a scene seeded by ``sha256(prompt, seed_extra)``;
image-to-video starts on the first image (scaled to cover the output size, the edges
mirrored so the crop window can move); first+last frame blends from the first image
to the last, with camera motion enveloped to be the identity at both ends, so the
clip ends exactly on the last image; a subject reference is composited into the
frame as a bordered card. A last frame without a first frame is ignored (the service
has no such mode; validation refuses it). Every frame carries a small "SIMULATED" mark in the
bottom-right corner so no output is ever mistaken for a real generation.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from hailuo.capabilities import FRAME_SIZES, normalise_resolution
from hailuo.errors import InvalidImageError
from hailuo.files import atomic_output

__all__ = ["RenderSpec", "fit_cover", "output_size", "render_video", "restamp"]

MARK_TEXT = "SIMULATED"
RENDER_COMMENT = "prefect-hailuo simulator render - not a real generation"

PAN_FRACTION = 0.18  # of the width, per segment
TILT_FRACTION = 0.20  # of the height, per segment
ZOOM_FACTOR = 1.3  # per segment
TRACK_FRACTION = 0.08
DRIFT_FRACTION = 0.04
SHAKE_FRACTION = 0.01


@dataclass(frozen=True)
class RenderSpec:
    """Everything that determines a rendered clip; equal specs give equal pixels."""

    width: int
    height: int
    duration: int  # seconds
    prompt: str = ""
    camera: tuple[tuple[str, ...], ...] = ()  # canonical command names per bracket, in order
    first_frame: bytes | None = None  # encoded image bytes (jpeg/png/webp)
    last_frame: bytes | None = None
    subject: bytes | None = None
    fps: int = 24
    seed_extra: str = ""  # mixed into the scene seed


# ---------------------------------------------------------------------------------------
# Sizes and images


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def _open_image(data: bytes, what: str) -> Image.Image:
    """Decode image bytes upright (EXIF orientation applied) as RGB."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except Exception as exc:  # PIL raises a zoo of types for bad input
        raise InvalidImageError(f"{what} is not a decodable image: {exc}", field=what) from exc


def output_size(resolution: str, first_frame: bytes | None = None) -> tuple[int, int]:
    """The (width, height) the service renders for this resolution and first frame.

    Text-to-video uses the fixed landscape sizes (``FRAME_SIZES``). With a first frame the
    output follows the image's aspect ratio, as the real service does: the short edge is
    the resolution's short side, the long edge scaled by the aspect, both even (yuv420p
    needs even dimensions).
    """
    label = normalise_resolution(resolution)
    if label not in FRAME_SIZES:
        raise ValueError(f"unknown resolution {resolution!r}; known: {', '.join(FRAME_SIZES)}")
    width, height = FRAME_SIZES[label]
    if first_frame is None:
        return width, height
    short = min(width, height)
    iw, ih = _open_image(first_frame, "first_frame").size
    if iw >= ih:
        return _even(short * iw / ih), short
    return short, _even(short * ih / iw)


def fit_cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale ``image`` to cover ``size`` and centre-crop: how inputs map onto the output.

    Public so tests (and the continuity flow) can build the exact reference the renderer
    used for frame 0 and for a cropped last frame.
    """
    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS)


# ---------------------------------------------------------------------------------------
# Camera path

_TRANSLATIONS: dict[str, tuple[float, float]] = {
    # (dx in widths, dy in heights) of the crop window, i.e. of the camera
    "pan left": (-PAN_FRACTION, 0.0),
    "truck left": (-PAN_FRACTION, 0.0),
    "pan right": (PAN_FRACTION, 0.0),
    "truck right": (PAN_FRACTION, 0.0),
    "tilt up": (0.0, -TILT_FRACTION),
    "pedestal up": (0.0, -TILT_FRACTION),
    "tilt down": (0.0, TILT_FRACTION),
    "pedestal down": (0.0, TILT_FRACTION),
    "tracking shot": (TRACK_FRACTION, 0.0),
}
_ZOOMS: dict[str, float] = {
    "zoom in": math.log(ZOOM_FACTOR),
    "push in": math.log(ZOOM_FACTOR),
    "zoom out": -math.log(ZOOM_FACTOR),
    "pull out": -math.log(ZOOM_FACTOR),
}


def _ease(p: np.ndarray) -> np.ndarray:
    """Smoothstep: camera moves start and stop gently, like a real move."""
    return p * p * (3.0 - 2.0 * p)


def _camera_path(
    spec: RenderSpec, frames: int, rng: np.random.Generator, *, pinned: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame window offset (dx, dy, in output pixels) and zoom, identity at frame 0.

    ``pinned`` (first+last frame mode) multiplies the motion by ``4t(1-t)`` so the
    camera is back at the identity on the last frame, which must be the last image.
    """
    w, h = spec.width, spec.height
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    dx = np.zeros(frames)
    dy = np.zeros(frames)
    logz = np.zeros(frames)
    brackets = [tuple(c.strip().lower() for c in b) for b in spec.camera if b]
    if not brackets:
        dx += DRIFT_FRACTION * w * _ease(t)
    count = len(brackets)
    for k, bracket in enumerate(brackets):
        p = np.clip((t - k / count) * count, 0.0, 1.0)
        e = _ease(p)
        for name in bracket:
            if name in _TRANSLATIONS:
                fx, fy = _TRANSLATIONS[name]
                dx += fx * w * e
                dy += fy * h * e
            elif name in _ZOOMS:
                logz += _ZOOMS[name] * e
            elif name == "shake":
                active = (p > 0) & (p < 1)
                jitter = rng.normal(0.0, 1.0, (2, frames))
                kernel = np.ones(3) / 3.0  # a little smoothing: a hand, not white noise
                jx = np.convolve(jitter[0], kernel, mode="same")
                jy = np.convolve(jitter[1], kernel, mode="same")
                envelope = np.sin(np.pi * p) * active
                dx += SHAKE_FRACTION * w * jx * envelope
                dy += SHAKE_FRACTION * w * jy * envelope
            # "static shot" and unknown names: no motion
    if pinned:
        env = 4.0 * t * (1.0 - t)
        dx, dy, logz = dx * env, dy * env, logz * env
    return dx, dy, np.exp(logz)


def _bounds(
    w: int, h: int, dx: np.ndarray, dy: np.ndarray, zoom: np.ndarray
) -> tuple[int, int, int, int]:
    """World-space rectangle (x0, y0, x1, y1) covering every crop window of the path."""
    half_w = w / (2 * zoom)
    half_h = h / (2 * zoom)
    cx = w / 2 + dx
    cy = h / 2 + dy
    x0 = min(0, math.floor(float((cx - half_w).min())) - 2)
    y0 = min(0, math.floor(float((cy - half_h).min())) - 2)
    x1 = max(w, math.ceil(float((cx + half_w).max())) + 2)
    y1 = max(h, math.ceil(float((cy + half_h).max())) + 2)
    return x0, y0, x1, y1


class _View:
    """A canvas in world coordinates; ``frame`` cuts the window for one camera state."""

    def __init__(self, canvas: np.ndarray, origin: tuple[int, int], size: tuple[int, int]):
        self.array = np.ascontiguousarray(canvas)
        self.image = Image.fromarray(self.array)
        self.ox, self.oy = origin
        self.w, self.h = size

    def frame(self, dx: float, dy: float, zoom: float) -> np.ndarray:
        w, h = self.w, self.h
        if abs(zoom - 1.0) < 1e-6:
            x = round(dx) - self.ox
            y = round(dy) - self.oy
            return self.array[y : y + h, x : x + w].copy()
        vw, vh = w / zoom, h / zoom
        x0 = w / 2 + dx - vw / 2 - self.ox
        y0 = h / 2 + dy - vh / 2 - self.oy
        box = (x0, y0, x0 + vw, y0 + vh)
        resized = self.image.resize((w, h), Image.Resampling.NEAREST, box=box)
        return np.array(resized)


def _image_view(image: Image.Image, size: tuple[int, int], bounds: tuple[int, ...]) -> _View:
    """Canvas from an image: cover-fit to the output, edges mirrored out to ``bounds``."""
    w, h = size
    base = np.asarray(fit_cover(image, size))
    x0, y0, x1, y1 = bounds
    padded = np.pad(base, ((-y0, y1 - h), (-x0, x1 - w), (0, 0)), mode="symmetric")
    return _View(padded, (x0, y0), size)


# ---------------------------------------------------------------------------------------
# Procedural scene


def _seed(spec: RenderSpec) -> int:
    digest = hashlib.sha256(f"{spec.prompt}\x00{spec.seed_extra}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _noise(rng: np.random.Generator, shape: tuple[int, int], cell: int, amp: float) -> np.ndarray:
    """Smooth value noise: a coarse random grid upscaled bicubically."""
    h, w = shape
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    grid = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
    up = Image.fromarray(grid, mode="F").resize((gw * cell, gh * cell), Image.Resampling.BICUBIC)
    return np.asarray(up)[:h, :w] * amp


def _scene_view(spec: RenderSpec, rng: np.random.Generator, bounds: tuple[int, ...]) -> _View:
    """A deterministic landscape-ish scene: sky, ground, textured shapes, a grid.

    Lots of edges and texture at several scales, so phase correlation finds the motion.
    """
    w, h = spec.width, spec.height
    x0, y0, x1, y1 = bounds
    cw, ch = x1 - x0, y1 - y0
    horizon = h * rng.uniform(0.45, 0.62) - y0  # canvas row of the horizon

    def colour(lo: int, hi: int) -> np.ndarray:
        return rng.integers(lo, hi, 3).astype(np.float32)

    sky_top, sky_low = colour(20, 120), colour(130, 240)
    ground_near, ground_far = colour(30, 110), colour(70, 170)
    rows = np.arange(ch, dtype=np.float32)[:, None]
    sky_t = np.clip(rows / max(horizon, 1.0), 0, 1)
    ground_t = np.clip((rows - horizon) / max(ch - horizon, 1.0), 0, 1)
    sky = sky_top * (1 - sky_t) + sky_low * sky_t
    ground = ground_far * (1 - ground_t) + ground_near * ground_t
    column = np.where(rows < horizon, sky, ground)  # (ch, 3)
    canvas = np.broadcast_to(column[:, None, :], (ch, cw, 3)).astype(np.float32)
    texture = _noise(rng, (ch, cw), 96, 28.0) + _noise(rng, (ch, cw), 12, 14.0)
    canvas = canvas + texture[:, :, None]
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    scale = h / 768.0
    # Ground grid: vertical and horizontal lines below the horizon.
    step = max(8, int(64 * scale))
    line_colour = tuple(int(c) for c in colour(150, 255))
    for x in range((-x0) % step, cw, step):
        draw.line([(x, horizon), (x, ch)], fill=line_colour, width=max(1, int(2 * scale)))
    for y in np.arange(horizon, ch, step * 0.75):
        draw.line([(0, float(y)), (cw, float(y))], fill=line_colour, width=max(1, int(2 * scale)))
    # A sun and clouds in the sky, shapes scattered everywhere.
    sun_r = rng.uniform(40, 80) * scale
    sx, sy = rng.uniform(0.1, 0.9) * w - x0, rng.uniform(0.1, 0.3) * h - y0
    draw.ellipse([sx - sun_r, sy - sun_r, sx + sun_r, sy + sun_r], fill=(255, 236, 160),
                 outline=(255, 255, 255), width=max(1, int(3 * scale)))
    count = int(18 * (cw * ch) / (w * h)) + 6
    for _ in range(count):
        cx, cy = rng.uniform(0, cw), rng.uniform(0, ch)
        r = rng.uniform(18, 90) * scale
        fill = tuple(int(c) for c in colour(0, 256))
        outline = tuple(255 - c for c in fill)
        box = [cx - r, cy - r * rng.uniform(0.5, 1.2), cx + r, cy + r * rng.uniform(0.5, 1.2)]
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse(box, fill=fill, outline=outline, width=max(1, int(4 * scale)))
        elif kind == 1:
            draw.rectangle(box, fill=fill, outline=outline, width=max(1, int(4 * scale)))
        else:
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill,
                         outline=outline)
    return _View(np.asarray(img), (x0, y0), (w, h))


# ---------------------------------------------------------------------------------------
# Overlays


@lru_cache(maxsize=16)
def _mark(height: int) -> tuple[np.ndarray, np.ndarray]:
    """The "SIMULATED" mark: (alpha of the dark box, mask of the white text)."""
    size = max(9, height // 48)
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(MARK_TEXT)
    pad = max(2, size // 5)
    bw, bh = right - left + 2 * pad, bottom - top + 2 * pad
    text = Image.new("L", (bw, bh), 0)
    ImageDraw.Draw(text).text((pad - left, pad - top), MARK_TEXT, fill=255, font=font)
    return np.full((bh, bw), 0.5, np.float32), np.asarray(text, np.float32) / 255.0


def _stamp(frame: np.ndarray) -> None:
    """Draw the mark in place, a few pixels in from the bottom-right corner."""
    h, w = frame.shape[:2]
    box_alpha, text = _mark(h)
    bh, bw = box_alpha.shape
    margin = max(2, h // 120)
    region = frame[h - margin - bh : h - margin, w - margin - bw : w - margin]
    out = region.astype(np.float32) * (1.0 - box_alpha[:, :, None])
    out = out * (1.0 - text[:, :, None]) + 255.0 * text[:, :, None]
    region[:] = out.astype(np.uint8)


def _subject_card(subject: Image.Image, height: int) -> np.ndarray:
    """The reference as a bordered card ~40% of the frame height."""
    card_h = max(8, int(height * 0.4))
    card_w = max(8, round(card_h * subject.width / subject.height))
    border = max(2, height // 100)
    inner = subject.resize((card_w - 2 * border, card_h - 2 * border), Image.Resampling.LANCZOS)
    card = Image.new("RGB", (card_w, card_h), (250, 250, 250))
    card.paste(inner, (border, border))
    return np.asarray(card)


def _paste(frame: np.ndarray, card: np.ndarray, t: float) -> None:
    """Composite the subject card, gently swaying, clipped to the frame."""
    h, w = frame.shape[:2]
    ch, cw = card.shape[:2]
    x = round(w * 0.6 + 0.03 * w * math.sin(2 * math.pi * t) - cw / 2)
    y = round(h * 0.55 + 0.02 * h * math.sin(4 * math.pi * t) - ch / 2)
    fx0, fy0 = max(0, x), max(0, y)
    fx1, fy1 = min(w, x + cw), min(h, y + ch)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = card[fy0 - y : fy1 - y, fx0 - x : fx1 - x]


# ---------------------------------------------------------------------------------------
# Encoding


def render_video(spec: RenderSpec, out_path: Path, *, preset: str = "ultrafast",
                 crf: int = 18) -> Path:
    """Render ``spec`` to an H.264 MP4 at ``out_path`` (atomically) and return the path.

    Constant ``spec.fps``, exactly ``duration * fps`` frames, a keyframe every ``fps``
    frames (one per second, no scene-cut keyframes), yuv420p, moov at the front.
    """
    out_path = Path(out_path)
    w, h, fps = spec.width, spec.height, spec.fps
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise ValueError(f"frame size must be positive and even, got {w}x{h}")
    if spec.duration <= 0 or fps <= 0:
        raise ValueError("duration and fps must be positive")
    frames = spec.duration * fps
    rng = np.random.default_rng(_seed(spec))
    first = _open_image(spec.first_frame, "first_frame") if spec.first_frame else None
    last = _open_image(spec.last_frame, "last_frame") if spec.last_frame else None
    pinned = first is not None and last is not None
    dx, dy, zoom = _camera_path(spec, frames, rng, pinned=pinned)
    bounds = _bounds(w, h, dx, dy, zoom)
    if first is not None:
        view = _image_view(first, (w, h), bounds)
    else:
        view = _scene_view(spec, rng, bounds)
    end_view = _image_view(last, (w, h), bounds) if pinned and last is not None else None
    card = _subject_card(_open_image(spec.subject, "subject"), h) if spec.subject else None

    time_base = Fraction(1, fps)
    with atomic_output(out_path) as tmp, av.open(
            str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        container.metadata["comment"] = RENDER_COMMENT
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = fps
        stream.options = {
            "preset": preset,
            "crf": str(crf),
            "threads": "0",  # let libx264 pick (all cores)
            "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0",
        }
        for i in range(frames):
            t = i / (frames - 1) if frames > 1 else 0.0
            rgb = view.frame(dx[i], dy[i], zoom[i])
            if end_view is not None:
                if i == frames - 1:
                    rgb = end_view.frame(0.0, 0.0, 1.0)
                elif i > 0:
                    other = end_view.frame(dx[i], dy[i], zoom[i])
                    alpha = float(_ease(np.array(t)))
                    rgb = np.array(Image.blend(Image.fromarray(rgb), Image.fromarray(other),
                                               alpha))
            if card is not None:
                _paste(rgb, card, t)
            _stamp(rgb)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out_path


def restamp(src: Path, dst: Path, tag: str) -> Path:
    """Copy ``src`` to ``dst`` by remuxing packets (no re-encode), tagged with ``tag``.

    Why: cheap render mode reuses one template per (size, duration); the tag (the task
    id) lands in the container's ``title`` and ``comment`` so every task still gets
    distinct bytes - and thus a distinct checksum - at the cost of a file copy.
    """
    src, dst = Path(src), Path(dst)
    with atomic_output(dst) as tmp, av.open(str(src)) as inp, av.open(
        str(tmp), "w", format="mp4", options={"movflags": "+faststart"}
    ) as out:
        out.metadata["title"] = tag
        out.metadata["comment"] = tag
        mapping = {}
        for s in inp.streams:
            if s.type in ("video", "audio"):
                mapping[s.index] = out.add_stream_from_template(s)
        for packet in inp.demux(*(inp.streams[i] for i in mapping)):
            if packet.dts is None:  # demuxer flush packet
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return dst
