"""H3 clips for the simulator: H.264 video at 24 fps on the 17k+5 frame grid, with a
stereo 32 kHz AAC soundtrack that depends on the prompt.

Pictures reuse the 02 renderer's pieces (``hailuo.simulator.render``: procedural scene,
camera path, cover-fit images, the SIMULATED mark). Modes:

* text-to-video: the scene seeded by the prompt (and the model);
* first frame: frame 0 is the first image (cover-fit), then the camera drifts;
* last frame alone: the scene blends into the last image; the LAST frame is that image;
* first + last: frame 0 is the first image, the last frame the last image (the camera
  path is pinned at both ends, as in the 02 renderer);
* references: the scene tinted toward the reference images' mean colour, the first
  reference image (or a reference video's first frame) composited as a card.

Sound: a chord whose root and intervals come from ``sha256(prompt, model, references)``,
different notes on the left and right channel, a slow tremolo and short fades; the track
lasts exactly as long as the video (``frames / 24`` s). Real AAC, so stitching, remuxing
and probing meet what H3 delivers.

Cheap mode (``SimulatorConfig.cheap``): the picture of one template per (size, frames) is
encoded once; each task gets the template's video packets remuxed (no re-encode) plus
its own freshly encoded soundtrack - cheap even at 2K, and the audio still depends on
the prompt.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from hailuo.capabilities import H3_FPS
from hailuo.files import atomic_output
from hailuo.simulator import render

SAMPLE_RATE = 32_000
AUDIO_CHUNK = 1024
_template_lock = threading.Lock()
_template_locks: dict[tuple[int, int, int], threading.Lock] = {}


@dataclass(frozen=True)
class H3Spec:
    """Everything that decides an H3 clip; equal specs give equal files."""

    width: int
    height: int
    frames: int
    prompt: str = ""
    model: str = "MiniMax-H3"
    first_frame: bytes | None = None
    last_frame: bytes | None = None
    references: tuple[bytes, ...] = ()  # reference images (encoded)
    reference_videos: tuple[bytes, ...] = ()
    reference_audios: tuple[bytes, ...] = ()
    camera: tuple[tuple[str, ...], ...] = ()
    fps: int = H3_FPS

    def audio_seed(self) -> bytes:
        h = hashlib.sha256(f"{self.prompt}\0{self.model}".encode())
        for item in (*self.references, *self.reference_videos, *self.reference_audios):
            h.update(hashlib.sha256(item).digest())
        return h.digest()


# -- sound -------------------------------------------------------------------------------
def chord(spec: H3Spec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(left, right) frequencies in Hz of the clip's chord, from the prompt's hash."""
    seed = spec.audio_seed()
    root = 110.0 * 2 ** (seed[0] % 36 / 12)  # A2 .. A5, semitone steps
    third = 4 if seed[1] % 2 else 3  # major or minor
    fifth = 7
    top = (10, 11, 12, 14)[seed[2] % 4]
    notes = [root * 2 ** (s / 12) for s in (0, third, fifth, top)]
    return (notes[0], notes[2]), (notes[1], notes[3])


def soundtrack(spec: H3Spec) -> np.ndarray:
    """Float32 samples, shape (2, n), n = frames / fps * 32 kHz (rounded up)."""
    n = math.ceil(spec.frames * SAMPLE_RATE / spec.fps)
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    left, right = chord(spec)
    seed = spec.audio_seed()
    tremolo = 0.75 + 0.25 * np.sin(2 * np.pi * (0.5 + seed[3] % 5 / 4) * t)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05) if n > 1 else np.ones(n)
    channels = []
    for notes in (left, right):
        wave = sum(np.sin(2 * np.pi * f * t + k) for k, f in enumerate(notes))
        channels.append(0.2 * wave * tremolo * fade)
    return np.asarray(channels, dtype=np.float32)


class _AudioWriter:
    """Feeds a soundtrack to an AAC stream in step with the video."""

    def __init__(self, container: av.container.OutputContainer, samples: np.ndarray) -> None:
        self.stream = container.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        self.stream.codec_context.time_base = Fraction(1, SAMPLE_RATE)
        self.container = container
        self.samples = samples
        self.pos = 0

    def until(self, seconds: float) -> None:
        end = min(self.samples.shape[1], round(seconds * SAMPLE_RATE))
        while self.pos < end:
            stop = min(self.pos + AUDIO_CHUNK, self.samples.shape[1])
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(self.samples[:, self.pos:stop]), format="fltp",
                layout="stereo")
            frame.sample_rate = SAMPLE_RATE
            frame.pts, frame.time_base = self.pos, Fraction(1, SAMPLE_RATE)
            self.container.mux(self.stream.encode(frame))
            self.pos = stop

    def close(self) -> None:
        self.until(self.samples.shape[1] / SAMPLE_RATE + 1)
        self.container.mux(self.stream.encode(None))


# -- pictures ----------------------------------------------------------------------------
def _first_video_frame(data: bytes) -> Image.Image | None:
    try:
        with av.open(io.BytesIO(data)) as container:
            for frame in container.decode(video=0):
                return frame.to_image().convert("RGB")
    except Exception:  # noqa: BLE001 - a reference that does not decode just is not shown
        return None
    return None


