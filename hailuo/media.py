"""Checking and reading downloaded videos with PyAV: probe, frames, thumbnails, hashes.

Why this module exists: a generation is paid for, so a download is only accepted once
it is proven decodable from its first to its last frame (``probe``), and the last frame
is what the continuity flow feeds into the next shot (``last_frame``). Both must be
cheap enough to run on every file: ``probe`` demuxes packets without decoding them and
decodes only the first keyframe and the last GOP; ``last_frame`` seeks to a keyframe
near the end instead of decoding the whole clip.

No Prefect imports: this is used by the simulator and by tasks alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from pydantic import BaseModel

from hailuo.errors import InvalidVideoError
from hailuo.files import atomic_output

__all__ = [
    "VideoInfo",
    "extract_last_frame",
    "first_frame",
    "last_frame",
    "probe",
    "psnr",
    "save_png",
    "sha256_file",
    "thumbnail",
]

# How far before the end ``last_frame`` seeks. Seeking lands on the keyframe at or
# before this point, so with one keyframe a second (the simulator, Hailuo outputs)
# only about one GOP is decoded.
_TAIL_SECONDS = 1.0


class VideoInfo(BaseModel):
    """What ``probe`` learnt about a video file."""

    width: int
    height: int
    duration: float  # seconds
    fps: float
    frames: int
    codec: str
    pix_fmt: str | None
    bit_rate: int | None
    has_audio: bool
    size: int  # bytes on disk
    # The first audio stream, when there is one (H3 clips carry AAC, 32 kHz stereo).
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_duration: float | None = None  # seconds of sound (encoder priming excluded)


def _fail(path: Path, what: str, exc: BaseException | None = None) -> InvalidVideoError:
    detail = f": {exc}" if exc is not None else ""
    return InvalidVideoError(f"{path.name}: {what}{detail}", path=str(path))


@contextlib.contextmanager
def _open_video(path: str | os.PathLike[str]) -> Iterator[tuple[av.container.InputContainer,
                                                                 av.VideoStream]]:
    """Open ``path`` and yield (container, first video stream), or raise InvalidVideoError."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise _fail(p, "cannot be read", exc) from exc
    if size == 0:
        raise _fail(p, "file is empty (0 bytes)")
    try:
        container = av.open(str(p), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _fail(p, "not a readable media container", exc) from exc
    try:
        if not container.streams.video:
            raise _fail(p, "has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream
    finally:
        container.close()


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode_packets(stream: av.VideoStream, packets: Iterable[av.Packet], *,
                    first_only: bool = False) -> int:
    """Decode ``packets`` with a fresh decoder; return how many frames came out."""
    ctx = av.CodecContext.create(stream.codec_context.name, "r")
    ctx.extradata = stream.codec_context.extradata
    ctx.thread_type = "AUTO"
    count = 0
    for packet in packets:
        count += len(ctx.decode(packet))
        if first_only and count:
            return count
    count += len(ctx.decode(None))
    return count


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Prove ``path`` is a complete, decodable video and describe it.

    Counts frames by demuxing (no decode), checks the count against the container's
    index (a file cut short has fewer packets than its index promises), then decodes the
    first keyframe and the whole last GOP. Raises ``InvalidVideoError`` naming the file
    and what failed for zero-byte, truncated, corrupt or non-video files.
    """
    p = Path(path)
    with _open_video(p) as (container, stream):
        first: av.Packet | None = None
        last_key_pts: int | None = None
        gop_len = 0  # packets in the last GOP; only counted, never held (memory stays flat)
        packets = 0
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_end: int | None = None  # end of the last audio packet, when not in the header
        count_audio = audio is not None and audio.duration is None
        try:
            for packet in container.demux(*((stream, audio) if count_audio else (stream,))):
                if packet.size == 0 and packet.dts is None:  # end-of-stream marker
                    continue
                if audio is not None and packet.stream.index == audio.index:
                    if packet.pts is not None:
                        end = packet.pts + (packet.duration or 0)
                        audio_end = end if audio_end is None else max(audio_end, end)
                    continue
                if packet.is_corrupt:
                    raise _fail(p, f"packet {packets} is corrupt (truncated download?)")
                packets += 1
                if packet.is_keyframe:
                    last_key_pts, gop_len = packet.pts, 0
                if first is None:
                    first = packet
                gop_len += 1
        except av.FFmpegError as exc:
            raise _fail(p, f"demuxing failed after {packets} packets", exc) from exc
        if packets == 0:
            raise _fail(p, "video stream has no frames")
        expected = stream.frames
        if expected and packets < expected:
            raise _fail(p, f"truncated: {packets} of {expected} frames present")
        if first is None or not first.is_keyframe:
            raise _fail(p, "does not start with a keyframe")
        try:
            if _decode_packets(stream, [first], first_only=True) == 0:
                raise _fail(p, "first frame does not decode")
            container.seek(last_key_pts or 0, stream=stream, backward=True, any_frame=False)
            tail = (pk for pk in container.demux(stream) if not (pk.size == 0 and pk.dts is None))
            decoded = _decode_packets(stream, tail)
        except av.FFmpegError as exc:
            raise _fail(p, "decoding failed", exc) from exc
        if decoded < gop_len:
            raise _fail(p, f"last GOP decodes to {decoded} of {gop_len} frames")
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration = _duration(container, stream)
        if duration is None:
            duration = packets / fps if fps else 0.0
        return VideoInfo(
            width=cc.width,
            height=cc.height,
            duration=duration,
            fps=fps,
            frames=packets,
            codec=cc.name,
            pix_fmt=cc.format.name if cc.format is not None else None,
            bit_rate=container.bit_rate or cc.bit_rate or None,
            has_audio=audio is not None,
            size=p.stat().st_size,
            **_audio_fields(audio, audio_end),
        )


def _audio_fields(audio: av.AudioStream | None, end: int | None) -> dict:
    """``probe``'s audio fields from the stream header (or the packets' end when the
    header has no duration); nothing is decoded."""
    if audio is None:
        return {}
    cc = audio.codec_context
    tb = audio.time_base
    duration = None
    if tb is not None:
        start = audio.start_time or 0
        if audio.duration is not None:
            duration = float(audio.duration * tb)
        elif end is not None:
            duration = float(max(0, end - max(start, 0)) * tb)
    return {"audio_codec": cc.name, "audio_sample_rate": cc.sample_rate or None,
            "audio_channels": cc.channels or None, "audio_duration": duration}


def last_frame(path: str | os.PathLike[str]) -> Image.Image:
    """The final frame at full resolution, decoding only the tail of the clip.

    Seeks to the keyframe at or before ``_TAIL_SECONDS`` before the end and decodes
    forward; the frame with the highest timestamp wins (robust to B-frame reordering).
    Falls back to decoding from the start if the seek finds nothing.
    """
    p = Path(path)
    with _open_video(p) as (container, stream):
        duration = _duration(container, stream)
        best = None
        try:
            if duration is not None and duration > _TAIL_SECONDS and stream.time_base:
                start = stream.start_time or 0
                target = start + int((duration - _TAIL_SECONDS) / stream.time_base)
                container.seek(target, stream=stream, backward=True, any_frame=False)
                best = _last_decoded(container, stream)
            if best is None:
                container.seek(0, stream=stream, backward=True, any_frame=False)
                best = _last_decoded(container, stream)
        except av.FFmpegError as exc:
            raise _fail(p, "decoding failed", exc) from exc
        if best is None:
            raise _fail(p, "no frame decodes")
        return best.to_image()


def _last_decoded(container: av.container.InputContainer,
                  stream: av.VideoStream) -> av.VideoFrame | None:
    best = None
    for frame in container.decode(stream):
        if best is None or (frame.pts is not None and best.pts is not None
                            and frame.pts >= best.pts):
            best = frame
    return best


def first_frame(path: str | os.PathLike[str]) -> Image.Image:
    """The first frame (in presentation order) at full resolution."""
    p = Path(path)
    with _open_video(p) as (container, stream):
        try:
            for frame in container.decode(stream):
                return frame.to_image()
        except av.FFmpegError as exc:
            raise _fail(p, "decoding failed", exc) from exc
    raise _fail(p, "no frame decodes")


def _frame_at(path: Path, seconds: float | None) -> Image.Image:
    """The first frame at or after ``seconds`` (default: the middle of the clip)."""
    with _open_video(path) as (container, stream):
        duration = _duration(container, stream) or 0.0
        target = duration / 2 if seconds is None else max(0.0, min(seconds, duration))
        tb = stream.time_base or Fraction(1, 1)
        start = stream.start_time or 0
        candidate = None
        try:
            container.seek(start + int(target / tb), stream=stream, backward=True)
            for frame in container.decode(stream):
                candidate = frame
                if frame.pts is not None and (frame.pts - start) * tb >= target - 1e-6:
                    break
        except av.FFmpegError as exc:
            raise _fail(path, "decoding failed", exc) from exc
        if candidate is None:
            raise _fail(path, "no frame decodes")
        return candidate.to_image()


def _atomic_save(image: Image.Image, path: Path, fmt: str, **params) -> Path:
    with atomic_output(path) as tmp:
        image.save(tmp, format=fmt, **params)
    return path


def _as_image(image: Image.Image | np.ndarray) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))


def save_png(image: Image.Image | np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save losslessly (PNG), atomically: a frame handed to the next shot must be exact."""
    return _atomic_save(_as_image(image), Path(path), "PNG")


def extract_last_frame(video: str | os.PathLike[str], out_png: str | os.PathLike[str]) -> Path:
    """Write the video's final frame to ``out_png`` (lossless) and return the path."""
    return save_png(last_frame(video), out_png)


_THUMB_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


def thumbnail(video: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
              width: int = 480, at_seconds: float | None = None) -> Path:
    """A ``width``-wide still (aspect kept) from the middle, or from ``at_seconds``.

    The format follows the suffix: ``.jpg``/``.jpeg``, ``.png`` or ``.webp``.
    """
    out = Path(out_path)
    fmt = _THUMB_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"thumbnail suffix must be one of {sorted(_THUMB_FORMATS)}: {out.name}")
    if width <= 0:
        raise ValueError("width must be positive")
    image = _frame_at(Path(video), at_seconds)
    height = max(1, round(image.height * width / image.width))
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    params = {"quality": 88} if fmt in ("JPEG", "WEBP") else {}
    return _atomic_save(image, out, fmt, **params)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (videos are never read whole into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two equally sized 8-bit images (inf if equal).

    Why PSNR: it is the usual, simple measure of "the same picture up to compression";
    around 30 dB and above means visually the same frame.
    """
    x = np.asarray(a.convert("RGB") if isinstance(a, Image.Image) else a, dtype=np.float64)
    y = np.asarray(b.convert("RGB") if isinstance(b, Image.Image) else b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images differ in size: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * np.log10(255.0**2 / mse)
