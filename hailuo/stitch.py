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

Clips' own sound (H3 clips carry AAC, 32 kHz stereo; Hailuo-02 clips are silent) is kept
in sync by one rule: every clip's audio is cut to exactly the span its picture occupies in
the film (``_Place``) and laid there, sample-accurately, whatever happens to the picture -
a dropped boundary frame shortens the clip's audio by that frame, audio longer or shorter
than its clip is trimmed or padded with silence, a silent clip gets silence, and a
crossfade overlaps the two clips' audio (equal power) over exactly the frames the pictures
blend. The film's audio therefore ends where its video ends (to the sample).

The audio is copied packet for packet (``audio_method="copied"``) only when that is exact:
the clips' AAC parameters match and every join falls on an AAC frame boundary. Then clip
k+1's priming frame takes the slot of clip k's last AAC frame, so clip k+1's sound starts
exactly at its first picture and decodes as it does on its own (bar AAC's window overlap
in its first ~20 ms, differences under -55 dBFS), and clip k ends with a 1024-sample (32 ms
at 32 kHz) fade. Otherwise only the audio is decoded, cut, mixed and encoded again (AAC)
while the picture is still copied; ``StitchResult.audio_reason`` says why. (H3 clips, 24
fps at 32 kHz, chained with a dropped boundary frame, never meet the AAC grid: their sound
is re-encoded.)

An external ``audio`` track (music, voice-over) is, by default (``audio_mode="mix"``),
summed under the clips' own sound at a fixed gain (``audio_gain_db``, -6 dB) through a
peak limiter (the gain dips smoothly, over 10 ms, only where the sum would pass 0.95 of
full scale) so it cannot clip; over silent clips it plays at its own level as before.
``audio_mode="replace"`` keeps the old behaviour: the track replaces the clips' sound.
No ducking or loudness normalisation here.

No Prefect imports: ``tasks.stitching`` wraps these functions.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
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
    "AudioMethod",
    "AudioMode",
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
AudioMode = Literal["mix", "replace"]  # external track under the clips' sound, or instead
AudioMethod = Literal["copied", "re-encoded", "none"]
AudioSource = Literal["clips", "external", "clips+external", "none"]
STITCH_COMMENT = "prefect-hailuo stitched film"
PathLike = str | os.PathLike[str]
DEFAULT_AUDIO_GAIN_DB = -6.0  # the external track, mixed with clips that have sound
AUDIO_BITRATE = 160_000
# The peak limiter on summed sound (a mix, a crossfade) keeps it below _CEILING (under full
# scale: AAC overshoots a little), lowering the gain smoothly over _LIMIT_SECONDS around
# each peak; sound below the ceiling is untouched.
_CEILING = 0.95
_LIMIT_SECONDS = 0.01


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
    audio_method: AudioMethod = "none"
    audio_reason: str = ""  # why the audio was copied, re-encoded or left out
    audio_source: AudioSource = "none"
    audio_clips: int = 0  # clips that brought their own sound
    audio_duration: float | None = None  # seconds; within one frame of ``duration``
    audio_sample_rate: int | None = None
    audio_channels: int | None = None


@dataclass
class _AudioScan:
    """A clip's first audio stream: parameters and packet timestamps (not decoded)."""

    codec: str
    rate: int
    channels: int
    layout: str
    extradata: bytes
    frame_size: int
    time_base: Fraction
    start: int | None  # stream start (after the encoder's priming) in time_base
    pts: list[int | None] = field(default_factory=list)  # decode order
    durations: list[int] = field(default_factory=list)


_AUDIO_PARAMS = (("codec", "codec"), ("rate", "sample rate"), ("channels", "channels"),
                 ("layout", "channel layout"), ("frame_size", "frame size"),
                 ("time_base", "time base"), ("extradata", "codec parameters"))


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
    audio: _AudioScan | None = None

    @property
    def frames(self) -> int:
        return len(self.pts)

    @property
    def start(self) -> int:
        """The first presented frame's timestamp."""
        return min(p for p in self.pts if p is not None)


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
        audio = container.streams.audio[0] if container.streams.audio else None
        if audio is not None:
            acc = audio.codec_context
            channels = acc.channels or 0
            scan.audio = _AudioScan(
                codec=acc.name, rate=acc.sample_rate or 0, channels=channels,
                layout=acc.layout.name if acc.layout is not None else str(channels),
                extradata=bytes(acc.extradata or b""), frame_size=acc.frame_size or 0,
                time_base=audio.time_base or Fraction(1, acc.sample_rate or 1),
                start=audio.start_time)
        try:
            for packet in container.demux(*(s for s in (stream, audio) if s is not None)):
                if packet.dts is None and packet.size == 0:  # end-of-stream marker
                    continue
                if audio is not None and packet.stream.index == audio.index:
                    scan.audio.pts.append(packet.pts)  # type: ignore[union-attr]
                    scan.audio.durations.append(packet.duration or 0)  # type: ignore[union-attr]
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


