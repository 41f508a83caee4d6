"""Joining clips into one film: packet-copy concat, re-encode, crossfade, audio, stills.

Why packet copy first: clips of one film come from the same service at the same size, so
their H.264 parameters match and the packets can be copied into one file as they are -
lossless and a hundred times faster than encoding again. Chained clips share a frame at
every join (clip k+1 starts on clip k's exact last frame), which would show as a one-frame
freeze; it is dropped from the END of clip k: the last packet in decode order is
referenced by nothing, so everything else still decodes, whereas clip k+1's first frame
is the keyframe its whole first GOP depends on.

Re-encoding happens only when it must, and ``StitchResult.reason`` says why: the clips'
codec parameters differ (size, pixel format, SPS/PPS, time base, frame rate), the boundary
frame cannot be dropped by copying (B-frames reference it), timestamps would not increase
across a join, or a crossfade was asked for.

No Prefect imports: ``tasks.stitching`` wraps these functions.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps
from pydantic import BaseModel

from hailuo import media
from hailuo.errors import InvalidVideoError
from hailuo.files import atomic_output

__all__ = [
    "StitchResult",
    "Transition",
    "concat_copy",
    "concat_reencode",
    "contact_sheet",
    "mux_audio",
    "poster_frame",
    "remux_blocker",
    "stitch",
]

Transition = Literal["cut", "crossfade"]
STITCH_COMMENT = "prefect-hailuo stitched film"
PathLike = str | os.PathLike[str]


class StitchResult(BaseModel):
    """What ``stitch`` wrote and how."""

    path: Path
    method: Literal["remux", "reencode"]
    reason: str  # why this method was used
    transition: Transition
    crossfade_seconds: float
    clips: int
    frames: int
    dropped_frames: int  # duplicated boundary frames removed
    width: int
    height: int
    fps: float
    duration: float
    has_audio: bool
    sha256: str
    size: int


@dataclass
class _Scan:
    """A clip's video stream parameters and packet timestamps (demuxed, not decoded)."""

    path: Path
    codec: str
    width: int
    height: int
    pix_fmt: str | None
    extradata: bytes
    time_base: Fraction
    rate: Fraction
    pts: list[int | None] = field(default_factory=list)  # decode order
    dts: list[int | None] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.pts)


def _scan(path: PathLike) -> _Scan:
    p = Path(path)
    with media._open_video(p) as (container, stream):
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or not stream.time_base:
            raise InvalidVideoError(f"{p.name}: no frame rate or time base", path=str(p))
        scan = _Scan(path=p, codec=cc.name, width=cc.width, height=cc.height,
                     pix_fmt=cc.format.name if cc.format is not None else None,
                     extradata=bytes(cc.extradata or b""), time_base=stream.time_base,
                     rate=Fraction(rate))
        try:
            for packet in container.demux(stream):
                if packet.dts is None and packet.size == 0:  # end-of-stream marker
                    continue
                scan.pts.append(packet.pts)
                scan.dts.append(packet.dts)
                scan.durations.append(packet.duration or 0)
        except av.FFmpegError as exc:
            raise InvalidVideoError(f"{p.name}: demuxing failed: {exc}", path=str(p)) from exc
    if not scan.frames:
        raise InvalidVideoError(f"{p.name}: video stream has no frames", path=str(p))
    return scan


_PARAMS = (("codec", "codec"), ("width", "width"), ("height", "height"),
           ("pix_fmt", "pixel format"), ("rate", "frame rate"), ("time_base", "time base"),
           ("extradata", "codec parameters (SPS/PPS)"))


def _timeline(scans: Sequence[_Scan], drop_boundary: bool) -> list[tuple[int, int | None]]:
    """Per clip: (timestamp shift, index in decode order of the dropped packet or None)."""
    plan: list[tuple[int, int | None]] = []
    offset = 0
    for i, scan in enumerate(scans):
        pts = [p for p in scan.pts if p is not None]
        start = min(pts)
        dropped = None
        if drop_boundary and i < len(scans) - 1:
            dropped = scan.frames - 1
            end = scan.pts[dropped] or 0
        else:
            end = max(p + d for p, d in zip(scan.pts, scan.durations, strict=True)
                      if p is not None)
        plan.append((offset - start, dropped))
        offset += end - start
    return plan


def remux_blocker(clips: Sequence[PathLike], *, drop_boundary: bool = True) -> str | None:
    """Why these clips cannot be joined by copying packets, or None when they can."""
    return _blocker([_scan(c) for c in clips], drop_boundary)


