"""One soundtrack for a narrated film, and the final MP4 that carries it.

What goes in (``mix_soundtrack``):

* **narration** - one audio file per segment, each placed at the start of its segment in
  the *stitched* film (``segment_starts``: the sum of the previous clips' real lengths,
  minus the boundary frames the stitch dropped), each brought to ``narration_lufs`` so
  every segment's voice sits at the same level;
* **music** - a bed brought to ``music_lufs``, looped (with a crossfade) or trimmed to the
  film, faded in and out, and **ducked** under speech: its gain follows a smooth envelope
  (raised-cosine ramps, ``attack_seconds`` down before the voice starts and
  ``release_seconds`` back up after it ends, ``duck_db`` below its level meanwhile), never
  a step;
* **the clips' own sound** (MiniMax-H3 clips carry some; older models are silent),
  decoded from the stitched film and kept under both at ``clip_audio_lufs``.

The sum is then normalised to an integrated loudness of ``loudness_lufs`` (-16 LUFS by
default) measured with pyloudnorm (ITU-R BS.1770-4: K-weighting, 400 ms blocks, absolute
and relative gates), and held under ``true_peak_dbtp`` (-1 dBTP) by a look-ahead limiter
that works on the 4x oversampled signal (the BS.1770 true-peak method; the oversampling is
``scipy.signal.resample_poly``, a polyphase FIR). Loudness and limiter are iterated until
the limited mix measures on target. The limiter is aimed ``codec_headroom_db`` below the
ceiling because AAC encoding overshoots a little; ``write_film`` decodes what it wrote,
measures its true peak again and, should it still be over, encodes once more a little
lower.

Stems: the three buses after the final gain and limiter (``Soundtrack.stems``) sum to the
mix exactly, so a reviewer (or a test) can look at the music alone.

``write_film`` copies the stitched film's video packets as they are, encodes the mix as AAC
(48 kHz stereo) and adds the subtitles as a ``mov_text`` track (3GPP timed text, what MP4
players show), encoded by FFmpeg's ``mov_text`` encoder through PyAV (each cue given as an
ASS dialogue line, the track described by ``ASS_HEADER``).

No Prefect imports.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyloudnorm
from av.subtitles.subtitle import SubtitleSet
from pydantic import BaseModel, ConfigDict, Field
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

from hailuo import audio, media
from hailuo.files import atomic_output

__all__ = [
    "Cue",
    "MixSettings",
    "Narration",
    "Soundtrack",
    "duck_gain",
    "fit_length",
    "limit_true_peak",
    "load_audio",
    "loudness",
    "mix_soundtrack",
    "ASS_HEADER",
    "normalise",
    "segment_starts",
    "sound_span",
    "true_peak",
    "video_audio",
    "write_film",
]

SAMPLE_RATE = 48000
CHANNELS = 2
AAC_BITRATE = 192_000
SILENCE_LUFS = -70.0  # BS.1770's absolute gate: quieter than this is silence
PathLike = str | os.PathLike[str]


class MixSettings(BaseModel):
    """How the soundtrack is balanced; every level in LUFS (BS.1770), gains in dB."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    loudness_lufs: float = Field(-16.0, ge=-40, le=-5, description="Integrated loudness of "
                                 "the finished mix.")
    true_peak_dbtp: float = Field(-1.0, ge=-12, le=0, description="Ceiling of the mix's "
                                  "true peak (4x oversampled).")
    codec_headroom_db: float = Field(0.5, ge=0, le=3, description="The limiter aims this "
                                     "far below the ceiling: AAC encoding overshoots.")
    narration_lufs: float = Field(-16.0, description="Each narration's level on the bus.")
    music_lufs: float = Field(-24.0, description="The music bed's level before ducking.")
    clip_audio_lufs: float = Field(-27.0, description="The clips' own sound (H3).")
    duck_db: float = Field(-12.0, ge=-40, le=0, description="Music gain while someone "
                           "speaks.")
    attack_seconds: float = Field(0.3, gt=0, le=5, description="The music goes down over "
                                  "this, ending where the voice starts.")
    release_seconds: float = Field(0.8, gt=0, le=10, description="And comes back up over "
                                   "this once the voice ends.")
    merge_gap_seconds: float = Field(1.5, ge=0, description="Speech closer than this is "
                                     "one ducked span (no pumping between sentences).")
    music_fade_in_seconds: float = Field(1.0, ge=0)
    music_fade_out_seconds: float = Field(2.0, ge=0)
    loop_crossfade_seconds: float = Field(1.0, ge=0, description="Where a short bed loops.")
    oversample: int = Field(4, ge=2, le=8, description="True-peak oversampling factor.")
    limiter_lookahead_seconds: float = Field(0.005, gt=0, le=0.05)
    limiter_hold_seconds: float = Field(0.05, ge=0, le=1)
    speech_threshold_db: float = Field(-45.0, description="A narration's sound starts and "
                                       "ends where it first and last passes this (dBFS).")