def _spans(scans: Sequence[_Scan], drop_boundary: bool) -> list[tuple[int, int, int | None]]:
    """Per clip, copying packets: (first timestamp, end of what is kept, index in decode
    order of the dropped packet or None)."""
    spans: list[tuple[int, int, int | None]] = []
    for i, scan in enumerate(scans):
        start = scan.start
        dropped = None
        if drop_boundary and i < len(scans) - 1:
            dropped = scan.frames - 1
            end = scan.pts[dropped] or 0
        else:
            frame = max(1, round(1 / (scan.rate * scan.time_base)))  # for packets without one
            end = max(p + (d or frame) for p, d in zip(scan.pts, scan.durations, strict=True)
                      if p is not None)
        spans.append((start, end, dropped))
    return spans


def _timeline(scans: Sequence[_Scan], drop_boundary: bool) -> list[tuple[int, int | None]]:
    """Per clip: (timestamp shift, index in decode order of the dropped packet or None)."""
    plan: list[tuple[int, int | None]] = []
    offset = 0
    for start, end, dropped in _spans(scans, drop_boundary):
        plan.append((offset - start, dropped))
        offset += end - start
    return plan


@dataclass(frozen=True)
class _Place:
    """Where a clip's picture sits in the film: its audio is laid on exactly this span."""

    start: Fraction  # film seconds at which the clip's first kept frame shows
    length: Fraction  # seconds of the clip kept, from that frame (overlaps included)
    source: Fraction  # the clip's own timestamp of that frame, seconds

    @property
    def end(self) -> Fraction:
        return self.start + self.length


def _places_copy(scans: Sequence[_Scan], drop_boundary: bool) -> list[_Place]:
    places = []
    offset = Fraction(0)
    for scan, (start, end, _) in zip(scans, _spans(scans, drop_boundary), strict=True):
        tb = scan.time_base
        places.append(_Place(start=offset, length=(end - start) * tb, source=start * tb))
        offset += (end - start) * tb
    return places


def _places_reencode(scans: Sequence[_Scan], drop_boundary: bool, fade: int) -> list[_Place]:
    """The same as ``_sequence`` lays the frames out: clip i keeps ``ceil(frames * rate /
    its rate)`` frames less the dropped one, and its last ``fade`` frames blend with the
    next clip's first ``fade``."""
    rate = scans[0].rate
    places = []
    index = 0
    for i, scan in enumerate(scans):
        last = i == len(scans) - 1
        kept = math.ceil(scan.frames * rate / scan.rate) - (0 if last or not drop_boundary
                                                             else 1)
        places.append(_Place(start=Fraction(index) / rate, length=Fraction(kept) / rate,
                             source=scan.start * scan.time_base))
        index += kept - (0 if last else fade)
    return places


@dataclass(frozen=True)
class _AudioRequest:
    """What the caller wants heard: the clips' own sound and/or an external track."""

    clip_audio: bool = True
    external: Path | None = None
    mode: AudioMode = "mix"
    gain_db: float = DEFAULT_AUDIO_GAIN_DB
    bitrate: int = AUDIO_BITRATE


@dataclass
class _AudioPlan:
    method: Literal["copied", "re-encoded"]
    reason: str
    source: AudioSource
    places: list[_Place]
    rate: int
    layout: str
    clips: bool  # lay the clips' own sound
    external: Path | None
    gain: float  # linear gain of the external track
    bitrate: int
    # copied: per clip (timestamp shift, packets kept, the last one's shortened duration)
    cuts: list[tuple[int, int, int | None]] | None = None

    @property
    def channels(self) -> int:
        return 2 if self.layout == "stereo" else 1