def _blocker(scans: Sequence[_Scan], drop_boundary: bool) -> str | None:
    first = scans[0]
    for k, scan in enumerate(scans[1:], start=2):
        for attr, label in _PARAMS:
            if getattr(scan, attr) != getattr(first, attr):
                shown = "" if attr == "extradata" else (
                    f" ({getattr(scan, attr)} vs {getattr(first, attr)})")
                return f"clip {k} differs from clip 1 in {label}{shown}"
    for k, scan in enumerate(scans, start=1):
        if any(p is None for p in scan.pts) or any(d is None for d in scan.dts):
            return f"clip {k} has packets without timestamps"
        if drop_boundary and k < len(scans) and scan.pts[-1] != max(scan.pts):  # type: ignore[type-var]
            return (f"clip {k} ends with frames that reference its last frame (B-frames): "
                    "the duplicated boundary frame can only be dropped by re-encoding")
    last_dts: int | None = None
    for k, (scan, (shift, dropped)) in enumerate(
            zip(scans, _timeline(scans, drop_boundary), strict=True), start=1):
        for n, dts in enumerate(scan.dts):
            if n == dropped:
                continue
            shifted = dts + shift  # type: ignore[operator]
            if last_dts is not None and shifted <= last_dts:
                return f"timestamps would not increase where clip {k} joins"
            last_dts = shifted
    return None


def _output(path: Path) -> av.container.OutputContainer:
    container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
    container.metadata["comment"] = STITCH_COMMENT
    return container


def concat_copy(clips: Sequence[PathLike], out: PathLike, *, drop_boundary: bool = True
                ) -> Path:
    """Join by copying packets (no decode, no encode); raise ``ValueError`` saying why not
    when the clips cannot be joined that way (see ``remux_blocker``)."""
    scans = [_scan(c) for c in clips]
    reason = _blocker(scans, drop_boundary)
    if reason is not None:
        raise ValueError(f"cannot join by copying packets: {reason}")
    _copy(scans, Path(out), drop_boundary)
    return Path(out)


def _copy(scans: Sequence[_Scan], out: Path, drop_boundary: bool) -> None:
    with atomic_output(out) as tmp, _output(tmp) as dst:
        ostream = None
        for scan, (shift, dropped) in zip(scans, _timeline(scans, drop_boundary), strict=True):
            with media._open_video(scan.path) as (src, stream):
                if ostream is None:
                    ostream = dst.add_stream_from_template(stream)
                n = 0
                for packet in src.demux(stream):
                    if packet.dts is None and packet.size == 0:
                        continue
                    if n != dropped:
                        packet.pts += shift
                        packet.dts += shift
                        packet.stream = ostream
                        dst.mux(packet)
                    n += 1


def _decoded(scan: _Scan, size: tuple[int, int]) -> Iterator[av.VideoFrame]:
    """The clip's frames in presentation order as yuv420p frames of ``size``.

    Frames stay in YUV (no RGB round trip: that conversion costs more than decoding);
    a clip of another size is cover-fitted, like the service maps an input image.
    """
    width, height = size
    same_aspect = abs(scan.width * height / (scan.height * width) - 1) < 0.01
    with media._open_video(scan.path) as (container, stream):
        for frame in container.decode(stream):
            if (frame.width, frame.height) == size or same_aspect:
                yield frame.reformat(width=width, height=height, format="yuv420p")
            else:
                fitted = ImageOps.fit(frame.to_image(), size, method=Image.Resampling.LANCZOS)
                yield av.VideoFrame.from_image(fitted).reformat(format="yuv420p")


def _retimed(frames: Iterator[av.VideoFrame], rate_in: Fraction, rate_out: Fraction
             ) -> Iterator[av.VideoFrame]:
    """Resample a constant-rate sequence to ``rate_out`` by repeating or skipping frames."""
    if rate_in == rate_out:
        yield from frames
        return
    slot = 0
    for index, frame in enumerate(frames):
        # every output slot whose time falls within this input frame's interval
        while slot * rate_in < (index + 1) * rate_out:
            yield frame
            slot += 1


def _blend(a: av.VideoFrame, b: av.VideoFrame, alpha: float) -> av.VideoFrame:
    """``(1 - alpha) * a + alpha * b`` on the YUV planes (a linear mix is valid there)."""
    x = a.to_ndarray().astype(np.float32)
    y = b.to_ndarray().astype(np.float32)
    mixed = np.rint(x * (1.0 - alpha) + y * alpha).astype(np.uint8)
    return av.VideoFrame.from_ndarray(mixed, format="yuv420p")


def _sequence(scans: Sequence[_Scan], size: tuple[int, int], rate: Fraction,
              drop_boundary: bool, fade: int) -> Iterator[av.VideoFrame]:
    """Every output frame: boundary duplicates dropped, ``fade`` frames blended per join."""
    tail: list[av.VideoFrame] = []
    for i, scan in enumerate(scans):
        last = i == len(scans) - 1
        hold = 0 if last else fade + (1 if drop_boundary else 0)
        buffer: deque[av.VideoFrame] = deque()
        for j, frame in enumerate(_retimed(_decoded(scan, size), scan.rate, rate)):
            if j < len(tail):
                frame = _blend(tail[j], frame, (j + 1) / (len(tail) + 1))
            buffer.append(frame)
            if len(buffer) > hold:
                yield buffer.popleft()
        if not last and drop_boundary and buffer:
            buffer.pop()  # the frame clip i+1 starts on
        tail = list(buffer)