@dataclass(frozen=True)
class Narration:
    """One narration file and where it starts in the film (seconds)."""

    path: Path
    start: float
    label: str = ""


@dataclass(frozen=True)
class Cue:
    """One subtitle line on the film's timeline (seconds)."""

    start: float
    end: float
    text: str


@dataclass
class Soundtrack:
    """The mixed film audio (float32, ``(2, n)`` at ``rate``) and how it measures."""

    samples: np.ndarray
    rate: int
    stems: dict[str, np.ndarray]
    loudness_lufs: float | None  # None: silence
    true_peak_dbtp: float | None
    gain_db: float  # the normalising gain applied to the bus sum
    limiter_max_reduction_db: float
    speech_spans: list[tuple[float, float]]  # ducked spans, seconds
    narration_spans: list[tuple[float, float]]  # where each narration sounds, seconds
    music_under_speech_db: float | None  # music bed RMS under speech minus elsewhere
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.rate


# -- measuring --------------------------------------------------------------------------
def loudness(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (pyloudnorm, ITU-R BS.1770-4); -inf for silence or a
    signal shorter than one 400 ms block."""
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 1:
        data = data[None, :]
    if data.shape[1] < int(0.4 * rate) + 1 or not np.any(data):
        return float("-inf")
    meter = pyloudnorm.Meter(rate)  # BS.1770-4 K-weighting
    with np.errstate(divide="ignore"):
        value = float(meter.integrated_loudness(data.T))
    return value if math.isfinite(value) else float("-inf")


def _oversampled(samples: np.ndarray, factor: int) -> np.ndarray:
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 1:
        data = data[None, :]
    return resample_poly(data, factor, 1, axis=1)


def true_peak(samples: np.ndarray, rate: int | None = None, *, oversample: int = 4) -> float:
    """The true peak in dBTP: the largest absolute sample after ``oversample``-times
    upsampling (BS.1770-4 annex 2 uses 4x at 48 kHz); -inf for silence."""
    del rate  # the factor, not the rate, decides (kept for a uniform signature)
    peak = float(np.max(np.abs(_oversampled(samples, oversample)))) if np.size(samples) else 0
    return 20 * math.log10(peak) if peak > 0 else float("-inf")


def _db(x: float) -> float:
    return 20 * math.log10(x) if x > 0 else float("-inf")


def _finite(value: float) -> float | None:
    """A measurement rounded to 0.01, or None for silence (-inf)."""
    return round(value, 2) if math.isfinite(value) else None


# -- loading ----------------------------------------------------------------------------
def _resample(data: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return data
    g = math.gcd(rate, target)
    return resample_poly(data, target // g, rate // g, axis=1).astype(np.float32)


def _stereo(data: np.ndarray) -> np.ndarray:
    if data.shape[0] == CHANNELS:
        return data
    if data.shape[0] == 1:
        return np.repeat(data, 2, axis=0)
    return data[:2]


def load_audio(path: PathLike, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any audio file as float32 stereo ``(2, n)`` at ``rate`` (decoded to its last sample
    and checked by ``hailuo.audio``; polyphase resampling)."""
    data, source_rate = audio.decode_audio(path)
    return _stereo(_resample(data, source_rate, rate))


def video_audio(video: PathLike, rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The film's own sound (the clips' audio the stitch kept) as ``(2, n)`` at ``rate``,
    or None when the video has no audio stream."""
    with av.open(str(video)) as container:
        if not container.streams.audio:
            return None
    return load_audio(video, rate)


def fit_length(data: np.ndarray, n: int, rate: int, *, crossfade_seconds: float = 1.0
               ) -> np.ndarray:
    """``data`` made exactly ``n`` samples long: trimmed, or looped with an equal-power
    crossfade where it repeats (a bed shorter than the film)."""
    if data.shape[1] >= n:
        return data[:, :n].copy()
    if data.shape[1] == 0:
        return np.zeros((data.shape[0], n), np.float32)
    fade = min(int(crossfade_seconds * rate), data.shape[1] // 2)
    out = data.copy()
    t = np.linspace(0.0, math.pi / 2, fade, dtype=np.float64) if fade else np.zeros(0)
    fade_in, fade_out = np.sin(t).astype(np.float32), np.cos(t).astype(np.float32)
    while out.shape[1] < n:
        if fade:
            head = data[:, :fade] * fade_in + out[:, -fade:] * fade_out
            out = np.concatenate([out[:, :-fade], head, data[:, fade:]], axis=1)
        else:
            out = np.concatenate([out, data], axis=1)
    return out[:, :n]


def _fades(data: np.ndarray, rate: int, fade_in: float, fade_out: float) -> np.ndarray:
    out = data.copy()
    n = out.shape[1]
    a, b = min(n, int(fade_in * rate)), min(n, int(fade_out * rate))
    if a:
        out[:, :a] *= (0.5 - 0.5 * np.cos(np.linspace(0, math.pi, a))).astype(np.float32)
    if b:
        out[:, n - b:] *= (0.5 + 0.5 * np.cos(np.linspace(0, math.pi, b))).astype(np.float32)
    return out


def _at_loudness(data: np.ndarray, rate: int, lufs: float) -> tuple[np.ndarray, float]:
    """``data`` scaled to ``lufs`` integrated loudness (silence stays silence)."""
    measured = loudness(data, rate)
    if not math.isfinite(measured) or measured < SILENCE_LUFS:
        return data, 0.0
    gain_db = lufs - measured
    return (data * np.float32(10 ** (gain_db / 20))).astype(np.float32), gain_db


def sound_span(data: np.ndarray, rate: int, threshold_db: float = -45.0
               ) -> tuple[float, float] | None:
    """Where a recording sounds: (first, last) time in seconds at which its 10 ms RMS
    passes ``threshold_db`` below its loudest 10 ms; None for silence."""
    hop = max(1, rate // 100)
    mono = np.mean(np.asarray(data, np.float64), axis=0)
    frames = mono[: len(mono) - len(mono) % hop].reshape(-1, hop)
    if not len(frames):
        return None
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    top = float(rms.max())
    if top <= 0:
        return None
    loud = np.nonzero(rms >= top * 10 ** (threshold_db / 20))[0]
    return float(loud[0] * hop / rate), float((loud[-1] + 1) * hop / rate)


# -- ducking ----------------------------------------------------------------------------
def _merge(spans: Sequence[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def duck_gain(spans: Sequence[tuple[float, float]], n: int, rate: int, *,
              depth_db: float = -12.0, attack: float = 0.3, release: float = 0.8
              ) -> np.ndarray:
    """A gain curve (linear, ``n`` samples) that is ``depth_db`` during each span and 0 dB
    elsewhere, reaching the depth exactly when a span starts (a raised-cosine ramp of
    ``attack`` seconds before it) and back to 0 dB ``release`` seconds after it ends. The
    largest change between samples is ``pi/2 * |depth| / (min(attack, release) * rate)``
    dB: no steps."""
    db = np.zeros(n, np.float64)
    for start, end in spans:
        s, e = int(round(start * rate)), int(round(end * rate))
        a, r = max(1, int(round(attack * rate))), max(1, int(round(release * rate)))
        lo, hi = max(0, s - a), min(n, e + r)
        if hi <= lo:
            continue
        idx = np.arange(lo, hi)
        curve = np.full(len(idx), float(depth_db), dtype=np.float64)
        down = idx < s
        curve[down] = depth_db * (0.5 - 0.5 * np.cos(math.pi * (idx[down] - (s - a)) / a))
        up = idx >= e
        curve[up] = depth_db * (0.5 + 0.5 * np.cos(math.pi * (idx[up] - e) / r))
        db[lo:hi] = np.minimum(db[lo:hi], curve)
    return (10 ** (db / 20)).astype(np.float32)


# -- loudness and true peak -------------------------------------------------------------
def limit_true_peak(samples: np.ndarray, rate: int, ceiling_dbtp: float = -1.0, *,
                    oversample: int = 4, lookahead: float = 0.005, hold: float = 0.05
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A look-ahead peak limiter on the true (oversampled) peak. Returns the limited
    samples and the gain curve applied (linear, one value per sample, <= 1).

    Every sample gets the gain its neighbourhood needs: the required gain (ceiling over
    the largest oversampled value around the sample) is held over ``lookahead`` before
    and ``hold`` after each peak (a running minimum), then smoothed with a moving average
    ``lookahead`` wide, which stays under the requirement everywhere (each averaged value
    is a minimum over a window that contains the sample). Gain changes are therefore
    linear ramps of ``lookahead`` seconds, never steps, and untouched sound stays
    bit-identical."""
    data = np.asarray(samples, dtype=np.float32)
    n = data.shape[1]
    ceiling = 10 ** (ceiling_dbtp / 20)
    gain = np.ones(n, np.float32)
    out = data
    for _ in range(4):  # the smoothing filter's edges can leave a hair over: go again
        up = np.abs(_oversampled(out, oversample)).max(axis=0)
        per_sample = up[: n * oversample].reshape(n, oversample).max(axis=1)
        if float(per_sample.max(initial=0.0)) <= ceiling:
            break
        # an inter-sample peak belongs to the samples on both sides of it
        per_sample = np.maximum(per_sample, np.concatenate([per_sample[1:], [0.0]]))
        required = np.minimum(1.0, ceiling / np.maximum(per_sample, 1e-12))
        w = max(1, int(round(lookahead * rate)))
        h = max(w, int(round(hold * rate)))
        # output i = min(required[i - h .. i + w])
        held = minimum_filter1d(required, size=w + h + 1, origin=h - (w + h + 1) // 2,
                                mode="nearest")
        smooth = uniform_filter1d(held, size=w, mode="nearest")
        step = np.minimum(smooth, required).astype(np.float32)
        gain *= step
        out = (data * gain).astype(np.float32)
    return out, gain


def normalise(samples: np.ndarray, rate: int, target_lufs: float = -16.0,
              ceiling_dbtp: float = -1.0, *, oversample: int = 4, lookahead: float = 0.005,
              hold: float = 0.05) -> tuple[np.ndarray, float, np.ndarray]:
    """``samples`` brought to ``target_lufs`` integrated loudness with the true peak at
    most ``ceiling_dbtp``. Returns (result, gain in dB before the limiter, the total gain
    curve applied, linear per sample). Gain and limiter are iterated: limiting lowers the
    loudness a little, the next pass asks for that much more gain."""
    data = np.asarray(samples, dtype=np.float32)
    measured = loudness(data, rate)
    if not math.isfinite(measured):
        return data.copy(), 0.0, np.ones(data.shape[1], np.float32)
    gain_db = target_lufs - measured
    result, curve = data, np.ones(data.shape[1], np.float32)
    for _ in range(6):
        scale = np.float32(10 ** (gain_db / 20))
        result, limiter = limit_true_peak(data * scale, rate, ceiling_dbtp,
                                          oversample=oversample, lookahead=lookahead,
                                          hold=hold)
        curve = limiter * scale
        error = target_lufs - loudness(result, rate)
        if abs(error) <= 0.05:
            break
        gain_db += error
    return result, gain_db, curve


def segment_starts(frames: Sequence[int], fps: Sequence[float], *, drop_boundary: bool = True,
                   crossfade_frames: int = 0, out_fps: float | None = None) -> list[float]:
    """Where each clip starts in the stitched film (seconds), by the rules of
    ``hailuo.stitch``: clip k keeps ``frames - 1`` frames when the boundary frame it shares
    with clip k+1 is dropped (every clip but the last), and a crossfade overlaps
    ``crossfade_frames`` frames per join. Clips of another frame rate than the first are
    counted as the re-encode lays them out (``ceil(frames * out_fps / fps)``)."""
    if len(frames) != len(fps):
        raise ValueError("one frame count and one frame rate per clip")
    rate = Fraction(out_fps or fps[0]).limit_denominator(1001 * 1000)
    starts, index = [], Fraction(0)
    for i, (count, clip_fps) in enumerate(zip(frames, fps, strict=True)):
        starts.append(float(index))
        last = i == len(frames) - 1
        clip_rate = Fraction(clip_fps).limit_denominator(1001 * 1000)
        kept = count if clip_rate == rate else math.ceil(count * rate / clip_rate)
        kept -= 0 if last or not drop_boundary else 1
        index += Fraction(kept - (0 if last else crossfade_frames)) / rate
    return starts


# -- the mix ----------------------------------------------------------------------------
def mix_soundtrack(duration: float, narrations: Sequence[Narration], *,
                   music: PathLike | None = None, clip_audio: np.ndarray | None = None,
                   settings: MixSettings | None = None, rate: int = SAMPLE_RATE
                   ) -> Soundtrack:
    """The film's soundtrack, ``duration`` seconds long (see the module docstring)."""
    cfg = settings or MixSettings()
    n = int(round(duration * rate))
    notes: list[str] = []
    voice = np.zeros((CHANNELS, n), np.float32)
    spans: list[tuple[float, float]] = []
    for item in narrations:
        data, _ = _at_loudness(load_audio(item.path, rate), rate, cfg.narration_lufs)
        at = int(round(item.start * rate))
        if at >= n:
            notes.append(f"narration {item.label or item.path.name} starts after the film "
                         "ends: left out")
            continue
        take = min(data.shape[1], n - at)
        if take < data.shape[1]:
            notes.append(f"narration {item.label or item.path.name} runs "
                         f"{(data.shape[1] - take) / rate:.2f} s past the film's end: cut")
        voice[:, at:at + take] += data[:, :take]
        span = sound_span(data[:, :take], rate, cfg.speech_threshold_db)
        if span is not None:
            spans.append((item.start + span[0], item.start + span[1]))
    ducked = _merge(spans, cfg.merge_gap_seconds)

    bed = np.zeros((CHANNELS, n), np.float32)
    if music is not None:
        raw = fit_length(load_audio(music, rate), n, rate,
                         crossfade_seconds=cfg.loop_crossfade_seconds)
        raw = _fades(raw, rate, cfg.music_fade_in_seconds, cfg.music_fade_out_seconds)
        raw, _ = _at_loudness(raw, rate, cfg.music_lufs)
        bed = raw * duck_gain(ducked, n, rate, depth_db=cfg.duck_db,
                              attack=cfg.attack_seconds, release=cfg.release_seconds)

    clips = np.zeros((CHANNELS, n), np.float32)
    if clip_audio is not None and clip_audio.size:
        fitted = fit_length(clip_audio, n, rate, crossfade_seconds=0.0)
        clips, _ = _at_loudness(fitted, rate, cfg.clip_audio_lufs)

    total = voice + bed + clips
    aim = cfg.true_peak_dbtp - cfg.codec_headroom_db
    mixed, gain_db, curve = normalise(total, rate, cfg.loudness_lufs, aim,
                                      oversample=cfg.oversample,
                                      lookahead=cfg.limiter_lookahead_seconds,
                                      hold=cfg.limiter_hold_seconds)
    limiter = curve / np.float32(10 ** (gain_db / 20)) if n else curve
    stems = {"narration": voice * curve, "music": bed * curve, "clips": clips * curve}
    return Soundtrack(
        samples=mixed.astype(np.float32), rate=rate,
        stems={k: v.astype(np.float32) for k, v in stems.items()},
        loudness_lufs=_finite(loudness(mixed, rate)),
        true_peak_dbtp=_finite(true_peak(mixed, oversample=cfg.oversample)),
        gain_db=round(gain_db, 2),
        limiter_max_reduction_db=round(max(0.0, -_db(float(limiter.min(initial=1.0)))), 2),
        speech_spans=[(round(a, 3), round(b, 3)) for a, b in ducked],
        narration_spans=[(round(a, 3), round(b, 3)) for a, b in spans],
        music_under_speech_db=_under_speech_db(stems["music"], ducked, rate)
        if music is not None else None,
        notes=notes)


def _under_speech_db(bed: np.ndarray, spans: Sequence[tuple[float, float]], rate: int
                     ) -> float | None:
    """RMS of the (ducked) bed inside the spans minus outside them, in dB."""
    n = bed.shape[1]
    inside = np.zeros(n, bool)
    for start, end in spans:
        inside[int(start * rate):int(end * rate)] = True
    if not inside.any() or inside.all():
        return None
    power = np.mean(np.asarray(bed, np.float64) ** 2, axis=0)
    a, b = float(power[inside].mean()), float(power[~inside].mean())
    if a <= 0 or b <= 0:
        return None
    return round(10 * math.log10(a / b), 2)


# -- the final file ---------------------------------------------------------------------
#: The ASS header FFmpeg's text subtitle encoders start from (its default style: white,
#: bottom centre); the mov_text encoder turns it into the track's ``tx3g`` description.
ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n"
    "ScaledBorderAndShadow: yes\n\n[V4+ Styles]\n"
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Sans,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,"
    "1\n\n[Events]\n"
    "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n")