def _plan_audio(scans: Sequence[_Scan], places: list[_Place], request: _AudioRequest | None
                ) -> _AudioPlan | None:
    """How the film's sound is made, or None for a silent film."""
    if request is None:
        return None
    use_clips = request.clip_audio and not (request.external is not None
                                            and request.mode == "replace")
    sounding = [s.audio for s in scans if s.audio is not None] if use_clips else []
    if not sounding and request.external is None:
        return None
    stereo = any(a.channels != 1 for a in sounding)
    rate = sounding[0].rate if sounding else 0
    if request.external is not None:
        ext_rate, ext_channels = _audio_format(request.external)
        rate = rate or ext_rate
        stereo = stereo or ext_channels != 1
    plan = _AudioPlan(method="re-encoded", reason="", source="clips", places=places,
                      rate=rate, layout="stereo" if stereo else "mono", clips=bool(sounding),
                      external=request.external, gain=1.0, bitrate=request.bitrate)
    if not sounding:
        plan.source = "external"
        plan.reason = "the external track, trimmed or padded to the film, encoded as AAC"
        if scans and any(s.audio is not None for s in scans):
            plan.reason += " (it replaces the clips' own sound)"
        return plan
    if request.external is not None:
        plan.source, plan.gain = "clips+external", 10 ** (request.gain_db / 20)
        plan.reason = (f"the clips' sound mixed with the external track at "
                       f"{request.gain_db:+g} dB")
        return plan
    cuts = _audio_copy(scans, places)
    if isinstance(cuts, str):
        plan.reason = cuts
        return plan
    plan.method, plan.cuts = "copied", cuts
    plan.reason = "audio packets copied: every join falls on an AAC frame boundary"
    return plan


def _audio_copy(scans: Sequence[_Scan], places: list[_Place]
                ) -> list[tuple[int, int, int | None]] | str:
    """Per clip, copying audio packets: (timestamp shift, packets kept from the start in
    decode order, the last kept packet's shortened duration or None); or why that would not
    be exact.

    Clip k+1's priming packets (before its timestamp 0) take the place of clip k's last
    ones, so the join must fall on an AAC frame boundary of clip k, and every clip's sound
    must start with its picture and last at least as long.
    """
    audios = [s.audio for s in scans]
    silent = [str(k) for k, a in enumerate(audios, start=1) if a is None]
    if silent:
        return (f"clip{'s' if len(silent) > 1 else ''} {', '.join(silent)} "
                f"{'have' if len(silent) > 1 else 'has'} no sound: silence is encoded there")
    first = audios[0]
    assert first is not None
    if first.codec != "aac":
        return f"only AAC audio is copied across joins, clip 1 has {first.codec}"
    for k, a in enumerate(audios[1:], start=2):
        for attr, label in _AUDIO_PARAMS:
            if getattr(a, attr) != getattr(first, attr):
                return f"clip {k}'s audio differs from clip 1's in {label}"
    rate, size = first.rate, first.frame_size
    if not size or first.time_base != Fraction(1, rate):
        return "audio timestamps are not counted in samples"
    for i in range(len(places) - 1):
        if places[i].end != places[i + 1].start:
            return "the clips overlap (crossfade): their sound is mixed"
    # per clip: (packet timestamps less the picture's start, durations, priming samples)
    grids: list[tuple[list[int], list[int], int]] = []
    for k, (scan, place) in enumerate(zip(scans, places, strict=True), start=1):
        a = scan.audio
        assert a is not None
        zero = place.source * rate  # (its film start is checked with the joins below)
        if zero.denominator != 1:
            return f"clip {k}'s picture does not start on an audio sample"
        if a.start is None or a.start != zero or not a.pts or any(p is None for p in a.pts):
            return f"clip {k}'s sound does not start exactly with its picture"
        rel = [int(p - zero) for p in a.pts]  # type: ignore[operator]
        for j in range(len(rel) - 1):
            if rel[j + 1] != rel[j] + a.durations[j] or a.durations[j] != size:
                return f"clip {k}'s audio packets are not one contiguous run of whole frames"
        priming = -rel[0]
        if priming < 0 or priming % size:
            return f"clip {k}'s audio priming is not a whole number of AAC frames"
        grids.append((rel, a.durations, priming))
    cuts: list[tuple[int, int, int | None]] = []
    for k, (place, (rel, durations, _)) in enumerate(zip(places, grids, strict=True), start=1):
        length = place.length * rate
        last = k == len(places)
        if last:
            cut = round(length)
        else:
            cut = math.floor(length) - grids[k][2]  # the next clip's priming goes here
            if length.denominator != 1 or cut % size:
                return (f"the join after clip {k} ({float(place.length):.3f} s into it) falls "
                        f"inside an AAC frame ({size} samples)")
        keep = sum(1 for r in rel if r < cut)
        end = rel[keep - 1] + durations[keep - 1] if keep else 0
        if keep == 0 or end < cut:
            return (f"clip {k}'s sound ({(rel[-1] + durations[-1]) / rate:.3f} s) is shorter "
                    f"than its picture ({float(place.length):.3f} s)")
        shift = int(place.start * rate - place.source * rate)
        cuts.append((shift, keep, cut - rel[keep - 1] if end != cut else None))
    return cuts