def concat_reencode(clips: Sequence[PathLike], out: PathLike, *, drop_boundary: bool = True,
                    crossfade_seconds: float = 0.0, preset: str = "veryfast",
                    crf: int = 18) -> Path:
    """Decode, join (optionally crossfading), encode once with libx264.

    The output takes the first clip's size and frame rate; other sizes are cover-fitted
    and other rates resampled. One keyframe a second, like the service's clips.
    """
    _reencode([_scan(c) for c in clips], Path(out), drop_boundary, crossfade_seconds,
              preset, crf)
    return Path(out)


def _fade_frames(scans: Sequence[_Scan], seconds: float, drop_boundary: bool) -> int:
    if seconds <= 0:
        return 0
    rate = scans[0].rate
    fade = max(1, round(seconds * rate))
    shortest = min(round(s.frames * rate / s.rate) for s in scans)
    if fade + (1 if drop_boundary else 0) >= shortest:
        raise ValueError(f"crossfade of {seconds} s ({fade} frames) is as long as the "
                         f"shortest clip ({shortest} frames)")
    return fade


def _reencode(scans: Sequence[_Scan], out: Path, drop_boundary: bool, crossfade: float,
              preset: str, crf: int) -> None:
    first = scans[0]
    size = (first.width, first.height)
    rate = first.rate
    fade = _fade_frames(scans, crossfade, drop_boundary)
    gop = max(1, round(rate))
    with atomic_output(out) as tmp, _output(tmp) as dst:
        stream = dst.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.gop_size = gop
        stream.options = {"preset": preset, "crf": str(crf),
                          "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for index, frame in enumerate(_sequence(scans, size, rate, drop_boundary, fade)):
            frame.pts, frame.time_base = index, 1 / rate
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))