def _ass_text(text: str) -> bytes:
    """A cue as an ASS dialogue payload (braces would start override tags)."""
    clean = " ".join(text.replace("{", "(").replace("}", ")").split())
    return f"0,0,Default,,0,0,0,,{clean}".encode()


def _encode_aac(stream: av.AudioStream, samples: np.ndarray, rate: int) -> list[av.Packet]:
    size = stream.codec_context.frame_size or 1024
    packets: list[av.Packet] = []
    for start in range(0, samples.shape[1], size):
        block = np.ascontiguousarray(samples[:, start:start + size], np.float32)
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return packets


def _when(packet: av.Packet) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None and packet.time_base else 0.0


def _mux(video: Path, out: Path, samples: np.ndarray, rate: int, cues: Sequence[Cue],
         *, bitrate: int, language: str, title: str | None) -> None:
    with atomic_output(out) as tmp, av.open(str(video)) as src, av.open(
            str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        if title:
            dst.metadata["title"] = title
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        aout = dst.add_stream("aac", rate=rate, layout="stereo")
        aout.bit_rate = bitrate
        aout.metadata["language"] = language
        pending: list[av.Packet] = []
        if cues:
            sout = dst.add_stream("mov_text")
            ms = Fraction(1, 1000)
            sout.codec_context.subtitle_header = ASS_HEADER.encode()
            sout.codec_context.time_base = sout.time_base = ms
            sout.metadata["language"] = language
            sout.metadata["handler_name"] = "SubtitleHandler"
            for cue in cues:
                start = int(round(cue.start * 1000))
                length = max(1, int(round((cue.end - cue.start) * 1000)))
                packet = sout.codec_context.encode_subtitle(SubtitleSet.create(
                    _ass_text(cue.text), 0, length, pts=start))
                packet.stream, packet.time_base = sout, ms
                packet.pts = packet.dts = start
                packet.duration = length
                pending.append(packet)
        pending.extend(_encode_aac(aout, samples, rate))
        pending.sort(key=_when)
        queue = iter(pending)
        nxt = next(queue, None)
        for packet in src.demux(vin):
            if packet.dts is None and packet.size == 0:
                continue
            when = _when(packet)
            while nxt is not None and _when(nxt) <= when:
                dst.mux(nxt)
                nxt = next(queue, None)
            packet.stream = vout
            dst.mux(packet)
        while nxt is not None:
            dst.mux(nxt)
            nxt = next(queue, None)


def write_film(video: PathLike, soundtrack: Soundtrack, out: PathLike, *,
               cues: Sequence[Cue] = (), ceiling_dbtp: float = -1.0, oversample: int = 4,
               bitrate: int = AAC_BITRATE, language: str = "eng", title: str | None = None
               ) -> dict[str, float | int | str | None]:
    """The final MP4: ``video``'s picture copied packet for packet, ``soundtrack`` as AAC
    48 kHz stereo and ``cues`` as a ``mov_text`` subtitle track. The written audio is
    decoded and measured; if AAC pushed its true peak over ``ceiling_dbtp`` it is encoded
    again that much lower (at most three times). Returns the measurements of the file
    (loudness and true peak None when the film is silent)."""
    video, out = Path(video), Path(out)
    samples = soundtrack.samples
    trim_db = 0.0
    for attempt in range(4):
        _mux(video, out, samples, soundtrack.rate, cues, bitrate=bitrate, language=language,
             title=title)
        decoded = load_audio(out, soundtrack.rate)
        peak = true_peak(decoded, oversample=oversample)
        if peak <= ceiling_dbtp or attempt == 3:
            break
        over = peak - ceiling_dbtp + 0.1
        trim_db -= over
        samples = (samples * np.float32(10 ** (-over / 20))).astype(np.float32)
    info = media.probe(out)
    return {"path": str(out), "sha256": media.sha256_file(out), "size": out.stat().st_size,
            "duration": info.duration,
            "loudness_lufs": _finite(loudness(decoded, soundtrack.rate)),
            "true_peak_dbtp": _finite(peak), "codec_trim_db": round(trim_db, 2),
            "audio_codec": "aac", "audio_sample_rate": soundtrack.rate,
            "audio_channels": CHANNELS, "subtitle_cues": len(cues)}