def _frames(spec: H3Spec):  # noqa: ANN202 - a generator of rgb arrays
    w, h, n = spec.width, spec.height, spec.frames
    base = render.RenderSpec(width=w, height=h, duration=max(1, math.ceil(n / spec.fps)),
                             prompt=spec.prompt, camera=spec.camera, seed_extra=spec.model)
    rng = np.random.default_rng(render._seed(base))
    first = render._open_image(spec.first_frame, "first_frame") if spec.first_frame else None
    last = render._open_image(spec.last_frame, "last_frame") if spec.last_frame else None
    pinned = last is not None
    dx, dy, zoom = render._camera_path(base, n, rng, pinned=pinned)
    bounds = render._bounds(w, h, dx, dy, zoom)
    view = (render._image_view(first, (w, h), bounds) if first is not None
            else render._scene_view(base, rng, bounds))
    end_view = render._image_view(last, (w, h), bounds) if last is not None else None
    refs = [render._open_image(r, "reference_images") for r in spec.references]
    refs += [im for im in map(_first_video_frame, spec.reference_videos) if im is not None]
    tint = None
    card = None
    if refs:
        tint = np.mean([np.asarray(r.resize((8, 8))).reshape(-1, 3).mean(0) for r in refs],
                       axis=0).astype(np.float32)
        card = render._subject_card(refs[0], h)
    for i in range(n):
        t = i / (n - 1) if n > 1 else 0.0
        rgb = view.frame(dx[i], dy[i], zoom[i])
        if end_view is not None:
            if i == n - 1:
                rgb = end_view.frame(0.0, 0.0, 1.0)
            elif i > 0 or first is None:
                other = end_view.frame(dx[i], dy[i], zoom[i])
                alpha = float(render._ease(np.array(t)))
                rgb = np.asarray(Image.blend(Image.fromarray(rgb), Image.fromarray(other),
                                             alpha))
        if tint is not None:
            rgb = (rgb.astype(np.float32) * 0.7 + tint * 0.3).astype(np.uint8)
        if card is not None:
            rgb = np.array(rgb)
            render._paste(rgb, card, t)
        rgb = np.array(rgb)
        render._stamp(rgb)  # every frame, as in the 02 renderer: never mistaken for real
        yield rgb


def _video_stream(container: av.container.OutputContainer, spec: H3Spec, preset: str):  # noqa: ANN202
    stream = container.add_stream("libx264", rate=spec.fps)
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
    stream.codec_context.time_base = Fraction(1, spec.fps)
    stream.codec_context.gop_size = spec.fps
    stream.options = {"preset": preset, "crf": "20", "threads": "0",
                      "x264-params": f"keyint={spec.fps}:min-keyint={spec.fps}:scenecut=0"}
    return stream


def render_h3(spec: H3Spec, out_path: Path, *, preset: str = "ultrafast",
              audio: bool = True) -> Path:
    """Render ``spec`` to an MP4 (H.264 + stereo 32 kHz AAC) at ``out_path``, atomically."""
    out_path = Path(out_path)
    if spec.width % 2 or spec.height % 2 or spec.frames < 1:
        raise ValueError(f"bad H3 spec {spec.width}x{spec.height}, {spec.frames} frames")
    time_base = Fraction(1, spec.fps)
    with atomic_output(out_path) as tmp, av.open(
            str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        container.metadata["comment"] = render.RENDER_COMMENT
        video = _video_stream(container, spec, preset)
        sound = _AudioWriter(container, soundtrack(spec)) if audio else None
        for i, rgb in enumerate(_frames(spec)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, time_base
            container.mux(video.encode(frame))
            if sound is not None:
                sound.until((i + 1) / spec.fps)
        container.mux(video.encode(None))
        if sound is not None:
            sound.close()
    return out_path


def restamp_h3(template: Path, out_path: Path, spec: H3Spec, tag: str) -> Path:
    """Cheap mode: the template's video packets remuxed, this task's soundtrack encoded."""
    with atomic_output(Path(out_path)) as tmp, av.open(str(template)) as inp, av.open(
            str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        out.metadata["title"] = tag
        out.metadata["comment"] = tag
        source = inp.streams.video[0]
        video = out.add_stream_from_template(source)
        sound = _AudioWriter(out, soundtrack(spec))
        for packet in inp.demux(source):
            if packet.dts is None:
                continue
            end = float((packet.pts or 0) * source.time_base) + 1 / spec.fps
            packet.stream = video
            out.mux(packet)
            sound.until(end)
        sound.close()
    return Path(out_path)


def template(data_dir: Path, spec: H3Spec, preset: str) -> Path:
    """The shared silent picture for this size and frame count, rendered once."""
    key = (spec.width, spec.height, spec.frames)
    with _template_lock:
        lock = _template_locks.setdefault(key, threading.Lock())
    with lock:
        path = data_dir / f"h3_template_{spec.width}x{spec.height}_{spec.frames}f.mp4"
        if not path.exists():
            render_h3(H3Spec(width=spec.width, height=spec.height, frames=spec.frames,
                             prompt="hailuo simulator H3 cheap-mode template"), path,
                      preset=preset, audio=False)
        return path