def _audio_format(path: Path) -> tuple[int, int]:
    """(sample rate, channels) of a file's first audio stream."""
    with _open_audio(path) as (_, stream):
        cc = stream.codec_context
        return cc.sample_rate or 48000, cc.channels or 2


@contextlib.contextmanager
def _open_audio(path: Path) -> Iterator[tuple[av.container.InputContainer, av.AudioStream]]:
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InvalidVideoError(f"{path.name}: not a readable audio file: {exc}",
                                path=str(path)) from exc
    with container:
        if not container.streams.audio:
            raise InvalidVideoError(f"{path.name}: has no audio stream", path=str(path))
        yield container, container.streams.audio[0]


def _paste(out: np.ndarray, data: np.ndarray, at: int) -> None:
    """Write ``data`` into ``out`` starting at sample ``at``; what falls outside is lost."""
    lo, hi = max(at, 0), min(at + data.shape[1], out.shape[1])
    if hi > lo:
        out[:, lo:hi] = data[:, lo - at:hi - at]


def _clip_samples(scan: _Scan, place: _Place, count: int, rate: int, layout: str
                  ) -> np.ndarray:
    """``count`` samples of the clip's sound from its picture's first kept frame on, as
    planar float32 at ``rate``/``layout``: sound before that frame is cut, sound missing
    (late start, early end) is silence."""
    out = np.zeros((2 if layout == "stereo" else 1, count), np.float32)
    try:
        with _open_audio(scan.path) as (container, stream):
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            at: int | None = None
            for frame in container.decode(stream):
                if at is None:
                    tb = frame.time_base or stream.time_base
                    when = (frame.pts * tb if frame.pts is not None and tb
                            else Fraction(stream.start_time or 0) * (stream.time_base or 0))
                    at = round((when - place.source) * rate)
                for chunk in resampler.resample(frame):
                    _paste(out, chunk.to_ndarray(), at)
                    at += chunk.samples
                if at >= count:
                    break
            else:
                if at is not None:
                    for chunk in resampler.resample(None):
                        _paste(out, chunk.to_ndarray(), at)
                        at += chunk.samples
    except av.FFmpegError as exc:
        raise InvalidVideoError(f"{scan.path.name}: audio decoding failed: {exc}",
                                path=str(scan.path)) from exc
    return out


def _ramp(count: int, rising: bool) -> np.ndarray:
    """Equal-power gain curve over ``count`` samples (sin rising, cos falling): the two
    sides of a crossfade sum to constant power for unrelated sounds."""
    t = (np.arange(count, dtype=np.float64) + 0.5) / count * (np.pi / 2)
    return (np.sin(t) if rising else np.cos(t)).astype(np.float32)