def _audio_samples(audio: Path, seconds: Fraction) -> tuple[np.ndarray, int, str]:
    """Decode ``audio`` to planar float32 (channels, samples) at its own sample rate, mono
    or stereo, trimmed (with a short fade-out) or padded with silence to ``seconds``.
    Returns (samples, rate, layout)."""
    try:
        container = av.open(str(audio), "r")
    except (av.FFmpegError, OSError) as exc:
        raise InvalidVideoError(f"{audio.name}: not a readable audio file: {exc}",
                                      path=str(audio)) from exc
    with container:
        if not container.streams.audio:
            raise InvalidVideoError(f"{audio.name}: has no audio stream", path=str(audio))
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or 48000
        layout = "mono" if stream.codec_context.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        want = round(seconds * rate)
        chunks: list[np.ndarray] = []
        have = 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
                have += out.samples
            if have >= want:
                break
        else:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
                have += out.samples
    channels = 1 if layout == "mono" else 2
    samples = (np.concatenate(chunks, axis=1) if chunks
               else np.zeros((channels, 0), np.float32)).astype(np.float32)
    if samples.shape[1] >= want:
        samples = samples[:, :want].copy()
        ramp = min(want, rate // 2)  # half a second, so a cut-off track does not click
        if ramp:
            samples[:, want - ramp:] *= np.linspace(1.0, 0.0, ramp, dtype=np.float32)
    else:
        samples = np.pad(samples, ((0, 0), (0, want - samples.shape[1])))
    return samples, rate, layout


def mux_audio(video: PathLike, audio: PathLike, out: PathLike, *, bitrate: int = 160_000
              ) -> Path:
    """Copy ``video``'s picture as is and add ``audio`` (any format FFmpeg reads) as AAC,
    trimmed (with a short fade-out) or padded with silence to the video's exact length.

    The video's own audio, if any, is replaced.
    """
    video, audio, out = Path(video), Path(audio), Path(out)
    scan = _scan(video)
    length = Fraction(scan.frames) / scan.rate
    samples, rate, layout = _audio_samples(audio, length)
    with atomic_output(out) as tmp, _output(tmp) as dst, media._open_video(video) as (src, vstream):
        ovideo = dst.add_stream_from_template(vstream)
        oaudio = dst.add_stream("aac", rate=rate, layout=layout)
        oaudio.bit_rate = bitrate
        encoded: deque[av.Packet] = deque()
        size = oaudio.codec_context.frame_size or 1024
        for start in range(0, samples.shape[1], size):
            chunk = np.ascontiguousarray(samples[:, start:start + size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            encoded.extend(oaudio.encode(frame))
        encoded.extend(oaudio.encode(None))
        for packet in src.demux(vstream):
            if packet.dts is None and packet.size == 0:
                continue
            when = packet.dts * packet.time_base
            while encoded and encoded[0].dts * encoded[0].time_base <= when:
                dst.mux(encoded.popleft())
            packet.stream = ovideo
            dst.mux(packet)
        while encoded:
            dst.mux(encoded.popleft())
    return out


def stitch(clips: Sequence[PathLike], out: PathLike, *, drop_boundary: bool = True,
           transition: Transition = "cut", crossfade_seconds: float = 0.5,
           audio: PathLike | None = None, reencode: bool = False, preset: str = "veryfast",
           crf: int = 18) -> StitchResult:
    """Join ``clips`` in order into ``out`` (MP4) the cheapest correct way.

    Args:
        drop_boundary: the clips were chained (each starts on the previous one's last
            frame): drop that duplicated frame at every join.
        transition: ``cut`` (packet copy when possible) or ``crossfade`` (re-encode,
            ``crossfade_seconds`` of overlap per join).
        audio: a voice-over or music file muxed in, trimmed or padded to the video.
        reencode: force the re-encode path (e.g. to normalise odd inputs).

    Only the clips' video is joined (Hailuo clips are silent); sound comes from ``audio``.
    """
    if not clips:
        raise ValueError("nothing to stitch: no clips given")
    if transition not in ("cut", "crossfade"):
        raise ValueError(f"transition must be 'cut' or 'crossfade', not {transition!r}")
    out = Path(out)
    scans = [_scan(c) for c in clips]
    fade_seconds = crossfade_seconds if transition == "crossfade" and len(scans) > 1 else 0.0
    if fade_seconds > 0:
        reason: str | None = f"crossfade of {fade_seconds} s"
    elif reencode:
        reason = "re-encode requested"
    else:
        reason = _blocker(scans, drop_boundary)
    with contextlib.ExitStack() as stack:
        target = out
        if audio is not None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="hailuo-stitch-"))
            target = Path(folder) / "video.mp4"
        if reason is None:
            _copy(scans, target, drop_boundary)
        else:
            _reencode(scans, target, drop_boundary, fade_seconds, preset, crf)
        if audio is not None:
            mux_audio(target, audio, out)
    info = media.probe(out)
    joins = len(scans) - 1
    return StitchResult(
        path=out, method="remux" if reason is None else "reencode",
        reason=reason or "codec parameters match: packets copied",
        transition="crossfade" if fade_seconds else "cut",
        crossfade_seconds=fade_seconds, clips=len(scans), frames=info.frames,
        dropped_frames=joins if drop_boundary else 0, width=info.width, height=info.height,
        fps=info.fps, duration=info.duration, has_audio=info.has_audio,
        sha256=media.sha256_file(out), size=info.size)


def poster_frame(video: PathLike, out: PathLike, *, at_seconds: float | None = None) -> Path:
    """A full-resolution still (default: the middle of the film) for listings and the UI."""
    width = media.probe(video).width
    return media.thumbnail(video, out, width=width, at_seconds=at_seconds)


def contact_sheet(videos: Sequence[PathLike], out: PathLike, *, thumb_width: int = 320,
                  columns: int = 4, labels: Sequence[str] | None = None) -> Path:
    """One labelled thumbnail per clip (its middle frame) in a grid, as a JPEG or PNG."""
    if not videos:
        raise ValueError("no videos for a contact sheet")
    if labels is not None and len(labels) != len(videos):
        raise ValueError("give one label per video")
    names = list(labels) if labels is not None else [f"{i}" for i in range(1, len(videos) + 1)]
    with tempfile.TemporaryDirectory(prefix="hailuo-sheet-") as folder:
        thumbs = []
        for i, video in enumerate(videos):
            path = media.thumbnail(video, Path(folder) / f"{i}.png", width=thumb_width)
            with Image.open(path) as img:
                thumbs.append(img.convert("RGB"))
    cols = max(1, min(columns, len(thumbs)))
    rows = -(-len(thumbs) // cols)
    gap, label_h = 8, 22
    cell_h = max(t.height for t in thumbs)
    sheet = Image.new("RGB", (cols * (thumb_width + gap) + gap,
                              rows * (cell_h + label_h + gap) + gap), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for i, (thumb, name) in enumerate(zip(thumbs, names, strict=True)):
        x = gap + (i % cols) * (thumb_width + gap)
        y = gap + (i // cols) * (cell_h + label_h + gap)
        sheet.paste(thumb, (x, y))
        draw.text((x + 2, y + thumb.height + 4), name, fill=(235, 235, 235), font=font)
    png = Path(out).suffix.lower() == ".png"
    with atomic_output(out) as tmp:
        sheet.save(tmp, format="PNG" if png else "JPEG", **({} if png else {"quality": 88}))
    return Path(out)