def _limit(x: np.ndarray, rate: int) -> np.ndarray:
    """Peak limiter (in place): where ``x`` would pass +-_CEILING its gain dips just enough,
    smoothly. Not a clipper: squaring the waveform off would make AAC overshoot instead.

    The gain needed per sample is spread by a sliding minimum over 2w and smoothed by a
    moving average over w, so it never exceeds what any sample needs (w = _LIMIT_SECONDS).
    """
    peak = np.abs(x).max(axis=0)
    if x.shape[1] == 0 or peak.max() <= _CEILING:
        return x
    need = np.minimum(1.0, _CEILING / np.maximum(peak, 1e-9))
    w = max(1, round(rate * _LIMIT_SECONDS) // 2 * 2 + 1)  # odd
    spread = np.lib.stride_tricks.sliding_window_view(  # min of need[i - w : i + w + 1]
        np.pad(need, w, mode="edge"), 2 * w + 1).min(axis=1)
    gain = np.convolve(np.pad(spread, w // 2, mode="edge"), np.full(w, 1.0 / w), mode="valid")
    x *= gain.astype(np.float32)
    return x


def _film_audio(scans: Sequence[_Scan], plan: _AudioPlan) -> Iterator[np.ndarray]:
    """The film's sound in order, clip by clip (planar float32 chunks at the plan's rate),
    every clip on its picture's span to the sample; overlapping spans crossfade."""
    rate, places = plan.rate, plan.places
    external = None
    if plan.external is not None:
        external = _audio_samples(plan.external, places[-1].end, rate=rate,
                                  layout=plan.layout)[0]
    carry = np.zeros((plan.channels, 0), np.float32)  # the previous clip's faded-out tail
    at = 0
    for i, (scan, place) in enumerate(zip(scans, places, strict=True)):
        start, end = round(place.start * rate), round(place.end * rate)
        following = round(places[i + 1].start * rate) if i + 1 < len(places) else end
        count = end - start
        if plan.clips and scan.audio is not None:
            x = _clip_samples(scan, place, count, rate, plan.layout)
        else:
            x = np.zeros((plan.channels, count), np.float32)
        into = carry.shape[1]
        if into:
            x[:, :into] = _limit(x[:, :into] * _ramp(into, rising=True) + carry, rate)
        out = end - following
        if out:
            x[:, count - out:] *= _ramp(out, rising=False)
        chunk, carry = x[:, :count - out], x[:, count - out:]
        if external is not None:
            chunk = chunk + external[:, at:at + chunk.shape[1]] * plan.gain
            if plan.clips:  # a sum: keep it from clipping (a lone track is left as it is)
                _limit(chunk, rate)
        at += chunk.shape[1]
        yield chunk


def _encode_audio(stream: av.AudioStream, chunks: Iterable[np.ndarray], rate: int,
                  layout: str) -> deque[av.Packet]:
    """AAC packets for consecutive sample chunks (re-cut to the encoder's frame size)."""
    size = stream.codec_context.frame_size or 1024
    packets: deque[av.Packet] = deque()
    pending = np.zeros((2 if layout == "stereo" else 1, 0), np.float32)
    pts = 0

    def encode(block: np.ndarray) -> None:
        nonlocal pts
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32),
                                           format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
        packets.extend(stream.encode(frame))
        pts += block.shape[1]

    for chunk in chunks:
        pending = np.concatenate([pending, chunk], axis=1) if pending.shape[1] else chunk
        whole = pending.shape[1] - pending.shape[1] % size
        for offset in range(0, whole, size):
            encode(pending[:, offset:offset + size])
        pending = pending[:, whole:]
    if pending.shape[1]:
        encode(pending)
    packets.extend(stream.encode(None))
    return packets


def _audio_packets(dst: av.container.OutputContainer, scans: Sequence[_Scan],
                   plan: _AudioPlan) -> deque[av.Packet]:
    """Add the film's audio stream to ``dst``; return its packets, ready to mux."""
    if plan.method == "copied":
        assert plan.cuts is not None
        with _open_audio(scans[0].path) as (_, template):
            stream = dst.add_stream_from_template(template)
        packets: deque[av.Packet] = deque()
        for scan, (shift, keep, last_duration) in zip(scans, plan.cuts, strict=True):
            with _open_audio(scan.path) as (src, astream):
                n = 0
                for packet in src.demux(astream):
                    if packet.dts is None and packet.size == 0:
                        continue
                    if n == keep:
                        break
                    packet.pts += shift
                    packet.dts = packet.pts if packet.dts is None else packet.dts + shift
                    if n == keep - 1 and last_duration is not None:
                        packet.duration = last_duration
                    packet.stream = stream
                    packets.append(packet)
                    n += 1
        return packets
    stream = dst.add_stream("aac", rate=plan.rate, layout=plan.layout)
    stream.bit_rate = plan.bitrate
    return _encode_audio(stream, _film_audio(scans, plan), plan.rate, plan.layout)


class _Muxer:
    """Muxes video packets as they come, with the audio packets due before each."""

    def __init__(self, dst: av.container.OutputContainer, audio: deque[av.Packet] | None):
        self.dst, self.audio = dst, audio or deque()

    def video(self, packet: av.Packet) -> None:
        if packet.dts is not None and packet.time_base is not None:
            when = packet.dts * packet.time_base
            while self.audio and self.audio[0].dts * self.audio[0].time_base <= when:
                self.dst.mux(self.audio.popleft())
        self.dst.mux(packet)

    def close(self) -> None:
        while self.audio:
            self.dst.mux(self.audio.popleft())


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


def concat_copy(clips: Sequence[PathLike], out: PathLike, *, drop_boundary: bool = True,
                clip_audio: bool = True) -> Path:
    """Join by copying video packets (no decode, no encode); raise ``ValueError`` saying
    why not when the clips cannot be joined that way (see ``remux_blocker``). The clips'
    sound, if any, follows its pictures as in ``stitch`` (copied when exact, else only the
    audio is re-encoded); ``clip_audio=False`` leaves it out."""
    scans = [_scan(c) for c in clips]
    reason = _blocker(scans, drop_boundary)
    if reason is not None:
        raise ValueError(f"cannot join by copying packets: {reason}")
    _copy(scans, Path(out), drop_boundary, _AudioRequest() if clip_audio else None)
    return Path(out)


def _copy(scans: Sequence[_Scan], out: Path, drop_boundary: bool,
          audio: _AudioRequest | None = None) -> _AudioPlan | None:
    plan = _plan_audio(scans, _places_copy(scans, drop_boundary), audio)
    with atomic_output(out) as tmp, _output(tmp) as dst:
        with media._open_video(scans[0].path) as (_, template):
            ostream = dst.add_stream_from_template(template)
        muxer = _Muxer(dst, _audio_packets(dst, scans, plan) if plan is not None else None)
        for scan, (shift, dropped) in zip(scans, _timeline(scans, drop_boundary), strict=True):
            with media._open_video(scan.path) as (src, stream):
                n = 0
                for packet in src.demux(stream):
                    if packet.dts is None and packet.size == 0:
                        continue
                    if n != dropped:
                        packet.pts += shift
                        packet.dts += shift
                        packet.stream = ostream
                        muxer.video(packet)
                    n += 1
        muxer.close()
    return plan


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
                    crf: int = 18, clip_audio: bool = True) -> Path:
    """Decode, join (optionally crossfading), encode once with libx264.

    The output takes the first clip's size and frame rate; other sizes are cover-fitted
    and other rates resampled. One keyframe a second, like the service's clips. The clips'
    sound follows its pictures (crossfaded with them) unless ``clip_audio=False``.
    """
    _reencode([_scan(c) for c in clips], Path(out), drop_boundary, crossfade_seconds,
              preset, crf, _AudioRequest() if clip_audio else None)
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
              preset: str, crf: int, audio: _AudioRequest | None = None
              ) -> _AudioPlan | None:
    first = scans[0]
    size = (first.width, first.height)
    rate = first.rate
    fade = _fade_frames(scans, crossfade, drop_boundary)
    plan = _plan_audio(scans, _places_reencode(scans, drop_boundary, fade), audio)
    gop = max(1, round(rate))
    with atomic_output(out) as tmp, _output(tmp) as dst:
        stream = dst.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.gop_size = gop
        stream.options = {"preset": preset, "crf": str(crf),
                          "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        muxer = _Muxer(dst, _audio_packets(dst, scans, plan) if plan is not None else None)
        for index, frame in enumerate(_sequence(scans, size, rate, drop_boundary, fade)):
            frame.pts, frame.time_base = index, 1 / rate
            for packet in stream.encode(frame):
                muxer.video(packet)
        for packet in stream.encode(None):
            muxer.video(packet)
        muxer.close()
    return plan


def _audio_samples(audio: Path, seconds: Fraction, *, rate: int | None = None,
                   layout: str | None = None) -> tuple[np.ndarray, int, str]:
    """Decode ``audio`` to planar float32 (channels, samples) at its own sample rate and
    mono or stereo (or at ``rate``/``layout``), trimmed (with a short fade-out) or padded
    with silence to ``seconds``. Returns (samples, rate, layout)."""
    with _open_audio(audio) as (container, stream):
        rate = rate or stream.codec_context.sample_rate or 48000
        layout = layout or ("mono" if stream.codec_context.channels == 1 else "stereo")
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


def mux_audio(video: PathLike, audio: PathLike, out: PathLike, *,
              bitrate: int = AUDIO_BITRATE, mode: AudioMode = "replace",
              gain_db: float = DEFAULT_AUDIO_GAIN_DB) -> Path:
    """Copy ``video``'s picture as is and add ``audio`` (any format FFmpeg reads) as AAC,
    trimmed (with a short fade-out) or padded with silence to the video's exact length.

    ``mode="replace"`` (default): the video's own audio, if any, is replaced. ``"mix"``:
    the track is summed under the video's own sound at ``gain_db`` (soft-limited).
    """
    _check_mode(mode)
    video, audio, out = Path(video), Path(audio), Path(out)
    _copy([_scan(video)], out, False, _AudioRequest(external=audio, mode=mode,
                                                    gain_db=gain_db, bitrate=bitrate))
    return out


def _check_mode(mode: str) -> None:
    if mode not in ("mix", "replace"):
        raise ValueError(f"audio_mode must be 'mix' or 'replace', not {mode!r}")


def stitch(clips: Sequence[PathLike], out: PathLike, *, drop_boundary: bool = True,
           transition: Transition = "cut", crossfade_seconds: float = 0.5,
           audio: PathLike | None = None, reencode: bool = False, preset: str = "veryfast",
           crf: int = 18, audio_mode: AudioMode = "mix",
           audio_gain_db: float = DEFAULT_AUDIO_GAIN_DB, clip_audio: bool = True,
           audio_bitrate: int = AUDIO_BITRATE) -> StitchResult:
    """Join ``clips`` in order into ``out`` (MP4) the cheapest correct way.

    Args:
        drop_boundary: the clips were chained (each starts on the previous one's last
            frame): drop that duplicated frame at every join.
        transition: ``cut`` (packet copy when possible) or ``crossfade`` (re-encode,
            ``crossfade_seconds`` of overlap per join).
        audio: a voice-over or music file, trimmed or padded to the video.
        reencode: force the re-encode path (e.g. to normalise odd inputs).
        audio_mode: ``mix`` (default): ``audio`` is summed under the clips' own sound at
            ``audio_gain_db`` (peak-limited; full level over silent clips); ``replace``:
            ``audio`` replaces the clips' sound (the behaviour before H3).
        clip_audio: keep the clips' own sound (H3 clips have some; silent clips get
            silence). False drops it.

    Each clip's sound stays on its picture's span through cuts, dropped boundary frames and
    crossfades; ``audio_method`` says whether its packets were copied or it was re-encoded
    (the picture is still copied whenever it can be).
    """
    if not clips:
        raise ValueError("nothing to stitch: no clips given")
    if transition not in ("cut", "crossfade"):
        raise ValueError(f"transition must be 'cut' or 'crossfade', not {transition!r}")
    _check_mode(audio_mode)
    out = Path(out)
    scans = [_scan(c) for c in clips]
    fade_seconds = crossfade_seconds if transition == "crossfade" and len(scans) > 1 else 0.0
    if fade_seconds > 0:
        reason: str | None = f"crossfade of {fade_seconds} s"
    elif reencode:
        reason = "re-encode requested"
    else:
        reason = _blocker(scans, drop_boundary)
    request = _AudioRequest(clip_audio=clip_audio,
                            external=Path(audio) if audio is not None else None,
                            mode=audio_mode, gain_db=audio_gain_db, bitrate=audio_bitrate)
    if reason is None:
        plan = _copy(scans, out, drop_boundary, request)
    else:
        plan = _reencode(scans, out, drop_boundary, fade_seconds, preset, crf, request)
    info = media.probe(out)
    joins = len(scans) - 1
    sounding = sum(1 for s in scans if s.audio is not None)
    if plan is not None:
        audio_reason = plan.reason
    elif sounding:
        audio_reason = "the clips' own sound was left out (clip_audio=False)"
    else:
        audio_reason = "the clips are silent and no audio track was given"
    return StitchResult(
        path=out, method="remux" if reason is None else "reencode",
        reason=reason or "codec parameters match: packets copied",
        transition="crossfade" if fade_seconds else "cut",
        crossfade_seconds=fade_seconds, clips=len(scans), frames=info.frames,
        dropped_frames=joins if drop_boundary else 0, width=info.width, height=info.height,
        fps=info.fps, duration=info.duration, has_audio=info.has_audio,
        sha256=media.sha256_file(out), size=info.size,
        audio_method=plan.method if plan is not None else "none", audio_reason=audio_reason,
        audio_source=plan.source if plan is not None else "none", audio_clips=sounding,
        audio_duration=info.audio_duration, audio_sample_rate=info.audio_sample_rate,
        audio_channels=info.audio_channels)


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
